"""Pieces shared by the flash attention kernels: which key blocks a query block visits, the score
transform (scale, softcap), and tile loads.

Units. Kernels keep scores in *log2 units*: ``s2 = score * log2(e)``, so that the softmax uses ``exp2``
(one MUFU instruction) instead of ``exp`` (a multiply plus ``exp2``). The scale is folded into one
constant: without softcap ``s2 = qk * (softmax_scale * log2 e)``; with softcap
``s2 = (softcap * log2 e) * tanh(qk * softmax_scale / softcap)``. The logsumexp handed back to the user is
converted to natural log at the very end.

Masks. A query row ``i`` sees key ``j`` iff ``i + diag - left <= j <= i + diag + right`` with
``diag = seqlen_k - seqlen_q`` (bottom-right alignment), ``j < seqlen_k``, each bound present only when
that side of the window is finite (causal is ``right = 0``). :func:`block_range` splits the keys one block
of rows visits into three spans: a masked head, an unmasked middle where every (row, key) pair is visible
and in bounds (the hot loop: no mask arithmetic at all), and a masked tail. Blocks outside the span are
never loaded, which is where causal and sliding-window attention get their speed-up.
"""

from __future__ import annotations

import triton
import triton.language as tl

LOG2E = 1.4426950408889634
LN2 = 0.6931471805599453


@triton.jit
def sequence(CU, b, seqlen, IS_VARLEN: tl.constexpr):
    """(start, length) of sequence ``b``: from the cumulative lengths ``CU`` when varlen, else (0, seqlen)."""
    start = b * 0  # a run-time zero (not a constexpr), so .to() works on it on both paths
    if IS_VARLEN:
        start = tl.load(CU + b)
        seqlen = tl.load(CU + b + 1) - start
    return start, seqlen


@triton.jit
def block_range(
    start,
    len_outer,
    len_inner,
    left,
    right,
    HAS_LEFT: tl.constexpr,
    HAS_RIGHT: tl.constexpr,
    BLOCK_OUTER: tl.constexpr,
    BLOCK_INNER: tl.constexpr,
):
    """Inner-index spans for the outer block ``[start, start + BLOCK_OUTER)``.

    Written for the forward orientation (outer = query rows, inner = keys, ``diag = len_inner -
    len_outer``); the backward's dK/dV kernel calls it transposed (outer = keys, inner = query rows,
    left and right swapped), which is the same visibility relation read the other way round.

    Returns ``(lo, full_lo, full_hi, hi)``, all but ``hi`` multiples of ``BLOCK_INNER``: blocks starting in
    ``[lo, full_lo)`` and ``[full_hi, hi)`` need masks, blocks in ``[full_lo, full_hi)`` do not.
    """
    diag = len_inner - len_outer
    last = tl.minimum(start + BLOCK_OUTER, len_outer) - 1  # last real outer index of this block
    # Visited span. Integer division in Triton truncates toward zero, so clamp at 0 before dividing.
    lo = 0
    hi = len_inner
    if HAS_LEFT:
        lo = (tl.maximum(start + diag - left, 0) // BLOCK_INNER) * BLOCK_INNER
    if HAS_RIGHT:
        hi = tl.minimum(tl.maximum(last + diag + right + 1, 0), len_inner)
    hi = tl.maximum(hi, lo)
    # Fully visible blocks: every outer index of the block sees every inner index of the inner block.
    full_lo = lo
    if HAS_LEFT:  # the *last* row has the tightest left bound
        full_lo = tl.cdiv(tl.maximum(last + diag - left, 0), BLOCK_INNER) * BLOCK_INNER
    full_hi = len_inner  # and the inner block must lie inside len_inner
    if HAS_RIGHT:  # the *first* row has the tightest right bound
        full_hi = tl.minimum(tl.maximum(start + diag + right + 1, 0), len_inner)
    full_hi = (full_hi // BLOCK_INNER) * BLOCK_INNER
    hi_ceil = tl.cdiv(hi, BLOCK_INNER) * BLOCK_INNER
    full_lo = tl.maximum(tl.minimum(full_lo, hi_ceil), lo)
    full_hi = tl.maximum(tl.minimum(full_hi, hi), full_lo)
    return lo, full_lo, full_hi, hi


@triton.jit
def tanh(x):
    # tanh(x) = 1 - 2 / (exp(2x) + 1): exact limits at +-inf, one exp2; Triton has no portable tanh.
    return 1.0 - 2.0 / (tl.exp2(x * (2.0 * 1.4426950408889634)) + 1.0)


@triton.jit
def visible(offs_m, offs_n, seqlen_q, seqlen_k, left, right, HAS_LEFT: tl.constexpr, HAS_RIGHT: tl.constexpr):
    """(BLOCK_M, BLOCK_N) boolean: which (row, key) pairs of the tile attend."""
    diag = seqlen_k - seqlen_q
    keep = (offs_n[None, :] < seqlen_k) & (offs_m[:, None] < seqlen_q)
    if HAS_RIGHT:
        keep = keep & (offs_n[None, :] <= offs_m[:, None] + (diag + right))
    if HAS_LEFT:
        keep = keep & (offs_n[None, :] >= offs_m[:, None] + (diag - left))
    return keep


@triton.jit
def load_rows(
    base, rows, stride, nrows, HEAD_DIM: tl.constexpr, HEAD_DIM_PAD: tl.constexpr, CHECK_ROWS: tl.constexpr
):
    """Load a (len(rows), HEAD_DIM_PAD) tile; rows past ``nrows`` and columns past HEAD_DIM read 0.

    Zeros matter: memory past a sequence may hold anything (NaN in the tests), and 0 * NaN is NaN.
    """
    cols = tl.arange(0, HEAD_DIM_PAD)
    ptrs = base + rows[:, None].to(tl.int64) * stride + cols[None, :]
    if CHECK_ROWS:
        mask = rows[:, None] < nrows
        if HEAD_DIM != HEAD_DIM_PAD:
            mask = mask & (cols[None, :] < HEAD_DIM)
        return tl.load(ptrs, mask=mask, other=0.0)
    elif HEAD_DIM != HEAD_DIM_PAD:
        return tl.load(ptrs, mask=cols[None, :] < HEAD_DIM, other=0.0)
    else:
        return tl.load(ptrs)


@triton.jit
def store_rows(base, rows, stride, nrows, value, HEAD_DIM: tl.constexpr, HEAD_DIM_PAD: tl.constexpr):
    cols = tl.arange(0, HEAD_DIM_PAD)
    ptrs = base + rows[:, None].to(tl.int64) * stride + cols[None, :]
    mask = rows[:, None] < nrows
    if HEAD_DIM != HEAD_DIM_PAD:
        mask = mask & (cols[None, :] < HEAD_DIM)
    tl.store(ptrs, value, mask=mask)


def head_dim_pad(head_dim: int) -> int:
    """Tiles are powers of two; 96 and 192 run in 128- and 256-wide tiles with masked (or TMA-zero) lanes."""
    return triton.next_power_of_2(head_dim)


def bucket(n: int) -> int:
    """Autotune key for a sequence length: one tuning per power of two, not per length."""
    return triton.next_power_of_2(max(int(n), 16))
