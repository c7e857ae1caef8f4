"""Merging the splits of a sequence: the second kernel of split-KV decoding.

A sequence the scheduler cut into ``n`` splits has, for every query row, ``n`` partial results: ``o_i``
(already normalised by its own softmax denominator) and ``lse_i`` (natural log of that denominator, ``-inf``
when the split saw no visible token). Softmax over the union of the splits is a weighted average::

    lse = log(sum_i exp(lse_i))              computed as  m + log(sum_i exp(lse_i - m)),  m = max_i lse_i
    o   = sum_i exp(lse_i - lse) * o_i

Subtracting the max keeps ``exp`` in range; a split with ``lse_i = -inf`` gets weight 0 without ever
touching its ``o_i`` (it is 0 anyway, but weights are computed from lse alone). If every split is empty
(not possible for a real split sequence, guarded anyway) the row gets FlashMLA's ``out = 0, lse = +inf``.

One program merges one query row of one KV head of one sequence: 512 output channels, a loop over splits.
Rows of sequences that were not split are skipped when the decode kernel wrote them itself (Triton).

Sparse decoding splits each query token's index list the same way and reuses this kernel with ``h_kv = 1``
(a "sequence" is a batch row, its rows every (query token, head)). It may carry an attention sink, which
adds ``exp(sink[h])`` to the denominator of the *whole* row, so the partials are written without it and it
is applied here, once, after merging: ``o *= 1 / (1 + exp(sink - lse))``, the unsplit kernel's formula;
``lse`` stays without the sink, as FlashMLA returns it.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl


@triton.jit
def sink_denominator(sink, lse, empty):
    """What an attention sink divides ``o`` by: ``out *= exp(lse) / (exp(lse) + exp(sink))`` written as
    ``1 + exp(sink - lse)``, so sink = +inf gives 0 and sink = -inf 1, with no inf/inf (``empty`` rows use
    lse 0: their o is 0 anyway). Split sparse decoding applies it here after merging, unsplit in its kernel."""
    return 1.0 + tl.exp(sink - tl.where(empty, 0.0, lse))


@triton.jit
def _combine_kernel(
    out_ptr,
    lse_ptr,
    o_acc_ptr,
    lse_acc_ptr,
    split_offsets_ptr,
    sink_ptr,
    stride_ob,
    stride_os,
    stride_oh,
    s_q,
    h_q,
    h_kv,
    group,
    rows,
    rows_acc,
    MIN_SPLITS: tl.constexpr,
    HAS_SINK: tl.constexpr,
    BLOCK_S: tl.constexpr,
    D_V: tl.constexpr,
):
    req = tl.program_id(0)
    hk = tl.program_id(1)
    row = tl.program_id(2)
    base = tl.load(split_offsets_ptr + req)
    n = tl.load(split_offsets_ptr + req + 1) - base
    if n >= MIN_SPLITS:
        s_idx = row // group
        head = hk * group + row % group
        offs_s = tl.arange(0, BLOCK_S)
        slots = ((base + offs_s).to(tl.int64) * h_kv + hk) * rows_acc + row
        lse_i = tl.load(lse_acc_ptr + slots, mask=offs_s < n, other=float("-inf"))
        m = tl.max(lse_i, 0)
        m_shift = tl.where(m == float("-inf"), 0.0, m)
        total = tl.sum(tl.exp(lse_i - m_shift), 0)
        offs_d = tl.arange(0, D_V)
        acc = tl.zeros([D_V], dtype=tl.float32)
        for i in range(0, n):
            slot = ((base + i).to(tl.int64) * h_kv + hk) * rows_acc + row
            w = tl.exp(tl.load(lse_acc_ptr + slot) - m_shift)
            acc += w * tl.load(o_acc_ptr + slot * D_V + offs_d)
        empty = total == 0.0
        o = acc / tl.where(empty, 1.0, total)
        lse = tl.where(empty, float("inf"), m_shift + tl.log(tl.where(empty, 1.0, total)))
        if HAS_SINK:
            # An empty row stays 0 (its lse is not used).
            o = tl.where(empty, 0.0, o / sink_denominator(tl.load(sink_ptr + head), lse, empty))
        o_ptrs = out_ptr + tl.cast(req, tl.int64) * stride_ob + s_idx * stride_os + head * stride_oh + offs_d
        tl.store(o_ptrs, o.to(out_ptr.dtype.element_ty))
        tl.store(lse_ptr + (tl.cast(req, tl.int64) * h_q + head) * s_q + s_idx, lse)


def combine_splits(
    out: torch.Tensor,
    lse: torch.Tensor,
    o_acc: torch.Tensor,
    lse_acc: torch.Tensor,
    split_offsets: torch.Tensor,
    max_splits: int,
    group: int,
    min_splits: int = 2,
    attn_sink: torch.Tensor | None = None,
) -> None:
    """Merge partials ``o_acc`` (splits, h_kv, rows, 512), ``lse_acc`` (splits, h_kv, rows) into ``out``
    (b, s_q, h_q, 512) and ``lse`` (b, h_q, s_q), in place, for every sequence with at least ``min_splits``
    splits (2 for the Triton path, which writes unsplit sequences itself; 1 for the CuTe path). ``rows`` of
    the scratch may be padded past ``s_q * group``. ``attn_sink`` (h_q,) fp32 is applied to the merged rows
    (sparse decoding; the partials carry no sink)."""
    b, s_q, h_q, d_v = out.shape
    h_kv = h_q // group
    rows = s_q * group
    _combine_kernel[(b, h_kv, rows)](
        out,
        lse,
        o_acc,
        lse_acc,
        split_offsets,
        attn_sink if attn_sink is not None else lse_acc,  # never read without HAS_SINK
        out.stride(0),
        out.stride(1),
        out.stride(2),
        s_q,
        h_q,
        h_kv,
        group,
        rows,
        o_acc.shape[2],
        MIN_SPLITS=min_splits,
        HAS_SINK=attn_sink is not None,
        BLOCK_S=max(triton.next_power_of_2(max_splits), 2),
        D_V=d_v,
        num_warps=4,
    )
