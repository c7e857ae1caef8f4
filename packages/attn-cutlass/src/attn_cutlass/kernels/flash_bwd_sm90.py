"""FlashAttention-2 backward for Hopper (sm_90a): dK, dV per key block with wgmma; dQ by fp32 reductions.

One CTA owns ``tile_n = 128`` keys of one (batch, query head) and walks the query blocks of
``tile_m = 64`` rows that can see them. 384 threads: warpgroup 0 produces (one warp issues the TMA
loads: K and V once, then Q and dO per query block into a 2-stage ring), warpgroups 1 and 2 consume,
each owning 64 of the 128 keys. Per query block, everything is computed *transposed* (keys are the
MMA's M, FA3's "SdP swapAB"), so that the 16-bit copies of P^T and dS^T are already the A operands
(from registers) of the dV and dK GEMMs:

* ``S^T = K Q^T`` and ``dP^T = V dO^T`` (wgmma, both operands in shared memory);
* ``P^T = exp2(S^T * scale_log2 - LSE_log2)`` with the forward's LSE (masked entries 0), and
  ``dS^T = P^T * (dP^T - D)`` with ``D = rowsum(dO * O)`` (softcap: times ``1 - tanh^2``);
* ``dV += P^T dO`` and ``dK += dS^T Q`` (A from registers, B = dO / Q read MN-major through a
  transposed view of the same shared memory);
* ``dQ_partial = dS K`` (dS^T written to shared memory, read back as the MN-major A operand; B = K^T
  through a transposed view; the two warpgroups split the head dim), added into an fp32 dQ accumulator
  that the host converts afterwards: by TMA reduce-adds of the tile per query block from a shared-memory
  tile stored without bank conflicts (``dq_reduce="tma"``, the interface's default at hd64: tensor-map
  boxes into a row-major accumulator; ``"bulk"``, FA3's layout and the default at hd128: the accumulator
  stored tile by tile in the MMA's order, one contiguous reduce-add per warpgroup), or by per-thread
  ``red.global.add.f32``
  (``"atomic"``; varlen always).

Two orders of that work (``schedule``), both GPU-validated. ``"overlap"`` (the default, FA3/FA4's order):
P^T is computed while dP^T is in flight, dS^T while dV is, dQ's epilogue while dK is; dS^T leaves by
``stmatrix`` into one of two buffers, so the warpgroups meet once a step, and each warpgroup hands its own
half of dQ to the TMA unit behind a barrier of its own. ``"serial"``: both GEMMs of S^T and dP^T are
waited for before P^T and dS^T, dV/dK/dQ before dQ leaves, and the warpgroups meet at three barriers a
step (1.04-1.13x slower on the H200, 2026-12-06).

LSE and D come from global memory (L2). With ``stats_ahead`` (opt-in: no gain measured on an H100,
2026-12-07) "overlap" prefetches the next query block's lines into L1 during the current block.

dK is scaled by the softmax scale at the end, each query block's dQ before it is added (the host only
converts the fp32 dQ accumulator; with "bulk" the host's un-permuting pass scales it instead). K/V rows
are indexed by the KV head (GQA); dK/dV are written per *query* head and the host sums each group. Masks: causal, sliding window,
seqlen edges (varlen: neighbouring sequences), flash-attn's bottom-right convention, applied only to the
(query block, key block) pairs that cross a boundary. Head dims 64 and 128.
"""

from __future__ import annotations

import cuda.bindings.driver as cuda
import cutlass
import cutlass.cute as cute
import cutlass.pipeline as pipeline
import cutlass.utils.hopper_helpers as sm90_utils
from cutlass import Float32, Int32, const_expr
from cutlass._mlir.dialects import llvm
from cutlass.cute.nvgpu import cpasync, warp, warpgroup
from cutlass.cutlass_dsl import dsl_user_op
from cutlass.memory import SmemAllocator
from cutlass.tensor_utils import LayoutEnum

from .softmax import acc_as_operand_a_layout, rowcol_layout

_DQ_BARRIER = 1  # named barrier of the 256 consumer threads around the shared dS tile
_DQ_WG_BARRIER = 2  # "overlap": 2 + warpgroup, a consumer warpgroup's own barrier around its dQ tile

BWD_HEAD_DIMS = (64, 128)
BWD_SCHEDULES = ("serial", "overlap")
BWD_DQ_REDUCES = ("atomic", "tma", "bulk")


def dq_accum_shape(batch: int, heads: int, seqlen_q: int, head_dim: int, tile_m: int = 64) -> tuple:
    """The fp32 dQ accumulator of ``dq_reduce="bulk"``: ``(batch, heads, query tiles, tile_m * head_dim)``,
    each tile stored as its two head-dim halves, each half in the order of the dQ GEMM's accumulator
    (see :func:`dq_accum_copy_rows`)."""
    return (batch, heads, -(-seqlen_q // tile_m), tile_m * head_dim)


def dq_accum_copy_rows(acc, out, scale: float = 1.0):
    """``out`` (``(b, m * 64, h, d)``, any float dtype) <- ``scale`` times the ``dq_reduce="bulk"``
    accumulator ``acc`` (``(b, h, m, 64 * d)`` fp32), in one elementwise pass. The kernel leaves the
    softmax scale to this pass, where it costs nothing.

    Within a head-dim half (warpgroup g), the consumer thread ``t = 32 w + 4 a + c`` (warp w, lane 4a + c)
    stores its d/4 values ``v = i + 2 r + 4 j`` (i, r in {0, 1}, j < d/16) 128 bits at a time at
    ``512 j + 4 t + (i + 2 r)``: that is wgmma's accumulator, row ``16 w + 8 r + a``, column
    ``d/2 g + 8 j + 2 c + i``. So the flat index splits into (g, j, w, a, c, r, i)."""
    import torch

    b, h, m, tile = acc.shape
    d = tile // 64
    parts = acc.view(b, h, m, 2, d // 16, 4, 8, 4, 2, 2)  # (b, h, m, g, j, w, a, c, r, i)
    rows = out.view(b, m, 4, 2, 8, h, 2, d // 16, 4, 2)  # (b, m, w, r, a, h, g, j, c, i)
    torch.mul(parts.permute(0, 2, 5, 8, 6, 1, 3, 4, 7, 9), scale, out=rows)
    return out


@dsl_user_op
def _bulk_reduce_add_f32(gmem: cute.Pointer, smem: cute.Pointer, nbytes: int, *, loc=None, ip=None):
    """``cp.reduce.async.bulk ... add.f32``: ``nbytes`` of fp32 in shared memory added into global memory
    by the TMA unit, as one contiguous run (no tensor map), completed by the thread's bulk group."""
    llvm.inline_asm(
        None,
        [
            gmem.llvm_ptr,
            smem.toint(loc=loc, ip=ip).ir_value(loc=loc, ip=ip),
            Int32(nbytes).ir_value(loc=loc, ip=ip),
        ],
        "cp.reduce.async.bulk.global.shared::cta.bulk_group.add.f32 [$0], [$1], $2;",
        "l,r,r",
        has_side_effects=True,
        loc=loc,
        ip=ip,
    )


def _permute(t: cute.Tensor, order) -> cute.Tensor:
    return cute.make_tensor(
        t.iterator,
        cute.make_layout(tuple(t.shape[i] for i in order), stride=tuple(t.stride[i] for i in order)),
    )


def _transposed(mem, layout: cute.ComposedLayout, swizzle=None):
    """The same shared memory read with modes 0 and 1 swapped (a K-major operand seen as MN-major)."""
    outer = layout.outer
    modes = [1, 0, *range(2, cute.rank(outer))]
    return mem.get_tensor(cute.select(outer, mode=modes), swizzle=layout.inner)


class FlashAttentionBackwardSm90:
    arch = "sm_90a"
    num_consumer_wgs = 2
    threads = 128 * (1 + num_consumer_wgs)

    def __init__(
        self,
        dtype,
        head_dim: int,
        *,
        causal: bool = False,
        has_left_window: bool = False,
        has_right_window: bool = False,
        has_softcap: bool = False,
        varlen: bool = False,
        dq_reduce: str = "atomic",
        schedule: str = "overlap",
        stats_ahead: bool = False,
    ):
        if head_dim not in BWD_HEAD_DIMS:
            raise ValueError(f"the sm90 backward supports head dims {BWD_HEAD_DIMS}, got {head_dim}")
        if dq_reduce not in BWD_DQ_REDUCES or (dq_reduce != "atomic" and varlen):
            raise ValueError(f"dq_reduce must be 'atomic' or (not varlen) 'tma' or 'bulk', got {dq_reduce!r}")
        if schedule not in BWD_SCHEDULES:
            raise ValueError(f"schedule must be one of {BWD_SCHEDULES}, got {schedule!r}")
        self.dtype = dtype
        self.head_dim = head_dim
        self.tile_m = 64  # query rows per step (the N of S^T)
        self.tile_n = 128  # keys per CTA (the M of S^T: 64 per consumer warpgroup)
        self.stages = 2
        self.has_right = causal or has_right_window
        self.has_left = has_left_window
        self.has_softcap = has_softcap
        self.varlen = varlen
        # dQ: "atomic" (each consumer thread adds its 32 fp32 values with red.global), or through shared
        # memory and the TMA unit's reduce-adds in L2: "tma" into the row-major (b, s, h, d) accumulator by
        # tensor-map boxes, "bulk" (FA3's layout) into an accumulator stored tile by tile in the
        # accumulator's own order (dq_accum_copy_rows), one contiguous reduce-add per warpgroup and block.
        self.dq_smem = dq_reduce != "atomic"
        self.dq_tma = dq_reduce == "tma"
        self.dq_bulk = dq_reduce == "bulk"
        # "serial": each step waits for all its GEMMs before the next stage of work, and the two warpgroups
        # meet at three barriers a step. "overlap" (FA3's order, the default): P^T is
        # computed while dP^T is in flight and dS^T while dV is; dS^T has two shared-memory buffers, so one
        # barrier a step is left between the warpgroups; each warpgroup hands its half of dQ to the TMA
        # unit alone. With softcap, P^T and dS^T are still computed together (dS needs tanh' of S, which
        # the in-place P^T overwrote), after both GEMMs.
        self.overlap = schedule == "overlap"
        self.split_softmax = self.overlap and not has_softcap
        # split_softmax: the L1 lines of the next query block's LSE and D are prefetched during this one.
        # The statistics come from L2, and the S^T GEMM's ~500 cycles between an LSE load and its use may
        # not cover that latency; registers to hold them a whole step ahead there are none (hd128 spills).
        self.stats_ahead = stats_ahead
        self.ds_stages = 2 if self.overlap else 1

    # ---------------------------------------------------------------------------------------- host
    @cute.jit
    def __call__(
        self,
        mQ: cute.Tensor,  # (b, s_q, h, d) or varlen (total_q, h, d)
        mK: cute.Tensor,  # (b, s_k, h_k, d) or (total_k, h_k, d)
        mV: cute.Tensor,
        mdO: cute.Tensor,  # like mQ
        mLSE: cute.Tensor,  # (b, h, s_q_pad) fp32, LSE * log2(e), +inf past the end; varlen (h, total_pad)
        mD: cute.Tensor,  # like mLSE: rowsum(dO * O), 0 past the end
        mdQacc: cute.Tensor,  # (b, s_q_pad, h, d) fp32 zeros, "bulk" dq_accum_shape(); varlen (total_pad, h, d)
        mdK: cute.Tensor,  # (b, s_k, h, d) per query head; varlen (total_k, h, d)
        mdV: cute.Tensor,
        mCuSeqlensQ: cute.Tensor,
        mCuSeqlensK: cute.Tensor,
        scale_log2: Float32,  # softmax scale * log2(e), or log2(e) with softcap
        softcap_pre: Float32,  # softmax scale / softcap
        softcap: Float32,
        softmax_scale: Float32,
        window_left: Int32,
        window_right: Int32,
        qhead_per_kvhead: Int32,
        num_n_blocks: Int32,
        num_heads: Int32,
        num_batch: Int32,
        stream: cuda.CUstream,
    ):
        if const_expr(self.varlen):
            q, k, v, do = (_permute(t, (0, 2, 1)) for t in (mQ, mK, mV, mdO))  # (total, d, h)
            dqacc, dk, dv = (_permute(t, (0, 2, 1)) for t in (mdQacc, mdK, mdV))
            lse, dd = (_permute(t, (1, 0)) for t in (mLSE, mD))  # (total, h)
        else:
            q, k, v, do = (_permute(t, (1, 3, 2, 0)) for t in (mQ, mK, mV, mdO))  # (s, d, h, b)
            dqacc, dk, dv = (_permute(t, (1, 3, 2, 0)) for t in (mdQacc, mdK, mdV))
            if const_expr(self.dq_bulk):
                dqacc = _permute(mdQacc, (3, 2, 1, 0))  # (tm * d, m, h, b)
            lse, dd = (_permute(t, (2, 1, 0)) for t in (mLSE, mD))  # (s, h, b)

        tm, tn, hd = self.tile_m, self.tile_n, self.head_dim
        K_MAJOR, MN_MAJOR = warpgroup.OperandMajorMode.K, warpgroup.OperandMajorMode.MN
        # S^T and dP^T: (keys, queries), K = head dim; the two warpgroups stacked along the keys.
        mma_sdp = sm90_utils.make_trivial_tiled_mma(
            self.dtype, self.dtype, K_MAJOR, K_MAJOR, Float32, (2, 1, 1), (64, tm)
        )
        # dV, dK: (keys, head dim), K = queries; A (P^T, dS^T) from registers, B (dO, Q) MN-major.
        mma_dkv = sm90_utils.make_trivial_tiled_mma(
            self.dtype,
            self.dtype,
            K_MAJOR,
            MN_MAJOR,
            Float32,
            (2, 1, 1),
            (64, hd),
            warpgroup.OperandSource.RMEM,
        )
        # dQ: (queries, head dim), K = keys; A = dS from shared memory (queries contiguous), B = K^T.
        # The warpgroups split the head dim.
        mma_dq = sm90_utils.make_trivial_tiled_mma(
            self.dtype, self.dtype, MN_MAJOR, MN_MAJOR, Float32, (1, 2, 1), (64, hd // 2)
        )
        # K, V: A operands (keys, d) K-major. Q, dO: B operands (queries, d) K-major, staged.
        sK_layout = sm90_utils.make_smem_layout_a(LayoutEnum.ROW_MAJOR, (tn, tm, hd), self.dtype, 1)
        sQ_layout = sm90_utils.make_smem_layout_b(LayoutEnum.ROW_MAJOR, (tn, tm, hd), self.dtype, self.stages)
        # dS: the A operand (queries, keys) of dQ, queries contiguous.
        sdS_layout = sm90_utils.make_smem_layout_a(
            LayoutEnum.COL_MAJOR, (tm, hd, tn), self.dtype, self.ds_stages
        )

        g2s = cpasync.CopyBulkTensorTileG2SOp()
        kv_smem = cute.slice_(sK_layout, (None, None, 0))
        q_smem = cute.slice_(sQ_layout, (None, None, 0))
        tma_atom_k, tma_k = cpasync.make_tiled_tma_atom(g2s, k, kv_smem, (tn, hd))
        tma_atom_v, tma_v = cpasync.make_tiled_tma_atom(g2s, v, kv_smem, (tn, hd))
        tma_atom_q, tma_q = cpasync.make_tiled_tma_atom(g2s, q, q_smem, (tm, hd))
        tma_atom_do, tma_do = cpasync.make_tiled_tma_atom(g2s, do, q_smem, (tm, hd))
        # dQ tile in shared memory (fp32), the source of the TMA reduce-add ("tma" only; the atomic build
        # passes Q's descriptor in its place and never uses it): two (tm, hd/2) halves, one per consumer
        # warpgroup (the two split dQ's head dim), each added by reduce-adds of its own. Each half is
        # stored as columns of 8 values (32 bytes a row), one column block after another: a warp's 64-bit
        # stores then cover 256 contiguous bytes, where in a row-major tile its eight rows would sit a
        # multiple of 128 bytes apart in the same banks (a 4-way conflict on each of the 16 stores per
        # thread and query block, in a loop whose wgmma operands keep shared memory busy already). A
        # 128-byte swizzle is conflict-free as well, but it makes every store's address a register of
        # its own (8 a thread), and ptxas then spills in the causal and serial builds. The TMA box is
        # then 8 columns wide: hd/16 reduce-adds per half.
        sdQ_layout = cute.make_layout((tm, (8, hd // 16), 2), stride=(8, (1, 8 * tm), tm * hd // 2))
        tma_atom_dq, tma_dq = tma_atom_q, tma_q
        if const_expr(self.dq_tma):
            tma_atom_dq, tma_dq = cpasync.make_tiled_tma_atom(
                cpasync.CopyReduceBulkTensorTileS2GOp(),
                dqacc,
                cute.select(sdQ_layout, mode=[0, 1]),
                (tm, hd // 2),
            )
        self.shared_storage = self._shared_storage(sK_layout, sQ_layout, sdS_layout, cute.cosize(sdQ_layout))
        self.kernel(
            tma_atom_q,
            tma_q,
            tma_atom_k,
            tma_k,
            tma_atom_v,
            tma_v,
            tma_atom_do,
            tma_do,
            tma_atom_dq,
            tma_dq,
            lse,
            dd,
            dqacc,
            dk,
            dv,
            mCuSeqlensQ,
            mCuSeqlensK,
            mma_sdp,
            mma_dkv,
            mma_dq,
            sK_layout,
            sQ_layout,
            sdS_layout,
            sdQ_layout,
            scale_log2,
            softcap_pre,
            softcap,
            softmax_scale,
            window_left,
            window_right,
            qhead_per_kvhead,
        ).launch(
            grid=(num_n_blocks, num_heads, num_batch),
            block=(self.threads, 1, 1),
            stream=stream,
            min_blocks_per_mp=1,
        )

    def _shared_storage(self, sK_layout, sQ_layout, sdS_layout, sdQ_cosize: int):
        """The CTA's shared memory; with the TMA dQ reduction also the fp32 dQ tile. Built from an explicit
        field table: this module's postponed annotations would reach ``cute.struct`` as strings."""

        def buf(dtype, n):
            return cute.struct.Align[cute.struct.MemRange[dtype, n], 1024]

        fields = {
            "mbar_kv": cute.struct.MemRange[cutlass.Int64, 2],
            "mbar_q": cute.struct.MemRange[cutlass.Int64, 2 * self.stages],
            "sK": buf(self.dtype, cute.cosize(sK_layout)),
            "sV": buf(self.dtype, cute.cosize(sK_layout)),
            "sQ": buf(self.dtype, cute.cosize(sQ_layout)),
            "sdO": buf(self.dtype, cute.cosize(sQ_layout)),
            "sdS": buf(self.dtype, cute.cosize(sdS_layout)),
        }
        if self.dq_smem:
            fields["sdQ"] = buf(Float32, sdQ_cosize)
        return cute.struct(type("SharedStorage", (), {"__annotations__": fields}))

    # -------------------------------------------------------------------------------------- device
    @cute.jit
    def _seqlens(
        self, batch: Int32, dqacc: cute.Tensor, dk: cute.Tensor, mCuQ: cute.Tensor, mCuK: cute.Tensor
    ):
        if const_expr(self.varlen):
            off_q, off_k = mCuQ[batch], mCuK[batch]
            return off_q, mCuQ[batch + 1] - off_q, off_k, mCuK[batch + 1] - off_k
        # Not varlen: dK's extent is seqlen_k; seqlen_q comes from Q (the host passes it via the TMA tensor).
        return Int32(0), Int32(0), Int32(0), Int32(dk.shape[0])

    @cute.jit
    def _m_block_range(self, n_block: Int32, seqlen_q: Int32, seqlen_k: Int32, wl: Int32, wr: Int32):
        """Query blocks [m_min, m_max) with some row that sees some key of this key block.

        Query i sees key j iff i + shift - wl <= j <= i + shift + wr (shift = seqlen_k - seqlen_q):
        the block's keys [k_lo, k_hi] are seen by rows k_lo - shift - wr ... k_hi - shift + wl.
        """
        shift = seqlen_k - seqlen_q
        m_max = (seqlen_q + self.tile_m - 1) // self.tile_m
        m_min = Int32(0)
        if const_expr(self.has_right):
            first_row = n_block * self.tile_n - shift - wr
            m_min = cutlass.max(first_row, 0) // self.tile_m
        if const_expr(self.has_left):
            k_hi = cutlass.min(n_block * self.tile_n + self.tile_n, seqlen_k) - 1
            rows_end = cutlass.max(k_hi - shift + wl + 1, 0)
            m_max = cutlass.min(m_max, (rows_end + self.tile_m - 1) // self.tile_m)
        return m_min, m_max

    @cute.jit
    def _needs_mask(
        self, m_block: Int32, n_block: Int32, seqlen_q: Int32, seqlen_k: Int32, wl: Int32, wr: Int32
    ):
        need = Int32(0)
        shift = seqlen_k - seqlen_q
        if (n_block + 1) * self.tile_n > seqlen_k or (m_block + 1) * self.tile_m > seqlen_q:
            need = Int32(1)
        if const_expr(self.has_right):  # noqa: SIM102
            if (n_block + 1) * self.tile_n - 1 > m_block * self.tile_m + shift + wr:
                need = Int32(1)
        if const_expr(self.has_left):  # noqa: SIM102
            if n_block * self.tile_n < (m_block + 1) * self.tile_m - 1 + shift - wl:
                need = Int32(1)
        return need

    @cute.jit
    def _gemm(
        self, tiled_mma: cute.TiledMma, acc: cute.Tensor, tA: cute.Tensor, tB: cute.Tensor, zero_init: bool
    ):
        atom = cute.make_mma_atom(tiled_mma.op)
        atom.set(warpgroup.Field.ACCUMULATE, not zero_init)
        for kb in cutlass.range_constexpr(cute.size(tA, mode=[2])):
            cute.gemm(atom, acc, tA[None, None, kb], tB[None, None, kb], acc)
            atom.set(warpgroup.Field.ACCUMULATE, True)

    @cute.kernel
    def kernel(
        self,
        tma_atom_q: cute.CopyAtom,
        tma_q: cute.Tensor,
        tma_atom_k: cute.CopyAtom,
        tma_k: cute.Tensor,
        tma_atom_v: cute.CopyAtom,
        tma_v: cute.Tensor,
        tma_atom_do: cute.CopyAtom,
        tma_do: cute.Tensor,
        tma_atom_dq: cute.CopyAtom,
        tma_dq: cute.Tensor,
        mLSE: cute.Tensor,
        mD: cute.Tensor,
        mdQacc: cute.Tensor,
        mdK: cute.Tensor,
        mdV: cute.Tensor,
        mCuQ: cute.Tensor,
        mCuK: cute.Tensor,
        mma_sdp: cute.TiledMma,
        mma_dkv: cute.TiledMma,
        mma_dq: cute.TiledMma,
        sK_layout: cute.ComposedLayout,
        sQ_layout: cute.ComposedLayout,
        sdS_layout: cute.ComposedLayout,
        sdQ_layout: cute.Layout,
        scale_log2: Float32,
        softcap_pre: Float32,
        softcap: Float32,
        softmax_scale: Float32,
        window_left: Int32,
        window_right: Int32,
        qhead_per_kvhead: Int32,
    ):
        tidx, _, _ = cute.arch.thread_idx()
        n_block, head, batch = cute.arch.block_idx()
        warp_idx = cute.arch.make_warp_uniform(cute.arch.warp_idx())
        wg_idx = cute.arch.make_warp_uniform(tidx // 128)
        tm, tn, hd = self.tile_m, self.tile_n, self.head_dim
        head_kv = head // qhead_per_kvhead

        smem = SmemAllocator()
        storage = smem.allocate(self.shared_storage)
        one_cta = cute.make_layout((1, 1, 1, 1))
        producer = pipeline.CooperativeGroup(pipeline.Agent.Thread)
        consumers = pipeline.CooperativeGroup(pipeline.Agent.Thread, 4 * self.num_consumer_wgs)
        kv_bytes = cute.size_in_bytes(self.dtype, cute.slice_(sK_layout, (None, None, 0)))
        q_bytes = cute.size_in_bytes(self.dtype, cute.slice_(sQ_layout, (None, None, 0)))
        pipe_kv = pipeline.PipelineTmaAsync.create(
            barrier_storage=storage.mbar_kv.data_ptr(),
            num_stages=1,
            producer_group=producer,
            consumer_group=consumers,
            tx_count=2 * kv_bytes,
            cta_layout_vmnk=one_cta,
            defer_sync=True,
        )
        pipe_q = pipeline.PipelineTmaAsync.create(
            barrier_storage=storage.mbar_q.data_ptr(),
            num_stages=self.stages,
            producer_group=producer,
            consumer_group=consumers,
            tx_count=2 * q_bytes,
            cta_layout_vmnk=one_cta,
            defer_sync=True,
        )
        pipeline.pipeline_init_arrive()
        pipeline.pipeline_init_wait()

        sK = storage.sK.get_tensor(sK_layout.outer, swizzle=sK_layout.inner)
        sV = storage.sV.get_tensor(sK_layout.outer, swizzle=sK_layout.inner)
        sQ = storage.sQ.get_tensor(sQ_layout.outer, swizzle=sQ_layout.inner)
        sdO = storage.sdO.get_tensor(sQ_layout.outer, swizzle=sQ_layout.inner)
        sdS = storage.sdS.get_tensor(sdS_layout.outer, swizzle=sdS_layout.inner)
        # Transposed views of the same bytes: Q^T, dO^T as MN-major B of dK/dV, K^T as B of dQ, and dS^T
        # (keys, queries) to write dS in the accumulator layout of S^T.
        sQt = _transposed(storage.sQ, sQ_layout)
        sdOt = _transposed(storage.sdO, sQ_layout)
        sKt = _transposed(storage.sK, sK_layout)
        sdSt = _transposed(storage.sdS, sdS_layout)

        off_q, seqlen_q, off_k, seqlen_k = self._seqlens(batch, mdQacc, mdK, mCuQ, mCuK)
        if const_expr(not self.varlen):
            seqlen_q = Int32(tma_q.shape[0])
        m_min, m_max = self._m_block_range(n_block, seqlen_q, seqlen_k, window_left, window_right)
        active = n_block * tn < seqlen_k

        if const_expr(self.varlen):
            gQ = cute.domain_offset((off_q, 0), tma_q[None, None, head])
            gdO = cute.domain_offset((off_q, 0), tma_do[None, None, head])
            gK = cute.domain_offset((off_k, 0), tma_k[None, None, head_kv])
            gV = cute.domain_offset((off_k, 0), tma_v[None, None, head_kv])
        else:
            gQ = tma_q[None, None, head, batch]
            gdO = tma_do[None, None, head, batch]
            gK = tma_k[None, None, head_kv, batch]
            gV = tma_v[None, None, head_kv, batch]

        if wg_idx == 0:
            # ---------------------------------------------------------------------- producer
            cute.arch.setmaxregister_decrease(24)
            if warp_idx == 0 and active and m_max > m_min:
                cpasync.prefetch_descriptor(tma_atom_q)
                cpasync.prefetch_descriptor(tma_atom_k)
                cpasync.prefetch_descriptor(tma_atom_v)
                cpasync.prefetch_descriptor(tma_atom_do)
                gQt = cute.local_tile(gQ, (tm, hd), (None, 0))  # (tm, d, m)
                gdOt = cute.local_tile(gdO, (tm, hd), (None, 0))
                gKt = cute.local_tile(gK, (tn, hd), (n_block, 0))
                gVt = cute.local_tile(gV, (tn, hd), (n_block, 0))
                one = cute.make_layout(1)
                tKsK, tKgK = cpasync.tma_partition(
                    tma_atom_k, 0, one, cute.group_modes(sK, 0, 2), cute.group_modes(gKt, 0, 2)
                )
                tVsV, tVgV = cpasync.tma_partition(
                    tma_atom_v, 0, one, cute.group_modes(sV, 0, 2), cute.group_modes(gVt, 0, 2)
                )
                tQsQ, tQgQ = cpasync.tma_partition(
                    tma_atom_q, 0, one, cute.group_modes(sQ, 0, 2), cute.group_modes(gQt, 0, 2)
                )
                tOsO, tOgO = cpasync.tma_partition(
                    tma_atom_do, 0, one, cute.group_modes(sdO, 0, 2), cute.group_modes(gdOt, 0, 2)
                )
                st_kv = pipeline.make_pipeline_state(pipeline.PipelineUserType.Producer, 1)
                pipe_kv.producer_acquire(st_kv)
                bar = pipe_kv.producer_get_barrier(st_kv)
                cute.copy(tma_atom_k, tKgK, tKsK[None, 0], tma_bar_ptr=bar)
                cute.copy(tma_atom_v, tVgV, tVsV[None, 0], tma_bar_ptr=bar)
                st = pipeline.make_pipeline_state(pipeline.PipelineUserType.Producer, self.stages)
                for m_block in cutlass.range(m_min, m_max, unroll=1):
                    pipe_q.producer_acquire(st)
                    bar = pipe_q.producer_get_barrier(st)
                    cute.copy(tma_atom_q, tQgQ[None, m_block], tQsQ[None, st.index], tma_bar_ptr=bar)
                    cute.copy(tma_atom_do, tOgO[None, m_block], tOsO[None, st.index], tma_bar_ptr=bar)
                    st.advance()
        else:
            # --------------------------------------------------------------------- consumers
            cute.arch.setmaxregister_increase(240)
            ctid = tidx - 128
            thr_sdp = mma_sdp.get_slice(ctid)
            thr_dkv = mma_dkv.get_slice(ctid)
            thr_dq = mma_dq.get_slice(ctid)
            # The shared-memory operands are the warpgroup's, the same for its 128 threads. "overlap" slices
            # them by the warpgroup's first thread, a warp-uniform value, so that their descriptors stay in
            # uniform registers (by ctid ptxas builds them in ordinary ones: 51 R2UR in this kernel, and the
            # causal atomic build spills 32 bytes); "serial" keeps ctid, as it was validated.
            op_tid = (wg_idx - 1) * 128 if const_expr(self.overlap) else ctid
            op_sdp, op_dkv, op_dq = (
                mma_sdp.get_slice(op_tid),
                mma_dkv.get_slice(op_tid),
                mma_dq.get_slice(op_tid),
            )
            tSrK = op_sdp.make_fragment_A(op_sdp.partition_A(sK))  # (MMA, MMA_M, MMA_K, 1)
            tSrV = op_sdp.make_fragment_A(op_sdp.partition_A(sV))
            tSrQ = op_sdp.make_fragment_B(op_sdp.partition_B(sQ))  # (MMA, MMA_N, MMA_K, stages)
            tSrdO = op_sdp.make_fragment_B(op_sdp.partition_B(sdO))
            tKVrQt = op_dkv.make_fragment_B(op_dkv.partition_B(sQt))  # (MMA, MMA_N=d, MMA_K=q, stages)
            tKVrdOt = op_dkv.make_fragment_B(op_dkv.partition_B(sdOt))
            tQrdS = op_dq.make_fragment_A(op_dq.partition_A(sdS))  # (MMA, MMA_M=q, MMA_K=keys, stages)
            tQrKt = op_dq.make_fragment_B(op_dq.partition_B(sKt))  # (MMA, MMA_N=d, MMA_K=keys, 1)

            acc_S = thr_sdp.make_fragment_C(thr_sdp.partition_shape_C((tn, tm)))
            acc_dP = thr_sdp.make_fragment_C(thr_sdp.partition_shape_C((tn, tm)))
            acc_dV = thr_dkv.make_fragment_C(thr_dkv.partition_shape_C((tn, hd)))
            acc_dK = thr_dkv.make_fragment_C(thr_dkv.partition_shape_C((tn, hd)))
            acc_dQ = thr_dq.make_fragment_C(thr_dq.partition_shape_C((tm, hd)))
            rP = cute.make_rmem_tensor_like(acc_S, self.dtype)
            rdS = cute.make_rmem_tensor_like(acc_dP, self.dtype)
            tKVrP = cute.make_tensor(rP.iterator, acc_as_operand_a_layout(acc_S.layout))
            tKVrdS = cute.make_tensor(rdS.iterator, acc_as_operand_a_layout(acc_dP.layout))
            s_rc = cute.make_tensor(acc_S.iterator, rowcol_layout(acc_S.layout))
            dp_rc = cute.make_tensor(acc_dP.iterator, rowcol_layout(acc_dP.layout))
            tScS = thr_sdp.partition_C(cute.make_identity_tensor((tn, tm)))  # (key, query) coordinates
            c_rc = cute.make_tensor(tScS.iterator, rowcol_layout(tScS.layout))
            tSsdS = thr_sdp.partition_C(sdSt)  # where this thread's dS^T values go in shared memory
            if const_expr(self.overlap):
                # "overlap": dS^T leaves by stmatrix, four 8x8 tiles an instruction (rows of S^T are keys,
                # and each key's queries are contiguous in sdS) instead of one 16-bit store per value.
                r2s_dS = cute.make_tiled_copy_C(
                    cute.make_copy_atom(warp.StMatrix8x8x16bOp(transpose=False, num_matrices=4), self.dtype),
                    mma_sdp,
                )
                thr_r2s_dS = r2s_dS.get_slice(ctid)
                tRsdS = thr_r2s_dS.partition_D(sdSt)  # (CPY, CPY_M, CPY_N, stages)
                tRrdS = thr_r2s_dS.retile(rdS)
            acc_dV.fill(0.0)
            acc_dK.fill(0.0)
            nthr = 128 * self.num_consumer_wgs

            if const_expr(self.varlen):
                gLSE = cute.domain_offset((off_q,), mLSE[None, head])
                gD = cute.domain_offset((off_q,), mD[None, head])
                gdQ = cute.domain_offset((off_q, 0), mdQacc[None, None, head])
            else:
                gLSE = mLSE[None, head, batch]
                gD = mD[None, head, batch]
                gdQ = mdQacc[None, None, head, batch]

            if const_expr(self.dq_tma):
                # this thread's dQ values go to shared memory by 64-bit stores (the pairs of columns the
                # accumulator holds), into the (tm, hd) tile that the two halves make side by side
                sdQ_halves = storage.sdQ.get_tensor(sdQ_layout)  # (tm, d/2, 2)
                sdQ = storage.sdQ.get_tensor(cute.group_modes(sdQ_layout, 1, 3))
                r2s_dQ = cute.make_tiled_copy_C(
                    cute.make_copy_atom(cute.nvgpu.CopyUniversalOp(), Float32, num_bits_per_copy=64), mma_dq
                )
                thr_r2s_dQ = r2s_dQ.get_slice(ctid)
                dq_r2s = (r2s_dQ, thr_r2s_dQ.retile(acc_dQ), thr_r2s_dQ.partition_D(sdQ))
                gdQt = cute.local_tile(
                    tma_dq[None, None, head, batch], (tm, hd // 2), (None, None)
                )  # (tm, d/2, m, 2)
                tdQsdQ, tdQgdQ = cpasync.tma_partition(  # (TMA, half), (TMA, m, half)
                    tma_atom_dq,
                    0,
                    cute.make_layout(1),
                    cute.group_modes(sdQ_halves, 0, 2),
                    cute.group_modes(gdQt, 0, 2),
                )
            if const_expr(self.dq_bulk):
                # This thread's dQ values go 128 bits at a time into its warpgroup's half of the tile, at
                # 512 j + 4 t (t: the thread in the warpgroup): each store of a warp covers 512 contiguous
                # bytes, no bank conflict. The half is then one contiguous run, stored in the global
                # accumulator the same way (dq_accum_copy_rows), so one reduce-add moves it.
                half = tm * hd // 2
                tdQsdQ = storage.sdQ.get_tensor(cute.make_layout((half, 2)))  # (tile half, half)
                tdQgdQ = gdQ  # (tm * d, m)
                mine = tdQsdQ[None, wg_idx - 1].iterator + 4 * (ctid % 128)
                mine = cute.make_ptr(Float32, mine.toint(), cute.AddressSpace.smem, assumed_align=16)
                chunks = cute.make_layout((4, half // 512), stride=(1, 512))
                dq_r2s = (
                    cute.make_tensor(acc_dQ.iterator, cute.make_layout((4, half // 512))),
                    cute.make_tensor(mine, chunks),
                )
            if active and m_max > m_min:
                st_kv = pipeline.make_pipeline_state(pipeline.PipelineUserType.Consumer, 1)
                pipe_kv.consumer_wait(st_kv)
                st = pipeline.make_pipeline_state(pipeline.PipelineUserType.Consumer, self.stages)
                for m_block in cutlass.range(m_min, m_max, unroll=1):
                    pipe_q.consumer_wait(st)
                    warpgroup.fence()
                    self._gemm(
                        mma_sdp, acc_S, tSrK[None, None, None, 0], tSrQ[None, None, None, st.index], True
                    )
                    warpgroup.commit_group()
                    self._gemm(
                        mma_sdp, acc_dP, tSrV[None, None, None, 0], tSrdO[None, None, None, st.index], True
                    )
                    warpgroup.commit_group()
                    # where this step's P^T and dS^T are masked, and how they are scaled
                    step = (
                        m_block,
                        n_block,
                        seqlen_q,
                        seqlen_k,
                        window_left,
                        window_right,
                        scale_log2,
                        softcap_pre,
                        softcap,
                    )
                    # --8<-- [start:bwd-overlap]
                    if const_expr(self.overlap):
                        # FA3's order: P^T while dP^T is in flight, dS^T while dV is, one barrier a step.
                        pds = m_block % 2  # the dS^T buffer of this step (the other is the last step's)
                        if const_expr(self.split_softmax):
                            if const_expr(self.stats_ahead):
                                self._prefetch_stats(gLSE, gD, cutlass.min(m_block + 1, m_max - 1))
                            # each statistic is loaded a phase before it is used, beside a GEMM in flight
                            rLSE = self._per_query(gLSE, c_rc, m_block)
                            warpgroup.wait_group(1)  # S^T is in, dP^T still in flight
                            self._p_and_ds(s_rc, dp_rc, c_rc, rLSE, rLSE, step, "p")
                            rD = self._per_query(gD, c_rc, m_block)
                            rP.store(acc_S.load().to(self.dtype))
                            warpgroup.fence()
                            self._gemm(mma_dkv, acc_dV, tKVrP, tKVrdOt[None, None, None, st.index], False)
                            warpgroup.commit_group()
                            warpgroup.wait_group(1)  # dP^T is in, dV still in flight
                            self._p_and_ds(s_rc, dp_rc, c_rc, rD, rD, step, "ds")
                        else:
                            warpgroup.wait_group(0)
                            self._p_and_ds(s_rc, dp_rc, c_rc, gLSE, gD, step, "both")
                            rP.store(acc_S.load().to(self.dtype))
                        rdS.store(acc_dP.load().to(self.dtype))
                        # This buffer was last read by the dQ GEMMs of two steps ago, which both warpgroups
                        # had waited for before they met at the last step's barrier.
                        cute.copy(r2s_dS, tRrdS, tRsdS[None, None, None, pds])
                        if const_expr(not self.split_softmax):
                            warpgroup.fence()
                            self._gemm(mma_dkv, acc_dV, tKVrP, tKVrdOt[None, None, None, st.index], False)
                            warpgroup.commit_group()
                        # Generic-proxy writes of dS^T -> visible to wgmma (async proxy), then both halves.
                        cute.arch.fence_view_async_shared()
                        cute.arch.barrier(barrier_id=_DQ_BARRIER, number_of_threads=nthr)
                        # dQ before dK (FA4's order): dQ's epilogue runs while dK is in flight.
                        warpgroup.fence()
                        self._gemm(
                            mma_dq, acc_dQ, tQrdS[None, None, None, pds], tQrKt[None, None, None, 0], True
                        )
                        warpgroup.commit_group()
                        self._gemm(mma_dkv, acc_dK, tKVrdS, tKVrQt[None, None, None, st.index], False)
                        warpgroup.commit_group()
                        warpgroup.wait_group(1)  # dV and dQ are in, dK still in flight
                        if const_expr(not self.dq_bulk):  # "bulk": the host's un-permuting pass scales
                            acc_dQ.store(acc_dQ.load() * softmax_scale)
                        if const_expr(self.dq_smem):
                            self._dq_add_own_half(
                                dq_r2s, tdQsdQ, tdQgdQ, tma_atom_dq, m_block, warp_idx, wg_idx
                            )
                        else:
                            self._dq_atomic_add(acc_dQ, thr_dq, gdQ, m_block)
                        warpgroup.wait_group(0)
                        pipe_q.consumer_release(st)
                        st.advance()
                    # --8<-- [end:bwd-overlap]
                    else:
                        warpgroup.wait_group(0)
                        self._p_and_ds(s_rc, dp_rc, c_rc, gLSE, gD, step, "both")
                        rP.store(acc_S.load().to(self.dtype))
                        rdS.store(acc_dP.load().to(self.dtype))
                        # dS^T to shared memory for dQ (the previous step's dQ GEMM has retired: see below).
                        for i in cutlass.range_constexpr(cute.size(rdS)):
                            tSsdS[i] = rdS[i]
                        warpgroup.fence()
                        self._gemm(mma_dkv, acc_dV, tKVrP, tKVrdOt[None, None, None, st.index], False)
                        self._gemm(mma_dkv, acc_dK, tKVrdS, tKVrQt[None, None, None, st.index], False)
                        warpgroup.commit_group()
                        # Generic-proxy writes of dS -> visible to wgmma (async proxy), then both halves.
                        cute.arch.fence_view_async_shared()
                        cute.arch.barrier(barrier_id=_DQ_BARRIER, number_of_threads=nthr)
                        self._gemm(
                            mma_dq, acc_dQ, tQrdS[None, None, None, 0], tQrKt[None, None, None, 0], True
                        )
                        warpgroup.commit_group()
                        warpgroup.wait_group(0)
                        pipe_q.consumer_release(st)
                        st.advance()
                        if const_expr(self.dq_smem):  # noqa: SIM102
                            # The previous block's reduce-add has finished reading sdQ (the issuing warp
                            # waits on its bulk group), announced by the barrier below.
                            if warp_idx == 4:
                                cute.arch.cp_async_bulk_wait_group(0, read=True)
                        # Every warpgroup's dQ GEMM has read sdS before anyone overwrites it.
                        cute.arch.barrier(barrier_id=_DQ_BARRIER, number_of_threads=nthr)
                        if const_expr(not self.dq_bulk):
                            acc_dQ.store(acc_dQ.load() * softmax_scale)
                        if const_expr(self.dq_smem):
                            self._dq_to_smem(dq_r2s)
                            cute.arch.fence_view_async_shared()  # generic-proxy writes -> the TMA unit
                            cute.arch.barrier(barrier_id=_DQ_BARRIER, number_of_threads=nthr)
                            # A whole warp issues (the TMA copy elects its lane over the full warp).
                            if warp_idx == 4:
                                for h in cutlass.range_constexpr(2):
                                    self._dq_issue(tma_atom_dq, tdQsdQ, tdQgdQ, m_block, h)
                                cute.arch.cp_async_bulk_commit_group()
                        else:
                            self._dq_atomic_add(acc_dQ, thr_dq, gdQ, m_block)
                if const_expr(self.dq_smem):  # noqa: SIM102
                    # shared memory must outlive the last reduce-add's reads (overlap: each warpgroup's own)
                    if warp_idx == (4 * wg_idx if const_expr(self.overlap) else 4):
                        cute.arch.cp_async_bulk_wait_group(0, read=True)
            # dK, dV out (also for key blocks no query sees: zeros).
            if active:
                for i in cutlass.range_constexpr(cute.size(acc_dK)):
                    acc_dK[i] = acc_dK[i] * softmax_scale
                if const_expr(self.varlen):
                    gdK = cute.domain_offset((off_k, 0), mdK[None, None, head])
                    gdV = cute.domain_offset((off_k, 0), mdV[None, None, head])
                else:
                    gdK = mdK[None, None, head, batch]
                    gdV = mdV[None, None, head, batch]
                self._store_kv(acc_dK, thr_dkv, gdK, n_block, seqlen_k)
                self._store_kv(acc_dV, thr_dkv, gdV, n_block, seqlen_k)

    @cute.jit
    def _p_and_ds(
        self,
        s_rc: cute.Tensor,
        dp_rc: cute.Tensor,
        c_rc: cute.Tensor,
        gLSE: cute.Tensor,
        gD: cute.Tensor,
        step: tuple,
        part: cutlass.Constexpr,
    ):
        """In place: S^T -> P^T (``part`` "p"), dP^T -> dS^T ("ds", with P^T already in ``s_rc``), or both
        ("both"); dS^T without the softmax scale, applied to dK and dQ later. Only P^T is masked: a masked
        P^T is 0 and so is its dS^T. "both" reads LSE and D from ``gLSE`` and ``gD`` (rows in global
        memory); "p" and "ds" read them from this thread's per-query registers (``_per_query``). ``step``:
        (m_block, n_block, seqlen_q, seqlen_k, window_left, window_right, scale_log2, softcap_pre, softcap)."""
        args = (s_rc, dp_rc, c_rc, gLSE, gD, *step)
        if const_expr(part == "ds"):
            self._p_and_ds_loop(*args, False, part)
        elif self._needs_mask(*step[:6]) != 0:
            self._p_and_ds_loop(*args, True, part)
        else:
            self._p_and_ds_loop(*args, False, part)

    @cute.jit
    def _p_and_ds_loop(
        self,
        s_rc: cute.Tensor,
        dp_rc: cute.Tensor,
        c_rc: cute.Tensor,
        gLSE: cute.Tensor,
        gD: cute.Tensor,
        m_block: Int32,
        n_block: Int32,
        seqlen_q: Int32,
        seqlen_k: Int32,
        wl: Int32,
        wr: Int32,
        scale_log2: Float32,
        softcap_pre: Float32,
        softcap: Float32,
        masked: cutlass.Constexpr,
        part: cutlass.Constexpr,
    ):
        shift = seqlen_k - seqlen_q
        q0 = m_block * self.tile_m
        k0 = n_block * self.tile_n
        for c in cutlass.range_constexpr(cute.size(s_rc, mode=[1])):
            qi = q0 + c_rc[0, c][1]
            if const_expr(part == "ds"):
                d = gD[c]
                for r in cutlass.range_constexpr(cute.size(s_rc, mode=[0])):
                    dp_rc[r, c] = s_rc[r, c] * (dp_rc[r, c] - d)
            else:
                lse = gLSE[c] if const_expr(part == "p") else gLSE[qi]
                d = gD[qi] if const_expr(part == "both") else Float32(0.0)
                for r in cutlass.range_constexpr(cute.size(s_rc, mode=[0])):
                    s = s_rc[r, c]
                    dfac = Float32(1.0)
                    if const_expr(self.has_softcap):
                        t = cute.math.tanh(s * softcap_pre, fastmath=True)
                        s = softcap * t
                        dfac = Float32(1.0) - t * t
                    p = cute.math.exp2(s * scale_log2 - lse, fastmath=True)
                    if const_expr(masked):
                        kj = k0 + c_rc[r, 0][0]
                        if kj >= seqlen_k:
                            p = Float32(0.0)
                        if qi >= seqlen_q:
                            p = Float32(0.0)
                        if const_expr(self.has_right):  # noqa: SIM102
                            if kj > qi + shift + wr:
                                p = Float32(0.0)
                        if const_expr(self.has_left):  # noqa: SIM102
                            if kj < qi + shift - wl:
                                p = Float32(0.0)
                    s_rc[r, c] = p
                    if const_expr(part == "both"):
                        dp_rc[r, c] = p * (dp_rc[r, c] - d) * dfac

    @cute.jit
    def _dq_add_own_half(
        self,
        dq_r2s: tuple,
        tdQsdQ: cute.Tensor,
        tdQgdQ: cute.Tensor,
        tma_atom_dq: cute.CopyAtom,
        m_block: Int32,
        warp_idx: Int32,
        wg_idx: Int32,
    ):
        """The "overlap" schedule's dQ out: this warpgroup's half of the tile through its own shared-memory
        tile and its own TMA reduce-add; only its 128 threads sync (named barrier 2 + its index), while the
        other warpgroup runs on. ``dq_r2s``: (tiled copy, this thread's dQ values, where they go)."""
        issuer = warp_idx == 4 * wg_idx  # its first warp: the one that waits on its bulk group
        bar = _DQ_WG_BARRIER + wg_idx - 1
        if issuer:
            cute.arch.cp_async_bulk_wait_group(0, read=True)  # the last reduce-add has read the tile
        cute.arch.barrier(barrier_id=bar, number_of_threads=128)
        self._dq_to_smem(dq_r2s)
        cute.arch.fence_view_async_shared()  # generic-proxy writes -> the TMA unit
        cute.arch.barrier(barrier_id=bar, number_of_threads=128)
        if issuer:
            self._dq_issue(tma_atom_dq, tdQsdQ, tdQgdQ, m_block, wg_idx - 1)
            cute.arch.cp_async_bulk_commit_group()

    @cute.jit
    def _dq_to_smem(self, dq_r2s: tuple):
        """This thread's dQ values into the shared tile: ``dq_r2s`` is (tiled copy, source, destination),
        "bulk" (source, destination) of plain 128-bit stores."""
        if const_expr(self.dq_bulk):
            cute.autovec_copy(*dq_r2s)
        else:
            cute.copy(*dq_r2s)

    @cute.jit
    def _dq_issue(
        self, tma_atom_dq: cute.CopyAtom, tdQsdQ: cute.Tensor, tdQgdQ: cute.Tensor, m_block: Int32, h
    ):
        """Half ``h`` of the shared dQ tile added into the global accumulator, by the calling warp: "tma" by
        its tensor-map boxes (the copy elects a lane), "bulk" by one reduce-add of the contiguous half."""
        if const_expr(self.dq_bulk):
            half = cute.size(tdQsdQ, mode=[0])
            with cute.arch.elect_one():
                dst = tdQgdQ[None, m_block].iterator + h * half
                _bulk_reduce_add_f32(dst, tdQsdQ[None, h].iterator, half * 4)
        else:
            cute.copy(tma_atom_dq, tdQsdQ[None, h], tdQgdQ[None, m_block, h])

    @cute.jit
    def _prefetch_stats(self, gLSE: cute.Tensor, gD: cute.Tensor, m_block: Int32):
        """Query block ``m_block``'s rows of LSE and D (256 bytes each, at most 3 cache lines each) into L1,
        one lane a line: the first, the 33rd and the last query's address cover every line they touch."""
        lane = cute.arch.lane_idx()
        q = m_block * self.tile_m + cutlass.min((lane % 3) * 32, self.tile_m - 1)
        if lane < 3:
            cute.arch.prefetch((gLSE.iterator + q).llvm_ptr, cache_level="L1")
        elif lane < 6:
            cute.arch.prefetch((gD.iterator + q).llvm_ptr, cache_level="L1")

    @cute.jit
    def _per_query(self, g: cute.Tensor, c_rc: cute.Tensor, m_block: Int32) -> cute.Tensor:
        """``g`` (a row statistic in global memory: LSE or D) at each query this thread's S^T columns hold.

        Those are pairs of neighbouring queries, 8 apart (the accumulator's column c is query
        ``q0 + c % 2 + 8 (c // 2)``). Not varlen, every row of ``g`` starts 256-byte aligned (padded to
        the query tile) and q0 is even, so each pair is one 64-bit load: half the load instructions,
        which share the data path that the loop's wgmma operands keep busy. Varlen sequences start
        anywhere: one load a value."""
        n = cute.size(c_rc, mode=[1])
        vals = cute.make_rmem_tensor((n,), Float32)
        if const_expr(self.varlen):
            for c in cutlass.range_constexpr(n):
                vals[c] = g[m_block * self.tile_m + c_rc[0, c][1]]
        else:
            first = g.iterator + (m_block * self.tile_m + c_rc[0, 0][1])
            pairs = cute.make_ptr(Float32, first.toint(), cute.AddressSpace.gmem, assumed_align=8)
            src = cute.make_tensor(pairs, cute.make_layout((2, n // 2), stride=(1, 8)))
            cute.autovec_copy(src, cute.make_tensor(vals.iterator, cute.make_layout((2, n // 2))))
        return vals

    @cute.jit
    def _dq_atomic_add(self, acc_dQ: cute.Tensor, thr_dq: cute.ThrMma, gdQ: cute.Tensor, m_block: Int32):
        """fp32 reduction into the dQ accumulator (padded on the host: no bounds check needed; rows past
        seqlen_q only ever receive 0, since their dS is masked to 0)."""
        gtile = cute.local_tile(gdQ, (self.tile_m, self.head_dim), (m_block, 0))
        tdQg = thr_dq.partition_C(gtile)
        for i in cutlass.range_constexpr(cute.size(acc_dQ)):
            ptr = tdQg.iterator + cute.crd2idx(i, tdQg.layout)
            cute.arch.red(ptr, acc_dQ[i], op="add", dtype="f32", sem="relaxed", scope="gpu")

    @cute.jit
    def _store_kv(self, acc: cute.Tensor, thr: cute.ThrMma, g: cute.Tensor, n_block: Int32, seqlen_k: Int32):
        gtile = cute.local_tile(g, (self.tile_n, self.head_dim), (n_block, 0))
        tg = thr.partition_C(gtile)
        tc = thr.partition_C(cute.make_identity_tensor((self.tile_n, self.head_dim)))
        r = cute.make_rmem_tensor_like(acc, self.dtype)
        r.store(acc.load().to(self.dtype))
        row0 = n_block * self.tile_n
        for i in cutlass.range_constexpr(cute.size(r)):
            if row0 + tc[i][0] < seqlen_k:
                tg[i] = r[i]
