"""A tile copy global -> shared with 16-byte cp.async (sm80+), then shared -> global; the lesson is
attn_cutlass.copies."""

from __future__ import annotations

import cuda.bindings.driver as cuda
import cutlass.cute as cute
from cutlass.cute.nvgpu import cpasync
from cutlass.memory import SmemAllocator

from .copy_tiling import THREADS, TILE, tile_grid, tiled_copy


class CpAsyncCopy:
    """``mY[:] = mX`` staged in shared memory: cp.async in, a CTA barrier, registers out (sm80+)."""

    def __init__(self, dtype, tile=TILE, threads=THREADS):
        self.dtype, self.tile, self.threads = dtype, tile, threads

    @cute.jit
    def __call__(self, mX: cute.Tensor, mY: cute.Tensor, stream: cuda.CUstream):
        # cp.cg caches in L2 only: data read once has no business in L1.
        g2s_op = cpasync.CopyG2SOp(cache_mode=cpasync.LoadCacheMode.GLOBAL)
        g2s = tiled_copy(g2s_op, self.dtype, 128, self.tile, self.threads)
        # Read back column-major: thread t reads rows another thread's cp.async wrote.
        s2g = tiled_copy(
            cute.nvgpu.CopyUniversalOp(), self.dtype, 128, self.tile, self.threads, thread_major="col"
        )
        # A row-major tile of 128-byte rows: a warp's 16-byte writes (4 rows x 8 chunks) cover 512
        # contiguous bytes, so no swizzle is needed to avoid bank conflicts here.
        s_layout = cute.make_layout(self.tile, stride=(self.tile[1], 1))

        @cute.struct
        class SharedStorage:
            s: cute.struct.Align[cute.struct.MemRange[self.dtype, cute.cosize(s_layout)], 128]

        self.shared_storage = SharedStorage
        grid = tile_grid(mX, self.tile)
        self.kernel(mX, mY, g2s, s2g, s_layout).launch(grid=grid, block=(self.threads, 1, 1), stream=stream)

    @cute.kernel
    def kernel(
        self,
        mX: cute.Tensor,
        mY: cute.Tensor,
        g2s: cute.TiledCopy,
        s2g: cute.TiledCopy,
        s_layout: cute.Layout,
    ):
        tidx, _, _ = cute.arch.thread_idx()
        bm, bn, _ = cute.arch.block_idx()
        smem = SmemAllocator()
        sX = smem.allocate(self.shared_storage).s.get_tensor(s_layout)

        thr_in = g2s.get_slice(tidx)
        cute.copy(g2s, thr_in.partition_S(cute.local_tile(mX, self.tile, (bm, bn))), thr_in.partition_D(sX))
        cute.arch.cp_async_commit_group()
        cute.arch.cp_async_wait_group(0)  # this thread's copies have landed ...
        cute.arch.barrier()  # ... and everybody else's

        thr_out = s2g.get_slice(tidx)
        tSsX = thr_out.partition_S(sX)
        frag = cute.make_fragment_like(tSsX)
        cute.copy(s2g, tSsX, frag)
        cute.copy(s2g, frag, thr_out.partition_D(cute.local_tile(mY, self.tile, (bm, bn))))
