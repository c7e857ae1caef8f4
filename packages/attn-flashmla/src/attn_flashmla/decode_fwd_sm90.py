"""Dense MLA decoding for Hopper in the CuTe DSL: TMA loads of paged KV blocks, wgmma, split-KV.

The same algorithm as :mod:`attn_flashmla.decode_fwd` (read that first), written one level lower so that
each Hopper mechanism is explicit. This module holds the host side that every CuTe kernel shares and the
first kernel; the default since 2026-12-04 is the seesaw kernel built on it
(:mod:`attn_flashmla.decode_fwd_sm90_seesaw`, 1.17-1.22x this one at h_q 128 on the H200;
``ATTN_FLASHMLA_CUTE_SEESAW=0`` for this one). The first kernel:

* **TMA.** One thread asks the Tensor Memory Accelerator to copy a whole 64-token page block
  (64 x 576 bf16 = 72 KiB) from the paged cache into shared memory; the copy signals an *mbarrier* when its
  bytes have landed. With page size 64 a KV tile *is* a page block, so the block table gives the TMA
  coordinate directly: no per-token address arithmetic at all. Two stages: while tile ``t`` is being
  multiplied, tile ``t + 1`` is in flight.
* **wgmma.** A warpgroup (4 warps, 128 threads) issues asynchronous matrix multiplies that read A and B
  straight from shared memory (``S = Q K^T``, 36 k-steps of 16 over d = 576) or A from registers
  (``O += P V``: P never leaves the registers it was computed in, only converted to bf16).
* **V is K.** The PV product reads V from the *same* shared-memory tile as K: a 128-byte-swizzled
  K-major (token, d) tile is, byte for byte, an MN-major (d, token) tile, so we only build a second
  layout over the same pointer.
* **Work split.** The accumulator of one row block, 64 rows x 512 channels in fp32, needs 256 registers
  per thread of one warpgroup: too many. FlashMLA uses two warpgroups that split the 512 channels and
  exchange half of ``S``; here, more simply, two warpgroups each own 256 output channels and both compute
  the full ``S`` from the same K tile in shared memory (about 26% more tensor-core time at large h_q: a
  known gap to FlashMLA). They do not wait for each other per tile: each warp arrives on a stage's
  "empty" mbarrier when its last wgmma reading it has completed, and only the producer warp waits there
  before refilling the stage, so one warpgroup's softmax overlaps the other's matrix multiplies. The first
  version (``ATTN_FLASHMLA_CUTE_WARPGROUPS=1``) put the two halves in two CTAs of one warpgroup
  (``program z = 2 * hk + half``, the second reading the K tile again from L2) with a CTA barrier per
  tile; on the H200 it ran h_q 128 at 269 TFLOP/s where two warpgroups run 343.
* **Split S** (the default with two warpgroups; ``ATTN_FLASHMLA_CUTE_SPLIT_S=0`` turns it off). The duplicated
  ``QK^T`` is a quarter of the tensor-core work at h_q 128; FlashMLA avoids it. Here warpgroup ``h``
  computes ``S`` for tokens ``[32h, 32h + 32)`` of each tile only (m64n32k16), the two swap their row
  maxima through shared memory (a 256-thread named barrier), each writes its half of ``P`` to shared memory
  for the other, and each multiplies both halves into its 256 output channels (its own ``P`` from
  registers, the other's as a shared-memory A operand); the row sums are added once per piece. The price is
  two CTA-wide barriers per tile, so the warpgroups no longer drift apart. It still pays at h_q 128 on the
  H200: 366 against 343 TFLOP/s at s_k 8k, 442 against 374 at 32k.
* **NaN padding.** A partial last page may hold NaN past the sequence end. Masking scores to ``-inf``
  gives those tokens ``p = 0``, but ``0 * NaN = NaN`` inside the PV product, so before PV the kernel writes
  zeros over the shared-memory rows of tokens past the end (then fences, as wgmma reads through the
  async proxy).

Every piece of a sequence (split or not) is written to fp32 scratch as a normalised ``o`` and its ``lse``;
the combine kernel (:mod:`attn_flashmla.combine`, shared with the Triton path) merges the splits and
writes ``out``/``lse`` in the caller's layout. Writing unsplit sequences through scratch too costs one
extra fp32 round trip of ``out`` (a few percent at the benchmark's sizes): a known gap.

Compiling needs ``nvidia-cutlass-dsl`` (the ``sm90`` extra) but no GPU: :func:`compile_for_sm90` builds the
kernel for ``sm_90a`` from fake tensors (set ``CUTE_DSL_ARCH=sm_90a`` on a machine without a GPU).
"""

# No `from __future__ import annotations`: the DSL evaluates the kernels' annotations (cute.Tensor, ...)
# when it compiles them, and those names exist only inside _kernel_module().
import functools
import math
import os
import threading
import time
from typing import NamedTuple

import torch

from attn_reference.errors import UnsupportedFeatureError

BLOCK_M = 64  # query rows per CTA (one wgmma M)
BLOCK_N = 64  # tokens per KV tile = page block size
HEAD_DIM = 576
HEAD_DIM_V = 512
DV_PER_CTA = 256
STAGES = 2
WATCHDOG_NS = 2_000_000_000  # watchdog build: a wait longer than this (2 s) is a hang
LOG2E = math.log2(math.e)


def cute_supports(q: torch.Tensor, page_block_size: int, softmax_scale: float | None = None) -> str | None:
    """Why the CuTe kernel cannot run this call (or ``None``): page 64, head dim 576, fp16/bf16, and a
    positive ``softmax_scale`` (``None``: the default, d ** -0.5)."""
    if softmax_scale is not None and not softmax_scale > 0:
        # The seesaw kernel's lean softmax takes row maxima of unscaled scores and scales them afterwards.
        return f"softmax_scale must be > 0, got {softmax_scale!r}"
    if page_block_size != BLOCK_N:
        return f"page_block_size must be {BLOCK_N} (a TMA tile is one page block), got {page_block_size}"
    if q.shape[-1] != HEAD_DIM:
        return f"head dim must be {HEAD_DIM}, got {q.shape[-1]}"
    if q.dtype not in (torch.bfloat16, torch.float16):
        return f"dtype must be bf16 or fp16, got {q.dtype}"
    return None


def warpgroups() -> int:
    """``ATTN_FLASHMLA_CUTE_WARPGROUPS``: 2 (the default) or 1 warpgroups per CTA (see the module docstring).

    Both passed the sm90 checks on the H200 (2026-11-22); two measured 1.27x faster at h_q 128 (s_k 8k, s_q
    1: 343 against 269 TFLOP/s; 32k: 374 against 280) and mixed at h_q 16 (1871 against 2301 GB/s at 8k,
    3132 against 2413 at 32k), where the default dispatch runs Triton anyway (``_runtime.CUTE_MIN_ROWS``)."""
    value = os.environ.get("ATTN_FLASHMLA_CUTE_WARPGROUPS", "2").strip() or "2"
    if value not in ("1", "2"):
        raise ValueError(f"ATTN_FLASHMLA_CUTE_WARPGROUPS must be 1 or 2, got {value!r}")
    return int(value)


def split_s() -> bool:
    """``ATTN_FLASHMLA_CUTE_SPLIT_S``: on (the default with two warpgroups; ``0`` turns it off) each
    warpgroup computes ``S`` for half of the tile's 64 tokens instead of all of them, and the two exchange
    their row maxima, P halves and row sums through shared memory (FlashMLA's split). Passed the page-64
    sm90 conformance cases on the H200 (2026-11-22); h_q 128, s_q 1 (``tools/gpu_check.py --quick``): 366
    TFLOP/s at s_k 8k and 442 at 32k against 343 / 374 without it."""
    value = os.environ.get("ATTN_FLASHMLA_CUTE_SPLIT_S", "").strip()
    if value == "":
        return warpgroups() == 2
    on = value != "0"
    if on and warpgroups() != 2:
        raise ValueError(
            "ATTN_FLASHMLA_CUTE_SPLIT_S=1 needs two warpgroups (ATTN_FLASHMLA_CUTE_WARPGROUPS=2)"
        )
    return on


def seesaw() -> bool:
    """``ATTN_FLASHMLA_CUTE_SEESAW``: on (the default) the seesaw kernel
    (:mod:`attn_flashmla.decode_fwd_sm90_seesaw`: a producer warpgroup and two consumers that each compute
    the whole ``S`` of every other tile, in clusters of two CTAs where the row blocks pair up); ``0`` this
    module's kernel, shaped by the two switches above, which the seesaw kernel ignores."""
    value = os.environ.get("ATTN_FLASHMLA_CUTE_SEESAW", "1").strip()
    if value not in ("", "0", "1"):
        raise ValueError(f"ATTN_FLASHMLA_CUTE_SEESAW must be 0 or 1, got {value!r}")
    return value != "0"


def seesaw_cluster(m_blocks: int) -> int:
    """CTAs per cluster of the seesaw kernel: 2 when the row blocks of a (part, KV head) pair up (their CTAs
    read the same K tiles, so each loads half and multicasts it to both), else 1.
    ``ATTN_FLASHMLA_CUTE_CLUSTER=1`` turns the pairs off."""
    value = os.environ.get("ATTN_FLASHMLA_CUTE_CLUSTER", "2").strip() or "2"
    if value not in ("1", "2"):
        raise ValueError(f"ATTN_FLASHMLA_CUTE_CLUSTER must be 1 or 2, got {value!r}")
    return 2 if value == "2" and m_blocks % 2 == 0 else 1


def cross_first() -> bool:
    """``ATTN_FLASHMLA_CUTE_CROSS_FIRST=1`` (opt-in): the seesaw kernel's R multiplies ``P0' V0_R`` before
    ``P1 V1_R`` (see :mod:`attn_flashmla.decode_fwd_sm90_seesaw`). Not the default: three A/B runs on the
    H200 (2026-12-04, h_q 128, s_q 1-2, s_k 8k-32k) put it within 1 % of the plain order in most cells and
    up to 4 % either way in the rest, no consistent gain."""
    return os.environ.get("ATTN_FLASHMLA_CUTE_CROSS_FIRST", "0") not in ("", "0")


def lean_softmax() -> bool:
    """``ATTN_FLASHMLA_CUTE_LEAN`` (on by default since 2026-12-08; ``0`` turns it off): the seesaw kernel
    masks only the tiles where some row's limit falls, takes row maxima of unscaled scores so that the
    scale and the shift meet in one FFMA per exponential, and hands P over by stmatrix/ldmatrix (see
    :mod:`attn_flashmla.decode_fwd_sm90_seesaw`). On an H100 (2026-12-08) it passed gpu_check (18 of 18)
    and the CuTe classes of the sm90 tier (94 passed), and ran 1.01-1.06x the kernel without it in main-
    kernel time at h_q 128 (526 / 554 / 586 / 620 TFLOP/s against 520 / 536 / 559 / 583; s_q 1 and 2, s_k
    8k and 32k; tools/cute_ab.py, one process)."""
    return os.environ.get("ATTN_FLASHMLA_CUTE_LEAN", "1").strip() not in ("0",)


def cute_config() -> dict:
    """Scheduling parameters of the CuTe kernel (what the scheduler needs to know)."""
    # One CTA per SM (216 KiB of shared memory); the scheduler plans parts so that all CTAs fit on the GPU
    # at once. One warpgroup: DV_SPLIT 2, two CTAs per (row block, KV head), one per half of the output
    # channels. Two warpgroups: the halves are the CTA's two warpgroups, one CTA per (row block, KV head).
    if seesaw():
        return {
            "BLOCK_M": BLOCK_M, "BLOCK_N": BLOCK_N, "num_warps": 12, "num_stages": STAGES, "ctas_per_sm": 1,
            "DV_SPLIT": 1,
        }  # fmt: skip
    wgs = warpgroups()
    return {
        "BLOCK_M": BLOCK_M, "BLOCK_N": BLOCK_N, "num_warps": 4 * wgs, "num_stages": STAGES, "ctas_per_sm": 1,
        "DV_SPLIT": 2 // wgs,
    }  # fmt: skip


@functools.cache
def device_helpers():
    """The device steps every CuTe kernel here shares, as ``@cute.jit`` functions (built on first use, like
    the kernels). Accumulator element ``i`` of a wgmma tile belongs to the thread's row ``(i // 2) % 2``
    (rows ``row0`` and ``row0 + 8``), whose four threads (a quad) hold that row together."""
    import types

    import cutlass
    import cutlass.cute as cute

    Float32 = cutlass.Float32

    @cute.jit
    def zero_tail(s_tile, valid, channel0, wg_tidx, dtype: cutlass.Constexpr):
        """Zero channels [channel0, channel0 + 256) of the tile's tokens past the sequence end (they may
        hold NaN, and ``0 * NaN`` would leak into ``P V``), then fence for wgmma's async proxy. The caller
        then waits at a barrier of the threads that will read them."""
        for e in cutlass.range((BLOCK_N - valid) * DV_PER_CTA // 128 + 1, unroll=1):
            flat = e * 128 + wg_tidx
            tok = valid + flat // DV_PER_CTA
            if tok < BLOCK_N:
                s_tile[tok, channel0 + flat % DV_PER_CTA] = dtype(0.0)
        cute.arch.fence_proxy("async.shared", space="cta")

    @cute.jit
    def row_limits(seqlen, s_q, group, mb, row0, causal: cutlass.Constexpr):
        """The last visible token (exclusive) of the thread's two rows: the sequence end, or with a causal
        mask FlashMLA's bottom-right rule (row r of a block is query token r // group of s_q)."""
        limit0 = seqlen
        limit1 = seqlen
        if cutlass.const_expr(causal):
            limit0 = seqlen - s_q + (mb * BLOCK_M + row0) // group + 1
            limit1 = seqlen - s_q + (mb * BLOCK_M + row0 + 8) // group + 1
        return limit0, limit1

    @cute.jit
    def mask_rowmax(acc_s, tScS, tok0, limit0, limit1, scale_log2, max0, max1):
        """Scores to log2 units, tokens at or past each row's limit set to -inf (a select: masked values
        never enter arithmetic), and each row's maximum of ``max`` and its scores, over the quad."""
        for i in cutlass.range_constexpr(cute.size(acc_s)):
            tok = tok0 + tScS[i][1]
            lim = limit0 if (i // 2) % 2 == 0 else limit1
            s = acc_s[i] * scale_log2
            s = s if tok < lim else -Float32.inf
            acc_s[i] = s
            if cutlass.const_expr((i // 2) % 2 == 0):
                max0 = cute.arch.fmax(max0, s)
            else:
                max1 = cute.arch.fmax(max1, s)
        max0 = cute.arch.warp_reduction_max(max0, threads_in_group=4)
        max1 = cute.arch.warp_reduction_max(max1, threads_in_group=4)
        return max0, max1

    @cute.jit
    def block_limit(seqlen, s_q, group, mb, causal: cutlass.Constexpr):
        """The lowest of the 64-row block's limits: tiles that end at or before it need no mask."""
        limit = seqlen
        if cutlass.const_expr(causal):
            limit = seqlen - s_q + (mb * BLOCK_M) // group + 1
        return limit

    @cute.jit
    def raw_rowmax(acc_s, tScS, tok0, limit0, limit1, whole):
        """Each row's maximum of its unscaled scores, over the quad. Unless the tile is ``whole`` (every
        row sees all its tokens: a runtime value, the same in the whole CTA), this is :func:`mask_rowmax` at
        scale 1. The caller scales the maxima, so the scale must be > 0."""
        max0 = -Float32.inf
        max1 = -Float32.inf
        if whole:
            for i in cutlass.range_constexpr(cute.size(acc_s)):
                if cutlass.const_expr((i // 2) % 2 == 0):
                    max0 = cute.arch.fmax(max0, acc_s[i])
                else:
                    max1 = cute.arch.fmax(max1, acc_s[i])
            max0 = cute.arch.warp_reduction_max(max0, threads_in_group=4)
            max1 = cute.arch.warp_reduction_max(max1, threads_in_group=4)
        else:
            max0, max1 = mask_rowmax(acc_s, tScS, tok0, limit0, limit1, Float32(1.0), max0, max1)
        return max0, max1

    @cute.jit
    def exponentiate(acc_s, shift0, shift1, scale_log2=None):
        """``acc_s = exp2(acc_s - shift)`` row by row, or given ``scale_log2`` (unscaled scores)
        ``exp2(acc_s * scale_log2 - shift)``, one FFMA each; returns the two rows' sums over the quad."""
        sum0 = Float32(0.0)
        sum1 = Float32(0.0)
        for i in cutlass.range_constexpr(cute.size(acc_s)):
            x = acc_s[i]
            if cutlass.const_expr(scale_log2 is not None):
                x = x * scale_log2
            if cutlass.const_expr((i // 2) % 2 == 0):
                p = cute.math.exp2(x - shift0, fastmath=True)
                sum0 = sum0 + p
            else:
                p = cute.math.exp2(x - shift1, fastmath=True)
                sum1 = sum1 + p
            acc_s[i] = p
        sum0 = cute.arch.warp_reduction_sum(sum0, threads_in_group=4)
        sum1 = cute.arch.warp_reduction_sum(sum1, threads_in_group=4)
        return sum0, sum1

    @cute.jit
    def rescale(acc_o, f0, f1):
        for i in cutlass.range_constexpr(cute.size(acc_o)):
            acc_o[i] = acc_o[i] * (f0 if (i // 2) % 2 == 0 else f1)

    @cute.jit
    def write_out(mOacc, acc_o, tOcO, slot_row, channel0, l0, l1):
        """A piece's output, normalised, into the fp32 scratch rows from ``slot_row`` (channels from
        ``channel0``); rows that saw nothing (l = 0) get 0."""
        inv0 = Float32(0.0) if l0 == 0.0 else cute.arch.rcp_approx(l0)
        inv1 = Float32(0.0) if l1 == 0.0 else cute.arch.rcp_approx(l1)
        for i in cutlass.range_constexpr(cute.size(acc_o)):
            r, c = tOcO[i]
            mOacc[slot_row + r, channel0 + c] = acc_o[i] * (inv0 if (i // 2) % 2 == 0 else inv1)

    @cute.jit
    def write_lse(mLSEacc, slot_row, row0, l0, l1, m0, m1):
        """A piece's natural-log lse of the thread's two rows (one thread a quad calls it); -inf marks rows
        that saw nothing."""
        ln2 = Float32(math.log(2.0))
        lse0 = -Float32.inf if l0 == 0.0 else (m0 + cute.math.log2(l0, fastmath=False)) * ln2
        lse1 = -Float32.inf if l1 == 0.0 else (m1 + cute.math.log2(l1, fastmath=False)) * ln2
        mLSEacc[slot_row + row0] = lse0
        mLSEacc[slot_row + row0 + 8] = lse1

    return types.SimpleNamespace(
        zero_tail=zero_tail, row_limits=row_limits, block_limit=block_limit, mask_rowmax=mask_rowmax,
        raw_rowmax=raw_rowmax, exponentiate=exponentiate, rescale=rescale, write_out=write_out, write_lse=write_lse,
    )  # fmt: skip


def launch_operands():
    """What both CuTe kernels' ``@cute.jit`` launchers build alike, as plain functions traced there: the
    three MMAs (S = Q K^T; O += P V with P from registers; O += P V with P from shared memory), the Q, K
    and V shared-memory layouts (V is the K tile's first 256 channels read MN-major) and Q's TMA atom.
    How K arrives and how S is split between warpgroups is each kernel's own."""
    import types

    import cutlass
    import cutlass.cute as cute
    import cutlass.utils as utils
    import cutlass.utils.hopper_helpers as sm90_utils
    from cutlass.cute.nvgpu import cpasync, warpgroup

    K_MAJOR, MN_MAJOR = warpgroup.OperandMajorMode.K, warpgroup.OperandMajorMode.MN
    Float32 = cutlass.Float32

    def mmas(dtype, n_s=BLOCK_N):
        """(qk, pv, pv_ss): S over n_s tokens, Q and K from shared memory (K-major); PV's B = V MN-major."""
        qk = sm90_utils.make_trivial_tiled_mma(
            dtype, dtype, K_MAJOR, K_MAJOR, Float32, (1, 1, 1), (BLOCK_M, n_s)
        )
        pv = sm90_utils.make_trivial_tiled_mma(
            dtype,
            dtype,
            K_MAJOR,
            MN_MAJOR,
            Float32,
            (1, 1, 1),
            (BLOCK_M, DV_PER_CTA),
            warpgroup.OperandSource.RMEM,
        )
        pv_ss = sm90_utils.make_trivial_tiled_mma(
            dtype, dtype, K_MAJOR, MN_MAJOR, Float32, (1, 1, 1), (BLOCK_M, DV_PER_CTA)
        )
        return qk, pv, pv_ss

    def layouts(dtype):
        """(q, k, v): one Q block, STAGES K tiles, one stage of V (MN-major 128B-swizzled atoms tiled
        tokens-first: the same bytes as the K-major K tile's channels [0, 256), see the module docstring)."""
        q = sm90_utils.make_smem_layout_a(utils.LayoutEnum.ROW_MAJOR, (BLOCK_M, BLOCK_N, HEAD_DIM), dtype, 1)
        k = sm90_utils.make_smem_layout_b(
            utils.LayoutEnum.ROW_MAJOR, (BLOCK_M, BLOCK_N, HEAD_DIM), dtype, STAGES
        )
        v = sm90_utils.make_smem_layout_b(
            utils.LayoutEnum.COL_MAJOR, (BLOCK_M, DV_PER_CTA, BLOCK_N), dtype, 1
        )
        return q, k, v

    def tma_q(mQ, q_layout):
        """Q's TMA atom and tensor: one BLOCK_M x HEAD_DIM box."""
        return cpasync.make_tiled_tma_atom(
            cpasync.CopyBulkTensorTileG2SOp(), mQ, cute.slice_(q_layout, (None, None, 0)), (BLOCK_M, HEAD_DIM)
        )

    return types.SimpleNamespace(mmas=mmas, layouts=layouts, tma_q=tma_q)


def _kernel_module():
    """Build the kernel classes on first use: importing this module must not need the CuTe DSL."""
    import cutlass
    import cutlass.cute as cute
    import cutlass.utils as utils
    import cutlass.utils.hopper_helpers as sm90_utils
    from cutlass._mlir.dialects import llvm
    from cutlass.cute.nvgpu import cpasync, warpgroup
    from cutlass.cutlass_dsl import dsl_user_op

    Float32, Int32, Int64 = cutlass.Float32, cutlass.Int32, cutlass.Int64
    helpers, operands = device_helpers(), launch_operands()

    @dsl_user_op
    def exit_thread(*, loc=None, ip=None):
        """PTX ``exit``: end this thread. Unlike ``trap`` the launch then completes, so the device printf
        buffer reaches the host (a trapped launch loses it, which is what hid the first hang report)."""
        llvm.inline_asm(None, [], "exit;", "", has_side_effects=True, loc=loc, ip=ip)

    class MLADecodeSm90:
        """One CTA = one (part, row block, KV head) and one warpgroup per half of dv: ``warpgroups`` 1 (a
        CTA per half) or 2 (both halves in one CTA, sharing each K tile in shared memory)."""

        def __init__(
            self, dtype, causal: bool, watchdog: bool = False, warpgroups: int = 1, split_s: bool = False
        ):
            self.dtype = dtype
            self.causal = causal
            self.wgs = warpgroups
            # Split S (two warpgroups): warpgroup h computes S for tokens [32h, 32h + 32) of each tile only.
            self.split_s = split_s
            self.n_s = BLOCK_N // 2 if split_s else BLOCK_N  # tokens of S per warpgroup
            # Watchdog build (ATTN_FLASHMLA_CUTE_WATCHDOG=1): every mbarrier wait gives up after
            # WATCHDOG_NS, prints which barrier/phase/sequence/tile it was waiting for, and ends the
            # thread; the first CTA also traces its loads and waits. Its results are garbage: diagnosis only.
            self.watchdog = watchdog

        def shared_storage(self, q_layout, k_layout, p_layout):
            """The CTA's shared memory: barriers, Q, the K stages, and (split S) the P halves and row slots."""
            dtype = self.dtype

            fields = {
                # K stages' "full", then Q, then (two warpgroups) K stages' "empty"
                "bars": cute.struct.MemRange[cutlass.Int64, 2 * STAGES + 1],
                "sQ": cute.struct.Align[cute.struct.MemRange[dtype, cute.cosize(q_layout)], 1024],
                "sK": cute.struct.Align[cute.struct.MemRange[dtype, cute.cosize(k_layout)], 1024],
            }
            if self.split_s:
                fields["sP"] = cute.struct.Align[cute.struct.MemRange[dtype, cute.cosize(p_layout)], 1024]
                fields["sRow"] = cute.struct.MemRange[Float32, BLOCK_M * 4]
            return cute.struct(type("SharedStorage", (), {"__annotations__": fields}))

        @cute.jit
        def wait(self, bar, phase, kind: cutlass.Constexpr, req, t):
            """``mbarrier_wait``; in the watchdog build a bounded spin that reports a hang and exits."""
            if cutlass.const_expr(self.watchdog):
                done = cute.arch.mbarrier_try_wait(bar, phase)
                start = cute.arch.globaltimer()
                waited = Int64(0)
                while not done and waited < WATCHDOG_NS:
                    done = cute.arch.mbarrier_try_wait(bar, phase)
                    waited = cute.arch.globaltimer() - start
                if not done:
                    bx, by, bz = cute.arch.block_idx()
                    tidx, _, _ = cute.arch.thread_idx()
                    if tidx % 32 == 0:
                        if cutlass.const_expr(kind == 0):
                            cute.printf(
                                "attn_flashmla cute watchdog: block ({},{},{}) thread {} stuck on the Q barrier, "
                                "phase {}, req {}, tile {}", bx, by, bz, tidx, phase, req, t,
                            )  # fmt: skip
                        else:
                            cute.printf(
                                "attn_flashmla cute watchdog: block ({},{},{}) thread {} stuck on a K barrier, "
                                "phase {}, req {}, tile {}", bx, by, bz, tidx, phase, req, t,
                            )  # fmt: skip
                    exit_thread()
                self.trace("waited", kind, phase, req, t)
            else:
                cute.arch.mbarrier_wait(bar, phase)

        @cute.jit
        def trace(self, what: cutlass.Constexpr, a, b, c, d):
            """Watchdog build only: thread 0 of CTA (0, 0, 0) prints a step of its life (four numbers)."""
            if cutlass.const_expr(self.watchdog):
                bx, by, bz = cute.arch.block_idx()
                tidx, _, _ = cute.arch.thread_idx()
                if tidx == 0 and bx == 0 and by == 0 and bz == 0:
                    cute.printf("attn_flashmla cute trace: " + what + " {} {} {} {}", a, b, c, d)

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
            # S = Q K^T over the warpgroup's n_s tokens; O += P V with P from registers; with split S the
            # other warpgroup's half of P comes from shared memory (pv_ss).
            qk_mma, pv_mma, pv_ss_mma = operands.mmas(dtype, self.n_s)
            q_layout, k_layout, v_layout = operands.layouts(dtype)
            # Split S: each warpgroup's P half (64 rows x 32 tokens), as the A operand of the other's PV.
            p_layout = sm90_utils.make_smem_layout_a(
                utils.LayoutEnum.ROW_MAJOR, (BLOCK_M, DV_PER_CTA, self.n_s), dtype, 2
            )
            tma_q, tma_mQ = operands.tma_q(mQ, q_layout)
            tma_k, tma_mK = cpasync.make_tiled_tma_atom(
                cpasync.CopyBulkTensorTileG2SOp(),
                mK,
                cute.slice_(k_layout, (None, None, 0)),
                (BLOCK_N, HEAD_DIM),
            )

            self.storage = self.shared_storage(q_layout, k_layout, p_layout)
            num_parts = mParts.shape[0]
            m_blocks = rows_pad // BLOCK_M
            self.kernel(
                tma_q, tma_mQ, tma_k, tma_mK, mBlockTable, mSeqlens, mParts, mSplitOffsets, mOacc, mLSEacc,
                qk_mma, pv_mma, pv_ss_mma, q_layout, k_layout, v_layout, p_layout, scale_log2, s_q, group,
                rows_pad, h_kv,
            ).launch(
                grid=(num_parts, m_blocks, h_kv * (2 // self.wgs)), block=(128 * self.wgs, 1, 1),
                smem=self.storage.size_in_bytes(),
                stream=stream,
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
            qk_mma: cute.TiledMma,
            pv_mma: cute.TiledMma,
            pv_ss_mma: cute.TiledMma,
            q_layout: cute.ComposedLayout,
            k_layout: cute.ComposedLayout,
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
            part, mb, z = cute.arch.block_idx()
            hk = z // 2
            half = z % 2  # which 256 of the 512 output channels this warpgroup owns
            if cutlass.const_expr(self.wgs == 2):
                hk = z
                half = warp_idx // 4
            wg_tidx = tidx % 128  # the thread's index in its warpgroup (the MMAs' thread layout)
            m_blocks = rows_pad // BLOCK_M

            smem = cutlass.utils.SmemAllocator()
            storage = smem.allocate(self.storage)
            bars = storage.bars.data_ptr()
            sQ = storage.sQ.get_tensor(q_layout.outer, swizzle=q_layout.inner)
            sK = storage.sK.get_tensor(k_layout.outer, swizzle=k_layout.inner)
            if tidx == 0:
                cpasync.prefetch_descriptor(tma_q)
                cpasync.prefetch_descriptor(tma_k)
                for i in cutlass.range_constexpr(STAGES + 1):
                    cute.arch.mbarrier_init(bars + i, 1)
                # "empty": one arrival per consumer warp once its wgmma reading a K stage have completed
                for i in cutlass.range_constexpr(STAGES):
                    cute.arch.mbarrier_init(bars + STAGES + 1 + i, 4 * self.wgs)
                cute.arch.mbarrier_init_fence()
            cute.arch.sync_threads()

            # TMA views: the Q row block of (sequence, KV head, mb), and page block `blk` of KV head hk.
            gQ = cute.flat_divide(mQ, (BLOCK_M, HEAD_DIM))  # (64, 576, n_row_blocks, 1)
            tQsQ, tQgQ = cpasync.tma_partition(
                tma_q, 0, cute.make_layout(1), cute.group_modes(sQ, 0, 2), cute.group_modes(gQ, 0, 2)
            )
            gK = cute.flat_divide(mK[None, None, hk], (BLOCK_N, HEAD_DIM))  # (64, 576, n_blocks, 1)
            tKsK, tKgK = cpasync.tma_partition(
                tma_k, 0, cute.make_layout(1), cute.group_modes(sK, 0, 2), cute.group_modes(gK, 0, 2)
            )
            q_bytes = cute.size_in_bytes(dtype, cute.slice_(q_layout, (None, None, 0)))
            k_bytes = cute.size_in_bytes(dtype, cute.slice_(k_layout, (None, None, 0)))

            # MMA fragments: Q and every K stage from smem; P will come from registers.
            thr_qk = qk_mma.get_slice(wg_tidx)
            thr_pv = pv_mma.get_slice(wg_tidx)
            tSrQ = qk_mma.make_fragment_A(thr_qk.partition_A(sQ))
            n_s = self.n_s
            s_tokens0 = 0  # this warpgroup's first token of a tile in S
            if cutlass.const_expr(self.split_s):
                s_tokens0 = half * n_s
                # Rows [32h, 32h + 32) of every K stage: a whole number of 8-row swizzle atoms.
                tSrK = qk_mma.make_fragment_B(
                    thr_qk.partition_B(cute.flat_divide(sK, (n_s, HEAD_DIM))[None, None, half, 0, None])
                )
                sP = storage.sP.get_tensor(p_layout.outer, swizzle=p_layout.inner)  # (64, 32, own/other)
                sRow = storage.sRow.get_tensor(cute.make_layout((BLOCK_M, 2, 2)))  # (row, half, max/sum)
                thr_pv_ss = pv_ss_mma.get_slice(wg_tidx)
                tPsP = thr_qk.partition_C(sP[None, None, half])  # where this warpgroup's P goes
                tOrP_other = pv_ss_mma.make_fragment_A(thr_pv_ss.partition_A(sP[None, None, 1 - half]))
            else:
                tSrK = qk_mma.make_fragment_B(thr_qk.partition_B(sK))
            tScS = thr_qk.partition_C(cute.make_identity_tensor((BLOCK_M, n_s)))
            tOcO = thr_pv.partition_C(cute.make_identity_tensor((BLOCK_M, DV_PER_CTA)))
            acc_s = cute.make_rmem_tensor(thr_qk.partition_shape_C((BLOCK_M, n_s)), Float32)
            acc_o = cute.make_rmem_tensor(thr_pv.partition_shape_C((BLOCK_M, DV_PER_CTA)), Float32)
            r_p = cute.make_rmem_tensor(thr_pv.partition_shape_A((BLOCK_M, n_s)), dtype)
            # The wgmma accumulator of a 64 x N tile and the register A operand of a 64 x K (K = N) tile
            # hold the same (row, column) pairs in the same order for 16-bit types: store P through a
            # view of the A fragment with the accumulator's layout.
            r_p_as_acc = cute.make_tensor(r_p.iterator, acc_s.layout)
            # Each thread holds 2 rows of the tile (r and r + 8); element i belongs to row half (i // 2) % 2.
            row0 = tScS[0][0]

            begin_req = mParts[part, 0]
            begin_tile = mParts[part, 1]
            end_req = mParts[part, 2]
            end_tile = mParts[part, 3]
            begin_split = mParts[part, 4]
            loads_done = Int32(0)  # K tiles consumed so far by this CTA: stage = n % 2, phase = (n // 2) % 2
            q_phase = Int32(0)
            for req in cutlass.range(begin_req, end_req + 1, unroll=1):
                seqlen = mSeqlens[req]
                n_tiles = (seqlen + BLOCK_N - 1) // BLOCK_N
                t_begin = begin_tile if req == begin_req else 0
                t_end = end_tile if req == end_req else cutlass.max(n_tiles, 1)
                t_end = cutlass.min(t_end, n_tiles)  # an empty sequence has one tile with nothing to load
                split = begin_split if req == begin_req else 0

                cute.arch.sync_threads()  # every warp is done with sQ and all K stages
                # The producer is all of warp 0, not thread 0: a TMA cute.copy elects its issuing lane with
                # elect.sync over the full warp, which waits for all 32 lanes. Inside `if tidx == 0` lane 0
                # waited there for lanes that were spinning on the barrier the copy was to complete: the
                # first-launch hang (found with the watchdog build: warps 1-3 stuck on the Q barrier, thread
                # 0 moving on only once they had exited). Only the barrier's arrival is one thread's job.
                if warp_idx == 0:
                    q_block = (req * h_kv + hk) * m_blocks + mb
                    self.trace("issue Q (req, q_block, q_bytes, k_bytes)", req, q_block, q_bytes, k_bytes)
                    with cute.arch.elect_one():
                        cute.arch.mbarrier_arrive_and_expect_tx(bars + STAGES, q_bytes)
                    cute.copy(tma_q, tQgQ[None, q_block, 0], tQsQ[None, 0], tma_bar_ptr=bars + STAGES)
                    for i in cutlass.range(cutlass.min(STAGES, t_end - t_begin), unroll=1):
                        stage = (loads_done + i) % STAGES
                        blk = mBlockTable[req, t_begin + i]
                        self.trace("issue K (req, tile, stage, block)", req, t_begin + i, stage, blk)
                        with cute.arch.elect_one():
                            cute.arch.mbarrier_arrive_and_expect_tx(bars + stage, k_bytes)
                        cute.copy(tma_k, tKgK[None, blk, 0], tKsK[None, stage], tma_bar_ptr=bars + stage)
                self.wait(bars + STAGES, q_phase, 0, req, t_begin)
                q_phase = q_phase ^ 1

                # Last visible token (exclusive) of this thread's two rows.
                limit0, limit1 = helpers.row_limits(seqlen, s_q, group, mb, row0, self.causal)
                m0 = -Float32.inf
                m1 = -Float32.inf
                l0 = Float32(0.0)
                l1 = Float32(0.0)
                acc_o.fill(0.0)

                for t in cutlass.range(t_begin, t_end, unroll=1):
                    stage = loads_done % STAGES
                    self.wait(bars + stage, (loads_done // STAGES) % 2, 1, req, t)
                    valid = seqlen - t * BLOCK_N
                    if valid < BLOCK_N:
                        # Zero the tokens past the end of the sequence in smem: their V rows may be NaN.
                        # Each warpgroup zeroes its own V channels, so it need only wait for itself (the
                        # other one may be reading the same rows as K: those scores are masked anyway).
                        helpers.zero_tail(sK[None, None, stage], valid, half * DV_PER_CTA, wg_tidx, dtype)
                        if cutlass.const_expr(self.wgs == 2):
                            cute.arch.barrier(barrier_id=1 + half, number_of_threads=128)
                        else:
                            cute.arch.sync_threads()

                    # S = Q K^T over 36 k-steps.
                    warpgroup.fence()
                    for k in cutlass.range_constexpr(cute.size(tSrQ, mode=[2])):
                        qk_mma.set(warpgroup.Field.ACCUMULATE, k != 0)
                        cute.gemm(qk_mma, acc_s, tSrQ[None, None, k, 0], tSrK[None, None, k, stage], acc_s)
                    warpgroup.commit_group()
                    warpgroup.wait_group(0)

                    # Mask, then the online softmax in base 2.
                    new0, new1 = helpers.mask_rowmax(
                        acc_s, tScS, t * BLOCK_N + s_tokens0, limit0, limit1, scale_log2, m0, m1
                    )
                    if cutlass.const_expr(self.split_s):
                        # Both warpgroups need the row maximum over all 64 tokens: swap halves. The slots
                        # are rewritten only after the P exchange below, which both must pass first.
                        if wg_tidx % 4 == 0:
                            sRow[row0, half, 0] = new0
                            sRow[row0 + 8, half, 0] = new1
                        cute.arch.barrier(barrier_id=3, number_of_threads=256)
                        new0 = cute.arch.fmax(new0, sRow[row0, 1 - half, 0])
                        new1 = cute.arch.fmax(new1, sRow[row0 + 8, 1 - half, 0])
                    shift0 = Float32(0.0) if new0 == -Float32.inf else new0
                    shift1 = Float32(0.0) if new1 == -Float32.inf else new1
                    alpha0 = cute.math.exp2(m0 - shift0, fastmath=True)
                    alpha1 = cute.math.exp2(m1 - shift1, fastmath=True)
                    sum0, sum1 = helpers.exponentiate(acc_s, shift0, shift1)
                    l0 = l0 * alpha0 + sum0
                    l1 = l1 * alpha1 + sum1
                    m0 = new0
                    m1 = new1
                    helpers.rescale(acc_o, alpha0, alpha1)
                    r_p_as_acc.store(acc_s.load().to(dtype))

                    # O += P V, V = this warpgroup's 256 channels of the same smem tile.
                    v_ptr = cute.recast_ptr(
                        sK[None, None, stage].iterator + half * (BLOCK_N * DV_PER_CTA), v_layout.inner
                    )
                    s_v = cute.make_tensor(v_ptr, cute.slice_(v_layout.outer, (None, None, 0)))
                    if cutlass.const_expr(self.split_s):
                        # Publish this half of P for the other warpgroup (wgmma reads it through the async
                        # proxy, hence the fence before the barrier), then multiply both halves: our own
                        # tokens with P from registers, the other's with its P from shared memory.
                        for i in cutlass.range_constexpr(cute.size(tPsP)):
                            tPsP[i] = r_p_as_acc[i]
                        cute.arch.fence_proxy("async.shared", space="cta")
                        cute.arch.barrier(barrier_id=3, number_of_threads=256)
                        s_v_halves = cute.flat_divide(s_v, (DV_PER_CTA, n_s))  # (256, 32, 1, 2)
                        tOrV = pv_mma.make_fragment_B(thr_pv.partition_B(s_v_halves[None, None, 0, half]))
                        tOrV_other = pv_ss_mma.make_fragment_B(
                            thr_pv_ss.partition_B(s_v_halves[None, None, 0, 1 - half])
                        )
                    else:
                        tOrV = pv_mma.make_fragment_B(thr_pv.partition_B(s_v))
                    warpgroup.fence()
                    for k in cutlass.range_constexpr(cute.size(r_p, mode=[2])):
                        pv_mma.set(warpgroup.Field.ACCUMULATE, True)
                        cute.gemm(pv_mma, acc_o, r_p[None, None, k], tOrV[None, None, k], acc_o)
                    if cutlass.const_expr(self.split_s):
                        for k in cutlass.range_constexpr(cute.size(tOrP_other, mode=[2])):
                            pv_ss_mma.set(warpgroup.Field.ACCUMULATE, True)
                            cute.gemm(
                                pv_ss_mma, acc_o, tOrP_other[None, None, k], tOrV_other[None, None, k], acc_o
                            )
                    warpgroup.commit_group()
                    warpgroup.wait_group(0)

                    # This stage is free: refill it with tile t + STAGES. One warpgroup: a CTA barrier.
                    # Two: every warp arrives on the stage's "empty" barrier after its wait_group and only
                    # the producer warp waits for all eight, so the warpgroups drift apart and one's
                    # softmax can run while the other multiplies.
                    if cutlass.const_expr(self.wgs == 2):
                        if tidx % 32 == 0:
                            cute.arch.mbarrier_arrive(bars + STAGES + 1 + stage)
                    else:
                        cute.arch.sync_threads()
                    if warp_idx == 0 and t + STAGES < t_end:  # the DSL lowers `and` on dynamic values
                        if cutlass.const_expr(self.wgs == 2):
                            self.wait(bars + STAGES + 1 + stage, (loads_done // STAGES) % 2, 2, req, t)
                        blk = mBlockTable[req, t + STAGES]
                        with cute.arch.elect_one():
                            cute.arch.mbarrier_arrive_and_expect_tx(bars + stage, k_bytes)
                        cute.copy(tma_k, tKgK[None, blk, 0], tKsK[None, stage], tma_bar_ptr=bars + stage)
                    loads_done = loads_done + 1

                if cutlass.const_expr(self.split_s):
                    # Each warpgroup summed p over its own tokens (with the shared maxima): add the halves.
                    if wg_tidx % 4 == 0:
                        sRow[row0, half, 1] = l0
                        sRow[row0 + 8, half, 1] = l1
                    cute.arch.barrier(barrier_id=3, number_of_threads=256)
                    l0 = l0 + sRow[row0, 1 - half, 1]
                    l1 = l1 + sRow[row0 + 8, 1 - half, 1]
                self.trace("piece done (req, tiles, l0, m0)", req, t_end - t_begin, l0, m0)
                slot_row = ((mSplitOffsets[req] + split) * h_kv + hk) * rows_pad + mb * BLOCK_M
                helpers.write_out(mOacc, acc_o, tOcO, slot_row, half * DV_PER_CTA, l0, l1)
                if half == 0 and tidx % 4 == 0:
                    helpers.write_lse(mLSEacc, slot_row, row0, l0, l1, m0, m1)

    return cutlass, cute, MLADecodeSm90


@functools.cache
def _cute():
    return _kernel_module()


def _cutlass_dtype(dtype: torch.dtype):
    cutlass = _cute()[0]
    return cutlass.BFloat16 if dtype == torch.bfloat16 else cutlass.Float16


def watchdog_enabled() -> bool:
    """``ATTN_FLASHMLA_CUTE_WATCHDOG=1``: build the kernel whose mbarrier waits time out, report and exit,
    and whose first CTA prints a trace of its loads and waits."""
    return os.environ.get("ATTN_FLASHMLA_CUTE_WATCHDOG", "0") not in ("", "0")


class KernelKey(NamedTuple):
    """What a compiled kernel depends on: nothing else (every shape, stride and length is a runtime value).
    Fields that do not shape the kernel chosen are normalised (see :func:`kernel_key`)."""

    dtype: torch.dtype
    causal: bool
    watchdog: bool  # the first kernel's watchdog build
    warpgroups: int  # the first kernel's 1 or 2; the seesaw kernel always has 3
    split_s: bool  # the first kernel's split S
    seesaw: bool
    cluster: int  # the seesaw kernel's CTAs per cluster (seesaw_cluster)
    cross_first: bool  # the seesaw kernel's opt-in PV order (cross_first)
    lean: bool = False  # the seesaw kernel's opt-in lean softmax (lean_softmax)


def kernel_key(
    dtype: torch.dtype,
    causal: bool,
    watchdog: bool = False,
    warpgroups: int = 1,
    split_s: bool = False,
    seesaw: bool = False,
    cluster: int = 1,
    cross_first: bool = False,
    lean: bool = False,
) -> KernelKey:
    """The :class:`KernelKey` of a kernel: the seesaw kernel has no watchdog build, no split S and three
    warpgroups; the first kernel no cluster, no cross_first order and no lean softmax."""
    if seesaw:
        return KernelKey(
            dtype, bool(causal), False, 3, False, True, int(cluster), bool(cross_first), bool(lean)
        )
    return KernelKey(dtype, bool(causal), bool(watchdog), int(warpgroups), bool(split_s), False, 1, False)


#: Compiled kernels by :func:`kernel_key`; one compile per key per process.
_COMPILED: dict = {}
#: Seconds each compile took, by key (tools/gpu_check.py prints them apart from run times).
COMPILE_SECONDS: dict = {}
_COMPILE_LOCK = threading.Lock()


def _compile(key: KernelKey, args: tuple):
    """``cute.compile`` the kernel for ``key`` against ``args`` (what :func:`prepare_inputs` makes)."""
    _, cute, kernel_cls = _cute()
    dtype = _cutlass_dtype(key.dtype)
    if key.seesaw:
        from attn_flashmla.decode_fwd_sm90_seesaw import kernel_class

        kernel = kernel_class()(
            dtype, key.causal, cluster=key.cluster, cross_first=key.cross_first, lean=key.lean
        )
    else:
        kernel = kernel_cls(dtype, key.causal, key.watchdog, key.warpgroups, key.split_s)
    return cute.compile(kernel, *args)


def compiled_kernel(key: tuple, args: tuple):
    """The kernel for ``key``, compiled on first use (timed into :data:`COMPILE_SECONDS`)."""
    kernel = _COMPILED.get(key)
    if kernel is None:
        with _COMPILE_LOCK:
            kernel = _COMPILED.get(key)
            if kernel is None:
                start = time.perf_counter()
                kernel = _compile(key, args)
                COMPILE_SECONDS[key] = time.perf_counter() - start
                _COMPILED[key] = kernel
    return kernel


def _aligned(t: torch.Tensor) -> torch.Tensor:
    """``t`` if it is contiguous with a 16-byte aligned base (what :func:`_dyn` tells the compiler), else a
    fresh copy. Not ``.contiguous()``: a contiguous view at an odd offset (``block_table[1:]``, a pool
    sliced by blocks) would come back as it is."""
    if t.is_contiguous() and t.data_ptr() % 16 == 0:
        return t
    return torch.empty(t.shape, dtype=t.dtype, device=t.device).copy_(t)


def _dyn(t: torch.Tensor, leading_dim: int):
    from cutlass.cute.runtime import from_dlpack

    # Every extent and stride dynamic (only the leading stride is the static 1): the compiled kernel's
    # signature does not depend on any size, so one compile serves every call of its key.
    return from_dlpack(t, assumed_align=16).mark_layout_dynamic(leading_dim=leading_dim)


def _stream(device: torch.device):
    import cuda.bindings.driver as cuda_driver

    handle = torch.cuda.current_stream(device).cuda_stream if device.type == "cuda" else 0
    return cuda_driver.CUstream(handle)


def prepare_inputs(
    q: torch.Tensor,
    k_cache: torch.Tensor,
    block_table: torch.Tensor,
    cache_seqlens: torch.Tensor,
    parts: torch.Tensor,
    split_offsets: torch.Tensor,
    total_splits: int,
    softmax_scale: float,
) -> tuple[tuple, tuple, torch.Tensor, torch.Tensor]:
    """Host-side preparation: the kernel's tensors (as CuTe tensors) and scalars, plus the fp32 scratch.

    q is regrouped so that the rows of one (sequence, KV head) are contiguous and padded to 64 (one TMA
    box); the cache is viewed as (tokens, d, h_kv) so a page block is a TMA box of one head.
    """
    b, s_q, h_q, d = q.shape
    num_blocks, page, h_kv, _ = k_cache.shape
    group = h_q // h_kv
    rows = s_q * group
    rows_pad = -(-rows // BLOCK_M) * BLOCK_M
    if q.is_contiguous() and (s_q == 1 or h_kv == 1) and rows == rows_pad and q.data_ptr() % 16 == 0:
        # One (sequence, KV head)'s rows are already contiguous and whole blocks: q as it is, no copy
        # (TMA wants a 16-byte aligned base, which a view at an odd offset would not have).
        q_packed = q.view(b, h_kv, rows, d)
    else:
        q_rows = q.view(b, s_q, h_kv, group, d).permute(0, 2, 1, 3, 4).reshape(b, h_kv, rows, d)
        q_packed = torch.zeros(b, h_kv, rows_pad, d, dtype=q.dtype, device=q.device)
        q_packed[:, :, :rows] = q_rows
    # One TMA descriptor views the whole pool: a strided or misaligned one (FlashMLA allows any pool whose
    # channels are contiguous) is copied, correct but not fast.
    k_view = _aligned(k_cache).view(num_blocks * page, h_kv, d).permute(0, 2, 1)  # (tokens, d, h_kv)
    o_acc = torch.empty(total_splits * h_kv * rows_pad, HEAD_DIM_V, dtype=torch.float32, device=q.device)
    lse_acc = torch.empty(total_splits * h_kv * rows_pad, dtype=torch.float32, device=q.device)
    tensors = (
        _dyn(q_packed.view(-1, d), 1),
        _dyn(k_view, 1),
        _dyn(_aligned(block_table), 1),
        _dyn(_aligned(cache_seqlens), 0),
        _dyn(parts, 1),
        _dyn(split_offsets, 0),
        _dyn(o_acc, 1),
        _dyn(lse_acc, 0),
    )
    scalars = (softmax_scale * LOG2E, s_q, group, rows_pad, h_kv, _stream(q.device))
    return tensors, scalars, o_acc.view(-1, h_kv, rows_pad, HEAD_DIM_V), lse_acc.view(-1, h_kv, rows_pad)


def dense_decode_cute(
    q: torch.Tensor,
    k_cache: torch.Tensor,
    block_table: torch.Tensor,
    cache_seqlens: torch.Tensor,
    parts: torch.Tensor,
    split_offsets: torch.Tensor,
    total_splits: int,
    max_splits: int,
    softmax_scale: float,
    causal: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Run the CuTe kernel then the combine; returns ``out`` (b, s_q, h_q, 512), ``lse`` (b, h_q, s_q)."""
    from attn_flashmla.combine import combine_splits

    if not softmax_scale > 0:  # a schedule made for a positive scale, called with another
        raise UnsupportedFeatureError(f"the CuTe kernel needs softmax_scale > 0, got {softmax_scale!r}")

    b, s_q, h_q, _ = q.shape
    group = h_q // k_cache.shape[2]
    tensors, scalars, o_acc, lse_acc = prepare_inputs(
        q, k_cache, block_table, cache_seqlens, parts, split_offsets, total_splits, softmax_scale
    )
    if seesaw():
        cluster = seesaw_cluster(-(-s_q * group // BLOCK_M))
        key = kernel_key(
            q.dtype,
            causal and s_q > 1,
            seesaw=True,
            cluster=cluster,
            cross_first=cross_first(),
            lean=lean_softmax(),
        )
    else:
        key = kernel_key(q.dtype, causal and s_q > 1, watchdog_enabled(), warpgroups(), split_s())
    kernel = compiled_kernel(key, tensors + scalars)
    kernel(*tensors, *scalars)
    out = torch.empty(b, s_q, h_q, HEAD_DIM_V, dtype=q.dtype, device=q.device)
    lse = torch.empty(b, h_q, s_q, dtype=torch.float32, device=q.device)
    combine_splits(out, lse, o_acc, lse_acc, split_offsets, max(max_splits, 1), group, min_splits=1)
    return out, lse


def example_inputs(
    dtype: torch.dtype = torch.bfloat16, b: int = 2, s_q: int = 1, h_q: int = 16, h_kv: int = 1
):
    """Small CPU tensors of the kernel's call (for compiling without a GPU and for tests)."""
    from attn_flashmla.scheduler import default_num_parts, schedule_decode

    lens = [100 + 37 * i for i in range(b)]
    max_blocks = -(-max(lens) // BLOCK_N)
    q = torch.zeros(b, s_q, h_q, HEAD_DIM, dtype=dtype)
    k_cache = torch.zeros(b * max_blocks, BLOCK_N, h_kv, HEAD_DIM, dtype=dtype)
    table = torch.arange(b * max_blocks, dtype=torch.int32).view(b, max_blocks)
    seqlens = torch.tensor(lens, dtype=torch.int32)
    rows = s_q * h_q // h_kv
    schedule = schedule_decode(seqlens, default_num_parts(8, h_kv, rows, BLOCK_M, 1, 2), BLOCK_N)
    counts = schedule.split_offsets[1:] - schedule.split_offsets[:-1]
    return (
        q, k_cache, table, seqlens, schedule.parts, schedule.split_offsets, schedule.total_splits,
        int(counts.max()),
    )  # fmt: skip


def compile_for_sm90(
    dtype: torch.dtype = torch.bfloat16,
    causal: bool = False,
    watchdog: bool = False,
    warpgroups: int = 1,
    split_s: bool = False,
    seesaw: bool = False,
    h_q: int = 16,
    cross_first: bool = False,
    lean: bool = False,
):
    """Compile the kernel for sm_90a without a GPU (set ``CUTE_DSL_ARCH=sm_90a``); returns the compiled object.

    It goes through the same host preparation as a GPU call (:func:`prepare_inputs` on small CPU tensors,
    every layout dynamic), so it compiles exactly the signature that runs on the GPU. ``h_q`` (one KV head)
    sets the row blocks, which choose the seesaw kernel's cluster: 128 gives two, so pairs.
    """
    q, k_cache, table, seqlens, parts, offsets, total, _ = example_inputs(dtype, h_q=h_q)
    tensors, scalars, _, _ = prepare_inputs(q, k_cache, table, seqlens, parts, offsets, total, 0.1)
    cluster = seesaw_cluster(-(-h_q // BLOCK_M))
    key = kernel_key(dtype, causal, watchdog, warpgroups, split_s, seesaw, cluster, cross_first, lean)
    return compiled_kernel(key, tensors + scalars)


if __name__ == "__main__":  # python -m attn_flashmla.decode_fwd_sm90: compile every key, print the seconds
    os.environ.setdefault("CUTE_DSL_ARCH", "sm_90a")
    start = time.perf_counter()
    _cute()
    print(f"import of the CuTe DSL and kernel module: {time.perf_counter() - start:.1f} s", flush=True)
    for dt in (torch.bfloat16, torch.float16):
        for c in (False, True):
            for wgs in (1, 2):
                compile_for_sm90(dt, c, warpgroups=wgs)
                key = kernel_key(dt, c, warpgroups=wgs)
                print(f"compile {key}: {COMPILE_SECONDS[key]:.1f} s", flush=True)
            for h_q in (64, 128):  # the seesaw kernel with single CTAs (one row block) and in pairs (two)
                compile_for_sm90(dt, c, seesaw=True, h_q=h_q)
                key = kernel_key(dt, c, seesaw=True, cluster=seesaw_cluster(h_q // BLOCK_M))
                print(f"compile {key}: {COMPILE_SECONDS[key]:.1f} s", flush=True)
