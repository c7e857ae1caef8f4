"""The flash-attn API on top of the PyTorch reference: validation, dispatch and the autograd Function.

These are what every backend's ``flash_attn_func`` is compared with. They run anywhere PyTorch runs; the
arithmetic is float32 (float64 inputs stay float64).
"""

from __future__ import annotations

import torch

from .flash_v2 import flash_v2_backward, flash_v2_forward
from .validation import check_kvcache, check_options, check_qkv, check_varlen_qkv

DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def _accum(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


class FlashAttnFunc(torch.autograd.Function):
    """Forward by :func:`flash_v2_forward`; backward by :func:`flash_v2_backward` from the saved lse."""

    @staticmethod
    def forward(ctx, q, k, v, softmax_scale, window, softcap):
        acc = _accum(q.dtype)
        out, lse = flash_v2_forward(
            q, k, v, softmax_scale=softmax_scale, window_size=window, softcap=softcap, accum_dtype=acc
        )
        ctx.save_for_backward(q, k, v, out, lse)
        ctx.args = (softmax_scale, window, softcap, acc)
        ctx.mark_non_differentiable(lse)
        return out, lse

    @staticmethod
    def backward(ctx, dout, _dlse):
        q, k, v, out, lse = ctx.saved_tensors
        softmax_scale, window, softcap, acc = ctx.args
        dq, dk, dv = flash_v2_backward(
            dout,
            q,
            k,
            v,
            out,
            lse,
            softmax_scale=softmax_scale,
            window_size=window,
            softcap=softcap,
            accum_dtype=acc,
        )
        return dq, dk, dv, None, None, None


def flash_attn_func(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    softmax_scale: float | None = None,
    causal: bool = False,
    window_size: tuple[int, int] = (-1, -1),
    softcap: float = 0.0,
    return_lse: bool = False,
):
    """Attention with flash-attn's API, computed by the FlashAttention-2 reference.

    Args:
        q: (batch, seqlen_q, heads_q, headdim); k, v: (batch, seqlen_k, heads_k, headdim), heads_q a
            multiple of heads_k (GQA/MQA). float16, bfloat16, float32 or float64, any device.
        softmax_scale: default 1 / sqrt(headdim).
        causal: mask aligned at the bottom right when seqlen_q != seqlen_k.
        window_size: (left, right) sliding window, -1 unbounded.
        softcap: > 0 applies ``softcap * tanh(scores / softcap)``.
    Returns:
        out (batch, seqlen_q, heads_q, headdim), and with ``return_lse`` also lse (batch, heads_q, seqlen_q)
        float32. Differentiable in q, k and v.
    """
    shape = check_qkv(q, k, v, fn="flash_attn_func", dtypes=DTYPES)
    window, softcap, scale = check_options(softmax_scale, causal, window_size, softcap, shape.head_dim)
    out, lse = FlashAttnFunc.apply(q, k, v, scale, window, softcap)
    return (out, lse) if return_lse else out


def flash_attn_varlen_func(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    cu_seqlens_q: torch.Tensor,
    cu_seqlens_k: torch.Tensor,
    max_seqlen_q: int,
    max_seqlen_k: int,
    softmax_scale: float | None = None,
    causal: bool = False,
    window_size: tuple[int, int] = (-1, -1),
    softcap: float = 0.0,
    return_lse: bool = False,
):
    """Variable-length attention on packed tokens.

    Args:
        q: (total_q, heads_q, headdim); k, v: (total_k, heads_k, headdim). Sequence ``i`` is
            ``q[cu_seqlens_q[i]:cu_seqlens_q[i+1]]`` and likewise for k, v.
        cu_seqlens_q, cu_seqlens_k: (batch + 1,) int32, starting at 0, non-decreasing.
        max_seqlen_q, max_seqlen_k: upper bounds of the sequence lengths.
    Returns:
        out (total_q, heads_q, headdim), and with ``return_lse`` lse (heads_q, total_q) float32.
    """
    shape, lengths_q, lengths_k = check_varlen_qkv(
        q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, dtypes=DTYPES
    )
    window, softcap, scale = check_options(softmax_scale, causal, window_size, softcap, shape.head_dim)
    outs, lses = [], []
    q_start = k_start = 0
    for n_q, n_k in zip(lengths_q.tolist(), lengths_k.tolist()):
        qi = q[q_start : q_start + n_q].unsqueeze(0)
        ki = k[k_start : k_start + n_k].unsqueeze(0)
        vi = v[k_start : k_start + n_k].unsqueeze(0)
        out, lse = FlashAttnFunc.apply(qi, ki, vi, scale, window, softcap)
        outs.append(out[0])
        lses.append(lse[0])
        q_start += n_q
        k_start += n_k
    out = torch.cat(outs) if outs else q.new_zeros(0, shape.heads_q, shape.head_dim_v)
    if not return_lse:
        return out
    return out, torch.cat(lses, dim=1)


def gather_kvcache(
    cache: torch.Tensor, block_table: torch.Tensor | None, index: int, length: int
) -> torch.Tensor:
    """The first ``length`` tokens of sequence ``index``'s cache, (length, heads_k, headdim), paged or not."""
    if block_table is None:
        return cache[index, :length]
    page = cache.shape[1]
    pages = block_table[index, : (length + page - 1) // page].long()
    return cache[pages].flatten(0, 1)[:length]


def flash_attn_with_kvcache(
    q: torch.Tensor,
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    cache_seqlens: torch.Tensor | int | None = None,
    block_table: torch.Tensor | None = None,
    softmax_scale: float | None = None,
    causal: bool = False,
    window_size: tuple[int, int] = (-1, -1),
    softcap: float = 0.0,
    return_lse: bool = False,
):
    """Decoding: attention of a few new queries against each sequence's KV cache, paged or not.

    Args:
        q: (batch, seqlen_q, heads_q, headdim).
        k_cache, v_cache: (batch, seqlen_cache, heads_k, headdim), or with ``block_table`` a page pool
            (num_pages, page_size, heads_k, headdim).
        cache_seqlens: (batch,) int32 valid tokens per sequence (or an int, or None: the whole cache).
        block_table: (batch, max_pages_per_seq) int32, logical page -> pool page.
        causal/window: aligned at the bottom right, i.e. against each sequence's own cache length.
    Returns:
        out (batch, seqlen_q, heads_q, headdim), and with ``return_lse`` lse (batch, heads_q, seqlen_q).
    Only the valid tokens are read: pool pages and slots past ``cache_seqlens`` may hold anything.
    """
    shape = check_kvcache(q, k_cache, v_cache, cache_seqlens, block_table, dtypes=DTYPES)
    window, softcap, scale = check_options(softmax_scale, causal, window_size, softcap, shape.attn.head_dim)
    acc = _accum(q.dtype)
    outs, lses = [], []
    for b, length in enumerate(shape.cache_seqlens.tolist()):
        kb = gather_kvcache(k_cache, block_table, b, length).unsqueeze(0)
        vb = gather_kvcache(v_cache, block_table, b, length).unsqueeze(0)
        out, lse = flash_v2_forward(
            q[b : b + 1], kb, vb, softmax_scale=scale, window_size=window, softcap=softcap, accum_dtype=acc
        )
        outs.append(out)
        lses.append(lse)
    out, lse = torch.cat(outs), torch.cat(lses)
    return (out, lse) if return_lse else out
