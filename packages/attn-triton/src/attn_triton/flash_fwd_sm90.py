"""FlashAttention forward for Hopper in Gluon, Triton's explicit lower-level language.

:mod:`attn_triton.flash_fwd` leaves scheduling to the Triton compiler, and Triton 3.6 waits for every
``tl.dot`` before the next instruction (``wgmma.wait_group 0``): the tensor cores idle while a warp computes
the softmax. This kernel states the schedule that FlashAttention-3 uses, with Gluon's handles on each
Hopper unit (``triton.experimental.gluon``, shipped with Triton):

* warp specialisation (``gl.warp_specialize``): one producer warp issues the TMA copies (Q once, then K and
  V tiles into a ring of ``STAGES`` shared-memory slots, each slot guarded by a "full" and an "empty"
  mbarrier), and ``NUM_CONSUMERS`` warpgroups of 4 warps each own 64 query rows of the ``64 *
  NUM_CONSUMERS``-row tile and share every K/V tile;
* asynchronous wgmma inside each consumer (``warpgroup_mma(..., is_async=True)``): iteration ``j`` issues
  ``S_j = Q K_j^T`` and then ``O += P_{j-1} V_{j-1}``, waits for ``S_j`` only, and computes the softmax of
  ``S_j`` while the tensor cores still run ``P_{j-1} V_{j-1}`` (FA3's intra-warpgroup overlap); the two
  consumers interleave on the tensor cores by themselves (making them take turns, FA3's ping-pong, is
  ``Config.pingpong``: on two H100s 630 against 644 TFLOP/s without at hd128 16k, then 624 against 592;
  within run-to-run noise, so off until a run settles it);
* registers: the producer's warpgroup gives its registers back (``setmaxnreg``, 24), the consumers run
  with 240.
* P stays in registers: the S accumulator's layout is the A-operand layout of the PV wgmma, so the
  probabilities never touch shared memory.

Scope: dense (batch, seqlen, heads, head_dim) tensors, fp16/bf16, head dims 64 and 128, no window but
causal (bottom-right, with seqlen_q <= seqlen_k so that every row sees key 0), no softcap, GQA. Everything
else goes to :mod:`attn_triton.flash_fwd` (see :func:`supports`). The output and the natural-log LSE are
exactly what that kernel returns; the backward is shared.
"""

from __future__ import annotations

import dataclasses

import torch
import triton
from triton.experimental import gluon
from triton.experimental.gluon import language as gl
from triton.experimental.gluon.language.nvidia.hopper import (
    fence_async_shared,
    mbarrier,
    tma,
    warpgroup_mma,
    warpgroup_mma_wait,
)

from attn_triton.flash_common import LOG2E
from attn_triton.flash_fwd import tma_compatible

ROWS = gl.constexpr(64)  # query rows per consumer warpgroup: the M of one wgmma


@gluon.jit
def _producer(
    q_desc, k_desc, v_desc, q_smem, k_smem, v_smem, q_bar, k_full, v_full, k_empty, v_empty, m0, n_hi
):
    # Tile sizes travel as shared-memory shapes: warp_specialize passes partition arguments as IR values.
    NUM_CONSUMERS: gl.constexpr = q_smem.shape[0]
    STAGES: gl.constexpr = k_smem.shape[0]
    BLOCK_N: gl.constexpr = k_smem.shape[1]
    for c in gl.static_range(NUM_CONSUMERS):
        mbarrier.expect(q_bar.index(c), q_desc.block_type.nbytes)
        tma.async_copy_global_to_shared(q_desc, [m0 + c * ROWS, 0], q_bar.index(c), q_smem.index(c))
    # --8<-- [start:gluon-producer]
    for i in range(gl.cdiv(n_hi, BLOCK_N)):
        n0 = i * BLOCK_N
        slot = i % STAGES
        # A fresh mbarrier counts as having completed the phase before 0: the first lap does not wait.
        phase = ((i // STAGES) & 1) ^ 1
        mbarrier.wait(k_empty.index(slot), phase)
        mbarrier.expect(k_full.index(slot), k_desc.block_type.nbytes)
        tma.async_copy_global_to_shared(k_desc, [n0, 0], k_full.index(slot), k_smem.index(slot))
        mbarrier.wait(v_empty.index(slot), phase)
        mbarrier.expect(v_full.index(slot), v_desc.block_type.nbytes)
        tma.async_copy_global_to_shared(v_desc, [n0, 0], v_full.index(slot), v_smem.index(slot))
    # --8<-- [end:gluon-producer]


@gluon.jit
def _softmax(s, m_i, l_i, qk_scale2, n0, rows, seqlen_k, diag, full_hi, BLOCK_N: gl.constexpr,
             s_layout: gl.constexpr):  # fmt: skip
    """Online-softmax step on raw scores ``s``: returns (p, alpha, m_new, l_new), scores in log2 units."""
    if n0 >= full_hi:  # the diagonal or the ragged end: a warp-uniform branch, skipped in the bulk
        cols = n0 + gl.arange(0, BLOCK_N, layout=gl.SliceLayout(0, s_layout))
        keep = (cols[None, :] < seqlen_k) & (cols[None, :] <= rows[:, None] + diag)
        s = gl.where(keep, s, -float("inf"))
    # With a positive scale max(s * c) = max(s) * c, and exp2(s * c - m) is one FMA per element.
    m_new = gl.maximum(m_i, gl.max(s, axis=1) * qk_scale2)
    p = gl.exp2(s * qk_scale2 - m_new[:, None])
    alpha = gl.exp2(m_i - m_new)
    l_new = l_i * alpha + gl.sum(p, axis=1)
    return p, alpha, m_new, l_new


@gluon.jit
def _take_turn(turn, c, r, pingpong):
    """Ping-pong: consumer ``c`` issues the wgmmas of its round ``r`` only after the other consumer issued its
    round ``r - 1`` (consumer 1) or ``r`` (consumer 0), so their GEMMs alternate on the tensor cores and one's
    softmax runs under the other's GEMMs."""
    if pingpong:
        # a fresh mbarrier counts as having completed phase 1: consumer 0 starts without waiting
        mbarrier.wait(turn.index(c), (r & 1) ^ (1 - c))


@gluon.jit
def _pass_turn(turn, c, pingpong):
    if pingpong:
        mbarrier.arrive(turn.index(1 - c), count=1)


@gluon.jit
def _consumer(c, o_desc, q_smem, k_smem, v_smem, q_bar, k_full, v_full, k_empty, v_empty, turn, lse_ptr, m0, n_hi,
              seqlen_q, seqlen_k, diag, qk_scale2, pingpong):  # fmt: skip
    """Consumer warpgroup ``c``: rows ``m0 + 64 c ...``; row i sees keys j < seqlen_k with j <= i + diag."""
    STAGES: gl.constexpr = k_smem.shape[0]
    BLOCK_N: gl.constexpr = k_smem.shape[1]
    HEAD_DIM: gl.constexpr = k_smem.shape[2]
    s_layout: gl.constexpr = gl.NVMMADistributedLayout(
        version=[3, 0], warps_per_cta=[4, 1], instr_shape=[16, BLOCK_N, 16]
    )
    o_layout: gl.constexpr = gl.NVMMADistributedLayout(
        version=[3, 0], warps_per_cta=[4, 1], instr_shape=[16, HEAD_DIM, 16]
    )
    p_layout: gl.constexpr = gl.DotOperandLayout(operand_index=0, parent=o_layout, k_width=2)
    dtype: gl.constexpr = o_desc.dtype

    row0 = m0 + c * ROWS
    rows = row0 + gl.arange(0, ROWS, layout=gl.SliceLayout(1, s_layout))
    # key blocks that every row of this warpgroup sees whole: n0 + BLOCK_N - 1 <= row0 + diag, and in range
    full_hi = gl.minimum((row0 + diag + 1) // BLOCK_N * BLOCK_N, seqlen_k // BLOCK_N * BLOCK_N)
    n_blocks = gl.cdiv(n_hi, BLOCK_N)

    q = q_smem.index(c)
    mbarrier.wait(q_bar.index(c), 0)
    s_zero = gl.zeros([ROWS, BLOCK_N], gl.float32, layout=s_layout)

    # Block 0: S_0, its softmax; nothing to overlap with yet.
    mbarrier.wait(k_full.index(0), 0)
    _take_turn(turn, c, 0, pingpong)
    s_tok = warpgroup_mma(q, k_smem.index(0).permute((1, 0)), s_zero, use_acc=False, is_async=True)
    _pass_turn(turn, c, pingpong)
    s = warpgroup_mma_wait(0, deps=(s_tok,))
    mbarrier.arrive(k_empty.index(0), count=1)
    m_i = gl.full([ROWS], -float("inf"), gl.float32, layout=gl.SliceLayout(1, s_layout))
    l_i = gl.zeros([ROWS], gl.float32, layout=gl.SliceLayout(1, s_layout))
    p, alpha, m_i, l_i = _softmax(s, m_i, l_i, qk_scale2, 0, rows, seqlen_k, diag, full_hi, BLOCK_N, s_layout)
    p_op = gl.convert_layout(p.to(dtype), p_layout)
    acc = gl.zeros([ROWS, HEAD_DIM], gl.float32, layout=o_layout)

    # --8<-- [start:gluon-loop]
    for j in range(1, n_blocks):
        slot = j % STAGES
        prev = (j - 1) % STAGES
        mbarrier.wait(k_full.index(slot), (j // STAGES) & 1)
        mbarrier.wait(v_full.index(prev), ((j - 1) // STAGES) & 1)
        _take_turn(turn, c, j, pingpong)
        s_tok = warpgroup_mma(q, k_smem.index(slot).permute((1, 0)), s_zero, use_acc=False, is_async=True)
        o_tok = warpgroup_mma(p_op, v_smem.index(prev), acc, is_async=True)
        _pass_turn(turn, c, pingpong)
        # wgmma groups retire in order: at most one outstanding means S_j is done, P_{j-1} V_{j-1} may run on
        s = warpgroup_mma_wait(1, deps=(s_tok,))
        mbarrier.arrive(k_empty.index(slot), count=1)
        p, alpha, m_i, l_i = _softmax(s, m_i, l_i, qk_scale2, j * BLOCK_N, rows, seqlen_k, diag, full_hi, BLOCK_N,
                                      s_layout)  # fmt: skip
        acc, p_op = warpgroup_mma_wait(0, deps=(o_tok, p_op))
        mbarrier.arrive(v_empty.index(prev), count=1)
        acc = acc * gl.convert_layout(alpha, gl.SliceLayout(1, o_layout))[:, None]
        p_op = gl.convert_layout(p.to(dtype), p_layout)
    # --8<-- [end:gluon-loop]

    last = (n_blocks - 1) % STAGES
    mbarrier.wait(v_full.index(last), ((n_blocks - 1) // STAGES) & 1)
    _take_turn(turn, c, n_blocks, pingpong)
    o_tok = warpgroup_mma(p_op, v_smem.index(last), acc, is_async=True)
    _pass_turn(turn, c, pingpong)
    acc, p_op = warpgroup_mma_wait(0, deps=(o_tok, p_op))
    mbarrier.arrive(v_empty.index(last), count=1)

    # Every row saw key 0 (see supports()), so l_i > 0.
    out = acc / gl.convert_layout(l_i, gl.SliceLayout(1, o_layout))[:, None]
    lse = (m_i + gl.log2(l_i)) * 0.6931471805599453
    gl.store(lse_ptr + rows, lse, mask=rows < seqlen_q)
    q.store(out.to(dtype))  # Q's slot is free now: stage the output tile there for the TMA store
    fence_async_shared()
    tma.async_copy_shared_to_global(o_desc, [row0, 0], q)
    tma.store_wait(0)


@gluon.jit
def _fwd_kernel(Q, K, V, O, LSE,
                stride_qb, stride_qs, stride_qh, stride_kb, stride_ks, stride_kh, stride_vb, stride_vs, stride_vh,
                stride_ob, stride_os, stride_oh, stride_lb, stride_lh,
                seqlen_q, seqlen_k, nheads, group, qk_scale2,
                HEAD_DIM: gl.constexpr, BLOCK_N: gl.constexpr, NUM_CONSUMERS: gl.constexpr,
                STAGES: gl.constexpr, CAUSAL: gl.constexpr, PINGPONG: gl.constexpr):  # fmt: skip
    BLOCK_M: gl.constexpr = ROWS * NUM_CONSUMERS
    pid_m = gl.program_id(0)
    if CAUSAL:
        pid_m = gl.num_programs(0) - 1 - pid_m  # later query blocks visit more keys: launch them first
    pid_bh = gl.program_id(1)
    b = pid_bh // nheads
    h = pid_bh % nheads
    kv_h = h // group
    m0 = pid_m * BLOCK_M
    # n_hi >= 1 always (supports(): seqlen_k >= 1, and causal only with seqlen_q <= seqlen_k): with no key
    # block the consumers would wait for K forever.
    if CAUSAL:
        diag = seqlen_k - seqlen_q  # bottom-right: row i sees keys j <= i + diag
        n_hi = gl.minimum(seqlen_k, m0 + BLOCK_M + diag)
    else:
        diag = seqlen_k  # no row limit (any bound >= seqlen_k would do)
        n_hi = seqlen_k

    dtype: gl.constexpr = Q.dtype.element_ty
    q_layout: gl.constexpr = gl.NVMMASharedLayout.get_default_for([ROWS, HEAD_DIM], dtype)
    kv_layout: gl.constexpr = gl.NVMMASharedLayout.get_default_for([BLOCK_N, HEAD_DIM], dtype)
    # Descriptors over exactly this (sequence, head) slice: rows past its end read as zeros, stores past it
    # are dropped.
    q_base = Q + b.to(gl.int64) * stride_qb + h.to(gl.int64) * stride_qh
    k_base = K + b.to(gl.int64) * stride_kb + kv_h.to(gl.int64) * stride_kh
    v_base = V + b.to(gl.int64) * stride_vb + kv_h.to(gl.int64) * stride_vh
    o_base = O + b.to(gl.int64) * stride_ob + h.to(gl.int64) * stride_oh
    q_desc = tma.make_tensor_descriptor(
        q_base, [seqlen_q, HEAD_DIM], [stride_qs, 1], [ROWS, HEAD_DIM], q_layout
    )
    o_desc = tma.make_tensor_descriptor(
        o_base, [seqlen_q, HEAD_DIM], [stride_os, 1], [ROWS, HEAD_DIM], q_layout
    )
    k_desc = tma.make_tensor_descriptor(
        k_base, [seqlen_k, HEAD_DIM], [stride_ks, 1], [BLOCK_N, HEAD_DIM], kv_layout
    )
    v_desc = tma.make_tensor_descriptor(
        v_base, [seqlen_k, HEAD_DIM], [stride_vs, 1], [BLOCK_N, HEAD_DIM], kv_layout
    )
    lse_ptr = LSE + b.to(gl.int64) * stride_lb + h.to(gl.int64) * stride_lh

    q_smem = gl.allocate_shared_memory(dtype, [NUM_CONSUMERS, ROWS, HEAD_DIM], q_layout)
    k_smem = gl.allocate_shared_memory(dtype, [STAGES, BLOCK_N, HEAD_DIM], kv_layout)
    v_smem = gl.allocate_shared_memory(dtype, [STAGES, BLOCK_N, HEAD_DIM], kv_layout)
    q_bar = gl.allocate_shared_memory(gl.int64, [NUM_CONSUMERS, 1], mbarrier.MBarrierLayout())
    k_full = gl.allocate_shared_memory(gl.int64, [STAGES, 1], mbarrier.MBarrierLayout())
    v_full = gl.allocate_shared_memory(gl.int64, [STAGES, 1], mbarrier.MBarrierLayout())
    k_empty = gl.allocate_shared_memory(gl.int64, [STAGES, 1], mbarrier.MBarrierLayout())
    v_empty = gl.allocate_shared_memory(gl.int64, [STAGES, 1], mbarrier.MBarrierLayout())
    turn = gl.allocate_shared_memory(gl.int64, [NUM_CONSUMERS, 1], mbarrier.MBarrierLayout())
    for c in gl.static_range(NUM_CONSUMERS):
        mbarrier.init(q_bar.index(c), count=1)
        mbarrier.init(turn.index(c), count=1)
    for i in gl.static_range(STAGES):
        mbarrier.init(k_full.index(i), count=1)
        mbarrier.init(v_full.index(i), count=1)
        mbarrier.init(k_empty.index(i), count=NUM_CONSUMERS)  # each consumer releases a slot once
        mbarrier.init(v_empty.index(i), count=NUM_CONSUMERS)

    consumer_args = (o_desc, q_smem, k_smem, v_smem, q_bar, k_full, v_full, k_empty, v_empty, turn, lse_ptr, m0,
                     n_hi, seqlen_q, seqlen_k, diag, qk_scale2, PINGPONG)  # fmt: skip
    producer_args = (q_desc, k_desc, v_desc, q_smem, k_smem, v_smem, q_bar, k_full, v_full, k_empty, v_empty, m0,
                     n_hi)  # fmt: skip
    gl.static_assert(NUM_CONSUMERS == 2, "two consumer warpgroups")
    # Worker partitions take the warps after the default partition's four, in this order: the second
    # consumer first, so that it sits on a warpgroup boundary (wgmma runs on whole warpgroups).
    gl.warp_specialize(
        [(_consumer, (0,) + consumer_args), (_consumer, (1,) + consumer_args), (_producer, producer_args)],  # noqa: RUF005
        [4, 1],
        [240, 24],  # the producer only computes addresses: its registers go to the consumers
    )


# ---------------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Config:
    """Compile-time choices of one launch."""

    block_n: int = 128  #: key/value rows per tile
    consumers: int = 2  #: consumer warpgroups of 64 query rows each (the tile is 64 * consumers rows)
    stages: int = 2  #: K/V ring slots in shared memory
    pingpong: bool = False  #: the consumers take turns issuing their wgmmas (see _take_turn)


#: Per head dim: 128 x 128 query/key tiles (two consumer warpgroups); the shared memory holds Q and two K/V
#: stages (160 KiB at d = 128).
CONFIGS = {64: Config(), 128: Config()}
#: Head dims that compile but have not run on a GPU yet: reachable only through ``flash_fwd(..., gluon={...})``
#: (attn-bench's ``attention_fwd/gluon_hd256``) or a config passed to the launch (the sm90 tests), never by
#: the dispatch. At d = 256 the tile is 128 x 64
#: (the output accumulator is 128 registers a thread): 197 KB of shared memory, no spill (ptxas, sm_90a).
CANDIDATES = {256: Config(block_n=64)}


def config_for(head_dim: int, changes: dict | None = None) -> Config | None:
    """The launch config at ``head_dim``: with ``changes`` None the validated one (:data:`CONFIGS`) or None;
    with a dict of field changes (attn-bench's ablations, the tests) that of :data:`CONFIGS` or
    :data:`CANDIDATES`, changed so."""
    if changes is None:
        return CONFIGS.get(head_dim)
    base = CONFIGS.get(head_dim) or CANDIDATES.get(head_dim)
    return None if base is None else dataclasses.replace(base, **changes)


def supports(q, k, v, *, left, right, softcap, varlen) -> bool:
    """Whether this kernel can compute the call (else :mod:`attn_triton.flash_fwd` does); which head dims it
    is launched at is :func:`config_for`'s choice."""
    if varlen or softcap > 0 or left >= 0 or right > 0:
        return False
    if q.dtype not in (torch.float16, torch.bfloat16) or q.shape[-1] not in {**CONFIGS, **CANDIDATES}:
        return False
    sq, sk = q.shape[1], k.shape[1]
    if sk == 0 or sq == 0 or (right == 0 and sq > sk):
        return False  # rows with no visible key take the general kernel's path
    return tma_compatible(q, k, v)


def flash_fwd_sm90(q, k, v, out, lse, *, softmax_scale, causal, config: Config):
    """Launch on dense q (b, sq, hq, d), k/v (b, sk, hk, d); writes out (like q) and lse (b, hq, sq)."""
    batch, sq, nheads, d = q.shape
    sk, kheads = k.shape[1], k.shape[2]
    cfg = config
    grid = (triton.cdiv(sq, ROWS * cfg.consumers), batch * nheads)
    _fwd_kernel[grid](
        q, k, v, out, lse,
        *q.stride()[:3], *k.stride()[:3], *v.stride()[:3], *out.stride()[:3], *lse.stride()[:2],
        sq, sk, nheads, nheads // kheads, softmax_scale * LOG2E,
        HEAD_DIM=d, BLOCK_N=cfg.block_n, NUM_CONSUMERS=cfg.consumers, STAGES=cfg.stages, CAUSAL=causal,
        PINGPONG=cfg.pingpong,
        num_warps=4,
    )  # fmt: skip
    return out, lse
