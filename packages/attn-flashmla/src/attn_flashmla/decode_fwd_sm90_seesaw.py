"""Dense MLA decoding for Hopper in the CuTe DSL, "seesaw" schedule: each KV tile's ``S`` computed once.

Read :mod:`attn_flashmla.decode_fwd_sm90` first: this kernel shares its host side (q regrouped into
64-row blocks, the paged cache as a 3-d TMA tensor, the scheduler's parts, fp32 scratch and the combine),
its "V is K" shared-memory trick and its device steps (``device_helpers``: causal limits, NaN-safe
masking, the exponentials, zeroing a partial tile's tail, writing a piece). What changes is how the two
consumer warpgroups share the work of a 64-row block.

**Why.** The 64 x 512 fp32 accumulator is too large for one warpgroup, so consumer ``L`` owns output
channels [0, 256) and consumer ``R`` owns [256, 512). The first kernel made both compute the full
``S = Q K^T`` of every tile (a quarter of the tensor-core work duplicated at h_q 128), or split ``S``
into two 32-token halves (m64n32k16, whose shared-memory operand reads cost more than its math) with two
CTA-wide exchanges per tile. Here tiles come in pairs and each consumer computes the whole ``S`` of one
of them (m64n64k16): ``L`` takes tile 0 of the pair, ``R`` tile 1, and they trade the row maxima and P
through shared memory in an order that lets one's softmax run while the other's matrix multiplies do
(DeepSeek's FlashMLA calls it seesaw scheduling; the algebra below is the online softmax reordered):

    L: S0 = Q K0^T;  m_a = max(m, rowmax S0);  P0 = exp2(S0 - m_a);  O_L = O_L * 2^(m - m_a) + P0 V0_L
    R: S1 = Q K1^T;  m_b = max(m_a, rowmax S1);  P1 = exp2(S1 - m_b);  O_R = O_R * 2^(m - m_b) + P1 V1_R
    L: P0' = P0 * 2^(m_a - m_b), published;  O_L = O_L * 2^(m_a - m_b) + P1 V1_L
    R: O_R = O_R + P0' V0_R;  m = m_b

``L`` sends ``m_a`` (named barrier 1), ``R`` sends ``m_b`` and ``P1`` (barrier 2), ``L`` sends ``P0'``
(barrier 3); each is one ``bar.arrive`` on the sending side and one ``bar.sync`` on the receiving side, so
neither waits for the other more than the data needs. One 8 KiB P buffer serves both directions: ``L``
loads ``P1`` into registers before it overwrites the same addresses (each thread its own elements) with
``P0'``, and ``R`` reads ``P0'`` with a shared-memory wgmma that completes before it writes the next
``P1``. Each consumer keeps its own row sum at the shared running max; the two are added once per piece.

**Loads.** Shared memory holds Q (72 KiB), two K tiles (2 x 72 KiB) and P: no third stage fits, so the
next pair's loads can only start as parts of the current pair's tiles fall free. A third warpgroup (its
registers given to the consumers with ``setmaxnreg``) loads each tile as three groups of 64-channel TMA
boxes, each with its own "full" and "empty" mbarrier: ``A`` = channels [0, 256) (V for ``L``), ``B`` =
[256, 512) (V for ``R``), ``C`` = [512, 576) (rope, only in ``S``). A group is refilled as soon as its
last reader is done (tile 0's ``C`` right after ``S0``, its ``A`` after ``P0 V0_L``, its ``B`` only after
``R``'s ``P0' V0_R``), and each ``S`` walks the groups in the order they are refilled, so its first
k-steps start while the rest of the tile is still arriving (FlashMLA's fine-grained TMA-GEMM pipelining).

**Pairs.** The row blocks of one (part, KV head) read the same K tiles. Where they pair up (an even
number of row blocks, e.g. h_q 128), the two CTAs form a cluster: each loads half of every 64 x 64 box and
the TMA multicasts it into both, so the tiles cross from L2 once instead of twice; a group's "empty"
barrier then waits for the consumer warps of both CTAs (remote arrives), and neither CTA exits before the
other (a closing cluster barrier). ``ATTN_FLASHMLA_CUTE_CLUSTER=1`` keeps single CTAs.

An odd tile count leaves ``R`` without tile 1 in a piece's last pair: it computes nothing, passes
``m_b = m_a`` on, and no one multiplies by that stage (whose stale bytes could be NaN).

Measured on the H200 (2026-12-04, ``tools/cute_ab.py``; b 128, h_kv 1, varlen lengths of mean s_k; whole
calls with the combine; TFLOP/s at s_k 8k / 32k): h_q 128, s_q 1 481 / 527 and s_q 2 511 / 546 against
408 / 421 and 443 / 465 for the first kernel's split S in the same device call (single CTAs: 457 / 504,
515 / 555; two more runs that day agreed to within 5 %). ncu (s_q 1, 8k, ncu's clocks): the tensor pipe
62 % busy; L2 throughput 85 % of peak with single CTAs, 56 % with pairs; of the consumer warps' stall
samples about a fifth wait on K tiles, most of them on the two groups a pair reads last (V_R of tile 0,
V_L of tile 1), which the next pair's ``S`` needs and which, with two stages, are reloaded only when the
pair ends. Tried and dropped: the L2 hint EVICT_FIRST on K (0.90-1.05x), L2 prefetches of the next pair
(0.87-1.03x) or of its late groups only (0.97-0.99x), and issuing the next ``S`` before waiting for
``P1 V1_L`` (ptxas serialises the wgmma pipeline for want of registers, C7511). Opt-in
(``ATTN_FLASHMLA_CUTE_CROSS_FIRST=1``, ``cross_first``): ``R`` multiplies ``P0' V0_R`` before ``P1 V1_R``,
which frees tile 0's V_R earlier and tile 1's later; one call measured it 0.96-1.14x the default.

Tried on an H100 (2026-12-07, tenth session; ``tools/cute_ab.py``, main-kernel time, the four h_q 128
cases) and dropped, each within run-to-run noise of this kernel or worse: the next pair's ``S0`` issued
beside ``P1 V1_L`` (FlashMLA's order; it compiled without spills or serialised wgmma once the loop was
rotated so that no wgmma is in flight across the loop's back edge): over the rope and V_L groups 0.74-0.93x,
since waiting for V_L's refill then held back the release of V1_L that R's next ``S1`` waits for; over the
rope group only 0.95-1.01x. One "full" mbarrier per 64-channel box instead of per group: 0.96-1.01x. One
loading warp per stage, so neither stage's refill waits behind the other's "empty" barrier: 0.99-1.03x;
both: 0.97-1.01x. Also dropped (2026-12-07, eleventh session, H100, beside FlashMLA's own kernel in the
same call): L issuing ``P1 V1_L`` only once R has issued ``P0' V0_R``, with tile 0's V_R refilled before
tile 1's V_L, 0.95-1.02x. Where the remaining difference lies, counted from both kernels' SASS under ncu, is
in the package README ("Beside FlashMLA itself").
"""

# No `from __future__ import annotations`: the DSL evaluates the kernels' annotations when it compiles.
import functools

from attn_flashmla.decode_fwd_sm90 import (
    BLOCK_M,
    BLOCK_N,
    DV_PER_CTA,
    HEAD_DIM,
    device_helpers,
    launch_operands,
)

STAGES = 2  # the two tiles of a pair
CHUNK = 64  # channels of one TMA box (128 bytes: the swizzle atom's width)
#: Channel groups of a K tile, each with its own full/empty mbarriers: (first chunk, chunks).
GROUPS = {"A": (0, 4), "B": (4, 4), "C": (8, 1)}
#: The order in which each consumer's ``S`` reads its tile's groups (the order they are refilled in).
S_ORDER = {0: ("C", "A", "B"), 1: ("C", "B", "A")}
#: The producer refills (stage, group) in the order they fall free.
LOAD_ORDER = ((0, "C"), (1, "C"), (0, "A"), (1, "B"), (1, "A"), (0, "B"))
#: R multiplies P0' V0_R before P1 V1_R (``cross_first``): V_R of tile 0 then falls free before V_R of
#: tile 1, so the refill order and R's own S order change with it.
S_ORDER_CROSS_FIRST = {0: ("C", "A", "B"), 1: ("C", "A", "B")}
LOAD_ORDER_CROSS_FIRST = ((0, "C"), (1, "C"), (0, "A"), (0, "B"), (1, "A"), (1, "B"))
#: Consumer warps that release each (stage, group): 4 for one warpgroup, 8 for both.
RELEASERS = {(0, "A"): 4, (0, "B"): 8, (0, "C"): 4, (1, "A"): 8, (1, "B"): 4, (1, "C"): 4}
# Named barriers (0 is __syncthreads): the three seesaw hand-offs, both consumers, each consumer alone.
BAR_M_A, BAR_P1, BAR_P0, BAR_CONSUMERS, BAR_OWN = 1, 2, 3, 4, 5
PRODUCER_REGS, CONSUMER_REGS = 24, 240


def _group_index(stage: int, group: str) -> int:
    return stage * len(GROUPS) + list(GROUPS).index(group)


@functools.cache
def kernel_class():
    """The kernel class, built on first use: importing this module must not need the CuTe DSL."""
    import cutlass
    import cutlass.cute as cute
    import cutlass.utils as utils
    import cutlass.utils.hopper_helpers as sm90_utils
    from cutlass._mlir.dialects import llvm
    from cutlass.cute.nvgpu import cpasync, warp, warpgroup
    from cutlass.cutlass_dsl import T, dsl_user_op

    Float32, Int32 = cutlass.Float32, cutlass.Int32
    helpers, operands = device_helpers(), launch_operands()

    @dsl_user_op
    def pinned(word, *, loc=None, ip=None):
        """``word`` through an empty asm with side effects (CUTLASS's warpgroup_fence_operand): it must be
        computed at this point, not sunk by the compiler to its use."""
        value = llvm.inline_asm(
            T.i32(), [Int32(word).ir_value(loc=loc, ip=ip)], "", "=r,0", has_side_effects=True, loc=loc, ip=ip
        )
        return Int32(value)

    n_groups = STAGES * len(GROUPS)
    # mbarriers: full[stage, group], empty[stage, group], then Q's full and empty.
    FULL, EMPTY, Q_FULL, Q_EMPTY = 0, n_groups, 2 * n_groups, 2 * n_groups + 1

    class MLADecodeSeesawSm90:
        """One CTA = one (part, row block, KV head): warpgroup 0 loads, 1 (``L``) and 2 (``R``) compute."""

        def __init__(
            self, dtype, causal: bool, cluster: int = 1, cross_first: bool = False, lean: bool = False
        ):
            if cluster not in (1, 2):
                raise ValueError(f"cluster must be 1 or 2, got {cluster}")
            self.dtype = dtype
            self.causal = causal
            # Two CTAs of one cluster (row blocks 2i and 2i + 1 of one part: the same K tiles) each load
            # half of every K box and multicast it into both (module docstring, "Pairs").
            self.cluster = cluster
            self.cross_first = cross_first
            # The default (decode_fwd_sm90.lean_softmax): masks only where needed, scale folded into one
            # FFMA, P by stmatrix/ldmatrix. Off, the kernel of 2026-12-04 to 2026-12-07.
            self.lean = lean
            self.s_order = S_ORDER_CROSS_FIRST if cross_first else S_ORDER
            self.load_order = LOAD_ORDER_CROSS_FIRST if cross_first else LOAD_ORDER

        def shared_storage(self, q_layout, k_layout, p_layout):
            dtype = self.dtype
            fields = {
                "bars": cute.struct.MemRange[cutlass.Int64, 2 * n_groups + 2],
                # per row: m_a (from L), m_b (from R), then each consumer's row sum at the piece's end
                "sRow": cute.struct.MemRange[Float32, BLOCK_M * 4],
                "sQ": cute.struct.Align[cute.struct.MemRange[dtype, cute.cosize(q_layout)], 1024],
                "sK": cute.struct.Align[cute.struct.MemRange[dtype, cute.cosize(k_layout)], 1024],
                "sP": cute.struct.Align[cute.struct.MemRange[dtype, cute.cosize(p_layout)], 1024],
            }
            return cute.struct(type("SharedStorage", (), {"__annotations__": fields}))

        @cute.jit
        def __call__(
            self,
            mQ: cute.Tensor,  # (b * h_kv * rows_pad, 576): q regrouped so a row block is contiguous
            mK: cute.Tensor,  # (num_blocks * 64, 576, h_kv): the paged cache, tokens x channels x heads
            mBlockTable: cute.Tensor,  # (b, max_blocks) int32
            mSeqlens: cute.Tensor,  # (b,) int32
            mParts: cute.Tensor,  # (num_parts, 5) int32, scheduler.DecodeSchedule.parts
            mSplitOffsets: cute.Tensor,  # (b + 1,) int32
            mOacc: cute.Tensor,  # (splits * h_kv * rows_pad, 512) fp32 scratch
            mLSEacc: cute.Tensor,  # (splits * h_kv * rows_pad,) fp32 scratch
            scale_log2: Float32,
            s_q: Int32,
            group: Int32,
            rows_pad: Int32,
            h_kv: Int32,
            stream,
        ):
            dtype = self.dtype
            # One set of MMAs per consumer (S; P V with P from registers; R's P0' V0_R with P0' from shared
            # memory): an MMA's accumulate flag is state, and a flag set inside one consumer's branch must
            # not be what the other's code starts from (MLIR dominance).
            mmas_l, mmas_r = operands.mmas(dtype), operands.mmas(dtype)
            q_layout, k_layout, v_layout = operands.layouts(dtype)
            # One TMA box: 64 tokens x 64 channels, the layout of one chunk of a K stage.
            chunk_layout = sm90_utils.make_smem_layout_b(
                utils.LayoutEnum.ROW_MAJOR, (BLOCK_M, BLOCK_N, CHUNK), dtype, 1
            )
            p_layout = sm90_utils.make_smem_layout_a(
                utils.LayoutEnum.ROW_MAJOR, (BLOCK_M, DV_PER_CTA, BLOCK_N), dtype, 1
            )
            tma_q, tma_mQ = operands.tma_q(mQ, q_layout)
            k_op = (
                cpasync.CopyBulkTensorTileG2SMulticastOp()
                if self.cluster > 1
                else cpasync.CopyBulkTensorTileG2SOp()
            )
            tma_k, tma_mK = cpasync.make_tiled_tma_atom(
                k_op,
                mK,
                cute.slice_(chunk_layout, (None, None, 0)),
                (BLOCK_N, CHUNK),
                num_multicast=self.cluster,
            )
            self.storage = self.shared_storage(q_layout, k_layout, p_layout)
            m_blocks = rows_pad // BLOCK_M
            self.kernel(
                tma_q, tma_mQ, tma_k, tma_mK, mBlockTable, mSeqlens, mParts, mSplitOffsets, mOacc, mLSEacc,
                *mmas_l, *mmas_r, q_layout, k_layout, chunk_layout, v_layout, p_layout, scale_log2,
                s_q, group, rows_pad, h_kv,
            ).launch(
                grid=(mParts.shape[0], m_blocks, h_kv), block=(384, 1, 1), cluster=(1, self.cluster, 1),
                smem=self.storage.size_in_bytes(), stream=stream,
            )  # fmt: skip

        @cute.kernel
        def kernel(
            self,
            tma_q: cute.CopyAtom,
            mQ: cute.Tensor,
            tma_k: cute.CopyAtom,
            mK: cute.Tensor,
            mBlockTable: cute.Tensor,
            mSeqlens: cute.Tensor,
            mParts: cute.Tensor,
            mSplitOffsets: cute.Tensor,
            mOacc: cute.Tensor,
            mLSEacc: cute.Tensor,
            qk_mma_l: cute.TiledMma,
            pv_mma_l: cute.TiledMma,
            pv_ss_mma_l: cute.TiledMma,
            qk_mma_r: cute.TiledMma,
            pv_mma_r: cute.TiledMma,
            pv_ss_mma_r: cute.TiledMma,
            q_layout: cute.ComposedLayout,
            k_layout: cute.ComposedLayout,
            chunk_layout: cute.ComposedLayout,
            v_layout: cute.ComposedLayout,
            p_layout: cute.ComposedLayout,
            scale_log2: Float32,
            s_q: Int32,
            group: Int32,
            rows_pad: Int32,
            h_kv: Int32,
        ):
            dtype = self.dtype
            tidx, _, _ = cute.arch.thread_idx()
            warp_idx = cute.arch.make_warp_uniform(cute.arch.warp_idx())
            wg = warp_idx // 4  # 0 producer, 1 consumer L, 2 consumer R
            part, mb, hk = cute.arch.block_idx()
            m_blocks = rows_pad // BLOCK_M

            smem = cutlass.utils.SmemAllocator()
            storage = smem.allocate(self.storage)
            bars = storage.bars.data_ptr()
            sQ = storage.sQ.get_tensor(q_layout.outer, swizzle=q_layout.inner)
            sK = storage.sK.get_tensor(k_layout.outer, swizzle=k_layout.inner)
            sP = storage.sP.get_tensor(p_layout.outer, swizzle=p_layout.inner)
            sRow = storage.sRow.get_tensor(cute.make_layout((BLOCK_M, 4)))
            if tidx == 0:
                cpasync.prefetch_descriptor(tma_q)
                cpasync.prefetch_descriptor(tma_k)
                for s in cutlass.range_constexpr(STAGES):
                    for g in GROUPS:
                        cute.arch.mbarrier_init(bars + FULL + _group_index(s, g), 1)
                        # every consumer warp of the cluster releases each group: its boxes came from both CTAs
                        releasers = RELEASERS[(s, g)] * self.cluster
                        cute.arch.mbarrier_init(bars + EMPTY + _group_index(s, g), releasers)
                cute.arch.mbarrier_init(bars + Q_FULL, 1)
                cute.arch.mbarrier_init(bars + Q_EMPTY, 8)
                cute.arch.mbarrier_init_fence()
            rank = Int32(0)
            if cutlass.const_expr(self.cluster > 1):
                rank = cute.arch.make_warp_uniform(cute.arch.block_idx_in_cluster())
                # The peer's barriers must be initialised before a multicast or a remote arrive reaches them.
                cute.arch.cluster_arrive_relaxed()
                cute.arch.cluster_wait()
            else:
                cute.arch.sync_threads()

            begin_req = mParts[part, 0]
            end_req = mParts[part, 2]
            begin_tile = mParts[part, 1]
            end_tile = mParts[part, 3]
            begin_split = mParts[part, 4]

            if wg == 0:
                # ------------------------------------------------------------------ producer warpgroup
                cute.arch.setmaxregister_decrease(PRODUCER_REGS)
                if warp_idx == 0:
                    gQ = cute.flat_divide(mQ, (BLOCK_M, HEAD_DIM))  # (64, 576, row blocks, 1)
                    tQsQ, tQgQ = cpasync.tma_partition(
                        tma_q, 0, cute.make_layout(1), cute.group_modes(sQ, 0, 2), cute.group_modes(gQ, 0, 2)
                    )
                    # (64, 64) boxes: gK (tokens, chunk) per page block, sK (box, chunk, stage).
                    gK = cute.flat_divide(mK[None, None, hk], (BLOCK_N, CHUNK))  # (64, 64, blocks, 9)
                    sK_boxes = cute.flat_divide(sK, (BLOCK_N, CHUNK))  # (64, 64, 1, 9, stages)
                    # With a cluster this CTA issues the rank-th half of every box, multicast to both CTAs.
                    tKsK, tKgK = cpasync.tma_partition(
                        tma_k, rank, cute.make_layout(self.cluster), cute.group_modes(sK_boxes, 0, 2),
                        cute.group_modes(gK, 0, 2),
                    )  # fmt: skip
                    mask = None
                    if cutlass.const_expr(self.cluster > 1):
                        cta_layout = cute.make_layout((1, self.cluster, 1, 1))
                        mask = cpasync.create_tma_multicast_mask(
                            cta_layout, cta_layout.get_flat_coord(rank), mcast_mode=1
                        )
                    q_bytes = cute.size_in_bytes(dtype, cute.slice_(q_layout, (None, None, 0)))
                    box_bytes = cute.size_in_bytes(dtype, cute.slice_(chunk_layout, (None, None, 0)))
                    uses0 = Int32(0)  # tiles placed in each stage so far
                    uses1 = Int32(0)
                    q_uses = Int32(0)
                    for req in cutlass.range(begin_req, end_req + 1, unroll=1):
                        t_begin, t_end = self.tile_range(
                            req, mSeqlens, begin_req, end_req, begin_tile, end_tile
                        )
                        cute.arch.mbarrier_wait(bars + Q_EMPTY, (q_uses % 2) ^ 1)
                        with cute.arch.elect_one():
                            cute.arch.mbarrier_arrive_and_expect_tx(bars + Q_FULL, q_bytes)
                        q_block = (req * h_kv + hk) * m_blocks + mb
                        cute.copy(tma_q, tQgQ[None, q_block, 0], tQsQ[None, 0], tma_bar_ptr=bars + Q_FULL)
                        q_uses = q_uses + 1
                        for t0 in cutlass.range(t_begin, t_end, STAGES, unroll=1):
                            has_b = t0 + 1 < t_end
                            blk0 = mBlockTable[req, t0]
                            blk1 = mBlockTable[req, cutlass.min(t0 + 1, t_end - 1)]
                            for s, g in self.load_order:
                                if cutlass.const_expr(s == 0):
                                    self.load_group(
                                        tma_k, tKgK, tKsK, bars, blk0, 0, g, uses0, box_bytes, mask
                                    )
                                else:
                                    if has_b:
                                        self.load_group(
                                            tma_k, tKgK, tKsK, bars, blk1, 1, g, uses1, box_bytes, mask
                                        )
                            uses0 = uses0 + 1
                            if has_b:
                                uses1 = uses1 + 1
            else:
                # ------------------------------------------------------------------ consumer warpgroups
                cute.arch.setmaxregister_increase(CONSUMER_REGS)
                args = (
                    sQ, sK, sP, sRow, v_layout, bars, mSeqlens, begin_req, end_req, begin_tile, end_tile,
                    begin_split, mSplitOffsets, mOacc, mLSEacc, scale_log2, s_q, group, rows_pad, h_kv, mb, hk,
                )  # fmt: skip
                if wg == 1:
                    self.consume(0, tidx % 128, qk_mma_l, pv_mma_l, pv_ss_mma_l, rank, *args)
                else:
                    self.consume(1, tidx % 128, qk_mma_r, pv_mma_r, pv_ss_mma_r, rank, *args)
            if cutlass.const_expr(self.cluster > 1):
                # No CTA may exit while its peer can still arrive on its barriers.
                cute.arch.cluster_arrive()
                cute.arch.cluster_wait()

        @cute.jit
        def tile_range(self, req, mSeqlens, begin_req, end_req, begin_tile, end_tile):
            """This part's tiles [t_begin, t_end) of request ``req`` (none for an empty sequence)."""
            n_tiles = (mSeqlens[req] + BLOCK_N - 1) // BLOCK_N
            t_begin = begin_tile if req == begin_req else 0
            t_end = end_tile if req == end_req else n_tiles
            return t_begin, cutlass.min(t_end, n_tiles)

        @cute.jit
        def load_group(
            self,
            tma_k,
            tKgK,
            tKsK,
            bars,
            blk,
            stage: cutlass.Constexpr,
            g: cutlass.Constexpr,
            uses,
            box_bytes,
            mask,
        ):
            """Wait until the group's last readers are done with it, then refill it from page block ``blk``
            (one TMA box per 64 channels, all completing on the group's "full" barrier). Whole warp."""
            first, n = GROUPS[g]
            i = _group_index(stage, g)
            cute.arch.mbarrier_wait(bars + EMPTY + i, (uses % 2) ^ 1)
            with cute.arch.elect_one():
                cute.arch.mbarrier_arrive_and_expect_tx(bars + FULL + i, n * box_bytes)
            multicast = {"mcast_mask": mask} if self.cluster > 1 else {}
            for c in cutlass.range_constexpr(first, first + n):
                cute.copy(
                    tma_k,
                    tKgK[None, blk, c],
                    tKsK[None, 0, c, stage],
                    tma_bar_ptr=bars + FULL + i,
                    **multicast,
                )

        @cute.jit
        def wait_full(self, bars, stage: cutlass.Constexpr, g: cutlass.Constexpr, uses):
            cute.arch.mbarrier_wait(bars + FULL + _group_index(stage, g), uses % 2)

        @cute.jit
        def release(self, bars, wg_tidx, rank, stage: cutlass.Constexpr, g: cutlass.Constexpr):
            """One arrival per warp on the group's "empty" barrier (after that warp's wgmma completed), in
            this CTA and, with a cluster, in the peer (whose producer also multicasts into this stage)."""
            if wg_tidx % 32 == 0:
                cute.arch.mbarrier_arrive(bars + EMPTY + _group_index(stage, g))
                if cutlass.const_expr(self.cluster > 1):
                    cute.arch.mbarrier_arrive(bars + EMPTY + _group_index(stage, g), 1 - rank)

        @cute.jit
        def zero_tail(self, sK, stage: cutlass.Constexpr, role, valid, wg_tidx):
            """Zero this consumer's V channels of the tokens past the sequence end (they may hold NaN):
            ``0 * NaN`` would leak into ``P V``. Fenced for wgmma's async proxy, then a barrier of the
            consumer's own 128 threads."""
            helpers.zero_tail(sK[None, None, stage], valid, role * DV_PER_CTA, wg_tidx, self.dtype)
            cute.arch.barrier(barrier_id=BAR_OWN + role, number_of_threads=128)

        @cute.jit
        def consume(
            self, role: cutlass.Constexpr, wg_tidx, qk_mma, pv_mma, pv_ss_mma, rank, sQ, sK, sP, sRow, v_layout,
            bars, mSeqlens, begin_req, end_req, begin_tile, end_tile, begin_split, mSplitOffsets, mOacc,
            mLSEacc, scale_log2, s_q, group, rows_pad, h_kv, mb, hk,
        ):  # fmt: skip
            dtype = self.dtype
            thr_qk = qk_mma.get_slice(wg_tidx)
            thr_pv = pv_mma.get_slice(wg_tidx)
            thr_pv_ss = pv_ss_mma.get_slice(wg_tidx)
            tSrQ = qk_mma.make_fragment_A(thr_qk.partition_A(sQ))
            tSrK = qk_mma.make_fragment_B(thr_qk.partition_B(sK))  # (mma, n, 36 k-steps, stage)
            tScS = thr_qk.partition_C(cute.make_identity_tensor((BLOCK_M, BLOCK_N)))
            tOcO = thr_pv.partition_C(cute.make_identity_tensor((BLOCK_M, DV_PER_CTA)))
            # With ``lean`` P crosses between the consumers by stmatrix / ldmatrix (8 values per
            # instruction and thread), in the accumulator's thread layout; P0' is read back by wgmma.
            p_store = cute.make_tiled_copy_C(
                cute.make_copy_atom(warp.StMatrix8x8x16bOp(transpose=False, num_matrices=4), dtype), qk_mma
            )
            p_load = cute.make_tiled_copy_C(
                cute.make_copy_atom(warp.LdMatrix8x8x16bOp(transpose=False, num_matrices=4), dtype), qk_mma
            )
            tPsP_st = p_store.get_slice(wg_tidx).partition_D(sP[None, None, 0])
            tPsP_ld = p_load.get_slice(wg_tidx).partition_S(sP[None, None, 0])
            if cutlass.const_expr(not self.lean):  # this thread's elements of P, by plain stores and loads
                tPsP_st = thr_qk.partition_C(sP[None, None, 0])
                tPsP_ld = tPsP_st
            tOrP_smem = pv_ss_mma.make_fragment_A(thr_pv_ss.partition_A(sP[None, None, 0]))
            acc_s = cute.make_rmem_tensor(thr_qk.partition_shape_C((BLOCK_M, BLOCK_N)), Float32)
            acc_o = cute.make_rmem_tensor(thr_pv.partition_shape_C((BLOCK_M, DV_PER_CTA)), Float32)
            # The accumulator of a 64 x 64 tile and the register A operand of a 64 x 64 (K = 64) tile hold
            # the same (row, column) pairs in the same order for 16-bit types: P is written through a view
            # of the A fragment with the accumulator's layout.
            r_p = cute.make_rmem_tensor(thr_pv.partition_shape_A((BLOCK_M, BLOCK_N)), dtype)
            r_p_acc = cute.make_tensor(r_p.iterator, acc_s.layout)
            r_p1 = cute.make_rmem_tensor(thr_pv.partition_shape_A((BLOCK_M, BLOCK_N)), dtype)  # L: P1
            r_p1_acc = cute.make_tensor(r_p1.iterator, acc_s.layout)
            r_tmp = cute.make_rmem_tensor(acc_s.layout, dtype)

            row0 = tScS[0][0]  # a thread holds rows row0 and row0 + 8 (accumulator element i: (i // 2) % 2)
            uses = Int32(0)  # pairs consumed so far (stage 0's uses; stage 1 is one behind after odd pieces)
            uses1 = Int32(0)
            q_uses = Int32(0)
            for req in cutlass.range(begin_req, end_req + 1, unroll=1):
                t_begin, t_end = self.tile_range(req, mSeqlens, begin_req, end_req, begin_tile, end_tile)
                seqlen = mSeqlens[req]
                split = begin_split if req == begin_req else 0
                cute.arch.mbarrier_wait(bars + Q_FULL, q_uses % 2)
                q_uses = q_uses + 1
                limit0, limit1 = helpers.row_limits(seqlen, s_q, group, mb, row0, self.causal)
                full_limit = helpers.block_limit(seqlen, s_q, group, mb, self.causal)
                m0 = -Float32.inf  # running max of this thread's two rows (the same in both consumers)
                m1 = -Float32.inf
                l0 = Float32(0.0)  # this consumer's row sums at that max
                l1 = Float32(0.0)
                acc_o.fill(0.0)
                for t0 in cutlass.range(t_begin, t_end, STAGES, unroll=1):
                    has_b = t0 + 1 < t_end
                    # Every fragment goes as its own argument: bundled in one object, the DSL's tracer
                    # loses track of values made in one region and used in another (MLIR dominance).
                    if cutlass.const_expr(role == 0):
                        m0, m1, l0, l1 = self.pair_left(
                            qk_mma, pv_mma, tSrQ, tSrK, tScS, p_store, tPsP_st, p_load, tPsP_ld, acc_s, acc_o, r_p,
                            r_p_acc, r_p1, r_p1_acc, r_tmp, v_layout, sK, sRow, bars, wg_tidx, rank, row0, t0, has_b,
                            seqlen, limit0, limit1, full_limit, scale_log2, uses, uses1, m0, m1, l0, l1,
                        )  # fmt: skip
                    else:
                        m0, m1, l0, l1 = self.pair_right(
                            qk_mma, pv_mma, pv_ss_mma, tSrQ, tSrK, tScS, p_store, tPsP_st, tOrP_smem, acc_s, acc_o,
                            r_p, r_p_acc, v_layout, sK, sRow, bars, wg_tidx, rank, row0, t0, has_b, seqlen, limit0,
                            limit1, full_limit, scale_log2, uses, uses1, m0, m1, l0, l1,
                        )  # fmt: skip
                    uses = uses + 1
                    if has_b:
                        uses1 = uses1 + 1
                # Q may be refilled once both consumers' warps are past the piece's last S.
                if wg_tidx % 32 == 0:
                    cute.arch.mbarrier_arrive(bars + Q_EMPTY)
                # Add the two consumers' row sums (both at the same max).
                if wg_tidx % 4 == 0:
                    sRow[row0, 2 + role] = l0
                    sRow[row0 + 8, 2 + role] = l1
                cute.arch.barrier(barrier_id=BAR_CONSUMERS, number_of_threads=256)
                l0 = l0 + sRow[row0, 3 - role]
                l1 = l1 + sRow[row0 + 8, 3 - role]
                slot_row = ((mSplitOffsets[req] + split) * h_kv + hk) * rows_pad + mb * BLOCK_M
                helpers.write_out(mOacc, acc_o, tOcO, slot_row, role * DV_PER_CTA, l0, l1)
                if cutlass.const_expr(role == 0):  # noqa: SIM102 (the DSL cannot `and` a Constexpr)
                    if wg_tidx % 4 == 0:
                        helpers.write_lse(mLSEacc, slot_row, row0, l0, l1, m0, m1)

        @cute.jit
        def v_operand(self, sK, v_layout, role: cutlass.Constexpr, mma, thr, stage: cutlass.Constexpr):
            """A consumer's 256 V channels of a K stage, as the B operand of ``mma`` (V is K, read MN-major)."""
            ptr = cute.recast_ptr(
                sK[None, None, stage].iterator + role * (BLOCK_N * DV_PER_CTA), v_layout.inner
            )
            s_v = cute.make_tensor(ptr, cute.slice_(v_layout.outer, (None, None, 0)))
            return mma.make_fragment_B(thr.partition_B(s_v))

        @cute.jit
        def scores(
            self, qk_mma, tSrQ, tSrK, tScS, acc_s, bars, stage: cutlass.Constexpr, uses, t, limit0, limit1,
            full_limit, scale_log2,
        ):  # fmt: skip
            """``S = Q K^T`` of one stage, group by group as each lands, then masked; returns the two rows'
            maxima over this tile in log2 units. ``acc_s`` is left in log2 units, or with ``lean`` unscaled
            and masked only where a row's limit falls inside the tile (``full_limit``: the block's lowest)."""
            first_step = True
            for g in self.s_order[stage]:
                self.wait_full(bars, stage, g, uses)
                # After the wait, not before: ptxas treats the wait's spin loop as code that may touch the
                # accumulator and would otherwise insert its own fence there (C7519).
                warpgroup.fence()
                first, n = GROUPS[g]
                for k in cutlass.range_constexpr(4 * first, 4 * (first + n)):
                    qk_mma.set(warpgroup.Field.ACCUMULATE, not first_step)
                    cute.gemm(qk_mma, acc_s, tSrQ[None, None, k, 0], tSrK[None, None, k, stage], acc_s)
                    first_step = False
            warpgroup.commit_group()
            warpgroup.wait_group(0)
            if cutlass.const_expr(self.lean):
                # The maxima of the raw scores, then scaled: the scale and the shift meet in one FFMA later.
                max0, max1 = helpers.raw_rowmax(
                    acc_s, tScS, t * BLOCK_N, limit0, limit1, (t + 1) * BLOCK_N <= full_limit
                )
                return max0 * scale_log2, max1 * scale_log2
            return helpers.mask_rowmax(
                acc_s, tScS, t * BLOCK_N, limit0, limit1, scale_log2, -Float32.inf, -Float32.inf
            )

        @cute.jit
        def exponentiate(self, acc_s, scale_log2, shift0, shift1):
            """P from this tile's scores: unscaled with ``lean`` (the scale goes into the FFMA), else scaled."""
            if cutlass.const_expr(self.lean):
                return helpers.exponentiate(acc_s, shift0, shift1, scale_log2)
            return helpers.exponentiate(acc_s, shift0, shift1)

        @cute.jit
        def put_p(self, p_store, r_acc, tPsP, wg_tidx):
            """P (16-bit, the accumulator's layout) into the shared P buffer."""
            if cutlass.const_expr(self.lean):
                cute.copy(p_store, p_store.get_slice(wg_tidx).retile(r_acc), tPsP)
            else:
                cute.autovec_copy(r_acc, tPsP)

        @cute.jit
        def get_p(self, p_load, tPsP, r_acc, wg_tidx):
            if cutlass.const_expr(self.lean):
                cute.copy(p_load, tPsP, p_load.get_slice(wg_tidx).retile(r_acc))
            else:
                cute.autovec_copy(tPsP, r_acc)

        @cute.jit
        def pv(self, mma, acc_o, a, b, a_in_registers: cutlass.Constexpr = False):
            if cutlass.const_expr(a_in_registers and self.dtype is cutlass.Float16):
                # P's conversion to 16 bits before the fence: left to the compiler, the fp16 build had it
                # sunk between the wgmmas that read it, and ptxas then serialised them (C7519). The bf16
                # build is left as it was measured on the GPU (pinning reorders its SASS as well).
                words = cute.recast_tensor(a, Int32)
                for i in cutlass.range_constexpr(cute.size(words)):
                    words[i] = pinned(words[i])
            warpgroup.fence()
            for k in cutlass.range_constexpr(cute.size(a, mode=[2])):
                mma.set(warpgroup.Field.ACCUMULATE, True)
                cute.gemm(mma, acc_o, a[None, None, k], b[None, None, k], acc_o)
            warpgroup.commit_group()

        @cute.jit
        def pair_left(
            self, qk_mma, pv_mma, tSrQ, tSrK, tScS, p_store, tPsP_st, p_load, tPsP_ld, acc_s, acc_o, r_p, r_p_acc,
            r_p1, r_p1_acc, r_tmp, v_layout, sK, sRow, bars, wg_tidx, rank, row0, t0, has_b, seqlen, limit0, limit1,
            full_limit, scale_log2, uses, uses1, m0, m1, l0, l1,
        ):  # fmt: skip
            """Consumer L's half of a pair: tile 0's S and softmax, then both tiles' P times its V_L."""
            dtype = self.dtype
            thr_pv = pv_mma.get_slice(wg_tidx)
            max0, max1 = self.scores(
                qk_mma, tSrQ, tSrK, tScS, acc_s, bars, 0, uses, t0, limit0, limit1, full_limit, scale_log2
            )
            self.release(bars, wg_tidx, rank, 0, "C")
            self.release(bars, wg_tidx, rank, 0, "B")  # R still reads V0_R: the barrier waits for it too
            ma0 = cute.arch.fmax(m0, max0)
            ma1 = cute.arch.fmax(m1, max1)
            if wg_tidx % 4 == 0:
                sRow[row0, 0] = ma0
                sRow[row0 + 8, 0] = ma1
            cute.arch.barrier_arrive(barrier_id=BAR_M_A, number_of_threads=256)
            shift0 = Float32(0.0) if ma0 == -Float32.inf else ma0
            shift1 = Float32(0.0) if ma1 == -Float32.inf else ma1
            sc0 = cute.math.exp2(m0 - shift0, fastmath=True)
            sc1 = cute.math.exp2(m1 - shift1, fastmath=True)
            sum0, sum1 = self.exponentiate(acc_s, scale_log2, shift0, shift1)
            l0 = l0 * sc0 + sum0
            l1 = l1 * sc1 + sum1
            helpers.rescale(acc_o, sc0, sc1)
            r_p_acc.store(acc_s.load().to(dtype))
            valid = seqlen - t0 * BLOCK_N
            if valid < BLOCK_N:
                self.zero_tail(sK, 0, 0, valid, wg_tidx)
            self.pv(pv_mma, acc_o, r_p, self.v_operand(sK, v_layout, 0, pv_mma, thr_pv, 0), True)

            # --8<-- [start:seesaw-left]
            # R's maximum and P1 (R has read m_a by now: it arrived here after that).
            cute.arch.barrier(barrier_id=BAR_P1, number_of_threads=256)
            mb0 = sRow[row0, 1]
            mb1 = sRow[row0 + 8, 1]
            if has_b:
                self.get_p(p_load, tPsP_ld, r_p1_acc, wg_tidx)
            shift0 = Float32(0.0) if mb0 == -Float32.inf else mb0
            shift1 = Float32(0.0) if mb1 == -Float32.inf else mb1
            sc0 = cute.math.exp2(ma0 - shift0, fastmath=True)
            sc1 = cute.math.exp2(ma1 - shift1, fastmath=True)
            # P0' = P0 at R's max, over the same addresses this thread just read P1 from.
            for i in cutlass.range_constexpr(cute.size(acc_s)):
                acc_s[i] = acc_s[i] * (sc0 if (i // 2) % 2 == 0 else sc1)
            r_tmp.store(acc_s.load().to(dtype))
            self.put_p(p_store, r_tmp, tPsP_st, wg_tidx)
            cute.arch.fence_proxy("async.shared", space="cta")  # R reads P0' with wgmma (async proxy)
            cute.arch.barrier_arrive(barrier_id=BAR_P0, number_of_threads=256)
            l0 = l0 * sc0
            l1 = l1 * sc1
            warpgroup.wait_group(0)
            self.release(bars, wg_tidx, rank, 0, "A")
            helpers.rescale(acc_o, sc0, sc1)
            if has_b:
                self.wait_full(bars, 1, "A", uses1)
                valid = seqlen - (t0 + 1) * BLOCK_N
                if valid < BLOCK_N:
                    self.zero_tail(sK, 1, 0, valid, wg_tidx)
                self.pv(pv_mma, acc_o, r_p1, self.v_operand(sK, v_layout, 0, pv_mma, thr_pv, 1), True)
                warpgroup.wait_group(0)
                self.release(bars, wg_tidx, rank, 1, "A")
            # --8<-- [end:seesaw-left]
            return mb0, mb1, l0, l1

        @cute.jit
        def pair_right(
            self, qk_mma, pv_mma, pv_ss_mma, tSrQ, tSrK, tScS, p_store, tPsP_st, tOrP_smem, acc_s, acc_o, r_p,
            r_p_acc, v_layout, sK, sRow, bars, wg_tidx, rank, row0, t0, has_b, seqlen, limit0, limit1, full_limit,
            scale_log2, uses, uses1, m0, m1, l0, l1,
        ):  # fmt: skip
            """Consumer R's half of a pair: tile 1's S and softmax, then both tiles' P times its V_R."""
            dtype = self.dtype
            thr_pv = pv_mma.get_slice(wg_tidx)
            thr_pv_ss = pv_ss_mma.get_slice(wg_tidx)
            max0 = -Float32.inf
            max1 = -Float32.inf
            if has_b:
                max0, max1 = self.scores(
                    qk_mma,
                    tSrQ,
                    tSrK,
                    tScS,
                    acc_s,
                    bars,
                    1,
                    uses1,
                    t0 + 1,
                    limit0,
                    limit1,
                    full_limit,
                    scale_log2,
                )
                self.release(bars, wg_tidx, rank, 1, "C")
                self.release(bars, wg_tidx, rank, 1, "A")  # L still reads V1_L: the barrier waits for it too
            cute.arch.barrier(barrier_id=BAR_M_A, number_of_threads=256)
            mb0 = cute.arch.fmax(sRow[row0, 0], max0)
            mb1 = cute.arch.fmax(sRow[row0 + 8, 0], max1)
            shift0 = Float32(0.0) if mb0 == -Float32.inf else mb0
            shift1 = Float32(0.0) if mb1 == -Float32.inf else mb1
            sc0 = cute.math.exp2(m0 - shift0, fastmath=True)
            sc1 = cute.math.exp2(m1 - shift1, fastmath=True)
            l0 = l0 * sc0
            l1 = l1 * sc1
            if has_b:
                sum0, sum1 = self.exponentiate(acc_s, scale_log2, shift0, shift1)
                l0 = l0 + sum0
                l1 = l1 + sum1
                r_p_acc.store(acc_s.load().to(dtype))
                self.put_p(p_store, r_p_acc, tPsP_st, wg_tidx)
            if wg_tidx % 4 == 0:
                sRow[row0, 1] = mb0
                sRow[row0 + 8, 1] = mb1
            cute.arch.barrier_arrive(barrier_id=BAR_P1, number_of_threads=256)
            helpers.rescale(acc_o, sc0, sc1)
            if cutlass.const_expr(self.cross_first):
                self.pv_cross(
                    pv_ss_mma, thr_pv_ss, acc_o, tOrP_smem, v_layout, sK, bars, wg_tidx, seqlen, t0, uses
                )
                if has_b:
                    self.pv_own(pv_mma, thr_pv, acc_o, r_p, v_layout, sK, wg_tidx, seqlen, t0)
                    warpgroup.wait_group(1)
                    self.release(bars, wg_tidx, rank, 0, "B")
                    warpgroup.wait_group(0)
                    self.release(bars, wg_tidx, rank, 1, "B")
                else:
                    warpgroup.wait_group(0)
                    self.release(bars, wg_tidx, rank, 0, "B")
            else:
                if has_b:
                    self.pv_own(pv_mma, thr_pv, acc_o, r_p, v_layout, sK, wg_tidx, seqlen, t0)
                self.pv_cross(
                    pv_ss_mma, thr_pv_ss, acc_o, tOrP_smem, v_layout, sK, bars, wg_tidx, seqlen, t0, uses
                )
                if has_b:
                    warpgroup.wait_group(1)
                    self.release(bars, wg_tidx, rank, 1, "B")
                warpgroup.wait_group(0)
                self.release(bars, wg_tidx, rank, 0, "B")
            return mb0, mb1, l0, l1

        @cute.jit
        def pv_own(self, pv_mma, thr_pv, acc_o, r_p, v_layout, sK, wg_tidx, seqlen, t0):
            """R: issue P1 V1_R (P1 from registers), after zeroing its V rows past the end of a partial tile."""
            valid = seqlen - (t0 + 1) * BLOCK_N
            if valid < BLOCK_N:
                self.zero_tail(sK, 1, 1, valid, wg_tidx)
            self.pv(pv_mma, acc_o, r_p, self.v_operand(sK, v_layout, 1, pv_mma, thr_pv, 1), True)

        @cute.jit
        def pv_cross(
            self, pv_ss_mma, thr_pv_ss, acc_o, tOrP_smem, v_layout, sK, bars, wg_tidx, seqlen, t0, uses
        ):
            """R: wait for L's P0' and issue P0' V0_R (P0' from shared memory)."""
            self.wait_full(bars, 0, "B", uses)
            valid = seqlen - t0 * BLOCK_N
            if valid < BLOCK_N:
                self.zero_tail(sK, 0, 1, valid, wg_tidx)
            cute.arch.barrier(barrier_id=BAR_P0, number_of_threads=256)
            self.pv(pv_ss_mma, acc_o, tOrP_smem, self.v_operand(sK, v_layout, 1, pv_ss_mma, thr_pv_ss, 0))

    return MLADecodeSeesawSm90
