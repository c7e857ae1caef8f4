"""Standard attention: materialise the (seqlen_q, seqlen_k) score matrix, softmax it, multiply by V.

O(N^2) memory, which is the point FlashAttention removes; here it is the ground truth everything else is
checked against. All features follow flash-attn's conventions (see :mod:`attn_reference.masking`).
"""

from __future__ import annotations

import torch

from ._layout import heads_first, lse_dtype
from .masking import visible_mask
from .validation import check_options, check_qkv


def scores(
    q: torch.Tensor, k: torch.Tensor, softmax_scale: float, softcap: float
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Scaled (and soft-capped) scores S (batch, heads, seqlen_q, seqlen_k) from q, k in (b, h, s, d).

    Also returns ``tanh(raw / softcap)`` when soft-capping, which the backward pass needs.
    """
    s = torch.matmul(q, k.transpose(-1, -2))
    if softcap > 0.0:
        t = torch.tanh(s * (softmax_scale / softcap))
        return softcap * t, t
    return s * softmax_scale, None


def attention_naive(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    softmax_scale: float | None = None,
    causal: bool = False,
    window_size: tuple[int, int] = (-1, -1),
    softcap: float = 0.0,
    accum_dtype: torch.dtype | None = torch.float32,
    return_lse: bool = False,
):
    """Materialised-softmax attention on (batch, seqlen, heads, headdim) tensors.

    Args:
        q: (batch, seqlen_q, heads_q, d); k: (batch, seqlen_k, heads_k, d); v: (batch, seqlen_k, heads_k, dv).
            heads_q must be a multiple of heads_k (GQA/MQA). Any floating dtype, any device.
        accum_dtype: dtype of the arithmetic (float32 by default, float64 for an oracle of the oracle, or
            ``None`` to compute in q's own dtype, as a same-precision baseline for the tolerance rule).
    Returns:
        out (batch, seqlen_q, heads_q, dv) in q's dtype, and with ``return_lse`` the logsumexp of the scaled
        scores (batch, heads_q, seqlen_q) float32 (float64 when computing in
        float64; natural log). Rows that see no key give out 0, lse +inf.
    Differentiable through autograd.
    """
    shape = check_qkv(q, k, v, fn="attention_naive")
    window, softcap, scale = check_options(softmax_scale, causal, window_size, softcap, shape.head_dim)
    dtype = accum_dtype or q.dtype

    # --8<-- [start:naive-core]
    # (b, s, h, d) -> (b, h, s, d), KV heads repeated to match the query heads they serve.
    qh = heads_first(q, dtype)
    kh = heads_first(k, dtype, shape.group_size)
    vh = heads_first(v, dtype, shape.group_size)

    s, _ = scores(qh, kh, scale, softcap)
    mask = visible_mask(shape.seqlen_q, shape.seqlen_k, window, device=q.device)
    s = s.masked_fill(~mask, float("-inf"))
    lse = torch.logsumexp(s, dim=-1, keepdim=True)
    empty = torch.isneginf(lse)
    # exp(-inf - -inf) is NaN: rows that see nothing get probability 0 everywhere instead.
    p = torch.exp(s - lse.masked_fill(empty, 0.0))
    out = torch.matmul(p, vh).transpose(1, 2).to(q.dtype)
    # --8<-- [end:naive-core]
    if not return_lse:
        return out
    lse = lse.squeeze(-1).masked_fill(empty.squeeze(-1), float("inf")).to(lse_dtype(dtype))
    return out, lse
