"""The basics against torch on odd sizes: the CPU tier runs them under TRITON_INTERPRET=1 (fp16/fp32: the
interpreter's bf16 dot is wrong), the GPU tiers on CUDA tensors (bf16 too)."""

from __future__ import annotations

import re

import pytest
import torch

from attn_triton._runtime import interpreting
from attn_triton.basics import matmul, softmax, vector_add


@pytest.fixture(
    params=[pytest.param("cpu", id="interpreter"), pytest.param("cuda", id="cuda", marks=pytest.mark.gpu)]
)
def device(request):
    if request.param == "cpu" and not interpreting():
        pytest.skip("CPU tensors need TRITON_INTERPRET=1")
    if request.param == "cuda" and interpreting():
        pytest.skip("under TRITON_INTERPRET=1 the kernels take CPU tensors")
    return request.param


def _dtype_on(dtype, device):
    if dtype == torch.bfloat16 and device == "cpu":
        pytest.skip("bf16 runs on the GPU tiers (the interpreter's bf16 dot is wrong)")
    return dtype


@pytest.mark.parametrize("n", [1, 1000, 4097])
def test_vector_add(n, device):
    x = torch.randn(n, device=device)
    y = torch.randn(n, device=device)
    torch.testing.assert_close(vector_add(x, y), x + y)


@pytest.mark.parametrize("shape", [(1, 1), (7, 33), (37, 130)])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
def test_softmax(shape, dtype, device):
    x = torch.randn(shape, device=device, dtype=_dtype_on(dtype, device)) * 3
    ref = torch.softmax(x.float(), dim=-1).to(dtype)
    torch.testing.assert_close(softmax(x), ref, atol=2e-3, rtol=2e-3)


@pytest.mark.parametrize("mnk", [(1, 1, 1), (33, 17, 45), (70, 65, 100)])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
def test_matmul(mnk, dtype, device):
    m, n, k = mnk
    a = torch.randn(m, k, device=device, dtype=_dtype_on(dtype, device))
    b = torch.randn(k, n, device=device, dtype=dtype)
    ref = (a.float() @ b.float()).to(dtype)
    # fp16/bf16 outputs round to 11/8 bits; fp32 inputs may run through tf32 on the GPU
    tol = {torch.float16: 1e-2, torch.bfloat16: 2e-2, torch.float32: 2e-3}[dtype] * max(1.0, k**0.5)
    torch.testing.assert_close(matmul(a, b), ref, atol=tol, rtol=1e-2)


def test_matmul_transposed_input(device):
    a = torch.randn(40, 24, device=device, dtype=torch.float16).t()  # non-contiguous
    b = torch.randn(40, 19, device=device, dtype=torch.float16)
    torch.testing.assert_close(matmul(a, b), (a.float() @ b.float()).half(), atol=5e-2, rtol=1e-2)


def test_bad_input():
    """Each refusal names the argument, what it was and what is allowed."""
    with pytest.raises(
        ValueError, match=r"matmul: a and b must be 2-D .* a of shape \(3, 4\) and b of shape \(5, 6\)"
    ):
        matmul(torch.randn(3, 4), torch.randn(5, 6))
    with pytest.raises(ValueError, match=r"matmul: .*float32, got a torch\.float32 and b torch\.float64"):
        matmul(torch.randn(3, 4), torch.randn(4, 5, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"vector_add: x and y .* x of shape \(3,\).* y of shape \(4,\)"):
        vector_add(torch.randn(3), torch.randn(4))
    with pytest.raises(ValueError, match=r"vector_add: .* got x on cpu and y on meta"):
        vector_add(torch.randn(3), torch.randn(3, device="meta"))
    with pytest.raises(ValueError, match=r"softmax: x must be a 2-D tensor, got x of shape \(3,\)"):
        softmax(torch.randn(3))
    # int32 used to come back as zeros and float64 rounded through fp32, both silently
    for dtype in (torch.int32, torch.float64):
        allowed = re.escape(f"x must be float16, bfloat16 or float32, got x of dtype {dtype}")
        with pytest.raises(ValueError, match=f"softmax: {allowed}"):
            softmax(torch.ones(2, 3, dtype=dtype))
