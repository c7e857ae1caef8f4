"""Hopper GEMM ``C = A @ B`` (bf16/fp16 in, fp32 accumulate): TMA, wgmma, warp specialisation, persistence.

The same skeleton as the attention forward, minus the softmax, so it is the place to learn it:

* 384 threads: warpgroup 0 produces (one warp issues TMA loads of A and B k-tiles into a ring of
  ``stages`` shared-memory slots), warpgroups 1 and 2 consume (each owns 64 of the 128 rows of the
  C tile and issues wgmma on the slots). ``PipelineTmaAsync`` pairs every slot with a "full" mbarrier,
  completed by the TMA byte count, and an "empty" one, arrived at by one lane per consumer warp.
* The consumers keep one wgmma group in flight: the slot of k-tile ``t - 1`` is released only after
  ``wait_group(1)`` says its MMAs retired, so the tensor cores never wait on the release.
* Clusters of ``cluster_m`` CTAs (2 by default) along M: the CTAs of a cluster compute vertically
  adjacent tiles, so they read the same B k-tile. Each loads 1/cluster_m of it and the TMA multicasts
  that part into the shared memory of every CTA of the cluster: B's L2 -> SM traffic falls by that
  factor (a 128 x 256 x 64 step reads 48 KiB from L2 alone, 32 KiB in a pair). A slot is then free
  only when the consumers of *every* CTA it was written into have released it, so each consumer warp
  arrives on the empty barrier of each CTA of the cluster.
* Persistent: ``#SMs`` CTAs (``#SMs / cluster_m`` clusters) walk the output tiles, a cluster's tiles
  in groups of ``group_m`` tile rows (a swizzled raster): the CTAs running at once share A rows and B
  columns in L2.
* Epilogue: fp32 accumulators -> 16-bit -> global memory; whole tiles as 32-bit pairs, edge tiles
  element by element, predicated on the matrix edge.

A is (M, K) with K contiguous; B is given as (N, K): K-contiguous (``b.T`` of a column-major B) or
N-contiguous (``b.T`` of a row-major (K, N) B, what ``torch.matmul(a, b)`` passes); wgmma reads either.
With ``cluster_m`` = 2 the number of M tiles must be even (the caller falls back to 1 otherwise): both
CTAs of a cluster must load their part of B for every tile.
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

GROUP_M = 32


class GemmSm90:
    arch = "sm_90a"
    threads = 384

    def __init__(self, dtype, tile_mnk=(128, 256, 64), stages=4, cluster_m=2, group_m=GROUP_M):
        if cluster_m not in (1, 2):
            raise ValueError(f"GemmSm90: cluster_m must be 1 or 2, got {cluster_m}")
        self.dtype = dtype
        self.tile_m, self.tile_n, self.tile_k = tile_mnk
        self.stages = stages
        self.cluster_m = cluster_m
        self.group_m = group_m

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
        b_op = cpasync.CopyBulkTensorTileG2SMulticastOp() if self.cluster_m > 1 else g2s
        tma_atom_b, tma_b = cpasync.make_tiled_tma_atom(
            b_op, mB, cute.slice_(sB_layout, (None, None, 0)), (tn, tk), num_multicast=self.cluster_m
        )

        @cute.struct
        class SharedStorage:
            mbar: cute.struct.MemRange[cutlass.Int64, 2 * self.stages]
            sA: cute.struct.Align[cute.struct.MemRange[self.dtype, cute.cosize(sA_layout)], 1024]
            sB: cute.struct.Align[cute.struct.MemRange[self.dtype, cute.cosize(sB_layout)], 1024]

        self.shared_storage = SharedStorage
        self.kernel(tma_atom_a, tma_a, tma_atom_b, tma_b, mC, tiled_mma, sA_layout, sB_layout).launch(
            grid=(num_ctas, 1, 1),
            block=(self.threads, 1, 1),
            cluster=(self.cluster_m, 1, 1),
            stream=stream,
            min_blocks_per_mp=1,
        )

    @cute.jit
    def _tile_mn(self, tile: Int32, m_rows: Int32, n_tiles: Int32):
        """Grouped raster over the (m_rows, n_tiles) grid of cluster tiles: group_m tile rows (of single
        tiles) at a time, walking N inside the group."""
        group_rows = self.group_m // self.cluster_m
        per_group = group_rows * n_tiles
        group = tile // per_group
        first_m = group * group_rows
        rows = cutlass.min(m_rows - first_m, group_rows)
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
        cluster = cute.make_layout((1, self.cluster_m, 1, 1))  # (V, M, N, L) of the CTAs in a cluster
        rank = cute.arch.make_warp_uniform(cute.arch.block_idx_in_cluster())
        pipe = pipeline.PipelineTmaAsync.create(
            barrier_storage=storage.mbar.data_ptr(),
            num_stages=self.stages,
            producer_group=pipeline.CooperativeGroup(pipeline.Agent.Thread),
            # one arrive per consumer warp on every CTA its slot was multicast into
            consumer_group=pipeline.CooperativeGroup(pipeline.Agent.Thread, 8 * self.cluster_m),
            tx_count=tx_bytes,
            cta_layout_vmnk=cluster,
            defer_sync=True,
        )
        # The peers' barriers must be initialised before any multicast or remote arrive reaches them.
        pipeline.pipeline_init_arrive(cluster_shape_mn=cluster, is_relaxed=True)
        pipeline.pipeline_init_wait(cluster_shape_mn=cluster)
        sA = storage.sA.get_tensor(sA_layout.outer, swizzle=sA_layout.inner)
        sB = storage.sB.get_tensor(sB_layout.outer, swizzle=sB_layout.inner)

        M, N, K = mC.shape[0], mC.shape[1], tma_a.shape[1]
        m_tiles = (M + tm - 1) // tm
        n_tiles = (N + tn - 1) // tn
        k_tiles = (K + tk - 1) // tk
        m_rows = m_tiles // self.cluster_m  # rows of cluster tiles (cluster_m tiles tall)
        num_tiles = m_rows * n_tiles
        first = cute.arch.block_idx()[0] // self.cluster_m  # this cluster's first cluster tile
        step = cute.arch.grid_dim()[0] // self.cluster_m
        # (tile, tile, m_tiles, k_tiles) views of A and B; C likewise.
        gA = cute.local_tile(tma_a, (tm, tk), (None, None))
        gB = cute.local_tile(tma_b, (tn, tk), (None, None))
        tAsA, tAgA = cpasync.tma_partition(
            tma_atom_a, 0, cute.make_layout(1), cute.group_modes(sA, 0, 2), cute.group_modes(gA, 0, 2)
        )
        # B: this CTA issues the rank-th 1/cluster_m of each tile and multicasts it to the whole cluster.
        tBsB, tBgB = cpasync.tma_partition(
            tma_atom_b,
            rank,
            cute.make_layout(self.cluster_m),
            cute.group_modes(sB, 0, 2),
            cute.group_modes(gB, 0, 2),
        )
        b_mask = None
        if cutlass.const_expr(self.cluster_m > 1):
            b_mask = cpasync.create_tma_multicast_mask(cluster, cluster.get_flat_coord(rank), mcast_mode=1)

        if wg_idx == 0:
            cute.arch.setmaxregister_decrease(40)
            if warp_idx == 0:
                cpasync.prefetch_descriptor(tma_atom_a)
                cpasync.prefetch_descriptor(tma_atom_b)
                state = pipeline.make_pipeline_state(pipeline.PipelineUserType.Producer, self.stages)
                tile = first
                while tile < num_tiles:
                    row, tile_n = self._tile_mn(tile, m_rows, n_tiles)
                    tile_m = row * self.cluster_m + rank
                    for kt in cutlass.range(k_tiles, unroll=1):
                        pipe.producer_acquire(state)
                        bar = pipe.producer_get_barrier(state)
                        cute.copy(
                            tma_atom_a, tAgA[None, tile_m, kt], tAsA[None, state.index], tma_bar_ptr=bar
                        )
                        cute.copy(
                            tma_atom_b,
                            tBgB[None, tile_n, kt],
                            tBsB[None, state.index],
                            tma_bar_ptr=bar,
                            mcast_mask=b_mask,
                        )
                        state.advance()
                    tile += step
                # Do not exit while a peer may still arrive on this CTA's barriers.
                pipe.producer_tail(state)
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
            tile = first
            while tile < num_tiles:
                row, tile_n = self._tile_mn(tile, m_rows, n_tiles)
                tile_m = row * self.cluster_m + rank
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
                # Epilogue: registers -> global. A whole tile goes out in 32-bit pairs (each thread holds
                # two adjacent columns per 8); an edge tile element by element, predicated on C's edge.
                gC = cute.local_tile(mC, (tm, tn), (tile_m, tile_n))
                tCgC = thr_mma.partition_C(gC)
                rC = cute.make_rmem_tensor_like(acc, self.dtype)
                rC.store(acc.load().to(self.dtype))
                row0, col0 = tile_m * tm, tile_n * tn
                if row0 + tm <= M and col0 + tn <= N:
                    cute.autovec_copy(rC, tCgC)
                else:
                    for i in cutlass.range_constexpr(cute.size(rC)):
                        if row0 + tCcC[i][0] < M and col0 + tCcC[i][1] < N:
                            tCgC[i] = rC[i]
                tile += step
