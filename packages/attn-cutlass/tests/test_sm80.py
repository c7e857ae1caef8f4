"""sm80 tier: the sm80 kernels against torch. The tier runs on any GPU >= sm80, the Hopper machine
included: ``ATTN_CUTLASS_FORCE_ARCH=sm80`` makes attn_cutlass pick the sm80 kernels there too."""

import pytest
import torch

import attn_cutlass
from attn_reference.naive import attention_naive
from attn_reference.testing.conformance import AttentionConformance, Backend, Features
from attn_reference.testing.tolerance import assert_attention_close, reference_dtype


@pytest.fixture
def force_sm80(monkeypatch):
    monkeypatch.setenv("ATTN_CUTLASS_FORCE_ARCH", "sm80")


SM80 = Backend(
    name="attn-cutlass (sm80 forward)",
    flash_attn_func=attn_cutlass.flash_attn_func,
    flash_attn_varlen_func=attn_cutlass.flash_attn_varlen_func,
    features=Features(
        dtypes=(torch.float16, torch.bfloat16),
        head_dims=attn_cutlass.interface.SM80_HEAD_DIMS,
        causal=True,
        window=True,
        softcap=True,
        gqa=True,
        lse=True,
        backward=False,  # the sm80 path refuses the backward: the suite checks the refusal
        varlen=True,
    ),
)


@pytest.mark.sm80
class TestCutlassConformanceSm80(AttentionConformance):
    backend = SM80
    device = "cuda"
    dtypes = (torch.float16, torch.bfloat16)
    size = "full"

    @pytest.fixture(autouse=True)
    def _force_sm80(self, monkeypatch):
        monkeypatch.setenv("ATTN_CUTLASS_FORCE_ARCH", "sm80")


@pytest.mark.sm80
def test_forward_sm80_matches_reference_at_2k(force_sm80):
    """Longer than the suite's sequences, GQA, both lengths ragged (2000 = 31 x 64 + 16 queries, 1500 keys),
    by the project's tolerance rule against the float32 and the same-precision references."""
    g = torch.Generator(device="cuda").manual_seed(0)
    q = torch.randn(2, 2000, 8, 128, device="cuda", dtype=torch.bfloat16, generator=g)
    k, v = (torch.randn(2, 1500, 2, 128, device="cuda", dtype=torch.bfloat16, generator=g) for _ in range(2))
    for causal in (False, True):
        out, lse = attn_cutlass.flash_attn_func(q, k, v, causal=causal, return_lse=True)
        (ref, ref_lse), (low, low_lse) = (
            attention_naive(*(t.to(dt) for t in (q, k, v)), causal=causal, accum_dtype=accum, return_lse=True)
            for accum, dt in ((reference_dtype(q.device),) * 2, (None, q.dtype))
        )
        assert_attention_close(out, ref, low, name=f"out (causal={causal})")
        assert_attention_close(lse, ref_lse, low_lse, name=f"lse (causal={causal})")
    assert any(key[0] == "fwd_sm80" for key in attn_cutlass.interface.compile_cache_info())


@pytest.mark.sm80
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize(
    "mnk", [(128, 128, 32), (1000, 777, 520), (33, 65, 7), (1, 300, 1000), (2048, 2048, 2048)]
)
@pytest.mark.parametrize("b_major", ["row", "col"])
def test_gemm_sm80_matches_torch(force_sm80, dtype, mnk, b_major):
    m, n, k = mnk
    g = torch.Generator(device="cuda").manual_seed(0)
    a = torch.randn(m, k, device="cuda", dtype=dtype, generator=g)
    b = torch.randn(k, n, device="cuda", dtype=dtype, generator=g)
    if b_major == "col":
        b = b.t().contiguous().t()
    out = attn_cutlass.matmul(a, b)
    ref = (a.float() @ b.float()).to(dtype)
    torch.testing.assert_close(out.float(), ref.float(), atol=2e-2 * k**0.5, rtol=2e-2)


@pytest.mark.sm80
def test_gemm_sm80_on_a_strided_view(force_sm80):
    a = torch.randn(300, 200, device="cuda", dtype=torch.bfloat16)[:, 8:136]  # row stride 200, offset
    b = torch.randn(128, 90, device="cuda", dtype=torch.bfloat16)
    torch.testing.assert_close(
        attn_cutlass.matmul(a, b).float(), (a.float() @ b.float()), atol=0.3, rtol=2e-2
    )
