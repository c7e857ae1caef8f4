"""FlashAttention-2 forward and backward (Dao 2023, Algorithms 1 and 2), in PyTorch, for reading.

Forward: the outer loop walks over Q blocks (in a kernel, one thread block each: that is the parallelism
over the sequence), the inner loop over K/V blocks. The accumulator O stays *unnormalised* and is divided
by the row sum once at the end; only the logsumexp L = m + log(l) is written out for the backward pass.

Backward: P is recomputed from Q, K and L instead of being stored; with D = rowsum(dO * O),
dS = P * (dP - D). The outer loop walks over K/V blocks, which own dK and dV; dQ is accumulated across
them (a kernel uses atomics or a second pass for it).
"""

from __future__ import annotations

import torch

from ._layout import heads_first, lse_dtype, prepare, safe_exp, seq_first, sum_groups
from .masking import key_range, mask_tile
from .naive import scores


def flash_v2_forward(
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
    """FlashAttention-2 forward on (batch, seqlen, heads, headdim) q, k, v (heads_q a multiple of heads_k).

    Returns out (batch, seqlen_q, heads_q, dv) in q's dtype and lse (batch, heads_q, seqlen_q) float32
    (float64 when ``accum_dtype`` is; natural log); rows that see no key give out 0 and lse +inf.
    """
    shape, window, softcap, scale, Q, K, V = prepare(
        "flash_v2_forward", q, k, v, softmax_scale, causal, window_size, softcap, accum_dtype
    )
    sq, sk = shape.seqlen_q, shape.seqlen_k
    b, h = Q.shape[:2]
    out = torch.zeros(b, h, sq, shape.head_dim_v, dtype=accum_dtype, device=q.device)
    lse = torch.full((b, h, sq), float("inf"), dtype=lse_dtype(accum_dtype), device=q.device)

    # --8<-- [start:fa2-forward-loop]
    for i0 in range(0, sq, block_m):  # outer loop: one Q block (one thread block in a kernel)
        i1 = min(i0 + block_m, sq)
        Qi = Q[:, :, i0:i1]
        acc = torch.zeros(b, h, i1 - i0, shape.head_dim_v, dtype=accum_dtype, device=q.device)
        m = torch.full((b, h, i1 - i0, 1), float("-inf"), dtype=accum_dtype, device=q.device)
        l = torch.zeros(b, h, i1 - i0, 1, dtype=accum_dtype, device=q.device)
        # Causal and window masks let a block skip K/V blocks it cannot see.
        lo, hi = key_range(i0, i1, sq, sk, window)
        for j0 in range(lo - lo % block_n, hi, block_n):
            j1 = min(j0 + block_n, sk)
            S, _ = scores(Qi, K[:, :, j0:j1], scale, softcap)
            S = mask_tile(S, i0, j0, sq, sk, window, float("-inf"))
            m_new = torch.maximum(m, S.amax(dim=-1, keepdim=True))
            P = safe_exp(S - m_new)
            alpha = safe_exp(m - m_new)
            # No division here: the accumulator is rescaled by exp(m_old - m_new) only.
            acc = alpha * acc + torch.matmul(P, V[:, :, j0:j1])
            l = alpha * l + P.sum(dim=-1, keepdim=True)
            m = m_new
        seen = l > 0
        out[:, :, i0:i1] = torch.where(seen, acc / torch.where(seen, l, 1.0), 0.0)
        lse[:, :, i0:i1] = torch.where(seen, m + torch.log(torch.where(seen, l, 1.0)), float("inf")).squeeze(
            -1
        )
    # --8<-- [end:fa2-forward-loop]
    return seq_first(out, q.dtype), lse


def flash_v2_backward(
    dout: torch.Tensor,
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    out: torch.Tensor,
    lse: torch.Tensor,
    *,
    softmax_scale: float | None = None,
    causal: bool = False,
    window_size: tuple[int, int] = (-1, -1),
    softcap: float = 0.0,
    block_m: int = 64,
    block_n: int = 64,
    accum_dtype: torch.dtype = torch.float32,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """FlashAttention-2 backward: gradients (dq, dk, dv) in the dtypes and shapes of q, k, v.

    ``out`` and ``lse`` are what :func:`flash_v2_forward` returned; ``dout`` is the gradient of ``out``.
    """
    shape, window, softcap, scale, Q, K, V = prepare(
        "flash_v2_backward", q, k, v, softmax_scale, causal, window_size, softcap, accum_dtype
    )
    sq, sk = shape.seqlen_q, shape.seqlen_k
    dO = heads_first(dout, accum_dtype)
    L = lse.to(accum_dtype).unsqueeze(-1)  # +inf on rows that saw nothing: exp(S - inf) = 0 there
    # --8<-- [start:fa2-backward-loop]
    # D_i = rowsum(dO_i * O_i) = rowsum(P_i * dP_i): the softmax Jacobian's correction term, once per row.
    D = (dO * heads_first(out, accum_dtype)).sum(dim=-1, keepdim=True)
    dQ = torch.zeros_like(Q)
    dK = torch.zeros_like(K)
    dV = torch.zeros_like(V)

    for j0 in range(0, sk, block_n):  # outer loop: one K/V block owns its dK_j, dV_j
        j1 = min(j0 + block_n, sk)
        Kj, Vj = K[:, :, j0:j1], V[:, :, j0:j1]
        for i0 in range(0, sq, block_m):
            i1 = min(i0 + block_m, sq)
            lo, hi = key_range(i0, i1, sq, sk, window)
            if hi <= j0 or lo >= j1:
                continue
            S, tanh_t = scores(Q[:, :, i0:i1], Kj, scale, softcap)
            P = torch.exp(S - L[:, :, i0:i1])  # recomputed, normalised by the stored logsumexp
            P = mask_tile(P, i0, j0, sq, sk, window, 0.0)
            dOi = dO[:, :, i0:i1]
            dV[:, :, j0:j1] += torch.matmul(P.transpose(-1, -2), dOi)
            dP = torch.matmul(dOi, Vj.transpose(-1, -2))
            dS = P * (dP - D[:, :, i0:i1])
            if tanh_t is not None:
                # S = c * tanh(scale * QK^T / c): d S / d(QK^T) = scale * (1 - tanh^2)
                dS = dS * (1.0 - tanh_t * tanh_t)
            dQ[:, :, i0:i1] += scale * torch.matmul(dS, Kj)
            dK[:, :, j0:j1] += scale * torch.matmul(dS.transpose(-1, -2), Q[:, :, i0:i1])
    # --8<-- [end:fa2-backward-loop]

    dK = sum_groups(dK, shape.heads_k)
    dV = sum_groups(dV, shape.heads_k)
    return seq_first(dQ, q.dtype), seq_first(dK, k.dtype), seq_first(dV, v.dtype)
