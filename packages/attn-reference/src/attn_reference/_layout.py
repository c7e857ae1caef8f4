"""Moving between the public (batch, seqlen, heads, dim) layout and the (batch, heads, seqlen, dim) one
the algorithms index, with KV heads repeated for GQA (and summed back for their gradients)."""

from __future__ import annotations

import torch


def heads_first(x: torch.Tensor, dtype: torch.dtype, repeat: int = 1) -> torch.Tensor:
    x = x.to(dtype).transpose(1, 2)
    return x.repeat_interleave(repeat, dim=1) if repeat > 1 else x


def seq_first(x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    return x.transpose(1, 2).to(dtype)


def sum_groups(dx: torch.Tensor, heads_k: int) -> torch.Tensor:
    """Gradient (b, heads_q, s, d) of a repeated KV tensor back to (b, heads_k, s, d)."""
    b, hq, s, d = dx.shape
    return dx.view(b, heads_k, hq // heads_k, s, d).sum(dim=2)


def safe_exp(x: torch.Tensor) -> torch.Tensor:
    """exp with NaN (from -inf - -inf in fully masked rows) read as exp(-inf) = 0."""
    return torch.exp(torch.nan_to_num(x, nan=float("-inf")))


def lse_dtype(accum_dtype: torch.dtype) -> torch.dtype:
    """The logsumexp is float32, or float64 when the arithmetic is (so an fp64 oracle stays fp64)."""
    return torch.float64 if accum_dtype == torch.float64 else torch.float32


def prepare(fn, q, k, v, softmax_scale, causal, window_size, softcap, accum_dtype):
    """The common prologue of the tiled algorithms: validate, then move q, k, v heads-first in the
    arithmetic dtype with KV heads repeated. Returns (shape, window, softcap, scale, Q, K, V)."""
    from .validation import check_options, check_qkv

    shape = check_qkv(q, k, v, fn=fn)
    window, cap, scale = check_options(softmax_scale, causal, window_size, softcap, shape.head_dim)
    Q = heads_first(q, accum_dtype)
    K = heads_first(k, accum_dtype, shape.group_size)
    V = heads_first(v, accum_dtype, shape.group_size)
    return shape, window, cap, scale, Q, K, V
