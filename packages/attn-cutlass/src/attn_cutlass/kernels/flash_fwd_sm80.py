"""FlashAttention-2 forward for sm80+ (Ampere, Ada; also runs on Hopper): warp MMA, cp.async, ldmatrix.

One CTA of 4 warps per (64-query block, head, batch); each warp owns 16 query rows (one m16n8k16 row of
atoms), so the accumulator of ``S = Q K^T`` maps one-to-one onto the A operand of ``O += P V``
(softmax.acc_as_operand_a_layout). The keys are walked left to right in blocks of 64:

* prologue: cp.async Q, then K of the first block; Q goes to registers once (ldmatrix).
* per key block j: wait for K_j, issue the cp.async of V_j, ``S = Q K_j^T`` (ldmatrix K_j), softcap,
  mask, the online softmax (softmax.py: quad shuffles, exp2), rescale O; wait for V_j, issue the
  cp.async of K_{j+1} (it lands while ``O += P V_j`` runs), ``O += P V_j`` with V read through a
  transposed view of its shared memory (``ldmatrix.trans``).
* epilogue: divide by the row sums, store O and the logsumexp, predicated on the sequence end.

Shared memory: Q, K, V tiles of 64 x head_dim, ``Swizzle<3,3,3>`` on 128-byte rows (no bank conflicts
for the 16-byte cp.async writes nor for ldmatrix). Rows past the sequence end are zero-filled: a masked
score gives P = 0, and 0 x (stale shared memory, possibly NaN) would still be NaN.

Masks follow flash-attn's bottom-right convention (causal, sliding window); key blocks entirely outside
the window are skipped, the mask is applied to every visited block (simple rather than fast). Same
arguments as the sm90 forward, except the launch scalars (a plain grid, not persistent).
"""

from __future__ import annotations

import cuda.bindings.driver as cuda
import cutlass
import cutlass.cute as cute
from cutlass import Float32, Int32, const_expr
from cutlass.cute.nvgpu import cpasync, warp

from .softmax import (
    acc_as_operand_a_layout,
    apply_mask,
    apply_softcap,
    finalize,
    online_softmax_step,
    rescale_rows,
    rowcol_layout,
    store_rows,
)

HEAD_DIMS = (64, 128)


def _permute(t: cute.Tensor, order, divby: int = 1) -> cute.Tensor:
    """The same memory, modes reordered; dynamic strides declared multiples of ``divby`` (the host
    guarantees 8 elements for q/k/v/o, which 16-byte cp.async needs)."""

    def stride(i):
        s = t.stride[i]
        return s if isinstance(s, int) or divby == 1 else cute.assume(s, divby=divby)

    return cute.make_layout(tuple(t.shape[i] for i in order), stride=tuple(stride(i) for i in order))


class FlashAttentionForwardSm80:
    arch = "sm_80"
    threads = 128
    tile_m = 64
    tile_n = 64

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
    ):
        if head_dim not in HEAD_DIMS:
            raise ValueError(f"head_dim must be one of {HEAD_DIMS}, got {head_dim}")
        self.dtype = dtype
        self.head_dim = head_dim
        self.has_right = causal or has_right_window
        self.has_left = has_left_window
        self.has_softcap = has_softcap
        self.varlen = varlen

    def _smem_layout(self, rows):
        atom = cute.make_composed_layout(
            cute.make_swizzle(3, 3, 3), 0, cute.make_layout((8, 64), stride=(64, 1))
        )
        return cute.tile_to_shape(atom, (rows, self.head_dim), (0, 1))

    @cute.jit
    def __call__(
        self,
        mQ: cute.Tensor,  # (b, s_q, h, d) or varlen (total_q, h, d)
        mK: cute.Tensor,
        mV: cute.Tensor,
        mO: cute.Tensor,
        mLSE: cute.Tensor,  # (b, h, s_q) float32 or varlen (h, total_q)
        mCuSeqlensQ: cute.Tensor,
        mCuSeqlensK: cute.Tensor,
        scale_log2: Float32,
        softcap_pre: Float32,
        softcap: Float32,
        window_left: Int32,
        window_right: Int32,
        qhead_per_kvhead: Int32,
        num_m_blocks: Int32,
        num_heads: Int32,
        batch: Int32,
        stream: cuda.CUstream,
    ):
        if const_expr(self.varlen):
            order, lse_order = (0, 2, 1), (1, 0)  # (total, d, h); lse (total, h)
        else:
            order, lse_order = (1, 3, 2, 0), (2, 1, 0)  # (s, d, h, b); lse (s, h, b)
        q, k, v, o = (cute.make_tensor(t.iterator, _permute(t, order, 8)) for t in (mQ, mK, mV, mO))
        lse = cute.make_tensor(mLSE.iterator, _permute(mLSE, lse_order))
        tiled_mma = cute.make_tiled_mma(
            warp.MmaF16BF16Op(self.dtype, Float32, (16, 8, 16)),
            cute.make_layout((4, 1, 1)),
            permutation_mnk=(64, 16, 16),
        )
        s_layout = self._smem_layout(self.tile_m)

        @cute.struct
        class SharedStorage:
            sQ: cute.struct.Align[cute.struct.MemRange[self.dtype, cute.cosize(s_layout)], 128]
            sK: cute.struct.Align[cute.struct.MemRange[self.dtype, cute.cosize(s_layout)], 128]
            sV: cute.struct.Align[cute.struct.MemRange[self.dtype, cute.cosize(s_layout)], 128]

        self.shared_storage = SharedStorage
        self.kernel(
            q,
            k,
            v,
            o,
            lse,
            mCuSeqlensQ,
            mCuSeqlensK,
            tiled_mma,
            s_layout,
            scale_log2,
            softcap_pre,
            softcap,
            window_left,
            window_right,
            qhead_per_kvhead,
        ).launch(grid=(num_m_blocks, num_heads, batch), block=(self.threads, 1, 1), stream=stream)

    @cute.jit
    def _load_rows(self, g2s, tS, tD, tC, row0: Int32, limit: Int32):
        """cp.async the rows of this thread's partition that lie before ``limit``; zero the others."""
        for m in cutlass.range_constexpr(cute.size(tD, mode=[1])):
            if row0 + tC[0, m, 0][0] < limit:
                cute.copy(g2s, tS[None, m, None], tD[None, m, None])
            else:
                tD[None, m, None].fill(0)

    @cute.kernel
    def kernel(
        self,
        q: cute.Tensor,
        k: cute.Tensor,
        v: cute.Tensor,
        o: cute.Tensor,
        lse_g: cute.Tensor,
        mCuQ: cute.Tensor,
        mCuK: cute.Tensor,
        tiled_mma: cute.TiledMma,
        s_layout: cute.ComposedLayout,
        scale_log2: Float32,
        softcap_pre: Float32,
        softcap: Float32,
        window_left: Int32,
        window_right: Int32,
        qhead_per_kvhead: Int32,
    ):
        tidx, _, _ = cute.arch.thread_idx()
        m_block, head, batch = cute.arch.block_idx()
        tm, tn, hd = self.tile_m, self.tile_n, self.head_dim
        head_kv = head // qhead_per_kvhead

        if const_expr(self.varlen):
            off_q, off_k = mCuQ[batch], mCuK[batch]
            seqlen_q, seqlen_k = mCuQ[batch + 1] - off_q, mCuK[batch + 1] - off_k
            gQ = cute.domain_offset((off_q, 0), q[None, None, head])
            gO = cute.domain_offset((off_q, 0), o[None, None, head])
            gK = cute.domain_offset((off_k, 0), k[None, None, head_kv])
            gV = cute.domain_offset((off_k, 0), v[None, None, head_kv])
            gLSE = cute.domain_offset((off_q,), lse_g[None, head])
        else:
            seqlen_q, seqlen_k = Int32(q.shape[0]), Int32(k.shape[0])
            gQ = q[None, None, head, batch]
            gO = o[None, None, head, batch]
            gK = k[None, None, head_kv, batch]
            gV = v[None, None, head_kv, batch]
            gLSE = lse_g[None, head, batch]

        row0 = m_block * tm
        if row0 < seqlen_q:  # varlen: the grid covers the longest sequence
            smem = cutlass.utils.SmemAllocator()
            storage = smem.allocate(self.shared_storage)
            sQ = storage.sQ.get_tensor(s_layout)
            sK = storage.sK.get_tensor(s_layout)
            sV = storage.sV.get_tensor(s_layout)
            # V^T (hd, tn): sV composed with a transposition, read by ldmatrix.trans. (Rebuilding it from the
            # outer layout with the swizzle moved onto the pointer applies the swizzle to byte addresses,
            # not element offsets: ldmatrix then reads misaligned rows.)
            sVt = cute.composition(sV, cute.make_ordered_layout((hd, tn), order=(1, 0)))

            tQ = cute.local_tile(gQ, (tm, hd), (m_block, 0))
            tO = cute.local_tile(gO, (tm, hd), (m_block, 0))
            tK = cute.local_tile(gK, (tn, hd), (None, 0))  # (tn, hd, n_blocks)
            tV = cute.local_tile(gV, (tn, hd), (None, 0))
            cT = cute.make_identity_tensor((tm, hd))  # (row, col) inside a tile; all tiles are 64 x hd

            # ---- global -> shared: 16-byte cp.async, 8 threads per 64-element row chunk
            atom = cute.make_copy_atom(
                cpasync.CopyG2SOp(cache_mode=cpasync.LoadCacheMode.GLOBAL), self.dtype, num_bits_per_copy=128
            )
            g2s = cute.make_tiled_copy_tv(
                atom, cute.make_layout((16, 8), stride=(8, 1)), cute.make_layout((1, 8))
            ).get_slice(tidx)
            tQgQ, tQsQ = g2s.partition_S(tQ), g2s.partition_D(sQ)
            tKgK, tKsK = g2s.partition_S(tK), g2s.partition_D(sK)
            tVgV, tVsV = g2s.partition_S(tV), g2s.partition_D(sV)
            tCc = g2s.partition_S(cT)

            # ---- MMA fragments and ldmatrix copies
            thr_mma = tiled_mma.get_slice(tidx)
            tSrQ = thr_mma.make_fragment_A(thr_mma.partition_A(sQ))
            tSrK = thr_mma.make_fragment_B(thr_mma.partition_B(sK))
            tOrVt = thr_mma.make_fragment_B(thr_mma.partition_B(sVt))
            acc_O = cute.make_rmem_tensor(thr_mma.partition_shape_C((tm, hd)), Float32)
            acc_O.fill(0.0)
            acc_S = cute.make_rmem_tensor(thr_mma.partition_shape_C((tm, tn)), Float32)
            ldm = cute.make_copy_atom(warp.LdMatrix8x8x16bOp(transpose=False, num_matrices=4), self.dtype)
            ldm_t = cute.make_copy_atom(warp.LdMatrix8x8x16bOp(transpose=True, num_matrices=4), self.dtype)
            s2r_q = cute.make_tiled_copy_A(ldm, tiled_mma).get_slice(tidx)
            s2r_k = cute.make_tiled_copy_B(ldm, tiled_mma).get_slice(tidx)
            s2r_v = cute.make_tiled_copy_B(ldm_t, tiled_mma).get_slice(tidx)
            tSsQ, tSrQ_v = s2r_q.partition_S(sQ), s2r_q.retile(tSrQ)
            tSsK, tSrK_v = s2r_k.partition_S(sK), s2r_k.retile(tSrK)
            tOsVt, tOrVt_v = s2r_v.partition_S(sVt), s2r_v.retile(tOrVt)

            # (row, col) views for the softmax and the mask
            s_rc = cute.make_tensor(acc_S.iterator, rowcol_layout(acc_S.layout))
            o_rc = cute.make_tensor(acc_O.iterator, rowcol_layout(acc_O.layout))
            tScS = thr_mma.partition_C(cute.make_identity_tensor((tm, tn)))
            c_rc = cute.make_tensor(tScS.iterator, rowcol_layout(tScS.layout))
            tOcO = thr_mma.partition_C(cT)
            co_rc = cute.make_tensor(tOcO.iterator, rowcol_layout(tOcO.layout))
            n_rows = cute.size(s_rc, mode=[0])
            row_max = cute.make_rmem_tensor((n_rows,), Float32)
            row_sum = cute.make_rmem_tensor((n_rows,), Float32)
            corr = cute.make_rmem_tensor((n_rows,), Float32)
            lse = cute.make_rmem_tensor((n_rows,), Float32)
            row_max.fill(-Float32.inf)
            row_sum.fill(0.0)

            # ---- the key blocks this query block can see
            shift = seqlen_k - seqlen_q
            n_end = (seqlen_k + tn - 1) // tn
            if const_expr(self.has_right):
                hi = cutlass.max(row0 + tm + shift + window_right, 0)
                n_end = cutlass.min(n_end, (hi + tn - 1) // tn)
            n_start = Int32(0)
            if const_expr(self.has_left):
                n_start = cutlass.max(row0 + shift - window_left, 0) // tn
                n_start = cutlass.min(n_start, n_end)

            # ---- prologue: Q (group 0), K of the first block (group 1)
            self._load_rows(g2s, tQgQ, tQsQ, tCc, row0, seqlen_q)
            cute.arch.cp_async_commit_group()
            if n_start < n_end:
                self._load_rows(g2s, tKgK[None, None, None, n_start], tKsK, tCc, n_start * tn, seqlen_k)
            cute.arch.cp_async_commit_group()
            cute.arch.cp_async_wait_group(1)
            cute.arch.barrier()
            cute.copy(s2r_q, tSsQ, tSrQ_v)

            for n in cutlass.range(n_start, n_end, unroll=1):
                cute.arch.cp_async_wait_group(0)
                cute.arch.barrier()  # K_n visible; everyone is done with V_{n-1}
                self._load_rows(g2s, tVgV[None, None, None, n], tVsV, tCc, n * tn, seqlen_k)
                cute.arch.cp_async_commit_group()

                acc_S.fill(0.0)
                for kb in cutlass.range_constexpr(cute.size(tSrQ, mode=[2])):
                    cute.copy(s2r_k, tSsK[None, None, kb], tSrK_v[None, None, kb])
                    cute.gemm(tiled_mma, acc_S, tSrQ[None, None, kb], tSrK[None, None, kb], acc_S)
                if const_expr(self.has_softcap):
                    apply_softcap(acc_S, softcap_pre, softcap)
                apply_mask(
                    s_rc,
                    c_rc,
                    row0,
                    n * tn,
                    seqlen_q,
                    seqlen_k,
                    window_left,
                    window_right,
                    self.has_left,
                    self.has_right,
                )
                online_softmax_step(s_rc, row_max, row_sum, corr, scale_log2)
                rescale_rows(o_rc, corr)
                rP = cute.make_rmem_tensor_like(acc_S, self.dtype)
                rP.store(acc_S.load().to(self.dtype))
                tOrP = cute.make_tensor(rP.iterator, acc_as_operand_a_layout(rP.layout))

                cute.arch.cp_async_wait_group(0)
                cute.arch.barrier()  # V_n visible; everyone is done with K_n
                if n + 1 < n_end:
                    self._load_rows(g2s, tKgK[None, None, None, n + 1], tKsK, tCc, (n + 1) * tn, seqlen_k)
                cute.arch.cp_async_commit_group()
                for kb in cutlass.range_constexpr(cute.size(tOrP, mode=[2])):
                    cute.copy(s2r_v, tOsVt[None, None, kb], tOrVt_v[None, None, kb])
                    cute.gemm(tiled_mma, acc_O, tOrP[None, None, kb], tOrVt[None, None, kb], acc_O)

            # ---- epilogue
            finalize(o_rc, row_max, row_sum, lse, scale_log2)
            store_rows(acc_O, thr_mma.partition_C(tO), tOcO, row0, seqlen_q, self.dtype)
            if tidx % 4 == 0:  # after the quad reduction every thread of a quad holds the row's lse
                for r in cutlass.range_constexpr(cute.size(lse)):
                    row = row0 + co_rc[r, 0][0]
                    if row < seqlen_q:
                        gLSE[row] = lse[r]
