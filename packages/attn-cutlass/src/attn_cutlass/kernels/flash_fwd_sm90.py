"""FlashAttention forward for Hopper (sm_90a): TMA loads, wgmma, one producer and two consumer warpgroups.

The CTA owns a 128-row tile of queries for one (batch, head) and walks the keys in blocks of ``tile_n``,
from the right (where causal masks bite) to the left. 384 threads, three warpgroups:

* warpgroup 0, the *producer*: one warp issues TMA loads of Q (once per tile) and of K and V (per key
  block) into shared memory ring buffers. Each buffer slot has a "full" mbarrier (TMA completes its byte
  count) and an "empty" one (consumers release it): ``cutlass.pipeline.PipelineTmaAsync``. It gives most
  of its registers away (``setmaxnreg``), since it only computes addresses.
* warpgroups 1 and 2, the *consumers*: each owns 64 of the 128 query rows and runs
  ``S = Q K^T`` (wgmma, both operands in shared memory), the online softmax on S in registers, and
  ``O += P V`` (wgmma with P from registers: the accumulator of S is reinterpreted as the A operand).

Two overlaps hide the softmax (exp2 runs on the 16/clk/SM MUFU unit, the tensor cores idle meanwhile):

* *ping-pong* between the consumers: two named barriers make the warpgroups take turns issuing their
  GEMMs, so while one warpgroup does its softmax the other keeps the tensor cores busy (FA3's schedule).
  At head dim 64 a block's GEMMs are short beside its softmax; ``consumer_wgs=3`` (opt-in) builds a
  192-row tile of three consumer warpgroups (512 threads, 160 registers each) whose turns go round all
  three, so two can keep the tensor cores busy while the third does its softmax.
* *inside a warpgroup*: iteration j issues ``S_j = Q K_j^T`` and ``O += P_{j-1} V_{j-1}`` back to back,
  waits only for S_j, and runs the softmax of S_j while the P V GEMM is still in flight.

The grid is persistent: ``min(#tiles, #SMs)`` CTAs walk a static schedule of (m_block, head, batch)
tiles, m_block fastest (neighbouring CTAs share K/V of one head in L2); causal runs put the longest tiles
first (see ``tile_coords``). Masks (causal, sliding window, seqlen_k edge) follow flash-attn's
bottom-right convention and are applied only to the key blocks that cross a boundary. O leaves through
shared memory (``tma_store``: stmatrix, then one TMA store per consumer warpgroup; at hd256 one tile the
two take turns at) or, for varlen, straight from registers.
"""

from __future__ import annotations

import cuda.bindings.driver as cuda
import cutlass
import cutlass.cute as cute
import cutlass.pipeline as pipeline
import cutlass.utils.hopper_helpers as sm90_utils
from cutlass import Float32, Int32, const_expr
from cutlass.cute.nvgpu import cpasync, warp, warpgroup
from cutlass.memory import SmemAllocator
from cutlass.tensor_utils import LayoutEnum

from .softmax import (
    LOG2_E,
    RESCALE_SLACK,
    acc_as_operand_a_layout,
    apply_mask,
    apply_softcap,
    convert_pinned,
    finalize,
    online_softmax_step,
    online_softmax_step_lazy,
    rescale_rows,
    rescale_rows_if_moved,
    rowcol_layout,
    store_rows,
)

# Named barrier ids (0 is __syncthreads): consumer warpgroup w waits on 1 + w before issuing its GEMMs.
_PINGPONG_BARRIER = 1
# Each turn barrier counts the warpgroup waiting on it and the one handing it the turn.
_TURN_THREADS = 256
# tma_store: consumer warpgroup w's own barrier (128 threads) around its O tile in shared memory.
_EPILOGUE_BARRIER = 4
# tma_store at hd256, one O tile for both warpgroups: w waits on 6 + w for the other's store to have read it
# (its 128 threads, and the 32 of the other's issuing warp).
_O_TURN_BARRIER = 6
_O_TURN_THREADS = 160
# Registers a thread holds after setmaxnreg: the producer warpgroup gives its share to the consumers, by the
# number of consumer warpgroups (24 x 128 + 240 x 256 and 24 x 128 + 160 x 384 fit the 64K-register file).
PRODUCER_REGS = 24
CONSUMER_REGS = {2: 240, 3: 160}


def _permute(t: cute.Tensor, order) -> cute.Tensor:
    """The same memory, modes reordered (a view, like ``torch.permute``)."""
    return cute.make_tensor(
        t.iterator,
        cute.make_layout(tuple(t.shape[i] for i in order), stride=tuple(t.stride[i] for i in order)),
    )


def tile_coords(tile, num_m_blocks, num_heads, num_tiles, hb_chunk, snake, num_ctas, *, causal, min_=min):
    """(m_block, head, batch) of linear tile ``tile``; CTA ``i`` runs tiles ``i, i + num_ctas, ...``.

    Plain integer arithmetic, so the kernel traces it with DSL integers (``min_=cutlass.min``) and the CPU
    tests run the very same function on Python ints.

    Non-causal: every tile costs the same; m_block fastest, so the CTAs running together share one head's
    K/V in L2. Causal: a tile's cost grows with m_block, and the static round-robin is only balanced if the
    tiles come longest first *across* heads (LPT); m_block fastest gave CTA 0 three times the work of
    CTA 64. So the (head, batch) pairs are cut into sections of ``hb_chunk`` and each section is walked
    m_block-major, longest first, heads fastest. With ``snake`` (0 or 1) every odd round of ``num_ctas``
    tiles is handed out in reverse (CTA 0 takes the round's last tile), so a CTA that drew a long tile in
    one round draws a short one in the next; with one section for the whole problem (the default) that
    keeps every CTA's total within about 1 % of the mean, where plain rounds over L2-sized sections can
    leave the busiest CTA with nearly twice the mean (``interface.causal_schedule``).
    """
    if causal:
        rnd = tile // num_ctas
        pos = tile - rnd * num_ctas
        in_round = min_(num_ctas, num_tiles - rnd * num_ctas)
        tile = tile + snake * (rnd % 2) * (in_round - 1 - 2 * pos)
    m_block = tile % num_m_blocks
    rest = tile // num_m_blocks
    if causal:
        n_hb = num_tiles // num_m_blocks
        chunk_tiles = hb_chunk * num_m_blocks
        chunk = tile // chunk_tiles
        local = tile - chunk * chunk_tiles
        in_chunk = min_(hb_chunk, n_hb - chunk * hb_chunk)
        m_block = num_m_blocks - 1 - local // in_chunk
        rest = chunk * hb_chunk + local % in_chunk
    return m_block, rest % num_heads, rest // num_heads


def tile_config(head_dim: int, consumer_wgs: int = 2) -> tuple[int, int, int]:
    """(tile_m, tile_n, kv_stages) per head dim: Q tile + stages x (K + V) tiles must fit 227 KiB, and
    tile_m is 64 rows per consumer warpgroup.

    Three consumer warpgroups (head dim 64 only) get 160 registers a thread instead of 240: S (64), O (32)
    and P (32) of a 64 x 128 block fit them with no spill and no wgmma serialised, once P's conversion is
    pinned (:func:`softmax.convert_pinned`). With ``.to()`` LLVM carried the fp32 scores round the loop
    instead of P, and ptxas spilled O (688 bytes) and serialised every wgmma (C7512), so this build ran
    64-key blocks, twice the barriers and pipeline steps per key (CPU, ptxas 13, 2026-12-06).
    """
    if consumer_wgs == 3:
        if head_dim != 64:
            raise ValueError(f"three consumer warpgroups are built for head dim 64 only, got {head_dim}")
        return 192, 128, 2
    if consumer_wgs != 2:
        raise ValueError(f"consumer_wgs must be 2 or 3, got {consumer_wgs}")
    if head_dim <= 64:
        return 128, 128, 3
    if head_dim <= 128:
        return 128, 128, 2
    return 128, 64, 2


class FlashAttentionForwardSm90:
    """Compile-time configuration; ``__call__`` is the ``@cute.jit`` host function that launches."""

    arch = "sm_90a"

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
        pingpong: bool = True,
        lazy_rescale: bool = False,
        consumer_wgs: int = 2,
        unroll: int = 1,
        tma_store: bool = False,
    ):
        if head_dim not in (64, 128, 256):
            raise ValueError(f"head_dim must be 64, 128 or 256, got {head_dim}")
        if unroll not in (1, 2):
            raise ValueError(f"unroll must be 1 or 2, got {unroll}")
        if unroll == 2 and dtype is not cutlass.BFloat16:
            # every fp16 build unrolled gets wgmma fenced by ptxas (C7519); every bf16 one is clean
            raise ValueError(f"unroll=2 is built for bfloat16 only, got {dtype}")
        # 2 unrolls the unmasked key-block loop by two (opt-in, not yet timed on a GPU). Rolled, each
        # block's P overwrites the registers the in-flight P V still reads, so ptxas waits for that wgmma
        # before the first exponential (0 of the 64 MUFU.EX2 of a hd128 block between the two waits);
        # unrolled, ptxas moves 6 and 22 of them (with the scaling FFMAs; the conversions still follow the
        # wait) into the window of the two copies, at 3648 SASS instructions against 2664 and no spills
        # (CPU, ptxas 13, 2026-12-05).
        self.unroll = unroll
        if tma_store and varlen:
            # a box overhanging a sequence would write the next one's rows (TMA clips only at the packed
            # tensor's end)
            raise ValueError("tma_store is built for fixed-length sequences, got varlen=True")
        # True (the interface's default for fixed-length builds): each consumer warpgroup puts its 64 x hd O tile in
        # shared memory by stmatrix and one lane of its first warp stores it with TMA, instead of one 16-bit
        # global store per value from registers (ncu, H100, 16k hd128: 66 STG a thread, 75 % of the
        # sectors excess, 2.9 % of the warp samples; 1.09x once replaced).
        self.tma_store = tma_store
        # O tiles in shared memory: one per consumer warpgroup, except at hd256, where Q and two stages of
        # K and V (192 KB) leave room for one 32 KB tile only: the two warpgroups take turns at it (1.04x
        # the register store at hd256 causal 16k, H200, 2026-12-06).
        self.o_tiles = 1 if head_dim == 256 else consumer_wgs
        # False drops the named barriers that make the consumer warpgroups take turns at the tensor cores
        # (attn-bench's no_pingpong ablation: the schedule's measured worth).
        self.pingpong = pingpong
        # True: a row keeps its max while a block's stays within RESCALE_SLACK of it, and a warp whose
        # rows all kept theirs skips the O rescale (softmax.online_softmax_step_lazy).
        self.lazy_rescale = lazy_rescale
        self.dtype = dtype
        self.head_dim = head_dim
        # consumer_wgs: 3 takes turns at the tensor cores three ways (FA3's choice at head dim 64, where a
        # block's softmax outlasts its GEMMs); every warpgroup owns 64 query rows.
        self.tile_m, self.tile_n, self.kv_stages = tile_config(head_dim, consumer_wgs)
        self.num_consumer_wgs = consumer_wgs
        self.threads = 128 * (1 + self.num_consumer_wgs)
        self.consumer_regs = CONSUMER_REGS[self.num_consumer_wgs]
        # causal is the window (-1, 0): one right bound, at the diagonal.
        self.has_right = causal or has_right_window
        self.has_left = has_left_window
        self.causal = causal
        self.has_softcap = has_softcap
        self.varlen = varlen

    # ---------------------------------------------------------------------------------------- host
    @cute.jit
    def __call__(
        self,
        mQ: cute.Tensor,  # (b, s_q, h, d) or varlen (total_q, h, d)
        mK: cute.Tensor,  # (b, s_k, h_k, d) or (total_k, h_k, d)
        mV: cute.Tensor,
        mO: cute.Tensor,  # like mQ
        mLSE: cute.Tensor,  # (b, h, s_q) float32 or varlen (h, total_q)
        mCuSeqlensQ: cute.Tensor,  # (b + 1,) int32; a dummy when not varlen
        mCuSeqlensK: cute.Tensor,
        scale_log2: Float32,  # softmax scale * log2(e), or log2(e) with softcap
        softcap_pre: Float32,  # softmax scale / softcap
        softcap: Float32,
        window_left: Int32,
        window_right: Int32,
        qhead_per_kvhead: Int32,
        num_m_blocks: Int32,
        num_tiles: Int32,
        num_ctas: Int32,
        hb_chunk: Int32,  # causal schedule: (head, batch) pairs per section (see tile_coords)
        snake: Int32,  # causal schedule: 1 reverses every odd round of tiles (see tile_coords)
        stream: cuda.CUstream,
    ):
        if const_expr(self.varlen):
            q, k, o = (_permute(t, (0, 2, 1)) for t in (mQ, mK, mO))  # (total, d, h)
            vt = _permute(mV, (2, 0, 1))  # (d, total_k, h_k): V^T, the B operand of O = P V
            lse = _permute(mLSE, (1, 0))  # (total, h)
        else:
            q, k, o = (_permute(t, (1, 3, 2, 0)) for t in (mQ, mK, mO))  # (s, d, h, b)
            vt = _permute(mV, (3, 1, 2, 0))  # (d, s_k, h_k, b)
            lse = _permute(mLSE, (2, 1, 0))  # (s, h, b)

        tile_m, tile_n, hd = self.tile_m, self.tile_n, self.head_dim
        K_MAJOR, MN_MAJOR = warpgroup.OperandMajorMode.K, warpgroup.OperandMajorMode.MN
        # The consumer warpgroups are one tiled MMA, stacked along M (atom layout (W, 1, 1)); each thread
        # issues the wgmma of its own warpgroup, on its 64 rows.
        tiled_mma_qk = sm90_utils.make_trivial_tiled_mma(
            self.dtype, self.dtype, K_MAJOR, K_MAJOR, Float32, (self.num_consumer_wgs, 1, 1), (64, tile_n)
        )
        tiled_mma_pv = sm90_utils.make_trivial_tiled_mma(
            self.dtype,
            self.dtype,
            K_MAJOR,
            MN_MAJOR,
            Float32,
            (self.num_consumer_wgs, 1, 1),
            (64, hd),
            warpgroup.OperandSource.RMEM,
        )
        # Shared memory layouts: the swizzled atoms wgmma reads without bank conflicts, tiled to the block.
        sQ_layout = sm90_utils.make_smem_layout_a(LayoutEnum.ROW_MAJOR, (tile_m, tile_n, hd), self.dtype, 1)
        sK_layout = sm90_utils.make_smem_layout_b(
            LayoutEnum.ROW_MAJOR, (tile_m, tile_n, hd), self.dtype, self.kv_stages
        )
        sV_layout = sm90_utils.make_smem_layout_b(
            LayoutEnum.COL_MAJOR, (tile_m, hd, tile_n), self.dtype, self.kv_stages
        )
        # O: (64, hd) swizzled tiles, the "stage" mode indexing the warpgroup (one shared tile at hd256).
        sO_layout = sm90_utils.make_smem_layout_a(
            LayoutEnum.ROW_MAJOR, (64, tile_n, hd), self.dtype, self.o_tiles
        )
        g2s = cpasync.CopyBulkTensorTileG2SOp()
        tma_atom_q, tma_q = cpasync.make_tiled_tma_atom(
            g2s, q, cute.slice_(sQ_layout, (None, None, 0)), (tile_m, hd)
        )
        tma_atom_k, tma_k = cpasync.make_tiled_tma_atom(
            g2s, k, cute.slice_(sK_layout, (None, None, 0)), (tile_n, hd)
        )
        tma_atom_v, tma_vt = cpasync.make_tiled_tma_atom(
            g2s, vt, cute.slice_(sV_layout, (None, None, 0)), (hd, tile_n)
        )

        if const_expr(self.tma_store):
            tma_atom_o, tma_o = cpasync.make_tiled_tma_atom(
                cpasync.CopyBulkTensorTileS2GOp(), o, cute.slice_(sO_layout, (None, None, 0)), (64, hd)
            )
        else:
            tma_atom_o, tma_o = tma_atom_q, tma_q  # unused
        self.shared_storage = self._shared_storage(sQ_layout, sK_layout, sV_layout, sO_layout)
        self.kernel(
            tma_atom_q,
            tma_q,
            tma_atom_k,
            tma_k,
            tma_atom_v,
            tma_vt,
            tma_atom_o,
            tma_o,
            o,
            lse,
            mCuSeqlensQ,
            mCuSeqlensK,
            tiled_mma_qk,
            tiled_mma_pv,
            sQ_layout,
            sK_layout,
            sV_layout,
            sO_layout,
            scale_log2,
            softcap_pre,
            softcap,
            window_left,
            window_right,
            qhead_per_kvhead,
            num_m_blocks,
            num_tiles,
            hb_chunk,
            snake,
        ).launch(grid=(num_ctas, 1, 1), block=(self.threads, 1, 1), stream=stream, min_blocks_per_mp=1)

    def _shared_storage(self, sQ_layout, sK_layout, sV_layout, sO_layout):
        """The CTA's shared memory; with tma_store also the O tiles. Built from an explicit field table:
        this module's postponed annotations would reach ``cute.struct`` as strings."""

        def buf(dtype, n):
            return cute.struct.Align[cute.struct.MemRange[dtype, n], 1024]

        fields = {
            "mbar_q": cute.struct.MemRange[cutlass.Int64, 2],
            "mbar_k": cute.struct.MemRange[cutlass.Int64, 2 * self.kv_stages],
            "mbar_v": cute.struct.MemRange[cutlass.Int64, 2 * self.kv_stages],
            "sQ": buf(self.dtype, cute.cosize(sQ_layout)),
            "sK": buf(self.dtype, cute.cosize(sK_layout)),
            "sV": buf(self.dtype, cute.cosize(sV_layout)),
        }
        if self.tma_store:
            fields["sO"] = buf(self.dtype, cute.cosize(sO_layout))
        return cute.struct(type("SharedStorage", (), {"__annotations__": fields}))

    # -------------------------------------------------------------------------------------- device
    @cute.jit
    def _tile_coords(
        self,
        tile: Int32,
        num_m_blocks: Int32,
        num_heads: Int32,
        num_tiles: Int32,
        hb_chunk: Int32,
        snake: Int32,
    ):
        """(m_block, head, batch) of a linear tile index: ``tile_coords`` with this launch's grid."""
        return tile_coords(
            tile,
            num_m_blocks,
            num_heads,
            num_tiles,
            hb_chunk,
            snake,
            cute.arch.grid_dim()[0],
            causal=self.causal,
            min_=cutlass.min,
        )

    @cute.jit
    def _seqlens(
        self, batch: Int32, mO: cute.Tensor, tma_k: cute.Tensor, mCuQ: cute.Tensor, mCuK: cute.Tensor
    ):
        """(offset_q, seqlen_q, offset_k, seqlen_k) of one sequence."""
        if const_expr(self.varlen):
            off_q, off_k = mCuQ[batch], mCuK[batch]
            return off_q, mCuQ[batch + 1] - off_q, off_k, mCuK[batch + 1] - off_k
        return Int32(0), Int32(mO.shape[0]), Int32(0), Int32(tma_k.shape[0])

    @cute.jit
    def _n_block_range(self, m_block: Int32, seqlen_q: Int32, seqlen_k: Int32, wl: Int32, wr: Int32):
        """Key blocks [n_min, n_max) that any row of this query tile may see."""
        shift = seqlen_k - seqlen_q
        col_end = seqlen_k
        if const_expr(self.has_right):
            last_row = cutlass.min(m_block * self.tile_m + self.tile_m, seqlen_q) - 1
            col_end = cutlass.max(cutlass.min(col_end, last_row + shift + wr + 1), 0)
        n_max = (col_end + self.tile_n - 1) // self.tile_n
        n_min = Int32(0)
        if const_expr(self.has_left):
            n_min = cutlass.max(m_block * self.tile_m + shift - wl, 0) // self.tile_n
        return n_min, n_max

    @cute.jit
    def _needs_mask(
        self, m_block: Int32, n_block: Int32, seqlen_q: Int32, seqlen_k: Int32, wl: Int32, wr: Int32
    ):
        """1 when some element of this (query tile, key block) must be masked: the seqlen edge or a window."""
        need = Int32(0)
        col_lo = n_block * self.tile_n
        col_hi = col_lo + self.tile_n  # exclusive
        shift = seqlen_k - seqlen_q
        if col_hi > seqlen_k:
            need = Int32(1)
        # Nested ifs on purpose: the outer condition is resolved while tracing, the inner one at run time.
        if const_expr(self.has_right):  # noqa: SIM102
            if col_hi - 1 > m_block * self.tile_m + shift + wr:
                need = Int32(1)
        if const_expr(self.has_left):  # noqa: SIM102
            if col_lo < m_block * self.tile_m + self.tile_m - 1 + shift - wl:
                need = Int32(1)
        return need

    @cute.jit
    def _mask_bounds(self, m_block: Int32, seqlen_q: Int32, seqlen_k: Int32, wl: Int32, wr: Int32):
        """(n_rm, n_l): key blocks n >= n_rm cross the right bound or the seqlen_k edge, n < n_l the left.

        Block n needs the right mask iff its last column n * tile_n + tile_n - 1 exceeds
        row_lo + shift + wr (the first row's last visible key): n >= (row_lo + shift + wr + 1) // tile_n.
        It needs the left mask iff its first column is below the last row's first visible key:
        n < ceil((row_hi + shift - wl) / tile_n).
        """
        shift = seqlen_k - seqlen_q
        n_rm = seqlen_k // self.tile_n
        if const_expr(self.has_right):
            x = cutlass.max(m_block * self.tile_m + shift + wr + 1, 0)
            n_rm = cutlass.min(n_rm, x // self.tile_n)
        n_l = Int32(0)
        if const_expr(self.has_left):
            y = cutlass.max(m_block * self.tile_m + self.tile_m - 1 + shift - wl, 0)
            n_l = (y + self.tile_n - 1) // self.tile_n
        return n_rm, n_l

    def _mainloop_step(
        self,
        n_block,
        masked,
        st_k,
        st_v,
        pipe_k,
        pipe_v,
        tiled_mma_qk,
        tiled_mma_pv,
        tSrQ,
        tSrK,
        tOrV,
        tOrP,
        rP,
        acc_S,
        acc_O,
        s_rc,
        c_rc,
        o_rc,
        row_max,
        row_sum,
        corr,
        moved,
        my_turn,
        their_turn,
        m_block,
        seqlen_q,
        seqlen_k,
        window_left,
        window_right,
        scale_log2,
        softcap_pre,
        softcap,
    ):
        """One key block: ``S_j = Q K_j^T`` and ``O = corr * O + P_{j-1} V_{j-1}``, softmax of S_j.

        Plain Python (inlined while tracing; ``masked`` is a Python bool), returns the advanced states.
        Order inside the warpgroup (FA3's intra-warpgroup overlap): issue S_j; rescale O by the previous
        softmax's correction while S_j runs (O is not an operand of S_j); issue P_{j-1} V_{j-1}; hand the
        tensor cores to the other warpgroup; wait only for S_j (wgmma groups retire in order) and run its
        softmax while P V is still in flight.
        """
        nthr = _TURN_THREADS
        # --8<-- [start:consumer-mainloop]
        if self.lazy_rescale:
            # Lazily, before S_j is issued: a branch that straddles an in-flight wgmma makes ptxas serialise
            # the wgmma (C7512 at hd128), and the rescale now runs in few blocks, so overlap matters little.
            self._rescale(o_rc, corr, moved)
        pipe_k.consumer_wait(st_k)
        pipe_v.consumer_wait(st_v)
        if self.pingpong:
            cute.arch.barrier(barrier_id=my_turn, number_of_threads=nthr)
        warpgroup.fence()
        self._gemm(tiled_mma_qk, acc_S, tSrQ[None, None, None, 0], tSrK[None, None, None, st_k.index], True)
        warpgroup.commit_group()
        if not self.lazy_rescale:
            self._rescale(o_rc, corr, moved)  # under S_j: O is not one of its operands
        warpgroup.fence()  # O's registers changed: order them before the wgmma that accumulates into O
        self._gemm(tiled_mma_pv, acc_O, tOrP, tOrV[None, None, None, st_v.index], False)
        warpgroup.commit_group()
        if self.pingpong:
            cute.arch.barrier_arrive(barrier_id=their_turn, number_of_threads=nthr)
        warpgroup.wait_group(1)
        pipe_k.consumer_release(st_k)
        st_k.advance()
        self._softmax(
            acc_S,
            s_rc,
            c_rc,
            row_max,
            row_sum,
            corr,
            moved,
            m_block,
            n_block,
            seqlen_q,
            seqlen_k,
            window_left,
            window_right,
            scale_log2,
            softcap_pre,
            softcap,
            masked,
        )
        warpgroup.wait_group(0)
        pipe_v.consumer_release(st_v)
        st_v.advance()
        convert_pinned(acc_S, rP)
        # --8<-- [end:consumer-mainloop]
        return st_k, st_v

    @cute.jit
    def _gemm(
        self, tiled_mma: cute.TiledMma, acc: cute.Tensor, tA: cute.Tensor, tB: cute.Tensor, zero_init: bool
    ):
        # One wgmma per 16-wide k block; ACCUMULATE off for the first one zero-initialises the accumulator.
        # The fragments are already this thread's (its warpgroup's) share, so a plain atom issues them. A
        # fresh atom per call keeps the ACCUMULATE flag a local value: setting it on the kernel's tiled MMA
        # inside a loop would leak a loop-body value out of the loop.
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
        tma_vt: cute.Tensor,
        tma_atom_o: cute.CopyAtom,
        tma_o: cute.Tensor,
        mO: cute.Tensor,
        mLSE: cute.Tensor,
        mCuQ: cute.Tensor,
        mCuK: cute.Tensor,
        tiled_mma_qk: cute.TiledMma,
        tiled_mma_pv: cute.TiledMma,
        sQ_layout: cute.ComposedLayout,
        sK_layout: cute.ComposedLayout,
        sV_layout: cute.ComposedLayout,
        sO_layout: cute.ComposedLayout,
        scale_log2: Float32,
        softcap_pre: Float32,
        softcap: Float32,
        window_left: Int32,
        window_right: Int32,
        qhead_per_kvhead: Int32,
        num_m_blocks: Int32,
        num_tiles: Int32,
        hb_chunk: Int32,
        snake: Int32,
    ):
        tidx, _, _ = cute.arch.thread_idx()
        warp_idx = cute.arch.make_warp_uniform(cute.arch.warp_idx())
        wg_idx = cute.arch.make_warp_uniform(tidx // 128)
        tile_m, tile_n, hd = self.tile_m, self.tile_n, self.head_dim
        num_heads = mO.shape[2]

        smem = SmemAllocator()
        storage = smem.allocate(self.shared_storage)
        one_cta = cute.make_layout((1, 1, 1, 1))
        # One producer thread arms each stage; one lane per consumer warp (8 warps) releases it.
        producer = pipeline.CooperativeGroup(pipeline.Agent.Thread)
        consumers = pipeline.CooperativeGroup(pipeline.Agent.Thread, 4 * self.num_consumer_wgs)

        def make_pipe(mbar, stages, layout):
            return pipeline.PipelineTmaAsync.create(
                barrier_storage=mbar.data_ptr(),
                num_stages=stages,
                producer_group=producer,
                consumer_group=consumers,
                tx_count=cute.size_in_bytes(self.dtype, cute.slice_(layout, (None, None, 0))),
                cta_layout_vmnk=one_cta,
                defer_sync=True,
            )

        pipe_q = make_pipe(storage.mbar_q, 1, sQ_layout)
        pipe_k = make_pipe(storage.mbar_k, self.kv_stages, sK_layout)
        pipe_v = make_pipe(storage.mbar_v, self.kv_stages, sV_layout)
        # Barrier inits must be visible to every thread (and to the TMA unit) before anyone waits on them.
        pipeline.pipeline_init_arrive()
        pipeline.pipeline_init_wait()

        sQ = storage.sQ.get_tensor(sQ_layout.outer, swizzle=sQ_layout.inner)
        sK = storage.sK.get_tensor(sK_layout.outer, swizzle=sK_layout.inner)
        sV = storage.sV.get_tensor(sV_layout.outer, swizzle=sV_layout.inner)

        if wg_idx == 0:
            # --8<-- [start:producer]
            # ------------------------------------------------------------------ producer warpgroup
            cute.arch.setmaxregister_decrease(PRODUCER_REGS)
            if warp_idx == 0:
                cpasync.prefetch_descriptor(tma_atom_q)
                cpasync.prefetch_descriptor(tma_atom_k)
                cpasync.prefetch_descriptor(tma_atom_v)
                st_q = pipeline.make_pipeline_state(pipeline.PipelineUserType.Producer, 1)
                st_k = pipeline.make_pipeline_state(pipeline.PipelineUserType.Producer, self.kv_stages)
                st_v = pipeline.make_pipeline_state(pipeline.PipelineUserType.Producer, self.kv_stages)
                tile = cute.arch.block_idx()[0]
                while tile < num_tiles:
                    m_block, head, batch = self._tile_coords(
                        tile, num_m_blocks, num_heads, num_tiles, hb_chunk, snake
                    )
                    off_q, seqlen_q, off_k, seqlen_k = self._seqlens(batch, mO, tma_k, mCuQ, mCuK)
                    n_min, n_max = self._n_block_range(m_block, seqlen_q, seqlen_k, window_left, window_right)
                    head_kv = head // qhead_per_kvhead
                    if m_block * tile_m < seqlen_q and n_max > n_min:
                        if const_expr(self.varlen):
                            gQ = cute.domain_offset((off_q, 0), tma_q[None, None, head])
                            gK = cute.domain_offset((off_k, 0), tma_k[None, None, head_kv])
                            gV = cute.domain_offset((0, off_k), tma_vt[None, None, head_kv])
                        else:
                            gQ = tma_q[None, None, head, batch]
                            gK = tma_k[None, None, head_kv, batch]
                            gV = tma_vt[None, None, head_kv, batch]
                        gQ = cute.local_tile(gQ, (tile_m, hd), (m_block, 0))  # (tile_m, d)
                        gK = cute.local_tile(gK, (tile_n, hd), (None, 0))  # (tile_n, d, n)
                        gV = cute.local_tile(gV, (hd, tile_n), (0, None))  # (d, tile_n, n)
                        # TMA partitions: the whole tile is one "value" of the single TMA thread.
                        tQsQ, tQgQ = cpasync.tma_partition(
                            tma_atom_q,
                            0,
                            cute.make_layout(1),
                            cute.group_modes(sQ, 0, 2),
                            cute.group_modes(gQ, 0, 2),
                        )
                        tKsK, tKgK = cpasync.tma_partition(
                            tma_atom_k,
                            0,
                            cute.make_layout(1),
                            cute.group_modes(sK, 0, 2),
                            cute.group_modes(gK, 0, 2),
                        )
                        tVsV, tVgV = cpasync.tma_partition(
                            tma_atom_v,
                            0,
                            cute.make_layout(1),
                            cute.group_modes(sV, 0, 2),
                            cute.group_modes(gV, 0, 2),
                        )
                        pipe_q.producer_acquire(st_q)
                        cute.copy(
                            tma_atom_q, tQgQ, tQsQ[None, 0], tma_bar_ptr=pipe_q.producer_get_barrier(st_q)
                        )
                        st_q.advance()
                        for i in cutlass.range(n_max - n_min, unroll=1):
                            n_block = n_max - 1 - i
                            pipe_k.producer_acquire(st_k)
                            cute.copy(
                                tma_atom_k,
                                tKgK[None, n_block],
                                tKsK[None, st_k.index],
                                tma_bar_ptr=pipe_k.producer_get_barrier(st_k),
                            )
                            st_k.advance()
                            pipe_v.producer_acquire(st_v)
                            cute.copy(
                                tma_atom_v,
                                tVgV[None, n_block],
                                tVsV[None, st_v.index],
                                tma_bar_ptr=pipe_v.producer_get_barrier(st_v),
                            )
                            st_v.advance()
                    tile += cute.arch.grid_dim()[0]
            # --8<-- [end:producer]
        else:
            # ----------------------------------------------------------------- consumer warpgroups
            cute.arch.setmaxregister_increase(self.consumer_regs)
            ctid = tidx - 128
            wg = wg_idx - 1
            thr_qk = tiled_mma_qk.get_slice(ctid)
            thr_pv = tiled_mma_pv.get_slice(ctid)
            tSrQ = thr_qk.make_fragment_A(thr_qk.partition_A(sQ))  # (MMA, MMA_M, MMA_K, 1)
            tSrK = thr_qk.make_fragment_B(thr_qk.partition_B(sK))  # (MMA, MMA_N, MMA_K, stages)
            tOrV = thr_pv.make_fragment_B(thr_pv.partition_B(sV))  # (MMA, MMA_N, MMA_K, stages)
            acc_S = thr_qk.make_fragment_C(thr_qk.partition_shape_C((tile_m, tile_n)))
            acc_O = thr_pv.make_fragment_C(thr_pv.partition_shape_C((tile_m, hd)))
            # P in 16 bits: stored with S's layout, read as the A operand of the P V wgmma.
            rP = cute.make_rmem_tensor_like(acc_S, self.dtype)
            tOrP = cute.make_tensor(rP.iterator, acc_as_operand_a_layout(acc_S.layout))
            s_rc = cute.make_tensor(acc_S.iterator, rowcol_layout(acc_S.layout))
            o_rc = cute.make_tensor(acc_O.iterator, rowcol_layout(acc_O.layout))
            # (row, col) of every accumulator element inside the tile: for masks and stores.
            tScS = thr_qk.partition_C(cute.make_identity_tensor((tile_m, tile_n)))
            c_rc = cute.make_tensor(tScS.iterator, rowcol_layout(tScS.layout))
            tOcO = thr_pv.partition_C(cute.make_identity_tensor((tile_m, hd)))
            co_rc = cute.make_tensor(tOcO.iterator, rowcol_layout(tOcO.layout))
            epi = None
            if const_expr(self.tma_store):
                # The warpgroups' O tiles seen as one (tile_m, hd) tensor, rows (r % 64, r // 64), so that
                # the MMA's own partition and stmatrix address them; the TMA reads each warpgroup's tile.
                outer = cute.group_modes(cute.select(sO_layout.outer, [0, 2, 1]), 0, 2)
                if const_expr(self.o_tiles == 1):
                    # one tile for both: row r of the CTA tile goes to row r % 64 (stride 0 across warpgroups)
                    o1 = sO_layout.outer
                    outer = cute.make_layout(
                        ((o1.shape[0], self.num_consumer_wgs), o1.shape[1]),
                        stride=((o1.stride[0], 0), o1.stride[1]),
                    )
                sO_all = storage.sO.get_tensor(outer, swizzle=sO_layout.inner)
                sO = storage.sO.get_tensor(sO_layout.outer, swizzle=sO_layout.inner)
                r2s_o = cute.make_tiled_copy_C(
                    cute.make_copy_atom(warp.StMatrix8x8x16bOp(transpose=False, num_matrices=4), self.dtype),
                    tiled_mma_pv,
                )
                thr_r2s_o = r2s_o.get_slice(ctid)
                epi = (r2s_o, thr_r2s_o, thr_r2s_o.partition_D(sO_all), sO[None, None, wg % self.o_tiles])
                if const_expr(self.o_tiles == 1):  # noqa: SIM102
                    if warp_idx == 8:  # warpgroup 1's issuing warp: warpgroup 0 stores its first tile first
                        cute.arch.barrier_arrive(
                            barrier_id=_O_TURN_BARRIER, number_of_threads=_O_TURN_THREADS
                        )
            n_rows = cute.size(s_rc, mode=[0])
            row_max = cute.make_rmem_tensor((n_rows,), Float32)
            row_sum = cute.make_rmem_tensor((n_rows,), Float32)
            corr = cute.make_rmem_tensor((n_rows,), Float32)
            moved = cute.make_rmem_tensor((1,), Int32)  # lazy rescale: did a row of this thread move?
            lse = cute.make_rmem_tensor((n_rows,), Float32)

            # Turns go round the consumer warpgroups: w waits on its barrier, then opens the next one's.
            # For two that is 1 - wg, kept as written: the general (wg + 1) % 2 changes the PTX of the
            # GPU-validated two-warpgroup builds (checked on the CPU, 2026-12-04), which no GPU re-ran.
            if const_expr(self.num_consumer_wgs == 2):
                my_turn, their_turn = _PINGPONG_BARRIER + wg, _PINGPONG_BARRIER + 1 - wg
            else:
                my_turn = _PINGPONG_BARRIER + wg
                their_turn = _PINGPONG_BARRIER + (wg + 1) % self.num_consumer_wgs
            nthr = _TURN_THREADS
            # Nested on purpose: the outer condition is resolved while tracing, the inner one at run time.
            if const_expr(self.pingpong):  # noqa: SIM102
                if wg == self.num_consumer_wgs - 1:
                    cute.arch.barrier_arrive(
                        barrier_id=_PINGPONG_BARRIER, number_of_threads=nthr
                    )  # WG 0 first

            st_q = pipeline.make_pipeline_state(pipeline.PipelineUserType.Consumer, 1)
            st_k = pipeline.make_pipeline_state(pipeline.PipelineUserType.Consumer, self.kv_stages)
            st_v = pipeline.make_pipeline_state(pipeline.PipelineUserType.Consumer, self.kv_stages)
            tile = cute.arch.block_idx()[0]
            while tile < num_tiles:
                m_block, head, batch = self._tile_coords(
                    tile, num_m_blocks, num_heads, num_tiles, hb_chunk, snake
                )
                off_q, seqlen_q, off_k, seqlen_k = self._seqlens(batch, mO, tma_k, mCuQ, mCuK)
                n_min, n_max = self._n_block_range(m_block, seqlen_q, seqlen_k, window_left, window_right)
                if m_block * tile_m < seqlen_q:
                    row_max.fill(-Float32.inf)
                    row_sum.fill(0.0)
                    moved.fill(1)  # the prologue's softmax writes it first; set so that no path reads garbage
                    acc_O.fill(0.0)
                    if n_max > n_min:
                        pipe_q.consumer_wait(st_q)
                        # Prologue: S for the rightmost key block, alone.
                        n_block = n_max - 1
                        pipe_k.consumer_wait(st_k)
                        if const_expr(self.pingpong):
                            cute.arch.barrier(barrier_id=my_turn, number_of_threads=nthr)
                        warpgroup.fence()
                        self._gemm(
                            tiled_mma_qk,
                            acc_S,
                            tSrQ[None, None, None, 0],
                            tSrK[None, None, None, st_k.index],
                            True,
                        )
                        warpgroup.commit_group()
                        if const_expr(self.pingpong):
                            cute.arch.barrier_arrive(barrier_id=their_turn, number_of_threads=nthr)
                        warpgroup.wait_group(0)
                        pipe_k.consumer_release(st_k)
                        st_k.advance()
                        self._softmax(
                            acc_S,
                            s_rc,
                            c_rc,
                            row_max,
                            row_sum,
                            corr,
                            moved,
                            m_block,
                            n_block,
                            seqlen_q,
                            seqlen_k,
                            window_left,
                            window_right,
                            scale_log2,
                            softcap_pre,
                            softcap,
                            None,
                        )
                        convert_pinned(acc_S, rP)
                        # The remaining key blocks [n_min, n_max - 1), right to left, in three phases so
                        # that only blocks crossing a boundary carry the mask code: [b1, hi) cross the
                        # right bound (causal diagonal, right window, seqlen_k edge), [b2, b1) need no
                        # mask, [n_min, b2) cross the left window bound.
                        n_rm, n_l = self._mask_bounds(m_block, seqlen_q, seqlen_k, window_left, window_right)
                        hi = n_max - 1
                        b1 = cutlass.max(cutlass.min(n_rm, hi), n_min)
                        b2 = cutlass.max(cutlass.min(n_l, b1), n_min)
                        step_args = (
                            pipe_k,
                            pipe_v,
                            tiled_mma_qk,
                            tiled_mma_pv,
                            tSrQ,
                            tSrK,
                            tOrV,
                            tOrP,
                            rP,
                            acc_S,
                            acc_O,
                            s_rc,
                            c_rc,
                            o_rc,
                            row_max,
                            row_sum,
                            corr,
                            moved,
                            my_turn,
                            their_turn,
                            m_block,
                            seqlen_q,
                            seqlen_k,
                            window_left,
                            window_right,
                            scale_log2,
                            softcap_pre,
                            softcap,
                        )
                        for i in cutlass.range(hi - b1, unroll=1):
                            st_k, st_v = self._mainloop_step(hi - 1 - i, True, st_k, st_v, *step_args)
                        for i in cutlass.range(b1 - b2, unroll=self.unroll):
                            st_k, st_v = self._mainloop_step(b1 - 1 - i, False, st_k, st_v, *step_args)
                        for i in cutlass.range(b2 - n_min, unroll=1):
                            st_k, st_v = self._mainloop_step(b2 - 1 - i, True, st_k, st_v, *step_args)
                        # Epilogue: the last P V (O first rescaled by the last softmax's correction).
                        pipe_v.consumer_wait(st_v)
                        if const_expr(self.pingpong):
                            cute.arch.barrier(barrier_id=my_turn, number_of_threads=nthr)
                        self._rescale(o_rc, corr, moved)
                        warpgroup.fence()
                        self._gemm(tiled_mma_pv, acc_O, tOrP, tOrV[None, None, None, st_v.index], False)
                        warpgroup.commit_group()
                        if const_expr(self.pingpong):
                            cute.arch.barrier_arrive(barrier_id=their_turn, number_of_threads=nthr)
                        warpgroup.wait_group(0)
                        pipe_v.consumer_release(st_v)
                        st_v.advance()
                        pipe_q.consumer_release(st_q)
                        st_q.advance()
                    final_scale = scale_log2
                    if const_expr(self.has_softcap):
                        final_scale = Float32(LOG2_E)
                    finalize(o_rc, row_max, row_sum, lse, final_scale)
                    self._store(
                        acc_O, tOcO, co_rc, lse, mO, mLSE, thr_pv, ctid, m_block, head, batch, off_q, seqlen_q
                    )
                    if const_expr(self.tma_store):
                        last = tile + cute.arch.grid_dim()[0] >= num_tiles
                        self._store_o_tma(
                            acc_O, epi, tma_atom_o, tma_o, m_block, head, batch, wg, warp_idx, last
                        )
                tile += cute.arch.grid_dim()[0]
            if const_expr(self.tma_store):  # noqa: SIM102
                # shared memory must outlive the last store's reads
                if warp_idx == 4 * (wg + 1):
                    with cute.arch.elect_one():
                        cute.arch.cp_async_bulk_wait_group(0, read=True)

    @cute.jit
    def _softmax(
        self,
        acc_S: cute.Tensor,
        s_rc: cute.Tensor,
        c_rc: cute.Tensor,
        row_max: cute.Tensor,
        row_sum: cute.Tensor,
        corr: cute.Tensor,
        moved: cute.Tensor,
        m_block: Int32,
        n_block: Int32,
        seqlen_q: Int32,
        seqlen_k: Int32,
        window_left: Int32,
        window_right: Int32,
        scale_log2: Float32,
        softcap_pre: Float32,
        softcap: Float32,
        masked: cutlass.Constexpr,  # True / False: known while tracing; None: decide at run time
    ):
        if const_expr(self.has_softcap):
            apply_softcap(acc_S, softcap_pre, softcap)
        if const_expr(masked is None):
            if self._needs_mask(m_block, n_block, seqlen_q, seqlen_k, window_left, window_right) != 0:
                self._mask(s_rc, c_rc, m_block, n_block, seqlen_q, seqlen_k, window_left, window_right)
        elif const_expr(masked):
            self._mask(s_rc, c_rc, m_block, n_block, seqlen_q, seqlen_k, window_left, window_right)
        if const_expr(self.lazy_rescale):
            online_softmax_step_lazy(s_rc, row_max, row_sum, corr, moved, scale_log2, Float32(RESCALE_SLACK))
        else:
            online_softmax_step(s_rc, row_max, row_sum, corr, scale_log2)

    def _rescale(self, o_rc, corr, moved):
        """O *= the last softmax's correction (plain Python, inlined while tracing); lazily: only in warps
        where a row took a new max."""
        if self.lazy_rescale:
            rescale_rows_if_moved(o_rc, corr, moved)
        else:
            rescale_rows(o_rc, corr)

    @cute.jit
    def _mask(
        self,
        s_rc: cute.Tensor,
        c_rc: cute.Tensor,
        m_block: Int32,
        n_block: Int32,
        seqlen_q: Int32,
        seqlen_k: Int32,
        window_left: Int32,
        window_right: Int32,
    ):
        apply_mask(
            s_rc,
            c_rc,
            m_block * self.tile_m,
            n_block * self.tile_n,
            seqlen_q,
            seqlen_k,
            window_left,
            window_right,
            self.has_left,
            self.has_right,
        )

    @cute.jit
    def _store(
        self,
        acc_O: cute.Tensor,
        tOcO: cute.Tensor,
        co_rc: cute.Tensor,
        lse: cute.Tensor,
        mO: cute.Tensor,
        mLSE: cute.Tensor,
        thr_pv: cute.ThrMma,
        ctid: Int32,
        m_block: Int32,
        head: Int32,
        batch: Int32,
        off_q: Int32,
        seqlen_q: Int32,
    ):
        """Registers -> global memory, predicated on the row (the tile may overhang seqlen_q); with tma_store
        only the LSE (O goes by :meth:`_store_o_tma`)."""
        if const_expr(self.varlen):
            gO = cute.domain_offset((off_q, 0), mO[None, None, head])
            gLSE = cute.domain_offset((off_q,), mLSE[None, head])
        else:
            gO = mO[None, None, head, batch]
            gLSE = mLSE[None, head, batch]
        row0 = m_block * self.tile_m
        if const_expr(not self.tma_store):
            gO = cute.local_tile(gO, (self.tile_m, self.head_dim), (m_block, 0))
            store_rows(acc_O, thr_pv.partition_C(gO), tOcO, row0, seqlen_q, self.dtype)
        # One thread of each quad owns the row's statistics after the quad reduction.
        if ctid % 4 == 0:
            for r in cutlass.range_constexpr(cute.size(lse)):
                row = row0 + co_rc[r, 0][0]
                if row < seqlen_q:
                    gLSE[row] = lse[r]

    @cute.jit
    def _store_o_tma(
        self,
        acc_O: cute.Tensor,
        epi,
        tma_atom_o: cute.CopyAtom,
        tma_o: cute.Tensor,
        m_block: Int32,
        head: Int32,
        batch: Int32,
        wg: Int32,
        warp_idx: Int32,
        last,
    ):
        """This warpgroup's 64 rows of O: registers -> shared memory by stmatrix, then one TMA store issued
        by its first warp (TMA clips the rows past seqlen_q). Only the warpgroup's 128 threads sync; with one
        shared tile (hd256) the warpgroups also take turns: 0, 1, 0, 1, ... (``last``: this CTA's last tile)."""
        # --8<-- [start:epilogue-tma]
        r2s_o, thr_r2s_o, tOsO, sO_wg = epi
        issuer = warp_idx == 4 * (wg + 1)
        bar = _EPILOGUE_BARRIER + wg
        if const_expr(self.o_tiles == 1):
            # the other warpgroup's store has read the shared tile (its issuing warp arrives after the wait)
            cute.arch.barrier(barrier_id=_O_TURN_BARRIER + wg, number_of_threads=_O_TURN_THREADS)
        else:
            if issuer:
                # bulk groups belong to the thread that committed them: the same elected lane waits on them
                with cute.arch.elect_one():
                    cute.arch.cp_async_bulk_wait_group(0, read=True)  # the last tile's store has read sO
            cute.arch.barrier(barrier_id=bar, number_of_threads=128)
        rO = cute.make_rmem_tensor_like(acc_O, self.dtype)
        rO.store(acc_O.load().to(self.dtype))
        cute.copy(r2s_o, thr_r2s_o.retile(rO), tOsO)
        cute.arch.fence_view_async_shared()  # generic-proxy writes -> the TMA unit
        cute.arch.barrier(barrier_id=bar, number_of_threads=128)
        if issuer:
            gO = cute.local_tile(tma_o[None, None, head, batch], (64, self.head_dim), (None, 0))  # (64, d, m)
            tOsO_t, tOgO_t = cpasync.tma_partition(
                tma_atom_o, 0, cute.make_layout(1), cute.group_modes(sO_wg, 0, 2), cute.group_modes(gO, 0, 2)
            )
            # DSL 4.8.1 elects the lane of a TMA load itself, not of a store (kernels/copy_tma_sm90.py)
            with cute.arch.elect_one():
                cute.copy(tma_atom_o, tOsO_t, tOgO_t[None, m_block * self.num_consumer_wgs + wg])
                cute.arch.cp_async_bulk_commit_group()
                if const_expr(self.o_tiles == 1):
                    cute.arch.cp_async_bulk_wait_group(0, read=True)
            if const_expr(self.o_tiles == 1):  # noqa: SIM102
                # hand the tile over; warpgroup 1's last hand-over would have no one waiting for it
                if wg == 0 or not last:
                    cute.arch.barrier_arrive(
                        barrier_id=_O_TURN_BARRIER + 1 - wg, number_of_threads=_O_TURN_THREADS
                    )
        # --8<-- [end:epilogue-tma]


def softmax_scale_args(softmax_scale: float, softcap: float) -> tuple[float, float, float]:
    """(scale_log2, softcap_pre, softcap) as the kernel takes them."""
    if softcap > 0.0:
        return LOG2_E, softmax_scale / softcap, softcap
    return softmax_scale * LOG2_E, 0.0, 0.0
