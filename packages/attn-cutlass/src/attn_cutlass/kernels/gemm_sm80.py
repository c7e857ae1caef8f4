"""Ampere GEMM ``C = A @ B`` (bf16/fp16 in, fp32 accumulate): warp MMA, cp.async multistage pipeline.

The sm80 building blocks, each one line of CuTe:

* **Warp MMA**: ``mma.sync.aligned.m16n8k16`` (``warp.MmaF16BF16Op``). Four warps tile the CTA's
  128 x 128 output 2 x 2; the permutation (32, 32, 16) gives each warp 16 x 16 per atom step so one
  ``ldmatrix.x4`` feeds two B atoms.
* **Swizzled shared memory**: each stage of A and B is ``Swizzle<2,3,3> o (8, 32):(32, 1)`` tiled to
  (128, 32): rows of 64 bytes whose 16-byte chunks are XOR-permuted by the row, so both the cp.async
  writes (one 16-byte chunk per thread) and the ldmatrix reads (8 rows of one chunk column) are
  bank-conflict free.
* **cp.async pipeline**: ``stages`` slots; k-tile ``t + stages - 1`` is issued while k-tile ``t`` is
  multiplied; ``cp.async.wait_group(stages - 2)`` + a CTA barrier make slot ``t`` visible, the same
  barrier guarantees nobody still reads the slot being overwritten.
* **ldmatrix**: shared -> registers in the MMA's fragment layout (``make_tiled_copy_A/B`` of the MMA).
* Epilogue: fp32 -> 16-bit in registers, stored predicated on the matrix edge.

A is (M, K) and B is (N, K), both K-contiguous with K a multiple of ``tile_k`` (the host pads; see
attn_cutlass.gemm.matmul). M and N are arbitrary: loads of rows past the edge are predicated off (those
rows only feed output rows that are not stored).
"""

from __future__ import annotations

import cuda.bindings.driver as cuda
import cutlass
import cutlass.cute as cute
from cutlass import Float32
from cutlass.cute.nvgpu import cpasync, warp


class GemmSm80:
    arch = "sm_80"
    threads = 128

    def __init__(self, dtype, tile_mnk=(128, 128, 32), stages=3):
        self.dtype = dtype
        self.tile_m, self.tile_n, self.tile_k = tile_mnk
        self.stages = stages
        assert self.tile_k == 32, "the swizzle atom below is written for 64-byte rows"

    def _smem_layout(self, rows):
        # 8 rows x 32 elements (64 B): Swizzle<2,3,3> permutes the four 16-byte chunks of a row by row.
        atom = cute.make_composed_layout(
            cute.make_swizzle(2, 3, 3), 0, cute.make_layout((8, self.tile_k), stride=(self.tile_k, 1))
        )
        return cute.tile_to_shape(atom, (rows, self.tile_k, self.stages), (0, 1, 2))

    def _g2s_copy(self):
        # One 16-byte cp.async per thread and step: 4 threads cover a 32-element row, 32 rows per pass.
        atom = cute.make_copy_atom(
            cpasync.CopyG2SOp(cache_mode=cpasync.LoadCacheMode.GLOBAL), self.dtype, num_bits_per_copy=128
        )
        per_row = self.tile_k // 8
        thr = cute.make_layout((self.threads // per_row, per_row), stride=(per_row, 1))
        return cute.make_tiled_copy_tv(atom, thr, cute.make_layout((1, 8)))

    @cute.jit
    def _load(self, g2s, pA, tAgA, tAsA, pB, tBgB, tBsB, k_tile, slot):
        for i in cutlass.range_constexpr(cute.size(pA)):
            if pA[i]:
                cute.copy(g2s, tAgA[None, i, None, k_tile], tAsA[None, i, None, slot])
        for i in cutlass.range_constexpr(cute.size(pB)):
            if pB[i]:
                cute.copy(g2s, tBgB[None, i, None, k_tile], tBsB[None, i, None, slot])

    @cute.jit
    def __call__(self, mA: cute.Tensor, mB: cute.Tensor, mC: cute.Tensor, stream: cuda.CUstream):
        tiled_mma = cute.make_tiled_mma(
            warp.MmaF16BF16Op(self.dtype, Float32, (16, 8, 16)),
            cute.make_layout((2, 2, 1)),
            permutation_mnk=(32, 32, 16),
        )
        sA_layout = self._smem_layout(self.tile_m)
        sB_layout = self._smem_layout(self.tile_n)

        @cute.struct
        class SharedStorage:
            sA: cute.struct.Align[cute.struct.MemRange[self.dtype, cute.cosize(sA_layout)], 128]
            sB: cute.struct.Align[cute.struct.MemRange[self.dtype, cute.cosize(sB_layout)], 128]

        self.shared_storage = SharedStorage
        grid_m = cute.ceil_div(mC.shape[0], self.tile_m)
        grid_n = cute.ceil_div(mC.shape[1], self.tile_n)
        self.kernel(mA, mB, mC, tiled_mma, sA_layout, sB_layout).launch(
            grid=(grid_m, grid_n, 1), block=(self.threads, 1, 1), stream=stream
        )

    @cute.kernel
    def kernel(
        self,
        mA: cute.Tensor,
        mB: cute.Tensor,
        mC: cute.Tensor,
        tiled_mma: cute.TiledMma,
        sA_layout: cute.ComposedLayout,
        sB_layout: cute.ComposedLayout,
    ):
        tidx, _, _ = cute.arch.thread_idx()
        bm, bn, _ = cute.arch.block_idx()
        tm, tn, tk = self.tile_m, self.tile_n, self.tile_k

        smem = cutlass.utils.SmemAllocator()
        storage = smem.allocate(self.shared_storage)
        sA = storage.sA.get_tensor(sA_layout)
        sB = storage.sB.get_tensor(sB_layout)

        # This CTA's tiles: (tm, tk, k_tiles) of A, (tn, tk, k_tiles) of B, (tm, tn) of C.
        gA = cute.local_tile(mA, (tm, tk), (bm, None))
        gB = cute.local_tile(mB, (tn, tk), (bn, None))
        gC = cute.local_tile(mC, (tm, tn), (bm, bn))
        # The same tiles of coordinates, for the edge predicates.
        cA = cute.local_tile(cute.make_identity_tensor(mA.shape), (tm, tk), (bm, None))
        cB = cute.local_tile(cute.make_identity_tensor(mB.shape), (tn, tk), (bn, None))
        cC = cute.local_tile(cute.make_identity_tensor(mC.shape), (tm, tn), (bm, bn))
        k_tiles = cute.size(gA, mode=[2])

        # ---- global -> shared (cp.async)
        g2s = self._g2s_copy()
        thr_g2s = g2s.get_slice(tidx)
        tAgA = thr_g2s.partition_S(gA)  # (CPY, CPY_M, CPY_K, k_tiles)
        tAsA = thr_g2s.partition_D(sA)  # (CPY, CPY_M, CPY_K, stages)
        tAcA = thr_g2s.partition_S(cA)
        tBgB = thr_g2s.partition_S(gB)
        tBsB = thr_g2s.partition_D(sB)
        tBcB = thr_g2s.partition_S(cB)
        # Row predicates (K needs none: the host pads it to a multiple of tile_k).
        pA = cute.make_rmem_tensor(cute.make_layout(cute.size(tAsA, mode=[1])), cutlass.Boolean)
        for i in cutlass.range_constexpr(cute.size(pA)):
            pA[i] = cute.elem_less(tAcA[0, i, 0, 0][0], mA.shape[0])
        pB = cute.make_rmem_tensor(cute.make_layout(cute.size(tBsB, mode=[1])), cutlass.Boolean)
        for i in cutlass.range_constexpr(cute.size(pB)):
            pB[i] = cute.elem_less(tBcB[0, i, 0, 0][0], mB.shape[0])

        tiles = (g2s, pA, tAgA, tAsA, pB, tBgB, tBsB)

        # ---- MMA partitions and shared -> register copies (ldmatrix)
        thr_mma = tiled_mma.get_slice(tidx)
        tCrA = thr_mma.make_fragment_A(thr_mma.partition_A(sA[None, None, 0]))
        tCrB = thr_mma.make_fragment_B(thr_mma.partition_B(sB[None, None, 0]))
        tCgC = thr_mma.partition_C(gC)
        acc = thr_mma.make_fragment_C(tCgC)
        acc.fill(0.0)

        ldm = cute.make_copy_atom(warp.LdMatrix8x8x16bOp(transpose=False, num_matrices=4), self.dtype)
        s2r_a = cute.make_tiled_copy_A(ldm, tiled_mma).get_slice(tidx)
        s2r_b = cute.make_tiled_copy_B(ldm, tiled_mma).get_slice(tidx)
        tCsA = s2r_a.partition_S(sA)  # (CPY, CPY_M, CPY_K, stages)
        tCrA_v = s2r_a.retile(tCrA)
        tCsB = s2r_b.partition_S(sB)
        tCrB_v = s2r_b.retile(tCrB)
        k_blocks = cute.size(tCrA, mode=[2])

        # ---- prologue: stages - 1 k-tiles in flight (one commit group each, empty past the end)
        for s in cutlass.range_constexpr(self.stages - 1):
            if s < k_tiles:
                self._load(*tiles, s, s)
            cute.arch.cp_async_commit_group()

        # ---- main loop
        for t in cutlass.range(k_tiles, unroll=1):
            cute.arch.cp_async_wait_group(self.stages - 2)  # k-tile t has landed (this thread's part)
            cute.arch.barrier()  # ... everyone's part; and slot (t - 1) % stages is free
            nxt = t + self.stages - 1
            if nxt < k_tiles:
                self._load(*tiles, nxt, nxt % self.stages)
            cute.arch.cp_async_commit_group()
            slot = t % self.stages
            for kb in cutlass.range_constexpr(k_blocks):
                cute.copy(s2r_a, tCsA[None, None, kb, slot], tCrA_v[None, None, kb])
                cute.copy(s2r_b, tCsB[None, None, kb, slot], tCrB_v[None, None, kb])
                cute.gemm(tiled_mma, acc, tCrA[None, None, kb], tCrB[None, None, kb], acc)
        cute.arch.cp_async_wait_group(0)

        # ---- epilogue: convert and store what lies inside C
        out = cute.make_rmem_tensor_like(acc, self.dtype)
        out.store(acc.load().to(self.dtype))
        tCcC = thr_mma.partition_C(cC)
        for i in cutlass.range_constexpr(cute.size(out)):
            if cute.elem_less(tCcC[i], mC.shape):
                tCgC[i] = out[i]
