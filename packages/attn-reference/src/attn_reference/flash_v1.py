"""FlashAttention-1 forward (Dao et al. 2022, Algorithm 1), in PyTorch, for reading.

The outer loop walks over K/V blocks, the inner loop over Q blocks. O, the running row max m and the
running row sum l live in full-size tensors (the "HBM" of the paper) and are read, updated and written
back for every (Q block, K/V block) pair; each partial O is kept normalised, so it is rescaled twice per
update. FlashAttention-2 (:mod:`attn_reference.flash_v2`) swaps the loops and defers the normalisation.
"""

from __future__ import annotations

import torch

from ._layout import lse_dtype, prepare, safe_exp, seq_first
from .masking import key_range, mask_tile
from .naive import scores


def flash_v1_forward(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    softmax_scale: float | None = None,
    causal: bool = False,
    window_size: tuple[int, int] = (-1, -1),
    softcap: float = 0.0,
    block_m: int = 64,
    block_n: int = 64,
    accum_dtype: torch.dtype = torch.float32,
) -> tuple[torch.Tensor, torch.Tensor]:
    """FlashAttention-1 forward on (batch, seqlen, heads, headdim) q, k, v.

    Returns out (batch, seqlen_q, heads_q, dv) in q's dtype and lse (batch, heads_q, seqlen_q) float32
    (float64 when ``accum_dtype`` is);
    rows that see no key give out 0 and lse +inf. ``block_m``/``block_n`` are the Q and K/V tile heights.
    """
    shape, window, softcap, scale, Q, K, V = prepare(
        "flash_v1_forward", q, k, v, softmax_scale, causal, window_size, softcap, accum_dtype
    )
    sq, sk = shape.seqlen_q, shape.seqlen_k
    b, h = Q.shape[:2]

    # Step 2 of Algorithm 1: O = 0, l = 0, m = -inf in "HBM".
    O = torch.zeros(b, h, sq, shape.head_dim_v, dtype=accum_dtype, device=q.device)
    l = torch.zeros(b, h, sq, 1, dtype=accum_dtype, device=q.device)
    m = torch.full((b, h, sq, 1), float("-inf"), dtype=accum_dtype, device=q.device)

    # --8<-- [start:fa1-loop]
    for j0 in range(0, sk, block_n):  # outer loop: load K_j, V_j once
        j1 = min(j0 + block_n, sk)
        Kj, Vj = K[:, :, j0:j1], V[:, :, j0:j1]
        for i0 in range(0, sq, block_m):  # inner loop: stream every Q_i, O_i, l_i, m_i through
            i1 = min(i0 + block_m, sq)
            lo, hi = key_range(i0, i1, sq, sk, window)
            if hi <= j0 or lo >= j1:
                continue  # this tile is entirely masked
            S, _ = scores(Q[:, :, i0:i1], Kj, scale, softcap)
            S = mask_tile(S, i0, j0, sq, sk, window, float("-inf"))
            m_tile = S.amax(dim=-1, keepdim=True)
            P = safe_exp(S - m_tile)
            l_tile = P.sum(dim=-1, keepdim=True)

            m_old, l_old = m[:, :, i0:i1], l[:, :, i0:i1]
            m_new = torch.maximum(m_old, m_tile)
            alpha = safe_exp(m_old - m_new)  # rescales what was accumulated so far
            beta = safe_exp(m_tile - m_new)  # rescales this tile
            l_new = alpha * l_old + beta * l_tile
            # O_i is stored normalised: undo the old normalisation, add the tile, normalise again.
            numer = (alpha * l_old) * O[:, :, i0:i1] + beta * torch.matmul(P, Vj)
            O[:, :, i0:i1] = torch.where(
                l_new > 0, numer / l_new.clamp_min(torch.finfo(accum_dtype).tiny), 0.0
            )
            l[:, :, i0:i1], m[:, :, i0:i1] = l_new, m_new
    # --8<-- [end:fa1-loop]

    lse = torch.where(l > 0, m + torch.log(l), float("inf")).squeeze(-1)
    return seq_first(O, q.dtype), lse.to(lse_dtype(accum_dtype))
