"""Which keys a query may see: causal and sliding-window masks in flash-attn's convention.

Positions are aligned at the bottom right: with ``shift = seqlen_k - seqlen_q``, query ``i`` sits at key
position ``i + shift`` (the last query lines up with the last key, as in decoding). Query ``i`` sees key
``j`` iff ``i + shift - left <= j <= i + shift + right``, where -1 means unbounded; causal is ``right = 0``.
"""

from __future__ import annotations

import torch


def visible(
    q_idx: torch.Tensor, k_idx: torch.Tensor, seqlen_q: int, seqlen_k: int, window: tuple[int, int]
) -> torch.Tensor:
    """Boolean mask, broadcast of ``q_idx[:, None]`` against ``k_idx[None, :]``: True where visible."""
    left, right = window
    pos = q_idx[:, None] + (seqlen_k - seqlen_q)
    k = k_idx[None, :]
    mask = torch.ones(pos.shape[0], k.shape[1], dtype=torch.bool, device=q_idx.device)
    if right >= 0:
        mask &= k <= pos + right
    if left >= 0:
        mask &= k >= pos - left
    return mask


def visible_mask(seqlen_q: int, seqlen_k: int, window: tuple[int, int], device=None) -> torch.Tensor:
    """The full (seqlen_q, seqlen_k) mask."""
    return visible(
        torch.arange(seqlen_q, device=device),
        torch.arange(seqlen_k, device=device),
        seqlen_q,
        seqlen_k,
        window,
    )


def key_range(
    q_start: int, q_end: int, seqlen_q: int, seqlen_k: int, window: tuple[int, int]
) -> tuple[int, int]:
    """Keys ``[lo, hi)`` that queries ``[q_start, q_end)`` can see at all: lets tiled loops skip blocks."""
    left, right = window
    shift = seqlen_k - seqlen_q
    lo = 0 if left < 0 else max(0, q_start + shift - left)
    hi = seqlen_k if right < 0 else min(seqlen_k, q_end - 1 + shift + right + 1)
    return lo, max(lo, hi)


def mask_tile(
    s: torch.Tensor, i0: int, j0: int, seqlen_q: int, seqlen_k: int, window: tuple[int, int], fill: float
) -> torch.Tensor:
    """Scores ``s`` of the tile whose first query is ``i0`` and first key ``j0``, with what those queries
    cannot see set to ``fill`` (-inf for scores, 0 for probabilities). Unmasked attention passes through."""
    if window == (-1, -1):
        return s
    rows = torch.arange(i0, i0 + s.shape[-2], device=s.device)
    cols = torch.arange(j0, j0 + s.shape[-1], device=s.device)
    return s.masked_fill(~visible(rows, cols, seqlen_q, seqlen_k, window), fill)
