"""Split-KV dense MLA decoding in Triton: the portable path (sm_80 and newer, and the CPU interpreter).

The problem, in FlashMLA's "MQA mode": every query head of a KV head attends to the same cached latent
vector per token. A token's key is its 576 channels (512 "NoPE" + 64 "RoPE"); its value is the first 512
of them. So the kernel loads each KV tile **once** and uses it twice, for ``S = Q K^T`` and ``O += P V``:
that, and not re-reading the cache per query head, is what makes MLA decoding fast.

Rows. For one KV head, the query heads of its group and the ``s_q`` query tokens are all rows of one
matrix: row ``r = s * group + g`` is query token ``s``, head ``hk * group + g``. With h_q = 128, s_q = 2 that
is 256 rows against one K tile, which is why MLA decoding is compute-bound at large h_q (unlike classic MHA
decoding). ``BLOCK_M`` rows go to one program; ``program_id(1)`` picks the row block.

Work. ``program_id(0)`` is an SM *part* of :mod:`attn_flashmla.scheduler`: it walks its run of
(sequence, tile range) pieces. A sequence the scheduler left whole is finished here and written to ``out``;
a split one writes a partial result (normalised ``o`` and its ``lse``) to scratch, merged by
:mod:`attn_flashmla.combine`.

Masks, and why NaN never leaks. Paged caches hold garbage (NaN in the tests) past each sequence's end and
block tables hold garbage entries past its last block. Every load of the block table and of K is masked
by ``token < seqlen`` with ``other=0``, so masked tokens *are* zeros, never NaN; scores of masked tokens
are then replaced (``tl.where``, not multiplied) by ``-inf``. Multiplying a NaN row by a zero probability
would still be NaN, so we never rely on ``p == 0`` to hide a row. Causal masking (bottom-right aligned)
lets row ``s`` see tokens ``< seqlen - s_q + s + 1``.

Softmax in base 2. Scores are scaled by ``softmax_scale * log2(e)`` so the kernel uses ``exp2`` (one
MUFU instruction); ``lse`` is converted back to the natural log FlashMLA returns.
"""

from __future__ import annotations

import math
import os

import torch
import triton
import triton.language as tl

from attn_flashmla._runtime import interpreting

LOG2E = math.log2(math.e)
D_MAIN = 512  # NoPE channels: the part of K that is also V
D_ROPE = 64  # RoPE channels (head dim 576 only)


@triton.jit
def _dense_decode_kernel(
    q_ptr,
    k_ptr,
    block_table_ptr,
    seqlens_ptr,
    parts_ptr,
    split_offsets_ptr,
    out_ptr,
    lse_ptr,
    o_acc_ptr,
    lse_acc_ptr,
    stride_qb,
    stride_qs,
    stride_qh,
    stride_kblock,
    stride_kpos,
    stride_kh,
    stride_bt,
    stride_ob,
    stride_os,
    stride_oh,
    s_q,
    h_q,
    h_kv,
    group,
    rows,
    page_size,
    scale_log2,
    CAUSAL: tl.constexpr,
    HAS_ROPE: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    D_MAIN: tl.constexpr,
    D_ROPE: tl.constexpr,
    UPCAST: tl.constexpr,
):
    part = tl.program_id(0)
    row_block = tl.program_id(1)
    hk = tl.program_id(2)

    # This part's work list (scheduler.DecodeSchedule.parts): a run of sequences, ends possibly partial.
    begin_req = tl.load(parts_ptr + part * 5 + 0)
    begin_tile = tl.load(parts_ptr + part * 5 + 1)
    end_req = tl.load(parts_ptr + part * 5 + 2)
    end_tile = tl.load(parts_ptr + part * 5 + 3)
    begin_split = tl.load(parts_ptr + part * 5 + 4)

    offs_m = row_block * BLOCK_M + tl.arange(0, BLOCK_M)
    row_ok = offs_m < rows
    s_idx = offs_m // group  # query token of each row
    head = hk * group + offs_m % group  # query head of each row
    offs_d = tl.arange(0, D_MAIN)
    offs_r = tl.arange(0, D_ROPE)
    offs_n = tl.arange(0, BLOCK_N)
    ln2: tl.constexpr = 0.6931471805599453

    for req in range(begin_req, end_req + 1):
        seqlen = tl.load(seqlens_ptr + req)
        n_tiles = tl.maximum(tl.cdiv(seqlen, BLOCK_N), 1)
        t_begin = tl.where(req == begin_req, begin_tile, 0)
        t_end = tl.where(req == end_req, end_tile, n_tiles)
        split = tl.where(req == begin_req, begin_split, 0)

        # q rows of this block, loaded once per sequence piece and kept for every tile.
        q_rows = q_ptr + tl.cast(req, tl.int64) * stride_qb + s_idx * stride_qs + head * stride_qh
        q_main = tl.load(q_rows[:, None] + offs_d[None, :], mask=row_ok[:, None], other=0.0)
        if HAS_ROPE:
            q_rope = tl.load(q_rows[:, None] + D_MAIN + offs_r[None, :], mask=row_ok[:, None], other=0.0)
        if UPCAST:
            q_main = q_main.to(tl.float32)
            if HAS_ROPE:
                q_rope = q_rope.to(tl.float32)
        # Last visible token (exclusive) of each row.
        if CAUSAL:
            limit = seqlen - s_q + s_idx + 1
        else:
            limit = tl.zeros([BLOCK_M], dtype=tl.int32) + seqlen

        m_i = tl.full([BLOCK_M], float("-inf"), dtype=tl.float32)
        l_i = tl.zeros([BLOCK_M], dtype=tl.float32)
        acc = tl.zeros([BLOCK_M, D_MAIN], dtype=tl.float32)
        for t in range(t_begin, t_end):
            tok = t * BLOCK_N + offs_n
            tok_ok = tok < seqlen
            # Page lookup per token (so any page size works); entries past the sequence are never read.
            page = tl.load(
                block_table_ptr + tl.cast(req, tl.int64) * stride_bt + tok // page_size, mask=tok_ok, other=0
            )
            k_rows = (
                k_ptr + page.to(tl.int64) * stride_kblock + (tok % page_size) * stride_kpos + hk * stride_kh
            )
            k_main = tl.load(k_rows[:, None] + offs_d[None, :], mask=tok_ok[:, None], other=0.0)
            if UPCAST:
                k_main = k_main.to(tl.float32)
            s = tl.dot(q_main, tl.trans(k_main))
            if HAS_ROPE:
                k_rope = tl.load(k_rows[:, None] + D_MAIN + offs_r[None, :], mask=tok_ok[:, None], other=0.0)
                if UPCAST:
                    k_rope = k_rope.to(tl.float32)
                s += tl.dot(q_rope, tl.trans(k_rope))
            visible = (tok[None, :] < limit[:, None]) & tok_ok[None, :]
            s = tl.where(visible, s * scale_log2, float("-inf"))

            # Online softmax. A row that has seen nothing yet has m = -inf; use 0 as its shift so that
            # exp2(-inf - -inf) (NaN) never happens: its p are exp2(-inf) = 0 and alpha is exp2(-inf) = 0.
            m_new = tl.maximum(m_i, tl.max(s, 1))
            m_shift = tl.where(m_new == float("-inf"), 0.0, m_new)
            alpha = tl.exp2(m_i - m_shift)
            p = tl.exp2(s - m_shift[:, None])
            l_i = l_i * alpha + tl.sum(p, 1)
            # V is the first 512 channels of the K tile already in registers/shared memory.
            acc = acc * alpha[:, None] + tl.dot(p.to(k_main.dtype), k_main)
            m_i = m_new

        empty = l_i == 0.0  # no visible token in this piece (zero-length sequence, or causally masked)
        o = acc / tl.where(empty, 1.0, l_i)[:, None]
        lse = (m_i + tl.log2(tl.where(empty, 1.0, l_i))) * ln2

        split_base = tl.load(split_offsets_ptr + req)
        n_splits = tl.load(split_offsets_ptr + req + 1) - split_base
        if n_splits == 1:
            # The whole sequence was ours: final result, +inf lse for rows that saw nothing.
            o_ptrs = out_ptr + tl.cast(req, tl.int64) * stride_ob + s_idx * stride_os + head * stride_oh
            tl.store(o_ptrs[:, None] + offs_d[None, :], o.to(out_ptr.dtype.element_ty), mask=row_ok[:, None])
            lse_ptrs = lse_ptr + (tl.cast(req, tl.int64) * h_q + head) * s_q + s_idx
            tl.store(lse_ptrs, tl.where(empty, float("inf"), lse), mask=row_ok)
        else:
            # A partial: -inf lse marks "saw nothing" so the combine gives it weight exp(-inf) = 0.
            slot = ((split_base + split).to(tl.int64) * h_kv + hk) * rows + offs_m
            tl.store(o_acc_ptr + slot[:, None] * D_MAIN + offs_d[None, :], o, mask=row_ok[:, None])
            tl.store(lse_acc_ptr + slot, tl.where(empty, float("-inf"), lse), mask=row_ok)


def default_config(rows: int, device: torch.device) -> dict:
    """Tile sizes for ``rows = s_q * h_q / h_kv`` query rows per KV head.

    BLOCK_M: the smallest of 16/32/64 that holds the rows (16 is tl.dot's minimum), 64 past that (a row
    block of 64 against a 64-token tile, as FlashMLA's kernel). BLOCK_N = 64 tokens per tile on a GPU;
    the interpreter uses 16 so that tiny tests cross tile and split boundaries.
    """
    block_m = 16 if rows <= 16 else 32 if rows <= 32 else 64
    override = os.environ.get("ATTN_FLASHMLA_TRITON_CONFIG", "").strip()
    if override and device.type == "cuda" and not interpreting():
        # "BLOCK_M,BLOCK_N,num_warps,num_stages,ctas_per_sm" (tools/gpu_check.py sweeps a few); BLOCK_M 0 = auto.
        bm, bn, warps, stages, ctas = (int(x) for x in override.split(","))
        return {
            "BLOCK_M": bm or block_m, "BLOCK_N": bn, "num_warps": warps, "num_stages": stages, "ctas_per_sm": ctas,
        }  # fmt: skip
    if device.type != "cuda" or interpreting():
        return {"BLOCK_M": block_m, "BLOCK_N": 16, "num_warps": 4, "num_stages": 1, "ctas_per_sm": 1}
    return {
        "BLOCK_M": block_m,
        "BLOCK_N": 64 if block_m < 64 else 32,
        "num_warps": 4 if block_m < 64 else 8,
        "num_stages": 2,
        # Memory-bound shapes (few rows) need more loads in flight than one CTA per SM issues.
        "ctas_per_sm": 2 if block_m <= 16 else 1,
    }


def dense_decode_triton(
    q: torch.Tensor,
    k_cache: torch.Tensor,
    block_table: torch.Tensor,
    cache_seqlens: torch.Tensor,
    parts: torch.Tensor,
    split_offsets: torch.Tensor,
    total_splits: int,
    max_splits: int,
    softmax_scale: float,
    causal: bool,
    config: dict,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Launch the split kernel, then the combine; returns ``out`` (b, s_q, h_q, 512), ``lse`` (b, h_q, s_q)."""
    from attn_flashmla.combine import combine_splits

    b, s_q, h_q, d = q.shape
    h_kv = k_cache.shape[2]
    group = h_q // h_kv
    rows = s_q * group
    # The interpreter casts fp32 -> bf16 by truncation, not rounding: there the kernel writes fp32 and
    # torch rounds afterwards, so CPU tests see the rounding a GPU does.
    out_dtype = torch.float32 if interpreting() else q.dtype
    out = torch.empty(b, s_q, h_q, D_MAIN, dtype=out_dtype, device=q.device)
    lse = torch.empty(b, h_q, s_q, dtype=torch.float32, device=q.device)
    # Scratch for split sequences only (sequences in one part write out/lse directly).
    n_scratch = total_splits if max_splits > 1 else 0
    o_acc = torch.empty(n_scratch, h_kv, rows, D_MAIN, dtype=torch.float32, device=q.device)
    lse_acc = torch.empty(n_scratch, h_kv, rows, dtype=torch.float32, device=q.device)
    if q.stride(-1) != 1:
        q = q.contiguous()
    grid = (parts.shape[0], triton.cdiv(rows, config["BLOCK_M"]), h_kv)
    _dense_decode_kernel[grid](
        q,
        k_cache,
        block_table,
        cache_seqlens,
        parts,
        split_offsets,
        out,
        lse,
        o_acc,
        lse_acc,
        q.stride(0),
        q.stride(1),
        q.stride(2),
        k_cache.stride(0),
        k_cache.stride(1),
        k_cache.stride(2),
        block_table.stride(0),
        out.stride(0),
        out.stride(1),
        out.stride(2),
        s_q,
        h_q,
        h_kv,
        group,
        rows,
        k_cache.shape[1],
        softmax_scale * LOG2E,
        CAUSAL=causal and s_q > 1,
        HAS_ROPE=d > D_MAIN,
        BLOCK_M=config["BLOCK_M"],
        BLOCK_N=config["BLOCK_N"],
        D_MAIN=D_MAIN,
        D_ROPE=D_ROPE,
        UPCAST=interpreting(),
        num_warps=config["num_warps"],
        num_stages=config["num_stages"],
    )
    if max_splits > 1:
        combine_splits(out, lse, o_acc, lse_acc, split_offsets, max_splits, group)
    return out.to(q.dtype), lse
