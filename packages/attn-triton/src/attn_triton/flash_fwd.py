"""FlashAttention-2 forward.

One program computes one ``BLOCK_M`` block of query rows for one (batch, query head). It keeps the Q tile,
the output accumulator and two per-row statistics in registers, and streams K/V blocks past them:

    m_i   running max of the scores seen so far (log2 units)
    l_i   running sum of exp2(score - m_i)
    acc   running sum of exp2(score - m_i) * V

When a new block raises the max from ``m_i`` to ``m_new``, the old sums are rescaled by
``alpha = exp2(m_i - m_new)`` (the online softmax). Only at the end is ``acc`` divided by ``l_i``: this is
FlashAttention-2's main change from version 1 (fewer non-matmul FLOPs in the loop), together with the
parallelisation over query blocks, which gives each program independent work and no synchronisation.

The logsumexp ``m_i + log2(l_i)`` (converted to natural log) is saved: the backward recomputes the
probabilities from it without a second online pass.

Two ways to move tiles, chosen at call time (see :mod:`attn_triton._runtime`):

* pointers (``USE_TMA=False``): address arithmetic and masked ``tl.load``; runs on Ampere and newer;
  Triton pipelines the loads with ``cp.async`` over ``num_stages`` buffers.
* tensor descriptors (``USE_TMA=True``, Hopper): each program builds descriptors for its (sequence, head)
  slice with ``tl.make_tensor_descriptor``; the TMA engine copies whole tiles to shared memory
  asynchronously, zero-filling rows past the slice's end (so no masks on loads) and clipping stores.
  Building them on device needs a scratch allocator (``triton.set_allocator``).
"""

from __future__ import annotations

import os

import torch
import triton
import triton.language as tl

from attn_reference.errors import UnsupportedFeatureError
from attn_triton._runtime import (
    ensure_allocator,
    gluon_available,
    interpreting,
    knobs,
    path_for,
    robust_bench,
    tuning_budget,
)
from attn_triton.flash_common import (
    LN2,
    LOG2E,
    block_range,
    bucket,
    head_dim_pad,
    load_rows,
    sequence,
    tanh,
    visible,
)


@triton.jit
def _fwd_inner(
    acc,
    l_i,
    m_i,
    q,
    k_src,
    v_src,
    stride_ks,
    stride_vs,
    n_start,
    n_end,
    m0,
    seqlen_q,
    seqlen_k,
    left,
    right,
    qk_scale2,
    cap_scale,
    softcap2,
    MASKED: tl.constexpr,
    HAS_LEFT: tl.constexpr,
    HAS_RIGHT: tl.constexpr,
    SOFTCAP: tl.constexpr,
    FOLD_SCALE: tl.constexpr,
    USE_TMA: tl.constexpr,
    WARP_SPEC: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    HEAD_DIM: tl.constexpr,
    HEAD_DIM_PAD: tl.constexpr,
):
    offs_m = m0 + tl.arange(0, BLOCK_M)
    # --8<-- [start:fwd-inner]
    for n0 in tl.range(n_start, n_end, BLOCK_N, warp_specialize=WARP_SPEC):
        offs_n = n0 + tl.arange(0, BLOCK_N)
        if USE_TMA:
            k = k_src.load([n0, 0])
        else:
            # In the unmasked span every key row is in bounds: skip the row mask.
            k = load_rows(k_src, offs_n, stride_ks, seqlen_k, HEAD_DIM, HEAD_DIM_PAD, MASKED)
        s = tl.dot(q, tl.trans(k))
        if SOFTCAP:
            s = softcap2 * tanh(s * cap_scale)
        elif not FOLD_SCALE:
            s = s * qk_scale2
        if MASKED:
            keep = visible(offs_m, offs_n, seqlen_q, seqlen_k, left, right, HAS_LEFT, HAS_RIGHT)
            s = tl.where(keep, s, -float("inf"))
        if FOLD_SCALE:
            # s is still the raw product. With a positive scale, max(s * c) = max(s) * c: one multiply per
            # row here, and below exp2(s * c - m) is a single FMA per element instead of a multiply and a
            # subtraction (the softmax's elementwise work is what competes with the tensor cores).
            m_new = tl.maximum(m_i, tl.max(s, 1) * qk_scale2)
        else:
            m_new = tl.maximum(m_i, tl.max(s, 1))
        if MASKED:
            # A row with no visible key so far has m_new = -inf; subtracting it would give NaN.
            m_use = tl.where(m_new == -float("inf"), 0.0, m_new)
        else:
            m_use = m_new
        if FOLD_SCALE:
            p = tl.exp2(s * qk_scale2 - m_use[:, None])
        else:
            p = tl.exp2(s - m_use[:, None])
        alpha = tl.exp2(m_i - m_use)  # rescales what was accumulated under the old max
        l_i = l_i * alpha + tl.sum(p, 1)
        if USE_TMA:
            v = v_src.load([n0, 0])
        else:
            v = load_rows(v_src, offs_n, stride_vs, seqlen_k, HEAD_DIM, HEAD_DIM_PAD, MASKED)
        acc = acc * alpha[:, None]
        acc = tl.dot(p.to(v.dtype), v, acc)
        m_i = m_new
    # --8<-- [end:fwd-inner]
    return acc, l_i, m_i


@triton.jit
def _fwd_kernel(
    Q,
    K,
    V,
    O,
    LSE,
    CU_Q,
    CU_K,
    stride_qb,
    stride_qs,
    stride_qh,
    stride_kb,
    stride_ks,
    stride_kh,
    stride_vb,
    stride_vs,
    stride_vh,
    stride_ob,
    stride_os,
    stride_oh,
    stride_lb,
    stride_lh,
    seqlen_q,
    seqlen_k,
    nheads,
    group,
    qk_scale2,
    cap_scale,
    softcap2,
    left,
    right,
    TUNE_Q,
    TUNE_K,  # autotune keys only (power-of-two buckets of the sequence lengths)
    HEAD_DIM: tl.constexpr,
    HEAD_DIM_PAD: tl.constexpr,
    IS_VARLEN: tl.constexpr,
    HAS_LEFT: tl.constexpr,
    HAS_RIGHT: tl.constexpr,
    SOFTCAP: tl.constexpr,
    FOLD_SCALE: tl.constexpr,
    HEAVY_FIRST: tl.constexpr,
    USE_TMA: tl.constexpr,
    WARP_SPEC: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
):
    if HEAVY_FIRST:
        # Causal, heaviest first across all heads (Knobs.fwd_heavy_first, v2's order): the hardware hands
        # out programs in order of their linear id (axis 0 fastest), so with (batch, head) on axis 0 and the
        # query blocks on axis 1, counted from the last, the first wave holds the longest program of every
        # head and the short ones fill the tail.
        pid_bh = tl.program_id(0)
        pid_m = tl.num_programs(1) - 1 - tl.program_id(1)
    else:
        pid_m = tl.program_id(0)
        pid_bh = tl.program_id(1)
        if HAS_RIGHT and not HAS_LEFT:
            # Causal: later query blocks visit more keys. Launch them first, within each head (the default,
            # fwd_heavy_first=False: one head's K/V stays in L2 while its blocks run; see _runtime.Knobs).
            pid_m = tl.num_programs(0) - 1 - pid_m
    b = pid_bh // nheads
    h = pid_bh % nheads
    kv_h = h // group  # GQA: `group` query heads share one KV head
    q_start, seqlen_q = sequence(CU_Q, b, seqlen_q, IS_VARLEN)
    k_start, seqlen_k = sequence(CU_K, b, seqlen_k, IS_VARLEN)
    m0 = pid_m * BLOCK_M
    if m0 >= seqlen_q:  # varlen: this sequence is shorter than the longest
        return

    q_base = Q + b.to(tl.int64) * stride_qb + q_start.to(tl.int64) * stride_qs + h * stride_qh
    k_base = K + b.to(tl.int64) * stride_kb + k_start.to(tl.int64) * stride_ks + kv_h * stride_kh
    v_base = V + b.to(tl.int64) * stride_vb + k_start.to(tl.int64) * stride_vs + kv_h * stride_vh
    o_base = O + b.to(tl.int64) * stride_ob + q_start.to(tl.int64) * stride_os + h * stride_oh
    offs_m = m0 + tl.arange(0, BLOCK_M)

    # --8<-- [start:fwd-tma]
    if USE_TMA:
        # Descriptors cover exactly this (sequence, head) slice: loads past its end read zeros, stores
        # past it are dropped, so neighbouring sequences (varlen) are never touched.
        q_src = tl.make_tensor_descriptor(
            q_base, shape=[seqlen_q, HEAD_DIM], strides=[stride_qs, 1], block_shape=[BLOCK_M, HEAD_DIM_PAD]
        )
        k_src = tl.make_tensor_descriptor(
            k_base,
            shape=[tl.maximum(seqlen_k, 1), HEAD_DIM],
            strides=[stride_ks, 1],
            block_shape=[BLOCK_N, HEAD_DIM_PAD],
        )
        v_src = tl.make_tensor_descriptor(
            v_base,
            shape=[tl.maximum(seqlen_k, 1), HEAD_DIM],
            strides=[stride_vs, 1],
            block_shape=[BLOCK_N, HEAD_DIM_PAD],
        )
        q = q_src.load([m0, 0])
    # --8<-- [end:fwd-tma]
    else:
        k_src = k_base
        v_src = v_base
        q = load_rows(q_base, offs_m, stride_qs, seqlen_q, HEAD_DIM, HEAD_DIM_PAD, True)

    m_i = tl.full([BLOCK_M], -float("inf"), dtype=tl.float32)
    l_i = tl.zeros([BLOCK_M], dtype=tl.float32)
    acc = tl.zeros([BLOCK_M, HEAD_DIM_PAD], dtype=tl.float32)

    lo, full_lo, full_hi, hi = block_range(
        m0, seqlen_q, seqlen_k, left, right, HAS_LEFT, HAS_RIGHT, BLOCK_M, BLOCK_N
    )
    # Masked head (sliding window's left edge), unmasked middle, masked tail (diagonal, ragged end).
    spans = (lo, full_lo, full_hi, hi)
    for i in tl.static_range(3):  # span i is [spans[i], spans[i + 1]); the middle one is unmasked
        acc, l_i, m_i = _fwd_inner(
            acc,
            l_i,
            m_i,
            q,
            k_src,
            v_src,
            stride_ks,
            stride_vs,
            spans[i],
            spans[i + 1],
            m0,
            seqlen_q,
            seqlen_k,
            left,
            right,
            qk_scale2,
            cap_scale,
            softcap2,
            i != 1,
            HAS_LEFT,
            HAS_RIGHT,
            SOFTCAP,
            FOLD_SCALE,
            USE_TMA,
            WARP_SPEC and i == 1,
            BLOCK_M,
            BLOCK_N,
            HEAD_DIM,
            HEAD_DIM_PAD,
        )

    # --8<-- [start:fwd-epilogue]
    # Epilogue: one division per row. Rows that saw no key (l_i = 0) output 0 and lse = +inf, which makes
    # the backward's recomputed probabilities exp(s - lse) exactly 0 for them.
    empty = l_i == 0.0
    out = acc / tl.where(empty, 1.0, l_i)[:, None]
    lse = tl.where(empty, float("inf"), (m_i + tl.log2(tl.where(empty, 1.0, l_i))) * 0.6931471805599453)
    lse_ptrs = LSE + b.to(tl.int64) * stride_lb + h.to(tl.int64) * stride_lh + q_start + offs_m
    tl.store(lse_ptrs, lse, mask=offs_m < seqlen_q)
    # --8<-- [end:fwd-epilogue]
    if USE_TMA:
        o_dst = tl.make_tensor_descriptor(
            o_base, shape=[seqlen_q, HEAD_DIM], strides=[stride_os, 1], block_shape=[BLOCK_M, HEAD_DIM_PAD]
        )
        o_dst.store([m0, 0], out.to(O.dtype.element_ty))
    else:
        cols = tl.arange(0, HEAD_DIM_PAD)
        mask = (offs_m[:, None] < seqlen_q) & (cols[None, :] < HEAD_DIM)
        tl.store(
            o_base + offs_m[:, None].to(tl.int64) * stride_os + cols[None, :],
            out.to(O.dtype.element_ty),
            mask=mask,
        )


# ---------------------------------------------------------------------------------------------------------
# Configs per architecture. Shared memory per stage is one K and one V tile; Q stays resident.


def _cfg(bm, bn, warps, stages, ws=False):
    return triton.Config({"BLOCK_M": bm, "BLOCK_N": bn, "WARP_SPEC": ws}, num_warps=warps, num_stages=stages)


# --8<-- [start:fwd-configs]
_CONFIGS = {
    # v1 (the first GPU run's lists). Hopper: 128-row Q tiles = two warpgroups of wgmma (8 warps) or one
    # (4 warps) with 64-row tiles.
    "sm90": [
        _cfg(128, 128, 8, 2),
        _cfg(128, 128, 8, 3),
        _cfg(128, 64, 8, 3),
        _cfg(128, 64, 4, 3),
        _cfg(64, 64, 4, 3),
        _cfg(128, 32, 4, 2),
    ],
    # Ampere: 164 KiB shared memory, mma.sync: 128x64 / 64x64 tiles, 4 warps.
    "sm80": [
        _cfg(128, 64, 4, 3),
        _cfg(128, 32, 4, 3),
        _cfg(64, 64, 4, 3),
        _cfg(128, 64, 8, 2),
        _cfg(64, 32, 4, 2),
    ],
}
if os.environ.get("ATTN_TRITON_WARP_SPECIALIZE", "0") == "1":
    # v1 only: warp specialisation on request (v2 offers it by default, pruned by shape).
    _CONFIGS["sm90"] += [_cfg(128, 128, 8, 2, True), _cfg(128, 64, 8, 3, True)]

# v2 Hopper lists, one per padded head dim (at most 8 candidates per autotune key after pruning).
# 128 x 128 tiles with two consumer warpgroups (8 warps) and 2-3 K/V stages are the classic Hopper point
# for d <= 128 (the S tile is 64 fp32 registers per thread, the O accumulator another 64 at d = 128);
# 128 x 64 with 3-4 stages keeps more loads in flight for less register pressure. Head dim 256 halves the
# key tile (the accumulator alone is 128 registers per thread at 8 warps). Warp-specialised variants
# (``tl.range(..., warp_specialize=True)`` on the unmasked loop: a producer warp group issues TMA while
# the consumers run wgmma and softmax) are candidates where they can pay off: see ``_prune``. Compiled
# for sm90 on a CPU machine with Triton 3.6: the warp-specialisation pass rejects this loop at 4 warps
# ("NVGPUWarpSpecialization" pass failure) and accepts it at 8, hence 8-warp candidates only.
_SM90_V2 = {
    64: [
        _cfg(128, 128, 8, 3),
        _cfg(128, 128, 4, 3),
        _cfg(128, 64, 4, 4),
        _cfg(128, 64, 8, 4),
        _cfg(64, 64, 4, 4),
        _cfg(128, 128, 8, 3, True),
        _cfg(128, 64, 8, 4, True),
    ],
    128: [
        _cfg(128, 128, 8, 3),
        _cfg(128, 128, 8, 2),
        _cfg(128, 64, 8, 4),
        _cfg(128, 64, 8, 3),
        _cfg(128, 64, 4, 3),
        _cfg(128, 128, 8, 2, True),
        _cfg(128, 128, 8, 3, True),
        _cfg(128, 64, 8, 3, True),
    ],
    256: [
        _cfg(128, 64, 8, 2),
        _cfg(128, 32, 8, 3),
        _cfg(64, 64, 4, 3),
        _cfg(64, 64, 4, 2),
        _cfg(64, 32, 4, 3),
    ],
}
_SM90_V2[32] = _SM90_V2[64]


def _sig(c):
    return (tuple(sorted(c.kwargs.items())), c.num_warps, c.num_stages)


def _union(lists):
    seen, out = set(), []
    for cfgs in lists:
        for c in cfgs:
            if _sig(c) not in seen:
                seen.add(_sig(c))
                out.append(c)
    return out


_CONFIGS_V2 = {"sm90": _union(_SM90_V2.values()), "sm80": _CONFIGS["sm80"]}
_SMEM = {"sm90": 227 * 1024, "sm80": 163 * 1024}
#: Shortest (bucketed) key length for which warp-specialised candidates are tried: the producer/consumer
#: split costs a prologue and barriers per tile, which only a long unmasked loop amortises.
WS_MIN_KEYS = 1024


def _prune(path, version="v1"):
    def prune(configs, named_args, **kwargs):
        pad = kwargs["HEAD_DIM_PAD"]
        elem = named_args["Q"].element_size()
        tune_q = named_args["TUNE_Q"]
        tune_k = named_args["TUNE_K"]
        allowed = None
        if version == "v2" and path == "sm90":
            allowed = {_sig(c) for c in _SM90_V2[max(pad, 32)]}
        ws_ok = (
            kwargs["USE_TMA"]  # the producer partition issues TMA loads
            and pad in (64, 128)
            and tune_k >= WS_MIN_KEYS
            and not kwargs["HAS_LEFT"]  # sliding windows: short loops
            and not kwargs["SOFTCAP"]
        )
        kept = []
        for c in configs:
            bm, bn = c.kwargs["BLOCK_M"], c.kwargs["BLOCK_N"]
            if allowed is not None and _sig(c) not in allowed:
                continue
            if c.kwargs.get("WARP_SPEC") and version == "v2" and not ws_ok:
                continue
            smem = (bm * pad + max(c.num_stages, 1) * 2 * bn * pad) * elem
            if smem > _SMEM[path]:
                continue
            if pad >= 256 and bm * bn > 128 * 64:
                continue  # the fp32 accumulator alone would spill registers
            if bm > tune_q and bm > 64:
                continue  # short queries: mostly padding
            kept.append(c)
        return tuning_budget(kept) or [
            min(configs, key=lambda c: (c.kwargs["BLOCK_M"] * c.kwargs["BLOCK_N"], c.num_stages))
        ]

    return prune


_TUNED = {}
_KEY = [
    "TUNE_Q",
    "TUNE_K",
    "HEAD_DIM",
    "IS_VARLEN",
    "HAS_LEFT",
    "HAS_RIGHT",
    "SOFTCAP",
    "USE_TMA",
    "FOLD_SCALE",
    "HEAVY_FIRST",
]


def _kernel_for(path, version="v2"):
    if (path, version) not in _TUNED:
        configs = (_CONFIGS_V2 if version == "v2" else _CONFIGS)[path]
        _TUNED[path, version] = triton.autotune(
            configs,
            key=_KEY,
            prune_configs_by={"early_config_prune": _prune(path, version)},
            do_bench=robust_bench,
        )(_fwd_kernel)
    return _TUNED[path, version]


#: Fixed tiles for the interpreter (it cannot time configs). Small, so the CPU tests stay quick, and
#: smaller than the test sequences so that every masked/unmasked span gets exercised.
INTERPRET_BLOCKS = {"BLOCK_M": 32, "BLOCK_N": 32}


def tma_compatible(*tensors: torch.Tensor) -> bool:
    """TMA needs 16-byte aligned bases and row strides, and a unit stride in the last dimension."""
    for t in tensors:
        if t.data_ptr() % 16 or t.stride(-1) != 1:
            return False
        if any((s * t.element_size()) % 16 for s in t.stride()[:-1]):
            return False
    return True


def flash_fwd(
    q,
    k,
    v,
    *,
    softmax_scale,
    left,
    right,
    softcap,
    cu_seqlens_q=None,
    cu_seqlens_k=None,
    max_seqlen_q=None,
    max_seqlen_k=None,
    force_path=None,
    config=None,
    gluon=None,
):
    """Launch the forward. Dense: q (b, sq, hq, d); varlen: q (total_q, hq, d) with cu_seqlens.

    ``left``/``right`` are the window bounds with -1 for unbounded (causal already folded into right = 0).
    Returns (out, lse): lse (b, hq, sq) or, varlen, (hq, total_q), float32, natural log. On Hopper the
    Gluon kernel (:mod:`attn_triton.flash_fwd_sm90`) takes the calls it supports while ``Knobs.fwd_gluon``
    is on; ``gluon``, a dict of ``flash_fwd_sm90.Config`` field changes ({} for none), forces it (candidate
    head dims included) and raises if it cannot take the call. ``config`` forces a tile-level config.
    """
    varlen = cu_seqlens_q is not None
    head_dim = q.shape[-1]
    pad = head_dim_pad(head_dim)
    out = torch.empty_like(q)
    if varlen:
        batch = cu_seqlens_q.numel() - 1
        nheads, kheads = q.shape[1], k.shape[1]
        lse = torch.empty((nheads, q.shape[0]), dtype=torch.float32, device=q.device)
        sq, sk = max_seqlen_q, max_seqlen_k
        # Views with a unit batch stride of 0 let one kernel serve both layouts.
        strides = [(0, *t.stride()[:2]) for t in (q, k, v, out)]
        lse_strides = (0, lse.stride(0))
    else:
        batch, sq, nheads = q.shape[:3]
        sk, kheads = k.shape[1], k.shape[2]
        lse = torch.empty((batch, nheads, sq), dtype=torch.float32, device=q.device)
        strides = [t.stride()[:3] for t in (q, k, v, out)]
        lse_strides = lse.stride()[:2]
    if q.numel() == 0 or batch == 0:
        return out, lse
    if sk == 0 and not varlen:
        out.zero_()
        lse.fill_(float("inf"))
        return out, lse
    path = force_path or path_for(q.device)
    hopper = path == "sm90" and q.is_cuda and config is None
    if gluon is not None or (hopper and knobs().fwd_gluon and gluon_available()):
        from attn_triton import flash_fwd_sm90

        cfg = flash_fwd_sm90.config_for(head_dim, gluon)
        supported = flash_fwd_sm90.supports(q, k, v, left=left, right=right, softcap=softcap, varlen=varlen)
        if hopper and cfg is not None and supported:
            ensure_allocator(path)
            return flash_fwd_sm90.flash_fwd_sm90(
                q, k, v, out, lse, softmax_scale=softmax_scale, causal=right == 0, config=cfg
            )
        if gluon is not None:
            raise UnsupportedFeatureError(
                f"flash_fwd: gluon={gluon} asks for the Gluon forward, which does not take this call (path "
                f"{path}, head dim {head_dim}, {q.dtype}, window ({left}, {right}), softcap {softcap}, "
                f"varlen {varlen}, config {config})"
            )
    # Head dims 96 and 192 would need TMA boxes wider than the tensor; keep them on pointer loads.
    use_tma = path == "sm90" and pad == head_dim and tma_compatible(q, k, v, out)
    if use_tma and q.is_cuda:
        ensure_allocator(path)
    if softcap > 0:
        qk_scale2, cap_scale, softcap2 = 0.0, softmax_scale / softcap, softcap * LOG2E
    else:
        qk_scale2, cap_scale, softcap2 = softmax_scale * LOG2E, 0.0, 0.0
    dummy = torch.empty(1, dtype=torch.int32, device=q.device)
    args = (
        q,
        k,
        v,
        out,
        lse,
        cu_seqlens_q if varlen else dummy,
        cu_seqlens_k if varlen else dummy,
        *strides[0],
        *strides[1],
        *strides[2],
        *strides[3],
        *lse_strides,
        sq,
        sk,
        nheads,
        nheads // kheads,
        qk_scale2,
        cap_scale,
        softcap2,
        max(left, 0),
        max(right, 0),
        bucket(sq),
        bucket(sk),
    )
    kn = knobs()
    # causal (bottom-right) only; off by default (per-head order, see _runtime.Knobs.fwd_heavy_first)
    heavy_first = kn.fwd_heavy_first and right >= 0 and left < 0
    meta = dict(
        HEAD_DIM=head_dim,
        HEAD_DIM_PAD=pad,
        IS_VARLEN=varlen,
        HAS_LEFT=left >= 0,
        HAS_RIGHT=right >= 0,
        SOFTCAP=softcap > 0,
        FOLD_SCALE=kn.fwd_fold_scale and softcap <= 0 and softmax_scale > 0,
        HEAVY_FIRST=heavy_first,
        USE_TMA=use_tma,
    )
    if heavy_first:
        grid = lambda m: (batch * nheads, triton.cdiv(sq, m["BLOCK_M"]))
    else:
        grid = lambda m: (triton.cdiv(sq, m["BLOCK_M"]), batch * nheads)
    if interpreting() or config is not None:
        cfg = dict(config or {**INTERPRET_BLOCKS, "WARP_SPEC": False})
        cfg.setdefault("WARP_SPEC", False)
        launch = {k_: cfg.pop(k_) for k_ in ("num_warps", "num_stages", "maxnreg") if k_ in cfg}
        _fwd_kernel[grid({**cfg})](*args, **meta, **cfg, **launch)
    else:
        _kernel_for(path, kn.fwd_configs)[grid](*args, **meta)
    return out, lse


__all__ = ["LN2", "flash_fwd", "tma_compatible"]
