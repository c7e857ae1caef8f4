"""Dense MLA decoding for Hopper in Gluon: the Triton path's compute-bound kernel (h_q 64 and more).

:mod:`attn_flashmla.decode_fwd` leaves the schedule to the Triton compiler, which on sm_90 waits for every
``tl.dot`` before going on (``wgmma.wait_group 0``): the tensor cores idle through each softmax and the K
copies are not overlapped with the math by a separate warp. This kernel, written in Gluon (Triton's
explicit layer, ``triton.experimental.gluon``), states FlashMLA's division of labour instead:

* one **producer warp** copies each 64-token K tile of the paged cache with TMA into a two-slot ring
  (full/empty mbarriers): the tile is three boxes, NoPE channels 0-255 and 256-511 and the 64 RoPE
  channels, at the row the block table gives (the page size is a multiple of 64, so a tile never crosses
  a page);
* **warpgroup 0** owns 64 query rows' scores: ``S_j = Q K_j^T`` (576 channels, three asynchronous wgmmas),
  the online softmax, and the output channels 0-255, ``O_0 += P_j V_j[:, :256]``. As in the FlashAttention
  forward, ``S_{j+1}`` is issued beside ``P_j V_j`` and waited for alone (``wait_group 1``), so the
  softmax runs while the tensor cores still work;
* **warpgroup 1** owns output channels 256-511: warpgroup 0 hands it each tile's probabilities ``P_j``
  (bf16, through shared memory) with the factor ``alpha_j`` that rescales the running output, and it runs
  ``O_1 = alpha_j O_1 + P_j V_j[:, 256:]``. V is the first 512 channels of the K tile already in shared
  memory: each tile is read from HBM once for both products.

Shared memory: Q 72 KB, two K slots 144 KB, P 8 KB (one slot: warpgroup 0 waits for warpgroup 1 to free
it, which it has long done by then), 224 KB in all of the 227 KB.

Work is split as in :mod:`attn_flashmla.decode_fwd`: ``program_id(0)`` is a part of
:mod:`attn_flashmla.scheduler` (a run of (sequence, tile range) pieces), ``program_id(1)`` a block of 64
rows (row ``r = s * group + g``: query token ``s``, head ``hk * group + g``), ``program_id(2)`` the KV head.
An unsplit sequence is written to ``out``; a split one as a partial (``o``, ``lse``) for
:mod:`attn_flashmla.combine`.

NaN never leaks: a TMA copy cannot be masked per token, so a sequence's last, partial tile arrives with the
cache's padding slots (NaN in the tests). Warpgroup 0 overwrites those rows of the slot with zeros before
either product reads it; their scores are then replaced by ``-inf`` (``where``, never a multiplication by
zero). A zero-length sequence's one tile is all padding, copied from block 0 rather than through a block
table entry that may be garbage.
"""

from __future__ import annotations

import functools
import importlib.util

import torch
import triton

from attn_flashmla._runtime import interpreting

ROWS = 64  # query rows per CTA: the M of one wgmma
BLOCK_N = 64  # tokens per K tile
D_HALF = 256  # output channels per consumer warpgroup
D_MAIN = 512
D_ROPE = 64
LOG2E = 1.4426950408889634


@functools.cache
def gluon_available() -> bool:
    """Gluon with Hopper's TMA, mbarrier and wgmma builtins (Triton >= 3.6)."""
    if importlib.util.find_spec("triton.experimental.gluon") is None:
        return False
    try:
        from triton.experimental.gluon.language.nvidia.hopper import warpgroup_mma  # noqa: F401
        from triton.experimental.gluon.nvidia.hopper import TensorDescriptor  # noqa: F401
    except ImportError:
        return False
    major, minor = (int(x) for x in triton.__version__.split(".")[:2])
    return (major, minor) >= (3, 6)


def gluon_unsupported(q: torch.Tensor, k_cache: torch.Tensor) -> str | None:
    """Why this kernel cannot run the call (then the Triton kernel does), or None when it can."""
    if interpreting() or q.device.type != "cuda":
        return "Gluon kernels do not run under the Triton interpreter"
    if not gluon_available():
        return f"needs Triton >= 3.6 with Gluon (this is {triton.__version__})"
    from attn_reference.capability import cuda_capability

    cap = cuda_capability(q.device)
    if cap is None or cap[0] != 9:
        return f"wgmma is Hopper's (sm_90), this GPU has capability {cap}"
    if q.dtype not in (torch.float16, torch.bfloat16):
        return f"q is {q.dtype}; the kernel takes fp16 or bf16"
    if q.shape[-1] not in (D_MAIN, D_MAIN + D_ROPE):
        return f"head dim {q.shape[-1]}; the kernel takes 512 or 576"
    from attn_flashmla.decode_fwd import tma_unsupported

    return tma_unsupported(k_cache, BLOCK_N)


@functools.cache
def _kernel(causal: bool, has_rope: bool):
    """The kernel for one (causal, has_rope), built on first use: Gluon is imported only where it runs
    (Hopper, Triton >= 3.6). The two switches are closure constants, not kernel parameters: arguments of
    ``gl.warp_specialize``'s worker partitions arrive as IR values, and a constexpr would become a runtime
    ``i1``."""
    from triton.experimental import gluon
    from triton.experimental.gluon import language as gl
    from triton.experimental.gluon.language.nvidia.hopper import (
        fence_async_shared,
        mbarrier,
        tma,
        warpgroup_mma,
        warpgroup_mma_wait,
    )

    CAUSAL = gl.constexpr(causal)
    HAS_ROPE = gl.constexpr(has_rope)  # head dim 576: 64 RoPE channels after the 512 NoPE ones

    @gluon.jit
    def _piece(parts_ptr, seqlens_ptr, part, req):
        """Sequence ``req``'s piece of this part: (seqlen, first tile, end tile, split index)."""
        begin_req = gl.load(parts_ptr + part * 5 + 0)
        end_req = gl.load(parts_ptr + part * 5 + 2)
        seqlen = gl.load(seqlens_ptr + req)
        n_tiles = gl.maximum(gl.cdiv(seqlen, 64), 1)
        t_begin = gl.where(req == begin_req, gl.load(parts_ptr + part * 5 + 1), 0)
        t_end = gl.where(req == end_req, gl.load(parts_ptr + part * 5 + 3), n_tiles)
        split = gl.where(req == begin_req, gl.load(parts_ptr + part * 5 + 4), 0)
        return seqlen, t_begin, t_end, split

    @gluon.jit
    def _rows(row_block, hk, group, rows, layout: gl.constexpr):
        """This CTA's 64 rows: (row, in range, query token, query head). Recomputed where needed rather
        than kept live through the tile loop, where registers are short."""
        row = row_block * 64 + gl.arange(0, 64, layout=layout)
        return row, row < rows, row // group, hk * group + row % group

    @gluon.jit
    def _producer(k0_desc, k1_desc, kr_desc, k0_smem, k1_smem, kr_smem, k_full, k_empty, block_table_ptr,
                  seqlens_ptr, parts_ptr, part, hk, stride_bt, stride_kh, page_size):  # fmt: skip
        STAGES: gl.constexpr = k0_smem.shape[0]
        begin_req = gl.load(parts_ptr + part * 5 + 0)
        end_req = gl.load(parts_ptr + part * 5 + 2)
        NBYTES: gl.constexpr = k0_desc.block_type.nbytes + k1_desc.block_type.nbytes + (
            kr_desc.block_type.nbytes if HAS_ROPE else 0)  # fmt: skip
        col = hk * stride_kh
        i = 0  # tiles copied so far by this CTA: the ring position, continued across sequences
        for req in range(begin_req, end_req + 1):
            seqlen, t_begin, t_end, _split = _piece(parts_ptr, seqlens_ptr, part, req)
            for t in range(t_begin, t_end):
                first = t * 64
                # A tile with no token (zero-length sequence) reads block 0: its table entry may be garbage.
                page = gl.load(block_table_ptr + req.to(gl.int64) * stride_bt + first // page_size,
                               mask=first < seqlen, other=0)  # fmt: skip
                row = page * page_size + first % page_size
                slot = i % STAGES
                # A fresh mbarrier counts as having completed the phase before 0: the first lap does not wait.
                mbarrier.wait(k_empty.index(slot), ((i // STAGES) & 1) ^ 1)
                mbarrier.expect(k_full.index(slot), NBYTES)
                tma.async_copy_global_to_shared(k0_desc, [row, col], k_full.index(slot), k0_smem.index(slot))
                tma.async_copy_global_to_shared(
                    k1_desc, [row, col + 256], k_full.index(slot), k1_smem.index(slot)
                )
                if HAS_ROPE:
                    tma.async_copy_global_to_shared(
                        kr_desc, [row, col + 512], k_full.index(slot), kr_smem.index(slot)
                    )
                i += 1

    @gluon.jit
    def _scrub(buf, valid):
        """Zero rows ``valid..63`` of a K tile in shared memory (the padding a TMA copy brought along)."""
        W: gl.constexpr = buf.shape[1]
        layout: gl.constexpr = gl.BlockedLayout([1, 8], [32 * 8 // W, W // 8], [4, 1], [1, 0])
        x = buf.load(layout)
        rows = gl.arange(0, 64, layout=gl.SliceLayout(1, layout))
        buf.store(gl.where(rows[:, None] < valid, x, gl.zeros_like(x)))

    @gluon.jit
    def _load_q(buf, q_rows, row_ok, col0):
        """Q's channels ``col0 .. col0 + W`` of this CTA's rows into ``buf`` (rows past the end as zeros)."""
        W: gl.constexpr = buf.shape[1]
        layout: gl.constexpr = gl.BlockedLayout([1, 8], [32 * 8 // W, W // 8], [4, 1], [1, 0])
        ptrs = gl.convert_layout(q_rows, gl.SliceLayout(1, layout))[:, None] + col0 + gl.arange(
            0, W, layout=gl.SliceLayout(0, layout))[None, :]  # fmt: skip
        ok = gl.convert_layout(row_ok, gl.SliceLayout(1, layout))[:, None]
        buf.store(gl.load(ptrs, mask=ok, other=0.0))

    @gluon.jit
    def _split_slot(split_offsets_ptr, req, split, h_kv, hk):
        """(number of splits of sequence ``req``, this piece's first scratch slot divided by ``rows``)."""
        split_base = gl.load(split_offsets_ptr + req)
        n_splits = gl.load(split_offsets_ptr + req + 1) - split_base
        return n_splits, (split_base + split) * h_kv + hk

    @gluon.jit
    def _write(acc, inv_l, out_ptr, o_acc_ptr, req, s_idx, head, row, row_ok, col0, stride_ob, stride_os,
               stride_oh, n_splits, slot_base, rows):  # fmt: skip
        """Normalised output channels ``col0 ..`` of this CTA's rows: to ``out``, or as a split's partial."""
        layout: gl.constexpr = acc.type.layout
        o = acc * gl.convert_layout(inv_l, gl.SliceLayout(1, layout))[:, None]
        cols = col0 + gl.arange(0, acc.shape[1], layout=gl.SliceLayout(0, layout))
        ok = gl.convert_layout(row_ok, gl.SliceLayout(1, layout))[:, None]
        if n_splits == 1:
            base = req.to(gl.int64) * stride_ob + s_idx * stride_os + head * stride_oh
            o_ptrs = out_ptr + gl.convert_layout(base, gl.SliceLayout(1, layout))[:, None] + cols[None, :]
            gl.store(o_ptrs, o.to(out_ptr.dtype.element_ty), mask=ok)
        else:
            slot = slot_base.to(gl.int64) * rows + row
            acc_ptrs = (
                o_acc_ptr + gl.convert_layout(slot, gl.SliceLayout(1, layout))[:, None] * 512 + cols[None, :]
            )
            gl.store(acc_ptrs, o, mask=ok)

    @gluon.jit
    def _issue_scores(q0, q1, qr, k0_smem, k1_smem, kr_smem, k_full, i, first, seqlen, s_zero):
        """Wait for the CTA's ``i``-th K tile (tokens ``first ..``), scrub its padding, issue ``S = Q K^T``."""
        STAGES: gl.constexpr = k0_smem.shape[0]
        slot = i % STAGES
        mbarrier.wait(k_full.index(slot), (i // STAGES) & 1)
        if first + 64 > seqlen:  # the partial last tile: its padding rows become zeros
            _scrub(k0_smem.index(slot), seqlen - first)
            _scrub(k1_smem.index(slot), seqlen - first)
            if HAS_ROPE:
                _scrub(kr_smem.index(slot), seqlen - first)
            fence_async_shared()
            gl.thread_barrier()
        s_tok = warpgroup_mma(q0, k0_smem.index(slot).permute((1, 0)), s_zero, use_acc=False, is_async=True)
        s_tok = warpgroup_mma(q1, k1_smem.index(slot).permute((1, 0)), s_tok, is_async=True)
        if HAS_ROPE:
            s_tok = warpgroup_mma(qr, kr_smem.index(slot).permute((1, 0)), s_tok, is_async=True)
        return s_tok

    @gluon.jit
    def _softmax(s, m_i, l_i, first, limit, masked_from, scale_log2, cols, dtype: gl.constexpr):
        """Online-softmax step (base 2) on a tile's raw scores: (P in Q's dtype, alpha, m, l)."""
        if first + 64 > masked_from:  # the sequence's end, or the causal diagonal, crosses this tile
            tok = first + cols
            s = gl.where(tok[None, :] < limit[:, None], s, -float("inf"))
        # A row that has seen nothing keeps m = -inf and shifts by 0: exp2(-inf - -inf) (NaN) never happens.
        m_new = gl.maximum(m_i, gl.max(s, axis=1) * scale_log2)
        m_shift = gl.where(m_new == -float("inf"), 0.0, m_new)
        p = gl.exp2(s * scale_log2 - m_shift[:, None])
        alpha = gl.exp2(m_i - m_shift)
        l_new = l_i * alpha + gl.sum(p, axis=1)
        return p.to(dtype), alpha, m_new, l_new

    @gluon.jit
    def _hand_over(p_smem, scale_smem, p_full, p_empty, p16, scale, h, WITH_P: gl.constexpr = True):
        """Warpgroup 0's ``h``-th hand-over to warpgroup 1 through the one P slot: a tile's ``P`` and
        ``alpha``, or (``WITH_P`` False) a piece's ``1 / l``."""
        mbarrier.wait(
            p_empty.index(0), (h & 1) ^ 1
        )  # a fresh barrier passes phase 1: the first does not wait
        if WITH_P:
            p_smem.store(p16)
        scale_smem.store(scale)
        fence_async_shared()
        gl.thread_barrier()  # every warp's stores are in before the one arrival
        mbarrier.arrive(p_full.index(0), count=1)

    @gluon.jit
    def _scores_wg(q0, q1, qr, k0_smem, k1_smem, kr_smem, k_full, p_smem, scale_smem, p_full, p_empty, k_empty,
                   q_ptr, out_ptr, lse_ptr, o_acc_ptr, lse_acc_ptr, seqlens_ptr, parts_ptr, split_offsets_ptr,
                   part, row_block, hk, stride_qb, stride_qs, stride_qh, stride_ob, stride_os, stride_oh, s_q, h_q,
                   h_kv, group, rows, scale_log2):  # fmt: skip
        """Warpgroup 0: scores, softmax, output channels 0-255, and ``lse``."""
        STAGES: gl.constexpr = k0_smem.shape[0]
        dtype: gl.constexpr = q0.dtype
        s_layout: gl.constexpr = gl.NVMMADistributedLayout(
            version=[3, 0], warps_per_cta=[4, 1], instr_shape=[16, 64, 16]
        )
        o_layout: gl.constexpr = gl.NVMMADistributedLayout(
            version=[3, 0], warps_per_cta=[4, 1], instr_shape=[16, 256, 16]
        )
        p_layout: gl.constexpr = gl.DotOperandLayout(operand_index=0, parent=o_layout, k_width=2)
        row_l: gl.constexpr = gl.SliceLayout(1, s_layout)
        begin_req = gl.load(parts_ptr + part * 5 + 0)
        end_req = gl.load(parts_ptr + part * 5 + 2)
        s_zero = gl.zeros([64, 64], gl.float32, layout=s_layout)
        cols = gl.arange(0, 64, layout=gl.SliceLayout(0, s_layout))
        i = 0  # tiles consumed by this CTA: the ring position, as the producer counts it
        h = 0  # hand-overs to warpgroup 1 (each tile's P and alpha, each piece's 1/l): the P slot's phase
        for req in range(begin_req, end_req + 1):
            seqlen, t_begin, t_end, split = _piece(parts_ptr, seqlens_ptr, part, req)
            row, row_ok, s_idx, head = _rows(row_block, hk, group, rows, row_l)
            q_rows = q_ptr + req.to(gl.int64) * stride_qb + s_idx * stride_qs + head * stride_qh
            _load_q(q0, q_rows, row_ok, 0)
            _load_q(q1, q_rows, row_ok, 256)
            if HAS_ROPE:
                _load_q(qr, q_rows, row_ok, 512)
            fence_async_shared()
            gl.thread_barrier()
            if CAUSAL:
                limit = seqlen - s_q + s_idx + 1  # bottom-right: row s sees tokens < limit
                masked_from = seqlen - s_q + 1  # tiles ending at or before this need no mask
            else:
                limit = gl.zeros_like(s_idx) + seqlen
                masked_from = seqlen
            m_i = gl.full([64], -float("inf"), gl.float32, layout=row_l)
            l_i = gl.zeros([64], gl.float32, layout=row_l)
            acc = gl.zeros([64, 256], gl.float32, layout=o_layout)
            if t_end > t_begin:
                # The piece's first tile: S_0 and its softmax, nothing to overlap with yet.
                s_tok = _issue_scores(
                    q0, q1, qr, k0_smem, k1_smem, kr_smem, k_full, i, t_begin * 64, seqlen, s_zero
                )
                s = warpgroup_mma_wait(0, deps=(s_tok,))
                p16, alpha, m_i, l_i = _softmax(
                    s, m_i, l_i, t_begin * 64, limit, masked_from, scale_log2, cols, dtype
                )
                _hand_over(p_smem, scale_smem, p_full, p_empty, p16, alpha, h)
                p_op = gl.convert_layout(p16, p_layout)
                i += 1
                h += 1
                # --8<-- [start:gluon-mla-loop]
                for t in range(t_begin + 1, t_end):
                    prev = (i - 1) % STAGES
                    s_tok = _issue_scores(
                        q0, q1, qr, k0_smem, k1_smem, kr_smem, k_full, i, t * 64, seqlen, s_zero
                    )
                    o_tok = warpgroup_mma(p_op, k0_smem.index(prev), acc, is_async=True)  # P_{t-1} V_{t-1}
                    # wgmma groups retire in order: one outstanding means S_t is done, P_{t-1} V_{t-1} may run on.
                    s = warpgroup_mma_wait(1, deps=(s_tok,))
                    p16, alpha, m_i, l_i = _softmax(
                        s, m_i, l_i, t * 64, limit, masked_from, scale_log2, cols, dtype
                    )
                    _hand_over(p_smem, scale_smem, p_full, p_empty, p16, alpha, h)
                    acc, p_op = warpgroup_mma_wait(0, deps=(o_tok, p_op))
                    mbarrier.arrive(k_empty.index(prev), count=1)
                    acc = acc * gl.convert_layout(alpha, gl.SliceLayout(1, o_layout))[:, None]
                    p_op = gl.convert_layout(p16, p_layout)
                    i += 1
                    h += 1
                # --8<-- [end:gluon-mla-loop]
                last = (i - 1) % STAGES
                o_tok = warpgroup_mma(p_op, k0_smem.index(last), acc, is_async=True)
                acc, p_op = warpgroup_mma_wait(0, deps=(o_tok, p_op))
                mbarrier.arrive(k_empty.index(last), count=1)

            empty = l_i == 0.0  # no visible token in this piece
            inv_l = 1.0 / gl.where(empty, 1.0, l_i)
            # The piece's last hand-over: 1/l, for warpgroup 1's normalisation.
            _hand_over(p_smem, scale_smem, p_full, p_empty, p_smem, inv_l, h, False)
            h += 1

            n_splits, slot_base = _split_slot(split_offsets_ptr, req, split, h_kv, hk)
            row, row_ok, s_idx, head = _rows(row_block, hk, group, rows, row_l)
            _write(acc, inv_l, out_ptr, o_acc_ptr, req, s_idx, head, row, row_ok, 0, stride_ob, stride_os,
                   stride_oh, n_splits, slot_base, rows)  # fmt: skip
            lse = (m_i + gl.log2(gl.where(empty, 1.0, l_i))) * 0.6931471805599453
            if n_splits == 1:  # final: +inf for rows that saw nothing
                lse_ptrs = lse_ptr + (req.to(gl.int64) * h_q + head) * s_q + s_idx
                gl.store(lse_ptrs, gl.where(empty, float("inf"), lse), mask=row_ok)
            else:  # a partial: -inf gives it weight 0 in the combine
                gl.store(lse_acc_ptr + slot_base.to(gl.int64) * rows + row, gl.where(empty, -float("inf"), lse),
                         mask=row_ok)  # fmt: skip

    @gluon.jit
    def _values_wg(q0, q1, qr, k0_smem, k1_smem, kr_smem, k_full, p_smem, scale_smem, p_full, p_empty, k_empty,
                   q_ptr, out_ptr, lse_ptr, o_acc_ptr, lse_acc_ptr, seqlens_ptr, parts_ptr, split_offsets_ptr,
                   part, row_block, hk, stride_qb, stride_qs, stride_qh, stride_ob, stride_os, stride_oh, s_q, h_q,
                   h_kv, group, rows, scale_log2):  # fmt: skip
        """Warpgroup 1: output channels 256-511 from warpgroup 0's probabilities."""
        STAGES: gl.constexpr = k0_smem.shape[0]
        o_layout: gl.constexpr = gl.NVMMADistributedLayout(
            version=[3, 0], warps_per_cta=[4, 1], instr_shape=[16, 256, 16]
        )
        row_l: gl.constexpr = gl.SliceLayout(1, o_layout)
        begin_req = gl.load(parts_ptr + part * 5 + 0)
        end_req = gl.load(parts_ptr + part * 5 + 2)
        i = 0  # as in warpgroup 0
        h = 0
        for req in range(begin_req, end_req + 1):
            _seqlen, t_begin, t_end, split = _piece(parts_ptr, seqlens_ptr, part, req)
            acc = gl.zeros([64, 256], gl.float32, layout=o_layout)
            for _t in range(t_begin, t_end):
                slot = i % STAGES
                mbarrier.wait(p_full.index(0), h & 1)
                mbarrier.wait(k_full.index(slot), (i // STAGES) & 1)  # already complete: for visibility
                alpha = scale_smem.load(row_l)
                acc = acc * alpha[:, None]
                o_tok = warpgroup_mma(p_smem, k1_smem.index(slot), acc, is_async=True)
                acc = warpgroup_mma_wait(0, deps=(o_tok,))
                gl.thread_barrier()  # every warp is done with P and alpha before the slot is handed back
                mbarrier.arrive(p_empty.index(0), count=1)
                mbarrier.arrive(k_empty.index(slot), count=1)
                i += 1
                h += 1
            mbarrier.wait(p_full.index(0), h & 1)
            inv_l = scale_smem.load(row_l)
            gl.thread_barrier()  # every thread has read 1/l before the slot is handed back
            mbarrier.arrive(p_empty.index(0), count=1)
            h += 1
            n_splits, slot_base = _split_slot(split_offsets_ptr, req, split, h_kv, hk)
            row, row_ok, s_idx, head = _rows(row_block, hk, group, rows, row_l)
            _write(acc, inv_l, out_ptr, o_acc_ptr, req, s_idx, head, row, row_ok, 256, stride_ob, stride_os,
                   stride_oh, n_splits, slot_base, rows)  # fmt: skip

    @gluon.jit
    def _decode_kernel(q_ptr, k0_desc, k1_desc, kr_desc, block_table_ptr, seqlens_ptr, parts_ptr,
                       split_offsets_ptr, out_ptr, lse_ptr, o_acc_ptr, lse_acc_ptr,
                       stride_qb, stride_qs, stride_qh, stride_kh, stride_bt, stride_ob, stride_os, stride_oh,
                       s_q, h_q, h_kv, group, rows, page_size, scale_log2,
                       STAGES: gl.constexpr):  # fmt: skip
        part = gl.program_id(0)
        row_block = gl.program_id(1)
        hk = gl.program_id(2)
        dtype: gl.constexpr = q_ptr.dtype.element_ty
        wide: gl.constexpr = gl.NVMMASharedLayout.get_default_for([64, 256], dtype)
        narrow: gl.constexpr = gl.NVMMASharedLayout.get_default_for([64, 64], dtype)
        q0 = gl.allocate_shared_memory(dtype, [64, 256], wide)
        q1 = gl.allocate_shared_memory(dtype, [64, 256], wide)
        qr = gl.allocate_shared_memory(dtype, [64, 64], narrow)
        k0_smem = gl.allocate_shared_memory(dtype, [STAGES, 64, 256], wide)
        k1_smem = gl.allocate_shared_memory(dtype, [STAGES, 64, 256], wide)
        kr_smem = gl.allocate_shared_memory(dtype, [STAGES, 64, 64], narrow)
        p_smem = gl.allocate_shared_memory(dtype, [64, 64], narrow)
        scale_smem = gl.allocate_shared_memory(gl.float32, [64], gl.SwizzledSharedLayout(1, 1, 1, [0]))
        k_full = gl.allocate_shared_memory(gl.int64, [STAGES, 1], mbarrier.MBarrierLayout())
        k_empty = gl.allocate_shared_memory(gl.int64, [STAGES, 1], mbarrier.MBarrierLayout())
        p_full = gl.allocate_shared_memory(gl.int64, [1, 1], mbarrier.MBarrierLayout())
        p_empty = gl.allocate_shared_memory(gl.int64, [1, 1], mbarrier.MBarrierLayout())
        for s in gl.static_range(STAGES):
            mbarrier.init(k_full.index(s), count=1)
            mbarrier.init(k_empty.index(s), count=2)  # both warpgroups release a slot
        mbarrier.init(p_full.index(0), count=1)
        mbarrier.init(p_empty.index(0), count=1)

        args = (q0, q1, qr, k0_smem, k1_smem, kr_smem, k_full, p_smem, scale_smem, p_full, p_empty, k_empty, q_ptr,
                out_ptr, lse_ptr, o_acc_ptr, lse_acc_ptr, seqlens_ptr, parts_ptr, split_offsets_ptr, part, row_block,
                hk, stride_qb, stride_qs, stride_qh, stride_ob, stride_os, stride_oh, s_q, h_q, h_kv, group, rows,
                scale_log2)  # fmt: skip
        producer_args = (k0_desc, k1_desc, kr_desc, k0_smem, k1_smem, kr_smem, k_full, k_empty, block_table_ptr,
                         seqlens_ptr, parts_ptr, part, hk, stride_bt, stride_kh, page_size)  # fmt: skip
        gl.warp_specialize(
            [(_scores_wg, args), (_values_wg, args), (_producer, producer_args)],
            [4, 1],
            [240, 24],  # the producer only computes addresses: its registers go to the consumers
        )

    return _decode_kernel


def dense_decode_gluon(
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
) -> tuple[torch.Tensor, torch.Tensor]:
    """Launch the kernel (then the combine); ``out`` (b, s_q, h_q, 512), ``lse`` (b, h_q, s_q) fp32.

    The schedule must have been made for 64-row, 64-token tiles; the caller has checked
    :func:`gluon_unsupported`.
    """
    from triton.experimental.gluon import language as gl
    from triton.experimental.gluon.nvidia.hopper import TensorDescriptor

    from attn_flashmla.combine import combine_splits
    from attn_flashmla.decode_fwd import cache_matrix, decode_buffers

    _, s_q, h_q, d = q.shape
    h_kv = k_cache.shape[2]
    group = h_q // h_kv
    rows = s_q * group
    out, lse, o_acc, lse_acc = decode_buffers(q, h_kv, total_splits, max_splits, q.dtype)
    if q.stride(-1) != 1:
        q = q.contiguous()
    gl_dtype = gl.bfloat16 if q.dtype == torch.bfloat16 else gl.float16
    shape, strides = cache_matrix(k_cache)
    wide = gl.NVMMASharedLayout.get_default_for([BLOCK_N, D_HALF], gl_dtype)
    narrow = gl.NVMMASharedLayout.get_default_for([BLOCK_N, D_ROPE], gl_dtype)
    k0 = TensorDescriptor(k_cache, shape, strides, [BLOCK_N, D_HALF], wide)
    kr = TensorDescriptor(k_cache, shape, strides, [BLOCK_N, D_ROPE], narrow)
    grid = (parts.shape[0], triton.cdiv(rows, ROWS), h_kv)
    _kernel(causal and s_q > 1, d > D_MAIN)[grid](
        q, k0, k0, kr, block_table, cache_seqlens, parts, split_offsets, out, lse, o_acc, lse_acc,
        q.stride(0), q.stride(1), q.stride(2), k_cache.stride(2), block_table.stride(0),
        out.stride(0), out.stride(1), out.stride(2),
        s_q, h_q, h_kv, group, rows, k_cache.shape[1], softmax_scale * LOG2E,
        STAGES=2,
        num_warps=4,
    )  # fmt: skip
    if max_splits > 1:
        combine_splits(out, lse, o_acc, lse_acc, split_offsets, max_splits, group)
    return out, lse
