"""The MLA decoding reference against independent, loop-by-loop computations in fp64."""

from __future__ import annotations

import math

import pytest
import torch

from attn_reference.errors import AttentionArgumentError
from attn_reference.mla import (
    check_mla_decode_args,
    check_mla_sparse_prefill_args,
    flash_mla_sparse_fwd,
    flash_mla_with_kvcache,
)
from attn_reference.testing.mla import (
    assert_mla_close,
    assert_mla_lse_close,
    mla_decode_inputs,
    mla_mismatch,
    mla_sparse_decode_inputs,
    mla_sparse_inputs,
)

# ---------------------------------------------------------------------------------------------------------
# Independent computations: token-by-token address arithmetic, fp64, softmax written out.
# ---------------------------------------------------------------------------------------------------------


def _softmax_row(scores: list[float], values: list[torch.Tensor], sink: float | None = None):
    """out, lse, max of one query row from plain Python floats; (0, +inf, -inf) when the row is empty."""
    if not scores:
        return None, math.inf, -math.inf
    m = max(scores)
    weights = [math.exp(s - m) for s in scores]
    total = sum(weights)
    denom = total + (math.exp(sink - m) if sink is not None and sink != -math.inf else 0.0)
    if sink == math.inf:
        out = torch.zeros_like(values[0])
    else:
        out = sum(w * v for w, v in zip(weights, values)) / denom
    return out, m + math.log(total), m


def independent_dense(q, k_cache, block_table, cache_seqlens, scale=None, causal=False, dv=512):
    b, s_q, h_q, d = q.shape
    page, h_kv = k_cache.shape[1], k_cache.shape[2]
    scale = d**-0.5 if scale is None else scale
    out = torch.zeros(b, s_q, h_q, dv, dtype=torch.float64)
    lse = torch.zeros(b, h_q, s_q, dtype=torch.float64)
    for i in range(b):
        s_k = int(cache_seqlens[i])
        # Token t lives at slot t % page of physical block block_table[i, t // page].
        keys = (
            torch.stack([k_cache[int(block_table[i, t // page]), t % page] for t in range(s_k)]).double()
            if s_k
            else torch.zeros(0, h_kv, d, dtype=torch.float64)
        )
        for j in range(s_q):
            visible = s_k if not causal else max(0, min(s_k, s_k - s_q + j + 1))
            for h in range(h_q):
                kv_head = h // (h_q // h_kv)
                qv = q[i, j, h].double()
                scores = [float(qv @ keys[t, kv_head]) * scale for t in range(visible)]
                o, l, _ = _softmax_row(scores, [keys[t, kv_head, :dv] for t in range(visible)])
                if o is not None:
                    out[i, j, h] = o
                lse[i, h, j] = l
    return out, lse


def independent_sparse_decode(inp):
    """From the dequantized caches: each used index addresses token ``idx`` of the flattened cache."""
    q = inp.q
    b, s_q, h_q, d = q.shape
    scale = inp.softmax_scale
    scopes = [(inp.dense_k_cache, inp.indices, inp.topk_length)]
    if inp.extra_k_cache is not None:
        scopes.append((inp.extra_dense_k_cache, inp.extra_indices_in_kvcache, inp.extra_topk_length))
    out = torch.zeros(b, s_q, h_q, 512, dtype=torch.float64)
    lse = torch.zeros(b, h_q, s_q, dtype=torch.float64)
    for i in range(b):
        for j in range(s_q):
            keys = []
            for cache, idx, length in scopes:
                flat = cache.reshape(-1, d)
                n = idx.shape[-1] if length is None else int(length[i])
                keys += [flat[int(x)].double() for x in idx[i, j, :n] if int(x) != -1]
            for h in range(h_q):
                scores = [float(q[i, j, h].double() @ kk) * scale for kk in keys]
                sink = None if inp.attn_sink is None else float(inp.attn_sink[h])
                o, l, _ = _softmax_row(scores, [kk[:512] for kk in keys], sink)
                if o is not None:
                    out[i, j, h] = o
                lse[i, h, j] = l
    return out, lse


def independent_prefill(inp):
    s_q, h_q, _ = inp.q.shape
    s_kv, topk = inp.kv.shape[0], inp.indices.shape[-1]
    out = torch.zeros(s_q, h_q, 512, dtype=torch.float64)
    lse = torch.zeros(s_q, h_q, dtype=torch.float64)
    mx = torch.zeros(s_q, h_q, dtype=torch.float64)
    for i in range(s_q):
        n = topk if inp.topk_length is None else int(inp.topk_length[i])
        rows = [int(x) for x in inp.indices[i, 0, :n] if 0 <= int(x) < s_kv]
        keys = [inp.kv[r, 0].double() for r in rows]
        for h in range(h_q):
            scores = [float(inp.q[i, h].double() @ kk) * inp.sm_scale for kk in keys]
            sink = None if inp.attn_sink is None else float(inp.attn_sink[h])
            o, l, m = _softmax_row(scores, [kk[:512] for kk in keys], sink)
            if o is not None:
                out[i, h] = o
            lse[i, h], mx[i, h] = l, m
    return out, mx, lse


def _check_against(out, lse, ind_out, ind_lse):
    assert not torch.isnan(out).any() and not torch.isnan(lse).any()
    assert_mla_close("out", out, ind_out.to(out.dtype))
    assert_mla_lse_close("lse", lse, ind_lse.float())


# ---------------------------------------------------------------------------------------------------------
# Dense decoding
# ---------------------------------------------------------------------------------------------------------

DENSE_CASES = [
    # b, s_q, s_k, h_q, h_kv, causal, varlen, zeros, page, head_dim
    (2, 1, 19, 2, 1, False, False, False, 64, 576),
    (2, 3, 23, 4, 1, True, True, False, 16, 576),
    (3, 4, 13, 6, 3, True, True, True, 5, 576),  # GQA groups of 2, odd page size
    (2, 2, 9, 4, 2, False, True, True, 1, 512),  # one token a block, head dim 512
]


@pytest.mark.parametrize("case", DENSE_CASES, ids=lambda c: "-".join(map(str, c)))
def test_dense_matches_independent(case):
    b, s_q, s_k, h_q, h_kv, causal, varlen, zeros, page, d = case
    inp = mla_decode_inputs(
        b,
        s_q,
        h_q,
        h_kv,
        s_k,
        head_dim=d,
        page_block_size=page,
        varlen=varlen,
        zero_lengths=zeros,
        causal=causal,
        seed=7,
    )
    out, lse = flash_mla_with_kvcache(**inp.kwargs())
    assert out.shape == (b, s_q, h_q, 512) and out.dtype == torch.bfloat16
    assert lse.shape == (b, h_q, s_q) and lse.dtype == torch.float32 and lse.is_contiguous()
    ind_out, ind_lse = independent_dense(
        inp.q, inp.k_cache, inp.block_table, inp.cache_seqlens, causal=causal
    )
    _check_against(out, lse, ind_out, ind_lse)
    if zeros:
        empty = inp.cache_seqlens == 0
        assert empty.any()
        assert (out[empty] == 0).all() and torch.isposinf(lse[empty]).all()


def test_causal_bottom_right_alignment_and_short_cache():
    # s_k < s_q: the first s_q - s_k queries see nothing (out 0, lse +inf), the last sees everything.
    inp = mla_decode_inputs(1, 4, 2, 1, 2, causal=True, page_block_size=3, seed=3)
    out, lse = flash_mla_with_kvcache(**inp.kwargs())
    assert (out[0, :2] == 0).all() and torch.isposinf(lse[0, :, :2]).all()
    ind_out, ind_lse = independent_dense(inp.q, inp.k_cache, inp.block_table, inp.cache_seqlens, causal=True)
    _check_against(out, lse, ind_out, ind_lse)
    full, full_lse = flash_mla_with_kvcache(**{**inp.kwargs(), "causal": False})
    assert torch.equal(out[0, -1], full[0, -1]) and torch.equal(lse[..., -1], full_lse[..., -1])


def test_causal_is_ignored_for_one_query():
    inp = mla_decode_inputs(2, 1, 3, 1, 17, page_block_size=4, seed=5)
    a = flash_mla_with_kvcache(**{**inp.kwargs(), "causal": True})
    b = flash_mla_with_kvcache(**inp.kwargs())
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def test_nan_padding_never_leaks():
    inp = mla_decode_inputs(3, 2, 4, 2, 21, page_block_size=8, varlen=True, zero_lengths=True, seed=11)
    cache = inp.k_cache
    assert torch.isnan(cache).any()  # the generator did write padding
    out, lse = flash_mla_with_kvcache(**inp.kwargs())
    assert not torch.isnan(out).any() and not torch.isnan(lse).any()
    # Padding content is irrelevant: any other garbage gives bit-identical results.
    garbage = torch.where(torch.isnan(cache), torch.tensor(1e4, dtype=cache.dtype), cache)
    out2, lse2 = flash_mla_with_kvcache(**{**inp.kwargs(), "k_cache": garbage})
    assert torch.equal(out, out2) and torch.equal(lse, lse2)


def test_given_seqlens_are_used_and_padded_with_nan():
    lens = [1, 0, 9, 16]
    inp = mla_decode_inputs(4, 1, 2, 1, 999, page_block_size=8, seqlens=lens, seed=4)
    assert inp.cache_seqlens.tolist() == lens
    # Only the blocks the lengths need are real: block 0 of sequence 2 full, block 1 one token, then NaN.
    assert not torch.isnan(inp.k_cache[inp.block_table[2, 1], 0]).any()
    assert torch.isnan(inp.k_cache[inp.block_table[2, 1], 1:]).all()
    with pytest.raises(ValueError, match="seqlens"):
        mla_decode_inputs(2, 1, 2, 1, 9, seqlens=[3])


def test_softmax_scale_dtypes_and_ignored_scheduler_args():
    inp = mla_decode_inputs(2, 2, 4, 2, 15, page_block_size=4, varlen=True, causal=True, seed=2)
    kw = inp.kwargs()
    out, lse = flash_mla_with_kvcache(**{**kw, "softmax_scale": 0.07})
    ind_out, ind_lse = independent_dense(inp.q, inp.k_cache, inp.block_table, inp.cache_seqlens, 0.07, True)
    _check_against(out, lse, ind_out, ind_lse)
    # The scheduler arguments are accepted and ignored.
    same = flash_mla_with_kvcache(
        **{**kw, "softmax_scale": 0.07, "tile_scheduler_metadata": object(), "num_splits": torch.zeros(3)}
    )
    assert torch.equal(same[0], out)
    for dtype in (torch.float16, torch.float32):
        o, l = flash_mla_with_kvcache(**{**kw, "q": kw["q"].to(dtype), "k_cache": kw["k_cache"].to(dtype)})
        assert o.dtype == dtype
        ind_out, ind_lse = independent_dense(
            kw["q"].to(dtype), kw["k_cache"].to(dtype), inp.block_table, inp.cache_seqlens, causal=True
        )
        _check_against(o, l, ind_out, ind_lse)
    # fp64 accumulation agrees with fp32 to fp32 rounding.
    o64, l64 = flash_mla_with_kvcache(**kw, accum_dtype=torch.float64)
    _, l32 = flash_mla_with_kvcache(**kw)
    assert o64.dtype == torch.bfloat16 and l64.dtype == torch.float32
    assert (l64 - l32).abs().max() < 1e-5


# ---------------------------------------------------------------------------------------------------------
# Sparse decoding
# ---------------------------------------------------------------------------------------------------------

SPARSE_CASES = [
    dict(b=2, s_q=1, h_q=3, s_k=30, topk=12, page_block_size=16),
    dict(
        b=3,
        s_q=2,
        h_q=2,
        s_k=25,
        topk=32,
        page_block_size=7,
        topk_length=True,
        attn_sink=True,
        zero_lengths=True,
    ),
    dict(
        b=2,
        s_q=2,
        h_q=2,
        s_k=20,
        topk=8,
        page_block_size=1,
        attn_sink=True,
        extra=(15, 6, 4),
        extra_topk_length=True,
        all_invalid_rows=True,
    ),
    dict(b=2, s_q=1, h_q=2, s_k=20, topk=10, page_block_size=6, head_dim=512, extra=(9, 4, 3)),
]


@pytest.mark.parametrize("case", SPARSE_CASES, ids=lambda c: "-".join(f"{k}{v}" for k, v in c.items()))
def test_sparse_decode_matches_independent(case):
    inp = mla_sparse_decode_inputs(**case, seed=13)
    out, lse = flash_mla_with_kvcache(**inp.kwargs())
    assert out.shape == (case["b"], case["s_q"], case["h_q"], 512) and lse.shape == (
        case["b"],
        case["h_q"],
        case["s_q"],
    )
    ind_out, ind_lse = independent_sparse_decode(inp)
    _check_against(out, lse, ind_out, ind_lse)


def test_sparse_indices_are_physical_addresses():
    # Indices covering every token of each sequence, translated through the block table, reproduce dense
    # decoding over the dequantized cache.
    dense = mla_decode_inputs(2, 1, 4, 1, 13, page_block_size=4, varlen=True, seed=17, nan_padding=False)
    from attn_reference.fp8_kvcache import dequantize_kvcache_fp8, quantize_kvcache_fp8

    packed = quantize_kvcache_fp8(dense.k_cache)
    deq = dequantize_kvcache_fp8(packed)
    lens = dense.cache_seqlens.tolist()
    topk = max(lens) + 3
    idx = torch.full((2, 1, topk), -1, dtype=torch.int32)
    for i, n in enumerate(lens):
        for t in range(n):
            idx[i, 0, t + 2] = int(dense.block_table[i, t // 4]) * 4 + t % 4
    want = flash_mla_with_kvcache(dense.q, deq, dense.block_table, dense.cache_seqlens, 512)
    got = flash_mla_with_kvcache(dense.q, packed, None, None, 512, is_fp8_kvcache=True, indices=idx)
    assert_mla_close("out", got[0], want[0])
    assert_mla_lse_close("lse", got[1], want[1])


def test_topk_length_ignores_later_entries_and_extra_cache_joins_the_softmax():
    inp = mla_sparse_decode_inputs(2, 2, 2, 30, 16, page_block_size=8, seed=19, nan_padding=False)
    kw = inp.kwargs()
    lengths = torch.tensor([5, 0], dtype=torch.int32)
    cut = kw["indices"].clone()
    cut[0, :, 5:] = -1
    cut[1] = -1
    a = flash_mla_with_kvcache(**{**kw, "topk_length": lengths})
    b = flash_mla_with_kvcache(**{**kw, "indices": cut})
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert (a[0][1] == 0).all() and torch.isposinf(a[1][1]).all()
    # Half the indices through the main cache and half through an identical extra cache = all at once.
    whole = flash_mla_with_kvcache(**kw)
    split = flash_mla_with_kvcache(
        **{
            **kw,
            "indices": kw["indices"][..., :7].contiguous(),
            "extra_k_cache": kw["k_cache"],
            "extra_indices_in_kvcache": kw["indices"][..., 7:].contiguous(),
        }
    )
    assert_mla_close("out", split[0], whole[0])
    assert_mla_lse_close("lse", split[1], whole[1])


def test_attn_sink_scales_out_and_leaves_lse():
    inp = mla_sparse_decode_inputs(2, 1, 4, 30, 16, page_block_size=8, seed=23)
    kw = inp.kwargs()
    base_out, base_lse = flash_mla_with_kvcache(**kw, accum_dtype=torch.float64)
    sink = torch.tensor([float("inf"), float("-inf"), 0.5, -2.0])
    out, lse = flash_mla_with_kvcache(**{**kw, "attn_sink": sink}, accum_dtype=torch.float64)
    assert torch.equal(lse, base_lse)
    assert (out[:, :, 0] == 0).all()  # +inf sink takes all the mass
    assert torch.equal(out[:, :, 1], base_out[:, :, 1])  # -inf sink is no sink
    for h in (2, 3):
        factor = torch.sigmoid(base_lse[:, h, :].double() - sink[h]).unsqueeze(
            -1
        )  # exp(l) / (exp(l) + exp(s))
        want = (base_out[:, :, h].double() * factor).to(torch.bfloat16)
        assert_mla_close("out", out[:, :, h], want)


# ---------------------------------------------------------------------------------------------------------
# Sparse prefill
# ---------------------------------------------------------------------------------------------------------

PREFILL_CASES = [
    dict(s_q=4, s_kv=30, topk=8, h_q=3),
    dict(s_q=5, s_kv=6, topk=12, h_q=2, attn_sink=True, topk_length=True),  # topk > s_kv
    dict(s_q=6, s_kv=25, topk=8, h_q=2, head_dim=512, all_invalid_rows=True, attn_sink=True),
]


@pytest.mark.parametrize("case", PREFILL_CASES, ids=lambda c: "-".join(f"{k}{v}" for k, v in c.items()))
def test_sparse_prefill_matches_independent(case):
    inp = mla_sparse_inputs(**case, seed=29)
    out, max_logits, lse = flash_mla_sparse_fwd(**inp.kwargs())
    s_q, h_q = case["s_q"], case["h_q"]
    assert out.shape == (s_q, h_q, 512) and out.dtype == torch.bfloat16
    assert max_logits.shape == lse.shape == (s_q, h_q) and lse.dtype == max_logits.dtype == torch.float32
    ind_out, ind_max, ind_lse = independent_prefill(inp)
    _check_against(out, lse, ind_out, ind_lse)
    assert_mla_lse_close("max_logits", max_logits, ind_max.float())
    empty = torch.isposinf(ind_lse)
    assert torch.isneginf(max_logits[empty]).all() and (out[empty] == 0).all()


def test_sparse_prefill_lse_is_natural_log():
    # One valid index per row: lse is exactly the scaled score (natural log), and so is max_logits.
    inp = mla_sparse_inputs(3, 10, 4, 2, seed=31)
    inp.indices[:, :, 1:] = -1
    out, max_logits, lse = flash_mla_sparse_fwd(**inp.kwargs())
    rows = inp.indices[:, 0, 0].long()
    score = torch.einsum("qhd,qd->qh", inp.q.double(), inp.kv[rows, 0].double()) * inp.sm_scale
    assert torch.allclose(lse.double(), score, atol=1e-5) and torch.equal(lse, max_logits)
    assert_mla_close("out", out, inp.kv[rows, 0, :512].unsqueeze(1).expand(-1, 2, -1).contiguous())


# ---------------------------------------------------------------------------------------------------------
# The tolerance rule
# ---------------------------------------------------------------------------------------------------------


def test_tolerance_rule():
    e = torch.tensor([1.0, 0.5, float("inf"), 0.0])
    assert mla_mismatch(e.clone(), e) is None
    assert mla_mismatch(e + torch.tensor([0.01, 0, 0, 0]), e, cos_diff_tol=1e-3) is None  # rel < 2.01/128
    assert "elements beyond" in mla_mismatch(e + torch.tensor([0.05, 0, 0, 0]), e, cos_diff_tol=1e-3)
    assert mla_mismatch(e + torch.tensor([0, 0, 0, 7e-4]), e) is None  # abs < 8e-4 where rel is huge
    assert "+inf" in mla_mismatch(torch.tensor([1.0, 0.5, 1.0, 0.0]), e)
    assert "NaN" in mla_mismatch(torch.tensor([1.0, float("nan"), float("inf"), 0.0]), e)
    assert "shape" in mla_mismatch(e[:2], e)
    big = torch.linspace(-1, 1, 1000, dtype=torch.float64)
    # Every element within tolerance, yet a consistent 1% scale error fails the cosine check.
    assert "cosine" in mla_mismatch(big * 1.01, big, rel_tol=0.02, cos_diff_tol=1e-7)
    with pytest.raises(AssertionError, match=r"^lse: "):
        assert_mla_lse_close("lse", torch.tensor([1.001]), torch.tensor([1.0]))


# ---------------------------------------------------------------------------------------------------------
# Validation: every rejection names the argument
# ---------------------------------------------------------------------------------------------------------


def _dense_kw():
    return mla_decode_inputs(2, 2, 4, 2, 10, page_block_size=4, varlen=True, seed=37).kwargs()


def _sparse_kw():
    return mla_sparse_decode_inputs(2, 1, 4, 12, 8, page_block_size=4, seed=41).kwargs()


def _prefill_kw():
    return mla_sparse_inputs(3, 12, 8, 4, seed=43).kwargs()


def _set(**changes):
    return lambda kw: {**kw, **changes}


def _map(name, fn):
    return lambda kw: {**kw, name: fn(kw[name], kw)}


DENSE_ERRORS = [
    ("q", _map("q", lambda q, kw: q[0])),
    ("q", _map("q", lambda q, kw: q[..., :128].contiguous())),
    ("q", _map("q", lambda q, kw: q.to(torch.int32))),
    ("q", _map("q", lambda q, kw: q.transpose(-1, -2).contiguous().transpose(-1, -2))),
    ("q", _map("q", lambda q, kw: q[:, :0])),
    ("head_dim_v", _set(head_dim_v=576)),
    ("softmax_scale", _set(softmax_scale=float("nan"))),
    ("causal", _set(causal="yes")),
    ("k_cache", _map("k_cache", lambda k, kw: k.float())),
    ("k_cache", _map("k_cache", lambda k, kw: k[..., :512].contiguous())),
    ("k_cache", _map("k_cache", lambda k, kw: k[:, :, :1].expand(-1, -1, 3, -1).contiguous())),  # 4 % 3
    ("k_cache", _map("k_cache", lambda k, kw: k[0])),
    ("block_table", _set(block_table=None)),
    ("block_table", _map("block_table", lambda t, kw: t.long())),
    ("block_table", _map("block_table", lambda t, kw: t[:1])),
    ("block_table", _map("block_table", lambda t, kw: t.clone().fill_(-1))),
    ("block_table", _map("block_table", lambda t, kw: t.clone().fill_(10_000))),
    ("cache_seqlens", _set(cache_seqlens=None)),
    ("cache_seqlens", _map("cache_seqlens", lambda s, kw: s.long())),
    ("cache_seqlens", _map("cache_seqlens", lambda s, kw: s[:1])),
    ("cache_seqlens", _map("cache_seqlens", lambda s, kw: s - 100)),
    ("cache_seqlens", _map("cache_seqlens", lambda s, kw: s + 100)),
    ("attn_sink", _set(attn_sink=torch.zeros(4))),
    ("topk_length", _set(topk_length=torch.ones(2, dtype=torch.int32))),
    ("extra_k_cache", _set(extra_k_cache=torch.zeros(1, 1, 1, 656, dtype=torch.uint8))),
    ("is_fp8_kvcache", _set(is_fp8_kvcache=True)),
]

SPARSE_ERRORS = [
    ("causal", _set(causal=True)),
    ("is_fp8_kvcache", _set(is_fp8_kvcache=False)),
    ("q", _map("q", lambda q, kw: q.half())),
    ("k_cache", _map("k_cache", lambda k, kw: k[..., :600])),
    ("k_cache", _map("k_cache", lambda k, kw: k.float())),
    ("k_cache", _map("k_cache", lambda k, kw: k.expand(-1, -1, 2, -1))),
    ("indices", _map("indices", lambda i, kw: i.long())),
    ("indices", _map("indices", lambda i, kw: i[:, :, :0])),
    ("indices", _map("indices", lambda i, kw: i.clone().fill_(-2))),
    ("indices", _map("indices", lambda i, kw: i.clone().fill_(kw["k_cache"].shape[0] * 4))),
    ("topk_length", _set(topk_length=torch.tensor([9, 1], dtype=torch.int32))),
    ("topk_length", _set(topk_length=torch.tensor([1], dtype=torch.int32))),
    ("attn_sink", _set(attn_sink=torch.zeros(3))),
    ("attn_sink", _set(attn_sink=torch.zeros(4, dtype=torch.float64))),
    ("extra_indices_in_kvcache", lambda kw: {**kw, "extra_indices_in_kvcache": kw["indices"]}),
    ("extra_indices_in_kvcache", lambda kw: {**kw, "extra_k_cache": kw["k_cache"]}),
    ("extra_topk_length", _set(extra_topk_length=torch.ones(2, dtype=torch.int32))),
    (
        "extra_k_cache",
        lambda kw: {
            **kw,
            "extra_k_cache": kw["k_cache"].view(torch.int8),
            "extra_indices_in_kvcache": kw["indices"],
        },
    ),
    (
        "extra_indices_in_kvcache",
        lambda kw: {**kw, "extra_k_cache": kw["k_cache"][:1], "extra_indices_in_kvcache": kw["indices"]},
    ),
]

PREFILL_ERRORS = [
    ("q", _map("q", lambda q, kw: q.half())),
    ("q", _map("q", lambda q, kw: q[None])),
    ("d_v", _set(d_v=576)),
    ("sm_scale", _set(sm_scale=None)),
    ("kv", _map("kv", lambda kv, kw: kv.half())),
    ("kv", _map("kv", lambda kv, kw: kv.expand(-1, 2, -1))),
    ("kv", _map("kv", lambda kv, kw: kv[..., :512])),
    ("indices", _map("indices", lambda i, kw: i.long())),
    ("indices", _map("indices", lambda i, kw: i[1:])),
    ("attn_sink", _set(attn_sink=torch.zeros(5))),
    ("topk_length", _set(topk_length=torch.ones(2, dtype=torch.int32))),
    ("topk_length", _set(topk_length=torch.tensor([1, 2, 9], dtype=torch.int32))),
]


def _expect_named_error(name, call, kw):
    with pytest.raises(AttentionArgumentError, match=rf"^{name}: "):
        call(**kw)


@pytest.mark.parametrize(("name", "mutate"), DENSE_ERRORS, ids=[n for n, _ in DENSE_ERRORS])
def test_dense_errors_name_the_argument(name, mutate):
    kw = mutate(_dense_kw())
    _expect_named_error(name, flash_mla_with_kvcache, kw)
    _expect_named_error(name, check_mla_decode_args, kw)


@pytest.mark.parametrize(("name", "mutate"), SPARSE_ERRORS, ids=[n for n, _ in SPARSE_ERRORS])
def test_sparse_errors_name_the_argument(name, mutate):
    kw = mutate(_sparse_kw())
    _expect_named_error(name, flash_mla_with_kvcache, kw)
    _expect_named_error(name, check_mla_decode_args, kw)


@pytest.mark.parametrize(("name", "mutate"), PREFILL_ERRORS, ids=[n for n, _ in PREFILL_ERRORS])
def test_prefill_errors_name_the_argument(name, mutate):
    kw = mutate(_prefill_kw())
    _expect_named_error(name, flash_mla_sparse_fwd, kw)
    _expect_named_error(name, check_mla_sparse_prefill_args, kw)


def test_checks_return_sizes_and_accept_garbage_past_the_used_blocks():
    kw = _dense_kw()
    assert kw["block_table"].max() > kw["k_cache"].shape[0]  # FlashMLA-style filler past each sequence
    sizes = check_mla_decode_args(**kw)
    assert (sizes.batch, sizes.s_q, sizes.h_q, sizes.h_kv, sizes.head_dim) == (2, 2, 4, 2, 576)
    assert sizes.page_block_size == 4 and not sizes.sparse and sizes.softmax_scale == 576**-0.5
    sparse = check_mla_decode_args(**_sparse_kw())
    assert sparse.sparse and sparse.topk == 8 and sparse.h_kv == 1 and sparse.is_fp8_kvcache
    # Indices past topk_length are not read, so they may be anything.
    skw = _sparse_kw()
    skw["indices"][:, :, 4:] = -77
    check_mla_decode_args(**{**skw, "topk_length": torch.tensor([4, 2], dtype=torch.int32)})
    assert check_mla_sparse_prefill_args(**_prefill_kw()).topk == 8
    with pytest.raises(AttentionArgumentError, match=r"^accum_dtype: "):
        flash_mla_with_kvcache(**kw, accum_dtype=torch.float16)
