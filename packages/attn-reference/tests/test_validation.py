"""Every validation error names the argument, what it was, and what is allowed."""

import pytest
import torch

import attn_reference as ar
from attn_reference.errors import AttentionArgumentError, UnsupportedFeatureError
from attn_reference.testing.inputs import attention_inputs, kvcache_inputs, strided_view, varlen_inputs
from attn_reference.validation import (
    check_kvcache,
    check_options,
    check_qkv,
    check_softcap,
    check_window,
    default_softmax_scale,
)


def qkv(hq=2, hk=2, d=16, dtype=torch.float16):
    return attention_inputs(2, 9, 11, hq, hk, d, dtype=dtype)


def test_parsed_shape():
    q, k, v = qkv(6, 2)
    s = check_qkv(q, k, v)
    assert (s.batch, s.seqlen_q, s.seqlen_k, s.heads_q, s.heads_k, s.head_dim, s.group_size) == (
        2,
        9,
        11,
        6,
        2,
        16,
        3,
    )


@pytest.mark.parametrize(
    "mutate,pattern",
    [
        (
            lambda q, k, v: (q[0], k[0], v[0]),
            r"q must have rank 4 \(batch, seqlen, heads, headdim\), got shape \(9, 2, 16\)",
        ),
        (
            lambda q, k, v: (q, k.float(), v),
            r"q, k and v must share one dtype, got q torch.float16, k torch.float32",
        ),
        (lambda q, k, v: (q, k, v[:, :4]), r"k and v must have the same seqlen, got 11 and 4"),
        (lambda q, k, v: (q, k[..., :8], v), r"q and k must have the same head dim, got q 16 and k 8"),
        (lambda q, k, v: (q[:1], k, v), r"same batch size"),
        (lambda q, k, v: (q, k, v[:, :, :1]), r"k and v must have the same number of heads, got 2 and 1"),
        (
            lambda q, k, v: (q[:, :, :1].expand(2, 9, 3, 16), k, v),
            r"query heads \(3\) must be a multiple of .* KV heads \(2\)",
        ),
        (lambda q, k, v: (q.transpose(-1, -2), k, v), r"q must have rank 4|contiguous in its last dimension"),
        ("list", r"q must be a torch.Tensor, got list"),
    ],
)
def test_shape_errors_name_the_argument(mutate, pattern):
    q, k, v = qkv()
    args = ([1], k, v) if mutate == "list" else mutate(q, k, v)
    with pytest.raises(AttentionArgumentError, match=pattern):
        ar.flash_attn_func(*args)


def test_noncontiguous_last_dim_is_refused():
    q, k, v = qkv()
    qt = q.transpose(1, 3).contiguous().transpose(1, 3)  # same shape, last-dim stride != 1
    with pytest.raises(AttentionArgumentError, match=r"q must be contiguous in its last dimension"):
        check_qkv(qt, k, v)


def test_dtype_device_and_head_dim_limits():
    q, k, v = qkv(dtype=torch.float32)
    with pytest.raises(
        AttentionArgumentError, match=r"q must have dtype in \(float16, bfloat16\), got shape"
    ):
        check_qkv(q, k, v, dtypes=(torch.float16, torch.bfloat16))
    with pytest.raises(AttentionArgumentError, match=r"q must be a cuda tensor, got .*device cpu"):
        check_qkv(q, k, v, device_type="cuda")
    with pytest.raises(
        UnsupportedFeatureError, match=r"head dim 16 is not supported; supported head dims: \(64, 128\)"
    ):
        check_qkv(q, k, v, head_dims=(64, 128))
    q, k, v = attention_inputs(1, 3, 3, 1, 1, 16, 32)
    with pytest.raises(UnsupportedFeatureError, match=r"v's head dim \(32\) must equal q's \(16\)"):
        check_qkv(q, k, v, head_dim_v_must_match=True)


def test_window_softcap_scale():
    assert check_window((-1, -1), False) == (-1, -1)
    assert check_window((-1, -1), True) == (-1, 0)
    assert check_window((8, -1), True) == (8, 0)
    with pytest.raises(AttentionArgumentError, match="window_size entries must be >= -1"):
        check_window((-2, 0), False)
    with pytest.raises(AttentionArgumentError, match="window_size must be a pair"):
        check_window(5, False)
    with pytest.raises(
        AttentionArgumentError, match=r"causal=True .* window_size\[1\] must be -1 or 0, got 3"
    ):
        check_window((4, 3), True)
    assert check_softcap(0) == 0.0
    for bad in (-1.0, float("nan"), float("inf"), "x"):
        with pytest.raises(AttentionArgumentError, match="softcap"):
            check_softcap(bad)
    assert default_softmax_scale(None, 64) == 0.125
    with pytest.raises(AttentionArgumentError, match="softmax_scale must be finite"):
        default_softmax_scale(float("inf"), 64)
    assert check_options(None, True, (8, -1), 2, 64) == ((8, 0), 2.0, 0.125)
    with pytest.raises(AttentionArgumentError, match="window_size"):  # window first, as each entry point did
        check_options(float("inf"), False, 5, -1.0, 64)


def test_varlen_errors():
    x = varlen_inputs([5, 7], [6, 8], 2, 2, 16)
    f = ar.flash_attn_varlen_func
    with pytest.raises(
        AttentionArgumentError,
        match=r"cu_seqlens_q must have dtype int32, got shape \(3,\), dtype torch.int64",
    ):
        f(x.q, x.k, x.v, x.cu_seqlens_q.long(), x.cu_seqlens_k, 7, 8)
    bad = x.cu_seqlens_k.clone()
    bad[1] = 20
    with pytest.raises(
        AttentionArgumentError,
        match=r"cu_seqlens_k must be non-decreasing, but cu_seqlens_k\[2\] = 14 < cu_seqlens_k\[1\] = 20",
    ):
        f(x.q, x.k, x.v, x.cu_seqlens_q, bad, 7, 8)
    with pytest.raises(
        AttentionArgumentError, match=r"cu_seqlens_q\[-1\] must equal the number of packed tokens \(12\)"
    ):
        f(x.q, x.k, x.v, x.cu_seqlens_q[:2], x.cu_seqlens_k[:2], 7, 8)
    with pytest.raises(AttentionArgumentError, match=r"cu_seqlens_q\[0\] must be 0"):
        f(x.q, x.k, x.v, x.cu_seqlens_q + 1, x.cu_seqlens_k, 7, 8)
    with pytest.raises(
        AttentionArgumentError, match=r"max_seqlen_k must be an int >= the longest sequence \(8\), got 5"
    ):
        f(x.q, x.k, x.v, x.cu_seqlens_q, x.cu_seqlens_k, 7, 5)
    with pytest.raises(AttentionArgumentError, match=r"q must have rank 3 \(total_tokens, heads, headdim\)"):
        f(x.q[None], x.k, x.v, x.cu_seqlens_q, x.cu_seqlens_k, 7, 8)
    with pytest.raises(AttentionArgumentError, match="same batch"):
        f(x.q, x.k, x.v, x.cu_seqlens_q, torch.tensor([0, 14], dtype=torch.int32), 7, 14)


def test_kvcache_errors():
    x = kvcache_inputs(1, [20, 7], 2, 2, 16, page_size=16)
    f = ar.flash_attn_with_kvcache
    bad = x.block_table.clone()
    bad[0, 1] = x.k_cache.shape[0]
    with pytest.raises(
        AttentionArgumentError, match=rf"block_table\[0, 1\] = {x.k_cache.shape[0]} is out of range"
    ):
        f(x.q, x.k_cache, x.v_cache, cache_seqlens=x.cache_seqlens, block_table=bad)
    bad = x.block_table.clone()
    bad[0, 2] = -7  # past sequence 0's pages: never read, so allowed
    f(x.q, x.k_cache, x.v_cache, cache_seqlens=x.cache_seqlens, block_table=bad)
    with pytest.raises(AttentionArgumentError, match=r"block_table must be an int32 tensor"):
        f(x.q, x.k_cache, x.v_cache, cache_seqlens=x.cache_seqlens, block_table=x.block_table.long())
    with pytest.raises(
        AttentionArgumentError, match=r"cache_seqlens must be an int32 tensor of shape \(2,\)"
    ):
        f(x.q, x.k_cache, x.v_cache, cache_seqlens=x.cache_seqlens.long(), block_table=x.block_table)
    too_long = torch.tensor([20, 1000], dtype=torch.int32)
    with pytest.raises(AttentionArgumentError, match=r"cache_seqlens must lie in \[0, 48\]"):
        f(x.q, x.k_cache, x.v_cache, cache_seqlens=too_long, block_table=x.block_table)
    with pytest.raises(
        UnsupportedFeatureError, match=r"page size \(k_cache.shape\[1\]\) must be a multiple of 64, got 16"
    ):
        check_kvcache(x.q, x.k_cache, x.v_cache, x.cache_seqlens, x.block_table, page_size_multiple=64)
    flat = kvcache_inputs(1, [5, 7], 2, 2, 16, capacity=9)
    with pytest.raises(
        AttentionArgumentError, match=r"without block_table, k_cache must hold one cache per sequence"
    ):
        f(flat.q[:1], flat.k_cache, flat.v_cache)
    with pytest.raises(AttentionArgumentError, match=r"k_cache and v_cache must have the same leading dims"):
        f(flat.q, flat.k_cache, flat.v_cache[:, :4])


def test_strided_lengths_and_block_tables_are_refused():
    """The kernels read entry i of a length vector or block-table row at base + i (flash-attn checks the
    same): a strided view would be read as other values, so it is refused, naming it and its strides. A
    block table's rows may be a slice of a wider table (the row stride is passed)."""
    x = kvcache_inputs(1, [20, 7], 2, 2, 16, page_size=16)
    f = ar.flash_attn_with_kvcache
    for kw, name in (
        (dict(cache_seqlens=strided_view(x.cache_seqlens), block_table=x.block_table), "cache_seqlens"),
        (dict(cache_seqlens=x.cache_seqlens, block_table=strided_view(x.block_table)), "block_table"),
    ):
        with pytest.raises(
            AttentionArgumentError, match=rf"{name} must be contiguous .* strides \(\d+, ?\d*\)"
        ):
            f(x.q, x.k_cache, x.v_cache, **kw)
    wide = torch.zeros(2, x.block_table.shape[1] + 4, dtype=torch.int32)
    wide[:, : x.block_table.shape[1]] = x.block_table
    f(x.q, x.k_cache, x.v_cache, cache_seqlens=x.cache_seqlens, block_table=wide[:, : x.block_table.shape[1]])
    v = varlen_inputs([5, 7], [6, 8], 2, 2, 16)
    for i, name in enumerate(("cu_seqlens_q", "cu_seqlens_k")):
        cu = [v.cu_seqlens_q, v.cu_seqlens_k]
        cu[i] = strided_view(cu[i])
        with pytest.raises(AttentionArgumentError, match=rf"{name} must be contiguous"):
            ar.flash_attn_varlen_func(v.q, v.k, v.v, *cu, 7, 8)
