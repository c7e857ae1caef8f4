"""The input generators and the tolerance rule behave as the suite relies on."""

import math

import pytest
import torch

from attn_reference import attention_naive
from attn_reference.testing.inputs import (
    attention_inputs,
    cu_seqlens,
    kvcache_inputs,
    pad,
    random_seqlens,
    unpad,
    varlen_inputs,
)
from attn_reference.testing.tolerance import (
    assert_attention_close,
    assert_matches_reference,
    attention_references,
    rounding_atol,
)


def test_generators_are_seeded():
    a = attention_inputs(2, 13, 17, 2, 1, 8, seed=4)
    b = attention_inputs(2, 13, 17, 2, 1, 8, seed=4)
    c = attention_inputs(2, 13, 17, 2, 1, 8, seed=5)
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not torch.equal(a[0], c[0])
    assert random_seqlens(5, 40, seed=1) == random_seqlens(5, 40, seed=1)
    assert max(random_seqlens(5, 40, seed=1)) == 40


def test_nan_padding_views():
    q, k, _ = attention_inputs(2, 13, 17, 2, 1, 8, nan_padding=5)
    assert q.shape == (2, 13, 2, 8) and not q.is_contiguous()
    assert torch.isfinite(q).all() and torch.isfinite(k).all()
    assert torch.isnan(q.as_strided((2, 18, 2, 8), q.stride())[:, 13:]).all()


def test_pad_unpad_roundtrip_and_cu_seqlens():
    lengths = [3, 0, 5, 1]
    cu = cu_seqlens(lengths)
    assert cu.dtype == torch.int32 and cu.tolist() == [0, 3, 3, 8, 9]
    x = torch.randn(4, 5, 2)
    packed = unpad(x, lengths)
    assert packed.shape == (9, 2)
    padded = pad(packed, cu, 5)
    for i, n in enumerate(lengths):
        assert torch.equal(padded[i, :n], x[i, :n]) and torch.all(padded[i, n:] == 0)
    vi = varlen_inputs([3, 0, 5], [2, 4, 0], 2, 1, 8)
    assert vi.q.shape == (8, 2, 8) and vi.k.shape == (6, 1, 8) and vi.max_seqlen_q == 5


def test_paged_cache_layout():
    lens = [20, 0, 33]
    x = kvcache_inputs(2, lens, 2, 2, 8, page_size=16, dtype=torch.float32, seed=3)
    page = 16
    assert x.block_table.dtype == torch.int32 and x.block_table.shape == (3, 4)
    for b, n in enumerate(lens):
        pages = x.block_table[b].long()
        gathered = x.k_cache[pages].flatten(0, 1)
        assert torch.equal(gathered[:n], x.k[b])
        assert torch.isnan(gathered[n:]).all()  # the rest of the row, unused pages included, is NaN
    used = torch.cat([x.block_table[b, : math.ceil(n / page)] for b, n in enumerate(lens)])
    assert len(set(used.tolist())) == len(used)  # no page owned twice
    assert sorted(used.tolist()) != used.tolist() or len(used) < 2  # pages are shuffled


def test_tolerance_rule_accepts_fp32_result_and_rejects_a_wrong_one():
    q, k, v = attention_inputs(2, 45, 77, 2, 2, 64, dtype=torch.float16)
    ref = attention_naive(q, k, v, causal=True, accum_dtype=torch.float64)
    low = attention_naive(q, k, v, causal=True, accum_dtype=None)
    good = attention_naive(q, k, v, causal=True)
    assert_attention_close(good, ref, low)
    bad = good.clone()
    bad[0, 3, 1, 5] += 0.05
    with pytest.raises(AssertionError, match=r"out: max error .* exceeds 2 x .* worst at \(0, 3, 1, 5\)"):
        assert_attention_close(bad, ref, low)
    nan = good.clone()
    nan[1, 0, 0, 0] = float("nan")
    with pytest.raises(
        AssertionError, match=r"1 NaN entries where the reference is finite \(first at \(1, 0, 0, 0\)\)"
    ):
        assert_attention_close(nan, ref, low)


def test_attention_references_give_the_rules_two_baselines_and_gradients():
    q, k, v = attention_inputs(1, 9, 13, 4, 2, 32, dtype=torch.float16, seed=6)
    dout = torch.randn(1, 9, 4, 32, dtype=torch.float16)
    (ref_out, ref_lse, *ref_g), (low_out, low_lse, *low_g) = attention_references(q, k, v, dout, causal=True)
    assert ref_out.dtype == torch.float64 and low_out.dtype == torch.float16  # CPU: fp64; q's own
    assert torch.isfinite(low_lse).all()
    exact, exact_lse = attention_naive(
        *(t.double() for t in (q, k, v)), causal=True, accum_dtype=torch.float64, return_lse=True
    )
    assert torch.equal(ref_out, exact) and torch.equal(ref_lse, exact_lse)
    assert [g.shape for g in ref_g] == [q.shape, k.shape, v.shape] == [g.shape for g in low_g]
    assert len(attention_references(q, k, v)[0]) == 2  # without dout: out and lse only


def test_assert_matches_reference_checks_each_result_it_is_given():
    q, k, v = attention_inputs(1, 9, 13, 2, 2, 32, dtype=torch.float16, seed=7, requires_grad=True)
    out, lse = attention_naive(q, k, v, return_lse=True)
    dout = torch.randn_like(out)
    dq, dk, dv = torch.autograd.grad(out, (q, k, v), dout)
    assert_matches_reference({"out": out, "lse": lse, "dq": dq, "dk": dk, "dv": dv}, q, k, v, dout)
    with pytest.raises(AssertionError, match=r"dk \(label\): max error"):
        assert_matches_reference({"dk": dk + 0.1}, q, k, v, dout, label="label")
    with pytest.raises(ValueError, match="dout"):
        assert_matches_reference({"dq": dq}, q, k, v)  # gradients need the output gradient
    with pytest.raises(ValueError, match="unknown result names"):
        assert_matches_reference({"o": out}, q, k, v)


def test_tolerance_rule_checks_infinite_positions():
    ref = torch.tensor([1.0, math.inf, 2.0])
    assert_attention_close(torch.tensor([1.0, math.inf, 2.0]), ref, ref)
    with pytest.raises(AssertionError, match="infinite entries differ"):
        assert_attention_close(torch.tensor([1.0, 5.0, 2.0]), ref, ref)
    with pytest.raises(AssertionError, match="infinite entries differ"):
        assert_attention_close(torch.tensor([1.0, -math.inf, 2.0]), ref, ref)
    with pytest.raises(AssertionError, match="shape"):
        assert_attention_close(torch.zeros(2), ref, ref)


def test_rounding_atol_scales_with_dtype():
    ref = torch.linspace(-3, 3, 101, dtype=torch.float64)
    assert (
        rounding_atol(ref, torch.bfloat16)
        > rounding_atol(ref, torch.float16)
        > rounding_atol(ref, torch.float32)
        > 0
    )
