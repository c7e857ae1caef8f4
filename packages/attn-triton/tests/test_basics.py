"""The basics against torch on odd sizes (CPU tier under TRITON_INTERPRET=1; GPU tiers on CUDA)."""

from __future__ import annotations

import pytest
import torch

from attn_triton._runtime import interpreting
from attn_triton.basics import matmul, softmax, vector_add

pytestmark = pytest.mark.skipif(
    not interpreting() and not torch.cuda.is_available(), reason="needs CUDA or TRITON_INTERPRET=1"
)


def _device():
    return "cuda" if torch.cuda.is_available() and not interpreting() else "cpu"


@pytest.mark.parametrize("n", [1, 1000, 4097])
def test_vector_add(n):
    x = torch.randn(n, device=_device())
    y = torch.randn(n, device=_device())
    torch.testing.assert_close(vector_add(x, y), x + y)


@pytest.mark.parametrize("shape", [(1, 1), (7, 33), (37, 130)])
@pytest.mark.parametrize("dtype", [torch.float16, torch.float32])
def test_softmax(shape, dtype):
    x = torch.randn(shape, device=_device(), dtype=dtype) * 3
    ref = torch.softmax(x.float(), dim=-1).to(dtype)
    torch.testing.assert_close(softmax(x), ref, atol=2e-3, rtol=2e-3)


@pytest.mark.parametrize("mnk", [(1, 1, 1), (33, 17, 45), (70, 65, 100)])
@pytest.mark.parametrize("dtype", [torch.float16, torch.float32])
def test_matmul(mnk, dtype):
    m, n, k = mnk
    a = torch.randn(m, k, device=_device(), dtype=dtype)
    b = torch.randn(k, n, device=_device(), dtype=dtype)
    ref = (a.float() @ b.float()).to(dtype)
    tol = 1e-2 * max(1.0, k**0.5) if dtype == torch.float16 else 1e-3 * k**0.5
    torch.testing.assert_close(matmul(a, b), ref, atol=tol, rtol=1e-2)


def test_matmul_transposed_input():
    a = torch.randn(40, 24, device=_device(), dtype=torch.float16).t()  # non-contiguous
    b = torch.randn(40, 19, device=_device(), dtype=torch.float16)
    torch.testing.assert_close(matmul(a, b), (a.float() @ b.float()).half(), atol=5e-2, rtol=1e-2)


def test_bad_input():
    with pytest.raises(ValueError):
        matmul(torch.randn(3, 4), torch.randn(5, 6))
    with pytest.raises(ValueError):
        vector_add(torch.randn(3), torch.randn(4))
