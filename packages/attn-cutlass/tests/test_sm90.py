"""sm90 tier: the conformance suite (forward; forward + backward), the GEMM against torch.matmul."""

import dataclasses

import pytest
import torch

import attn_cutlass
from attn_reference.errors import UnsupportedFeatureError
from attn_reference.testing import conformance
from attn_reference.testing.conformance import AttentionConformance, Backend, Features
from attn_reference.testing.tolerance import assert_matches_reference

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


# The backward covers head dims 64 and 128 only, and the suite's `backward` flag is all or nothing:
# the forward (every head dim) is checked by the first class, forward + backward by the second, whose
# backend declares the backward's head dims. The functions are the package's own, so every refusal the
# second class expects must come from attn-cutlass itself (see its test_head_dim for the one that cannot).
CUTLASS_BWD = Backend(
    name="attn-cutlass (backward)",
    flash_attn_func=attn_cutlass.flash_attn_func,
    flash_attn_varlen_func=attn_cutlass.flash_attn_varlen_func,
    features=dataclasses.replace(
        CUTLASS.features, head_dims=attn_cutlass.interface.BWD_HEAD_DIMS, backward=True
    ),
)


@pytest.mark.sm90
class TestCutlassConformanceSm90(AttentionConformance):
    backend = CUTLASS
    device = "cuda"
    dtypes = (torch.float16, torch.bfloat16)
    size = "full"

    def test_backward(self):  # the declared forward-only view would expect a refusal; see below
        pytest.skip("forward + backward: TestCutlassBackwardConformanceSm90")


@pytest.mark.sm90
class TestCutlassBackwardConformanceSm90(AttentionConformance):
    backend = CUTLASS_BWD
    device = "cuda"
    dtypes = (torch.float16, torch.bfloat16)
    size = "full"

    @pytest.mark.parametrize("head_dim", conformance.HEAD_DIMS)
    def test_head_dim(self, head_dim):
        # This view declares only the backward's head dims, so the suite expects hd256's forward to be
        # refused, but attn-cutlass runs it (TestCutlassConformanceSm90 checks it); the backward's own
        # refusal is test_backward_of_head_dim_256_is_refused. Undeclared dims the package refuses itself
        # (32, 96, 192) stay checked here.
        if head_dim in attn_cutlass.interface.HEAD_DIMS and head_dim not in self.features.head_dims:
            pytest.skip(f"hd{head_dim}: forward only (TestCutlassConformanceSm90); backward refused")
        super().test_head_dim(head_dim)


@pytest.mark.sm90
class TestCutlassBackwardAtomicDqSm90(TestCutlassBackwardConformanceSm90):
    """The same suite with dQ added by per-thread fp32 atomics (``ATTN_CUTLASS_BWD_DQ=atomic``; the default
    is the bulk reduce-add at hd128 and TMA reduce-adds at hd64, and varlen always takes the atomics), set for the whole of each test so
    the backward runs under it."""

    @pytest.fixture(autouse=True)
    def _atomic_dq(self, monkeypatch):
        monkeypatch.setenv("ATTN_CUTLASS_BWD_DQ", "atomic")


@pytest.mark.sm90
class TestCutlassBackwardBulkDqSm90(TestCutlassBackwardConformanceSm90):
    """The same suite with dQ added tile by tile in the MMA's order, one contiguous reduce-add per
    warpgroup and block (``ATTN_CUTLASS_BWD_DQ=bulk``, FA3's layout, hd128's default; forced here at hd64 too; varlen keeps the
    atomics)."""

    @pytest.fixture(autouse=True)
    def _bulk_dq(self, monkeypatch):
        monkeypatch.setenv("ATTN_CUTLASS_BWD_DQ", "bulk")


@pytest.mark.sm90
class TestCutlassBackwardSerialSm90(TestCutlassBackwardConformanceSm90):
    """The forward + backward suite with the backward's serial order of work
    (``ATTN_CUTLASS_BWD_SCHEDULE=serial``; the default is FA4's ``overlap`` order since 2026-12-06)."""

    @pytest.fixture(autouse=True)
    def _serial(self, monkeypatch):
        monkeypatch.setenv("ATTN_CUTLASS_BWD_SCHEDULE", "serial")


# The suite runs its feature cases at one head dim (`_head_dim`: 64, the first declared), but each head dim
# builds another forward: hd64 three consumer warpgroups, hd128 two with the loop unrolled by two (bf16)
# and a TMA store a warpgroup, hd256 one O tile the two warpgroups take turns at; and the backward adds dQ
# by one bulk reduce-add at hd128, by TMA reduce-adds at hd64. The classes below re-run the cases that
# differ by feature (masks, softcap, GQA/MQA, decode, custom scales, varlen) at 128 and 256; the suite's
# other tests either take their head dims from elsewhere (test_head_dim, test_rising_row_maxima) or do not
# depend on the kernel build (refusals, shapes), so they are left to the default classes (a name set to
# None is not collected).
FEATURE_CASES = (
    "decode",
    "causal_decode",
    "scale",
    "window",
    "window_left",
    "window_causal",
    "gqa",
    "mqa",
    "softcap",
    "softcap_scale",
    "everything",
)
BACKWARD_FEATURE_CASES = ("scale", "window", "gqa", "mqa", "softcap", "softcap_scale", "everything")
# float32 is refused at every head dim alike; the default classes check that
TESTED_DTYPES = ("float16", "bfloat16")


class _FeaturesAtHeadDim:
    head_dim: int

    def _head_dim(self):
        return self.head_dim

    test_head_dim = test_unsupported_head_dim_raises = test_float64_raises_unless_declared = None
    test_lse = test_rising_row_maxima = test_deterministic_backward = test_bad_arguments_raise = None
    test_kvcache = test_unaligned_page_size_raises = None

    @pytest.mark.parametrize("case", list(conformance.VARLEN_CASES))
    @pytest.mark.parametrize("dtype", TESTED_DTYPES)
    def test_varlen(self, case, dtype):
        super().test_varlen(case, dtype)


@pytest.mark.sm90
class TestCutlassForwardHd128Sm90(_FeaturesAtHeadDim, TestCutlassConformanceSm90):
    """The forward's feature cases at hd128 (two consumer warpgroups, unrolled by two in bf16, TMA store)."""

    head_dim = 128
    test_backward = None  # the forward-only view; TestCutlassBackwardHd128Sm90 runs the backward

    @pytest.mark.parametrize("case", FEATURE_CASES)
    @pytest.mark.parametrize("dtype", TESTED_DTYPES)
    def test_forward(self, case, dtype):
        super().test_forward(case, dtype)


@pytest.mark.sm90
class TestCutlassForwardHd256Sm90(TestCutlassForwardHd128Sm90):
    """The forward's feature cases at hd256 (one O tile the two consumer warpgroups take turns at)."""

    head_dim = 256


@pytest.mark.sm90
class TestCutlassBackwardHd128Sm90(_FeaturesAtHeadDim, TestCutlassBackwardConformanceSm90):
    """Forward + backward feature cases at hd128 (dQ by the bulk reduce-add; varlen by atomics). Its forward
    alone is TestCutlassForwardHd128Sm90's."""

    head_dim = 128
    test_forward = test_strided_inputs_with_nan_padding = None

    @pytest.mark.parametrize("case", BACKWARD_FEATURE_CASES)
    @pytest.mark.parametrize("dtype", TESTED_DTYPES)
    def test_backward(self, case, dtype):
        super().test_backward(case, dtype)


def _assert_matches_reference(q, k, v, dout=None, **kwargs):
    """attn-cutlass's out and lse (and dq, dk, dv with ``dout``) against the references, by the project's
    tolerance rule (attn_reference.testing.tolerance)."""
    out, lse = attn_cutlass.flash_attn_func(q, k, v, return_lse=True, **kwargs)
    got = {"out": out, "lse": lse}
    if dout is not None:
        got.update(zip(("dq", "dk", "dv"), torch.autograd.grad(out, (q, k, v), dout)))
    assert_matches_reference(got, q, k, v, dout, **kwargs)


@pytest.mark.sm90
@pytest.mark.parametrize("dq", ["atomic", "tma", "bulk"])
@pytest.mark.parametrize(
    "batch, seqlen, heads, head_dim, causal, softcap",
    [
        (1, 2048, 4, 128, False, 0.0),
        (2, 1500, 6, 128, True, 0.0),
        (3, 1000, 4, 64, True, 0.0),
        (1, 777, 2, 64, False, 20.0),
    ],
)
def test_backward_schedules_agree(batch, seqlen, heads, head_dim, causal, softcap, dq, monkeypatch):
    """The two schedules issue the same GEMMs on the same operands in the same order for each accumulator,
    and compute P^T and dS^T by the same formulas: dK and dV must agree bit for bit. dQ is summed across CTAs
    in whatever order their reductions land, so it is only close."""
    monkeypatch.setenv("ATTN_CUTLASS_BWD_DQ", dq)
    g = torch.Generator(device="cuda").manual_seed(0)
    q, k, v = (
        torch.randn(
            batch, seqlen, heads, head_dim, device="cuda", dtype=torch.bfloat16, generator=g
        ).requires_grad_()
        for _ in range(3)
    )
    dout = torch.randn(batch, seqlen, heads, head_dim, device="cuda", dtype=torch.bfloat16, generator=g)
    grads = {}
    for schedule in ("serial", "overlap"):
        monkeypatch.setenv("ATTN_CUTLASS_BWD_SCHEDULE", schedule)
        out = attn_cutlass.flash_attn_func(q, k, v, causal=causal, softcap=softcap)
        grads[schedule] = torch.autograd.grad(out, (q, k, v), dout)
    (dq_s, dk_s, dv_s), (dq_o, dk_o, dv_o) = grads["serial"], grads["overlap"]
    assert torch.equal(dk_s, dk_o) and torch.equal(dv_s, dv_o)
    torch.testing.assert_close(dq_o.float(), dq_s.float(), atol=2e-3, rtol=1e-2)
    assert dq_o.isfinite().all()


@pytest.mark.sm90
class TestCutlassCausalSectionsSm90(TestCutlassConformanceSm90):
    """The forward suite with causal tiles dealt in L2-sized sections of heads
    (``ATTN_CUTLASS_CAUSAL_SCHEDULE=sections``; the default deals them longest first over the whole
    problem, odd rounds reversed)."""

    @pytest.fixture(autouse=True)
    def _sections(self, monkeypatch):
        monkeypatch.setenv("ATTN_CUTLASS_CAUSAL_SCHEDULE", "sections")


@pytest.mark.sm90
@pytest.mark.parametrize(
    "batch, seqlen, heads, head_dim",
    [(1, 16384, 8, 256), (2, 4096, 16, 128), (3, 1000, 5, 64), (4, 2000, 12, 128)],
)
def test_causal_schedules_give_identical_outputs(batch, seqlen, heads, head_dim, monkeypatch):
    """Every tile computes the same thing whichever CTA runs it: the schedules must agree bit for bit."""
    g = torch.Generator(device="cuda").manual_seed(0)
    q, k, v = (
        torch.randn(batch, seqlen, heads, head_dim, device="cuda", dtype=torch.bfloat16, generator=g)
        for _ in range(3)
    )
    results = {}
    for schedule in ("sections", "lpt"):
        monkeypatch.setenv("ATTN_CUTLASS_CAUSAL_SCHEDULE", schedule)
        results[schedule] = attn_cutlass.flash_attn_func(q, k, v, causal=True, return_lse=True)
    (out_s, lse_s), (out_l, lse_l) = results["sections"], results["lpt"]
    assert torch.equal(out_s, out_l) and torch.equal(lse_s, lse_l)
    assert out_s.isfinite().all()


@pytest.mark.sm90
class TestCutlassAlwaysRescaleSm90(TestCutlassConformanceSm90):
    """The forward suite rescaling the output at every key block (``ATTN_CUTLASS_RESCALE=always``; the
    default is lazy). Its ``test_rising_row_maxima`` is the case the two modes differ on."""

    @pytest.fixture(autouse=True)
    def _always(self, monkeypatch):
        monkeypatch.setenv("ATTN_CUTLASS_RESCALE", "always")


@pytest.mark.sm90
class TestCutlassTwoConsumersSm90(TestCutlassConformanceSm90):
    """The forward suite with two consumer warpgroups at head dim 64, the suite's default head dim
    (``ATTN_CUTLASS_HD64_CONSUMERS=2``; the default is three, which passed this suite as an opt-in on the
    H200, 2026-12-06: 86 passed, 21 skipped, with the ping-pong tests)."""

    @pytest.fixture(autouse=True)
    def _two(self, monkeypatch):
        monkeypatch.setenv("ATTN_CUTLASS_HD64_CONSUMERS", "2")


@pytest.mark.sm90
class TestCutlassUnroll2Sm90(TestCutlassConformanceSm90):
    """The forward suite with the unmasked key-block loop unrolled by two at every head dim
    (``ATTN_CUTLASS_FWD_UNROLL=2``; the default does it for bf16 hd128 only): odd and even numbers of
    unmasked blocks, so both the unrolled body and its remainder run."""

    @pytest.fixture(autouse=True)
    def _unroll2(self, monkeypatch):
        monkeypatch.setenv("ATTN_CUTLASS_FWD_UNROLL", "2")


@pytest.mark.sm90
class TestCutlassRegisterStoreSm90(TestCutlassConformanceSm90):
    """The forward suite with O stored from registers (``ATTN_CUTLASS_FWD_STORE=registers``), the path the
    default's TMA store replaced and the one varlen keeps. The default class runs the TMA store: odd
    sequence lengths, so the last tile's box overhangs seqlen_q and TMA must clip it (it passed as an
    opt-in on the H100, 2026-12-06: 100 passed, 21 skipped; hd256's, whose two warpgroups take turns at
    one shared tile, on the H200 the same day: 106 passed, 21 skipped)."""

    @pytest.fixture(autouse=True)
    def _register_store(self, monkeypatch):
        monkeypatch.setenv("ATTN_CUTLASS_FWD_STORE", "registers")


def _assert_same_forward(monkeypatch, variable, values, q, k, v, causal):
    """The forward (output and LSE) is bit for bit the same under every value of ``variable``."""
    results = []
    for value in values:
        monkeypatch.setenv(variable, value)
        results.append(attn_cutlass.flash_attn_func(q, k, v, causal=causal, return_lse=True))
    (out0, lse0), *rest = results
    for value, (out, lse) in zip(values[1:], rest):
        assert torch.equal(out, out0) and torch.equal(lse, lse0), (
            f"{variable}={value} differs from {values[0]}"
        )


@pytest.mark.sm90
@pytest.mark.parametrize("seqlen", [113, 1000, 4200])
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize(
    "head_dim, dtype, consumers",
    [
        (128, torch.bfloat16, "2"),
        (64, torch.float16, "2"),
        (64, torch.bfloat16, "3"),
        (64, torch.bfloat16, "2"),
        (256, torch.bfloat16, "2"),
    ],
)
def test_forward_tma_store_changes_the_store_not_the_result(
    seqlen, causal, head_dim, dtype, consumers, monkeypatch
):
    """The same values leave by another path: bit for bit equal. Two batches: a last tile's box that TMA
    failed to clip at seqlen_q would land on the next batch's first rows."""
    monkeypatch.setenv("ATTN_CUTLASS_HD64_CONSUMERS", consumers)
    g = torch.Generator(device="cuda").manual_seed(0)
    q, k, v = (torch.randn(2, seqlen, 4, head_dim, device="cuda", dtype=dtype, generator=g) for _ in range(3))
    _assert_same_forward(monkeypatch, "ATTN_CUTLASS_FWD_STORE", ("registers", "tma"), q, k, v, causal)


@pytest.mark.sm90
@pytest.mark.parametrize("seqlen", [1000, 1100, 4096, 4200])
@pytest.mark.parametrize("causal", [False, True])
def test_forward_unroll_changes_the_code_not_the_result(seqlen, causal, monkeypatch):
    """Unrolled, every block is computed by the same instructions in the same order: bit for bit equal."""
    g = torch.Generator(device="cuda").manual_seed(0)
    q, k, v = (
        torch.randn(2, seqlen, 8, 128, device="cuda", dtype=torch.bfloat16, generator=g) for _ in range(3)
    )
    _assert_same_forward(monkeypatch, "ATTN_CUTLASS_FWD_UNROLL", ("1", "2"), q, k, v, causal)


@pytest.mark.sm90
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("head_dim, consumers", [(128, "2"), (64, "3")])
def test_pingpong_changes_the_schedule_not_the_result(causal, head_dim, consumers, monkeypatch):
    """Without the ping-pong barriers each warpgroup computes the same rows in the same order."""
    monkeypatch.setenv("ATTN_CUTLASS_HD64_CONSUMERS", consumers)
    g = torch.Generator(device="cuda").manual_seed(0)
    q, k, v = (
        torch.randn(2, 3000, 8, head_dim, device="cuda", dtype=torch.bfloat16, generator=g) for _ in range(3)
    )
    _assert_same_forward(monkeypatch, "ATTN_CUTLASS_PINGPONG", ("1", "0"), q, k, v, causal)


@pytest.mark.sm90
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize(
    "mnk",
    [
        *((128, 256, 64), (300, 520, 200), (1000, 777, 520), (1000, 1032, 136), (4096, 4096, 4096)),
        # K not a multiple of 8 (zero-padded for TMA's 16-byte strides), K = 0 (zeros), M = 0 (empty)
        *((33, 65, 7), (1000, 777, 13), (256, 300, 0), (0, 300, 64)),
    ],
)
@pytest.mark.parametrize("b_major", ["row", "col"])
@pytest.mark.parametrize("cluster", ["auto", "single"])
def test_gemm_sm90_matches_torch(dtype, mnk, b_major, cluster, monkeypatch):
    # auto: CTA pairs sharing B by multicast where the M tiles pair up (1000, 4096), single CTAs else.
    if cluster == "single":
        monkeypatch.setenv("ATTN_CUTLASS_GEMM_CLUSTER", "1")
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
@pytest.mark.parametrize("varlen", [False, True])
@pytest.mark.parametrize("head_dim", [64, 128])
def test_backward_statistics_match_torch(head_dim, varlen):
    """The preprocess kernel's D = rowsum(dO * O) and LSE * log2(e), padded with 0 and +inf."""
    import math

    from attn_cutlass.interface import backward_statistics

    g = torch.Generator(device="cuda").manual_seed(0)
    shape = (203, 3, head_dim) if varlen else (2, 113, 3, head_dim)
    out, dout = (torch.randn(shape, device="cuda", dtype=torch.bfloat16, generator=g) for _ in range(2))
    lse_shape = (3, 203) if varlen else (2, 3, 113)
    lse = torch.randn(lse_shape, device="cuda", generator=g)
    lse[..., 5] = float("inf")  # a row that saw no key
    d, lse2 = backward_statistics(out, dout, lse, varlen)
    want_d = (dout.float() * out.float()).sum(-1)
    want_d = want_d.t() if varlen else want_d.transpose(1, 2)
    s = want_d.shape[-1]
    assert d.shape[-1] == (s + 64 if varlen else 128) and lse2.shape == d.shape
    torch.testing.assert_close(d[..., :s], want_d, atol=1e-4, rtol=1e-5)
    torch.testing.assert_close(lse2[..., :s], lse * math.log2(math.e))
    assert (d[..., s:] == 0).all() and (lse2[..., s:] == float("inf")).all()


@pytest.mark.sm90
def test_backward_of_head_dim_256_is_refused():
    q, k, v = (
        torch.randn(1, 128, 2, 256, device="cuda", dtype=torch.bfloat16, requires_grad=True) for _ in range(3)
    )
    out = attn_cutlass.flash_attn_func(q, k, v)  # the forward works on inputs that require grad
    with pytest.raises(UnsupportedFeatureError):
        out.sum().backward()


@pytest.mark.sm90
@pytest.mark.parametrize("schedule", ["serial", "overlap"])
@pytest.mark.parametrize("dq", ["atomic", "tma", "bulk"])
@pytest.mark.parametrize(
    "seqlen, causal",
    # 2000 = 15 x 128 + 80 = 31 x 64 + 16: the last key block and query block are partial. 2048 stays for
    # the non-causal case alone: whole tiles only, so hd128's softcap-free backward runs without one
    # masked block, which no suite case does (its whole-tile case at hd128, softcap_scale, has softcap).
    [(2000, False), (2000, True), (2048, False)],
)
def test_backward_matches_reference_at_2k(seqlen, causal, dq, schedule, monkeypatch):
    """A longer sequence than the suite's: 32 query blocks a key block, every query block's dQ summed over
    16 key blocks' CTAs, by the project's tolerance rule."""
    monkeypatch.setenv("ATTN_CUTLASS_BWD_DQ", dq)
    monkeypatch.setenv("ATTN_CUTLASS_BWD_SCHEDULE", schedule)
    g = torch.Generator(device="cuda").manual_seed(0)
    q, k, v = (
        torch.randn(1, seqlen, 4, 128, device="cuda", dtype=torch.bfloat16, generator=g).requires_grad_()
        for _ in range(3)
    )
    dout = torch.randn(1, seqlen, 4, 128, device="cuda", dtype=torch.bfloat16, generator=g)
    _assert_matches_reference(q, k, v, dout, causal=causal)


@pytest.mark.sm90
@pytest.mark.parametrize("scale", [-0.2, 0.0])
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("head_dim", [64, 128, 256])
def test_softcap_with_a_non_positive_scale_matches_reference(scale, causal, head_dim):
    """With softcap the scale goes inside tanh (softcap * tanh(scale * s / softcap)) and the softmax's own
    scale is log2 e, so the interface lets any scale through there (it refuses <= 0 only without softcap):
    a negative scale flips the scores' order, 0 weighs every visible key alike (dq = dk = 0). Forward at
    every head dim, backward where it exists; GQA and seqlen_q < seqlen_k, both ragged."""
    g = torch.Generator(device="cuda").manual_seed(0)
    grad = head_dim in attn_cutlass.interface.BWD_HEAD_DIMS

    def randn(*shape):
        return torch.randn(*shape, device="cuda", dtype=torch.bfloat16, generator=g)

    q, k, v = (randn(2, s, h, head_dim).requires_grad_(grad) for s, h in ((300, 4), (457, 2), (457, 2)))
    dout = randn(2, 300, 4, head_dim) if grad else None
    _assert_matches_reference(q, k, v, dout, softmax_scale=scale, softcap=5.0, causal=causal)


@pytest.mark.sm90
def test_compile_cache_compiles_once_per_configuration():
    from attn_cutlass.interface import compile_cache_info

    before = len(compile_cache_info())
    for s in (100, 300, 1000):
        q = torch.randn(2, s, 4, 128, device="cuda", dtype=torch.bfloat16)
        attn_cutlass.flash_attn_func(q, q, q, causal=True)
    assert len(compile_cache_info()) - before <= 1
