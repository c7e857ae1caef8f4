"""The backward's per-query statistics, in one pass over O and dO (any sm80+ GPU; no tensor cores).

For every query row: ``D = rowsum(dO * O)`` in fp32 and the forward's logsumexp in base 2
(``LSE * log2(e)``), written into buffers padded to the backward's query tile, so that its last query
block reads ``D = 0`` and ``LSE = +inf`` (``P = 0``) past the end instead of testing bounds. In torch this
took five passes (two fp32 copies of dO and O, their product, the row sum, then the padded copies).

A CTA owns ``tile_m`` rows of one (batch, head). Each thread loads 8 16-bit values (16 bytes) of a row
of O and of dO; the ``head_dim / 8`` threads of a row are neighbouring lanes of one warp and sum their
partial dot products by xor-shuffles. Varlen calls pass the packed tokens as one batch of
``total`` rows: the statistics are indexed by packed row, so sequence boundaries do not matter here.
"""

from __future__ import annotations

import math

import cuda.bindings.driver as cuda
import cutlass
import cutlass.cute as cute
from cutlass import Float32

from .softmax import LOG2_E


class FlashAttentionBackwardPreprocess:
    threads = 128

    def __init__(self, dtype, head_dim: int, tile_m: int = 64):
        if head_dim % 8 or not 8 <= head_dim <= 256:
            raise ValueError(f"head_dim must be a multiple of 8 in [8, 256], got {head_dim}")
        self.dtype = dtype
        self.head_dim = head_dim
        self.tile_m = tile_m
        self.lanes = head_dim // 8  # threads per row
        if self.lanes & (self.lanes - 1):
            raise ValueError(f"head_dim / 8 must be a power of two (lanes of one row), got {head_dim}")
        self.rows_per_pass = self.threads // self.lanes

    @cute.jit
    def __call__(
        self,
        mO: cute.Tensor,  # (b, s, h, d), 16-bit, rows 16-byte aligned; varlen (1, total, h, d)
        mdO: cute.Tensor,
        mLSE: cute.Tensor,  # (b, h, s) fp32, natural log (the forward's)
        mD: cute.Tensor,  # (b, h, s_pad) fp32 out: rowsum(dO * O), 0 past s
        mLSE2: cute.Tensor,  # (b, h, s_pad) fp32 out: LSE * log2(e), +inf past s
        stream: cuda.CUstream,
    ):
        grid = (cute.ceil_div(mD.shape[2], self.tile_m), mO.shape[2], mO.shape[0])
        self.kernel(mO, mdO, mLSE, mD, mLSE2).launch(grid=grid, block=(self.threads, 1, 1), stream=stream)

    @cute.jit
    def _load8(self, row: cute.Tensor, lane: cutlass.Int32):
        """Values [8 lane, 8 lane + 8) of a row, by one 128-bit load (the host keeps rows 16-byte aligned;
        with dynamic strides the compiler cannot know that), as fp32."""
        first = cute.local_tile(row, (8,), (lane,)).iterator
        ptr = cute.make_ptr(self.dtype, first.toint(), cute.AddressSpace.gmem, assumed_align=16)
        frag = cute.make_rmem_tensor((8,), self.dtype)
        cute.autovec_copy(cute.make_tensor(ptr, cute.make_layout(8)), frag)
        return frag.load().to(Float32)

    @cute.kernel
    def kernel(
        self, mO: cute.Tensor, mdO: cute.Tensor, mLSE: cute.Tensor, mD: cute.Tensor, mLSE2: cute.Tensor
    ):
        tidx, _, _ = cute.arch.thread_idx()
        m_block, head, batch = cute.arch.block_idx()
        seqlen, padded = mO.shape[1], mD.shape[2]
        lane = tidx % self.lanes
        for p in cutlass.range_constexpr(self.tile_m // self.rows_per_pass):
            row = m_block * self.tile_m + p * self.rows_per_pass + tidx // self.lanes
            dot = Float32(0.0)
            if row < seqlen:
                prod = self._load8(mO[batch, row, head, None], lane) * self._load8(
                    mdO[batch, row, head, None], lane
                )
                dot = prod.reduce(cute.ReductionOp.ADD, Float32(0.0), 0)
            # the row's lanes are neighbours in one warp; every lane runs the shuffles (rows past the end add 0)
            for k in cutlass.range_constexpr(int(math.log2(self.lanes))):
                dot += cute.arch.shuffle_sync_bfly(dot, offset=self.lanes >> (k + 1))
            if lane == 0 and row < padded:
                d = Float32(0.0)
                lse2 = Float32(math.inf)
                if row < seqlen:
                    d = dot
                    lse2 = mLSE[batch, head, row] * Float32(LOG2_E)
                mD[batch, head, row] = d
                mLSE2[batch, head, row] = lse2
