"""A tile copy through registers with 128-bit global loads and stores (any sm80+ GPU); the lesson is
attn_cutlass.copies."""

from __future__ import annotations

import cuda.bindings.driver as cuda
import cutlass.cute as cute

from .copy_tiling import THREADS, TILE, tile_grid, tiled_copy


class VectorizedCopy:
    """``mY[:] = mX`` through registers, 128-bit loads and stores; (M, N) row-major, 16-bit."""

    def __init__(self, dtype, tile=TILE, threads=THREADS):
        self.dtype, self.tile, self.threads = dtype, tile, threads

    @cute.jit
    def __call__(self, mX: cute.Tensor, mY: cute.Tensor, stream: cuda.CUstream):
        tiled = tiled_copy(cute.nvgpu.CopyUniversalOp(), self.dtype, 128, self.tile, self.threads)
        grid = tile_grid(mX, self.tile)
        self.kernel(mX, mY, tiled).launch(grid=grid, block=(self.threads, 1, 1), stream=stream)

    @cute.kernel
    def kernel(self, mX: cute.Tensor, mY: cute.Tensor, tiled: cute.TiledCopy):
        tidx, _, _ = cute.arch.thread_idx()
        bm, bn, _ = cute.arch.block_idx()
        thr = tiled.get_slice(tidx)
        tXgX = thr.partition_S(cute.local_tile(mX, self.tile, (bm, bn)))  # ((8, 1), 4, 1): 4 vectors
        tXgY = thr.partition_D(cute.local_tile(mY, self.tile, (bm, bn)))
        frag = cute.make_fragment_like(tXgX)
        cute.copy(tiled, tXgX, frag)
        cute.copy(tiled, frag, tXgY)
