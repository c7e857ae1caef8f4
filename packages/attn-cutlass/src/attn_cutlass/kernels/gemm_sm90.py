"""Hopper GEMM ``C = A @ B`` (bf16/fp16 in, fp32 accumulate): TMA, wgmma, warp specialisation, persistence.

The same skeleton as the attention forward, minus the softmax, so it is the place to learn it:

* 384 threads: warpgroup 0 produces (one warp issues TMA loads of A and B k-tiles into a ring of
  ``stages`` shared-memory slots), warpgroups 1 and 2 consume (each owns 64 of the 128 rows of the
  C tile and issues wgmma on the slots). ``PipelineTmaAsync`` pairs every slot with a "full" mbarrier,
  completed by the TMA byte count, and an "empty" one, arrived at by one lane per consumer warp.
* The consumers keep one wgmma group in flight: the slot of k-tile ``t - 1`` is released only after
  ``wait_group(1)`` says its MMAs retired, so the tensor cores never wait on the release.
* Persistent: ``#SMs`` CTAs walk the output tiles in groups of ``GROUP_M`` tile rows (a swizzled raster):
  the CTAs running at once share A rows and B columns in L2.
* Epilogue: fp32 accumulators -> 16-bit -> global memory, predicated on the matrix edge.

A is (M, K) with K contiguous; B is given as (N, K): K-contiguous (``b.T`` of a column-major B) or
N-contiguous (``b.T`` of a row-major (K, N) B, what ``torch.matmul(a, b)`` passes); wgmma reads either.
"""

from __future__ import annotations

import cuda.bindings.driver as cuda
import cutlass
import cutlass.cute as cute
import cutlass.pipeline as pipeline
import cutlass.utils.hopper_helpers as sm90_utils
from cutlass import Float32, Int32
from cutlass.cute.nvgpu import cpasync, warpgroup
from cutlass.memory import SmemAllocator
from cutlass.tensor_utils import LayoutEnum

GROUP_M = 16


class GemmSm90:
    arch = "sm_90a"
    threads = 384

    def __init__(self, dtype, tile_mnk=(128, 256, 64), stages=4):
        self.dtype = dtype
        self.tile_m, self.tile_n, self.tile_k = tile_mnk
        self.stages = stages

    @cute.jit
    def __call__(
        self, mA: cute.Tensor, mB: cute.Tensor, mC: cute.Tensor, num_ctas: Int32, stream: cuda.CUstream
    ):
        tm, tn, tk = self.tile_m, self.tile_n, self.tile_k
        a_layout = LayoutEnum.from_tensor(mA)
        b_layout = LayoutEnum.from_tensor(mB)
        tiled_mma = sm90_utils.make_trivial_tiled_mma(
            self.dtype,
            self.dtype,
            a_layout.sm90_mma_major_mode(),
            b_layout.sm90_mma_major_mode(),
            Float32,
            (2, 1, 1),  # two consumer warpgroups stacked along M
            (64, tn),
        )
        sA_layout = sm90_utils.make_smem_layout_a(a_layout, (tm, tn, tk), self.dtype, self.stages)
        sB_layout = sm90_utils.make_smem_layout_b(b_layout, (tm, tn, tk), self.dtype, self.stages)
        g2s = cpasync.CopyBulkTensorTileG2SOp()
        tma_atom_a, tma_a = cpasync.make_tiled_tma_atom(
            g2s, mA, cute.slice_(sA_layout, (None, None, 0)), (tm, tk)
        )
        tma_atom_b, tma_b = cpasync.make_tiled_tma_atom(
            g2s, mB, cute.slice_(sB_layout, (None, None, 0)), (tn, tk)
        )

        @cute.struct
        class SharedStorage:
            mbar: cute.struct.MemRange[cutlass.Int64, 2 * self.stages]
            sA: cute.struct.Align[cute.struct.MemRange[self.dtype, cute.cosize(sA_layout)], 1024]
            sB: cute.struct.Align[cute.struct.MemRange[self.dtype, cute.cosize(sB_layout)], 1024]

        self.shared_storage = SharedStorage
        self.kernel(tma_atom_a, tma_a, tma_atom_b, tma_b, mC, tiled_mma, sA_layout, sB_layout).launch(
            grid=(num_ctas, 1, 1), block=(self.threads, 1, 1), stream=stream, min_blocks_per_mp=1
        )

    @cute.jit
    def _tile_mn(self, tile: Int32, m_tiles: Int32, n_tiles: Int32):
        """Grouped raster: GROUP_M tile rows at a time, walking N inside the group."""
        per_group = GROUP_M * n_tiles
        group = tile // per_group
        first_m = group * GROUP_M
        rows = cutlass.min(m_tiles - first_m, GROUP_M)
        local = tile - group * per_group
        return first_m + local % rows, local // rows

    @cute.kernel
    def kernel(
        self,
        tma_atom_a: cute.CopyAtom,
        tma_a: cute.Tensor,
        tma_atom_b: cute.CopyAtom,
        tma_b: cute.Tensor,
        mC: cute.Tensor,
        tiled_mma: cute.TiledMma,
        sA_layout: cute.ComposedLayout,
        sB_layout: cute.ComposedLayout,
    ):
        tm, tn, tk = self.tile_m, self.tile_n, self.tile_k
        tidx, _, _ = cute.arch.thread_idx()
        warp_idx = cute.arch.make_warp_uniform(cute.arch.warp_idx())
        wg_idx = cute.arch.make_warp_uniform(tidx // 128)
        smem = SmemAllocator()
        storage = smem.allocate(self.shared_storage)
        tx_bytes = cute.size_in_bytes(
            self.dtype, cute.slice_(sA_layout, (None, None, 0))
        ) + cute.size_in_bytes(self.dtype, cute.slice_(sB_layout, (None, None, 0)))
        pipe = pipeline.PipelineTmaAsync.create(
            barrier_storage=storage.mbar.data_ptr(),
            num_stages=self.stages,
            producer_group=pipeline.CooperativeGroup(pipeline.Agent.Thread),
            consumer_group=pipeline.CooperativeGroup(pipeline.Agent.Thread, 8),
            tx_count=tx_bytes,
            cta_layout_vmnk=cute.make_layout((1, 1, 1, 1)),
            defer_sync=True,
        )
        pipeline.pipeline_init_arrive()
        pipeline.pipeline_init_wait()
        sA = storage.sA.get_tensor(sA_layout.outer, swizzle=sA_layout.inner)
        sB = storage.sB.get_tensor(sB_layout.outer, swizzle=sB_layout.inner)

        M, N, K = mC.shape[0], mC.shape[1], tma_a.shape[1]
        m_tiles = (M + tm - 1) // tm
        n_tiles = (N + tn - 1) // tn
        k_tiles = (K + tk - 1) // tk
        num_tiles = m_tiles * n_tiles
        # (tile, tile, m_tiles, k_tiles) views of A and B; C likewise.
        gA = cute.local_tile(tma_a, (tm, tk), (None, None))
        gB = cute.local_tile(tma_b, (tn, tk), (None, None))
        tAsA, tAgA = cpasync.tma_partition(
            tma_atom_a, 0, cute.make_layout(1), cute.group_modes(sA, 0, 2), cute.group_modes(gA, 0, 2)
        )
        tBsB, tBgB = cpasync.tma_partition(
            tma_atom_b, 0, cute.make_layout(1), cute.group_modes(sB, 0, 2), cute.group_modes(gB, 0, 2)
        )

        if wg_idx == 0:
            cute.arch.setmaxregister_decrease(40)
            if warp_idx == 0:
                cpasync.prefetch_descriptor(tma_atom_a)
                cpasync.prefetch_descriptor(tma_atom_b)
                state = pipeline.make_pipeline_state(pipeline.PipelineUserType.Producer, self.stages)
                tile = cute.arch.block_idx()[0]
                while tile < num_tiles:
                    tile_m, tile_n = self._tile_mn(tile, m_tiles, n_tiles)
                    for kt in cutlass.range(k_tiles, unroll=1):
                        pipe.producer_acquire(state)
                        bar = pipe.producer_get_barrier(state)
                        cute.copy(
                            tma_atom_a, tAgA[None, tile_m, kt], tAsA[None, state.index], tma_bar_ptr=bar
                        )
                        cute.copy(
                            tma_atom_b, tBgB[None, tile_n, kt], tBsB[None, state.index], tma_bar_ptr=bar
                        )
                        state.advance()
                    tile += cute.arch.grid_dim()[0]
        else:
            cute.arch.setmaxregister_increase(232)
            ctid = tidx - 128
            thr_mma = tiled_mma.get_slice(ctid)
            tCrA = thr_mma.make_fragment_A(thr_mma.partition_A(sA))  # (MMA, MMA_M, MMA_K, stages)
            tCrB = thr_mma.make_fragment_B(thr_mma.partition_B(sB))
            acc = thr_mma.make_fragment_C(thr_mma.partition_shape_C((tm, tn)))
            tCcC = thr_mma.partition_C(cute.make_identity_tensor((tm, tn)))
            read = pipeline.make_pipeline_state(pipeline.PipelineUserType.Consumer, self.stages)
            release = pipeline.make_pipeline_state(pipeline.PipelineUserType.Consumer, self.stages)
            num_kb = cute.size(tCrA, mode=[2])
            tile = cute.arch.block_idx()[0]
            while tile < num_tiles:
                tile_m, tile_n = self._tile_mn(tile, m_tiles, n_tiles)
                atom = cute.make_mma_atom(tiled_mma.op)
                atom.set(warpgroup.Field.ACCUMULATE, False)
                # --8<-- [start:gemm-consumer]
                for kt in cutlass.range(k_tiles, unroll=1):
                    pipe.consumer_wait(read)
                    warpgroup.fence()
                    for kb in cutlass.range_constexpr(num_kb):
                        cute.gemm(
                            atom, acc, tCrA[None, None, kb, read.index], tCrB[None, None, kb, read.index], acc
                        )
                        atom.set(warpgroup.Field.ACCUMULATE, True)
                    warpgroup.commit_group()
                    read.advance()
                    # Keep this k-tile's MMAs in flight; the previous ones have retired: free their slot.
                    warpgroup.wait_group(1)
                    if kt > 0:
                        pipe.consumer_release(release)
                        release.advance()
                warpgroup.wait_group(0)
                pipe.consumer_release(release)
                release.advance()
                # --8<-- [end:gemm-consumer]
                # Epilogue: registers -> global, predicated on the edge of C.
                gC = cute.local_tile(mC, (tm, tn), (tile_m, tile_n))
                tCgC = thr_mma.partition_C(gC)
                rC = cute.make_rmem_tensor_like(acc, self.dtype)
                rC.store(acc.load().to(self.dtype))
                row0, col0 = tile_m * tm, tile_n * tn
                for i in cutlass.range_constexpr(cute.size(rC)):
                    if row0 + tCcC[i][0] < M and col0 + tCcC[i][1] < N:
                        tCgC[i] = rC[i]
                tile += cute.arch.grid_dim()[0]
