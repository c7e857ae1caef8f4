"""A tile copy with TMA (sm90): cp.async.bulk.tensor into shared memory, counted by an mbarrier, and a
TMA store back; the lesson is attn_cutlass.copies."""

from __future__ import annotations

import cuda.bindings.driver as cuda
import cutlass
import cutlass.cute as cute
from cutlass.cute.nvgpu import cpasync
from cutlass.memory import SmemAllocator

from .copy_tiling import TILE, tile_grid


class TmaCopy:
    """``mY[:] = mX`` by TMA: one bulk tensor load per tile into shared memory, one bulk store (sm90)."""

    threads = 32  # one warp: a single elected thread issues everything

    def __init__(self, dtype, tile=TILE):
        self.dtype, self.tile = dtype, tile

    @cute.jit
    def __call__(self, mX: cute.Tensor, mY: cute.Tensor, stream: cuda.CUstream):
        s_layout = cute.make_layout(self.tile, stride=(self.tile[1], 1))
        # The atoms hold TMA descriptors (global shape, strides, box = the tile) built on the host;
        # tma_x / tma_y are coordinate tensors: the TMA unit takes tile coordinates, not addresses.
        load, tma_x = cpasync.make_tiled_tma_atom(cpasync.CopyBulkTensorTileG2SOp(), mX, s_layout, self.tile)
        store, tma_y = cpasync.make_tiled_tma_atom(cpasync.CopyBulkTensorTileS2GOp(), mY, s_layout, self.tile)

        @cute.struct
        class SharedStorage:
            mbar: cute.struct.MemRange[cutlass.Int64, 1]
            s: cute.struct.Align[cute.struct.MemRange[self.dtype, cute.cosize(s_layout)], 128]

        self.shared_storage = SharedStorage
        grid = tile_grid(mX, self.tile)
        self.kernel(load, tma_x, store, tma_y, s_layout).launch(
            grid=grid, block=(self.threads, 1, 1), stream=stream
        )

    @cute.kernel
    def kernel(
        self,
        load: cute.CopyAtom,
        tma_x: cute.Tensor,
        store: cute.CopyAtom,
        tma_y: cute.Tensor,
        s_layout: cute.Layout,
    ):
        bm, bn, _ = cute.arch.block_idx()
        smem = SmemAllocator()
        storage = smem.allocate(self.shared_storage)
        bar = storage.mbar.data_ptr()
        sX = storage.s.get_tensor(s_layout)
        # One TMA "value" is the whole tile: group the tile's modes into one on both sides.
        tLsX, tLgX = cpasync.tma_partition(
            load,
            0,
            cute.make_layout(1),
            cute.group_modes(sX, 0, 2),
            cute.group_modes(cute.local_tile(tma_x, self.tile, (bm, bn)), 0, 2),
        )
        tSsY, tSgY = cpasync.tma_partition(
            store,
            0,
            cute.make_layout(1),
            cute.group_modes(sX, 0, 2),
            cute.group_modes(cute.local_tile(tma_y, self.tile, (bm, bn)), 0, 2),
        )
        with cute.arch.elect_one():
            cute.arch.mbarrier_init(bar, 1)  # one arrival: the expect_tx below
        cute.arch.mbarrier_init_fence()  # the TMA unit (async proxy) must see the initialised barrier
        cute.arch.barrier()
        with cute.arch.elect_one():
            # The phase completes once 1 thread arrived *and* the tile's bytes have landed.
            cute.arch.mbarrier_arrive_and_expect_tx(bar, cute.size_in_bytes(self.dtype, s_layout))
        cute.copy(load, tLgX, tLsX, tma_bar_ptr=bar)  # the atom elects its own issuing thread
        cute.arch.mbarrier_wait(bar, 0)
        # The load's bytes are visible to this thread through the mbarrier; the store reads them
        # through the async proxy again, ordered after that by the proxy fence.
        cute.arch.fence_proxy("async.shared", space="cta")
        # The DSL (4.8.1) elects the issuing lane of a TMA *load* itself, not of a store: without
        # elect_one every lane of the warp would issue its own copy of the same bulk store.
        with cute.arch.elect_one():
            cute.copy(store, tSsY, tSgY)
            cute.arch.cp_async_bulk_commit_group()
            # Shared memory must outlive the store's reads of it; the writes reach global memory (visible
            # to later kernels) by grid completion.
            cute.arch.cp_async_bulk_wait_group(0, read=True)
