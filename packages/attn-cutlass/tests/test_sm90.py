"""sm90 tier: the conformance suite, the GEMM against torch.matmul, and the (missing) backward."""

import pytest
import torch

import attn_cutlass
from attn_reference.errors import UnsupportedFeatureError
from attn_reference.testing.conformance import AttentionConformance, Backend, Features

CUTLASS = Backend(
    name="attn-cutlass",
    flash_attn_func=attn_cutlass.flash_attn_func,
    flash_attn_varlen_func=attn_cutlass.flash_attn_varlen_func,
    features=Features(
        dtypes=(torch.float16, torch.bfloat16),
        head_dims=attn_cutlass.interface.HEAD_DIMS,
        causal=True,
        window=True,
        softcap=True,
        gqa=True,
        lse=True,
        backward=False,
        varlen=True,
    ),
)


@pytest.mark.sm90
class TestCutlassConformanceSm90(AttentionConformance):
    backend = CUTLASS
    device = "cuda"
    dtypes = (torch.float16, torch.bfloat16)
    size = "full"


@pytest.mark.sm90
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("mnk", [(128, 256, 64), (1000, 777, 520), (4096, 4096, 4096)])
@pytest.mark.parametrize("b_major", ["row", "col"])
def test_gemm_sm90_matches_torch(dtype, mnk, b_major):
    m, n, k = mnk
    g = torch.Generator(device="cuda").manual_seed(0)
    a = torch.randn(m, k, device="cuda", dtype=dtype, generator=g)
    b = torch.randn(k, n, device="cuda", dtype=dtype, generator=g)
    if b_major == "col":
        b = b.t().contiguous().t()
    out = attn_cutlass.matmul(a, b)
    ref = (a.float() @ b.float()).to(dtype)
    torch.testing.assert_close(out.float(), ref.float(), atol=2e-2 * k**0.5, rtol=2e-2)


@pytest.mark.sm90
def test_backward_refuses_until_written():
    q, k, v = (
        torch.randn(1, 128, 2, 64, device="cuda", dtype=torch.bfloat16, requires_grad=True) for _ in range(3)
    )
    out = attn_cutlass.flash_attn_func(q, k, v)
    with pytest.raises(UnsupportedFeatureError):
        out.sum().backward()


@pytest.mark.sm90
def test_compile_cache_compiles_once_per_configuration():
    from attn_cutlass.interface import compile_cache_info

    before = len(compile_cache_info())
    for s in (100, 300, 1000):
        q = torch.randn(2, s, 4, 128, device="cuda", dtype=torch.bfloat16)
        attn_cutlass.flash_attn_func(q, q, q, causal=True)
    assert len(compile_cache_info()) - before <= 1
