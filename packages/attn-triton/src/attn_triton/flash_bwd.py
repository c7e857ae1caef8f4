"""FlashAttention-2 backward.

With ``P = softmax(S)`` recomputed from the saved logsumexp (``P = exp2(S2 - lse2)``), the gradients are

    dV = P^T dO          dP = dO V^T          dS = P * (dP - D),  D = rowsum(dO * O)
    dQ = dS K * scale    dK = dS^T Q * scale

(``D`` equals ``rowsum(P * dP)``, so the softmax Jacobian never needs the whole row.) With softcap the
score is ``c * tanh(x / c)`` of the scaled product ``x``, and ``dS`` picks up the tanh derivative
``1 - tanh^2``.

Kernels, in launch order:

1. ``_bwd_preprocess``: ``D = rowsum(dO * O)`` per query row, fp32.
2. ``_bwd_dkdv``: one program per (key block, KV head). K and V stay in registers; the program walks the
   query blocks that see its keys, for each query head of its GQA group, and accumulates dK and dV; no
   other program writes them, so they need no atomics. By default it also adds its share of dQ into an
   fp32 buffer with ``atomic_add`` (FlashAttention-2's scheme: no recomputation, but the order of the adds
   varies from run to run, so dQ is not bitwise reproducible).
3. ``deterministic=True``: instead of atomics, ``_bwd_dq`` gives each query block its own program, which
   recomputes ``S`` and ``dP`` for the key blocks it sees and sums dQ in a fixed order. Two more matmuls
   per tile pair, identical bits on every run.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from attn_triton._runtime import ensure_allocator, interpreting, knobs, path_for, robust_bench, tuning_budget
from attn_triton.flash_common import (
    LOG2E,
    block_range,
    bucket,
    head_dim_pad,
    load_rows,
    sequence,
    store_rows,
    tanh,
    visible,
)
from attn_triton.flash_fwd import tma_compatible


@triton.jit
def _bwd_preprocess(
    O,
    DO,
    DELTA,
    LSE,
    LSE2,
    CU_Q,
    stride_ob,
    stride_os,
    stride_oh,
    stride_db,
    stride_ds,
    stride_dh,
    stride_lb,
    stride_lh,
    seqlen_q,
    nheads,
    HEAD_DIM: tl.constexpr,
    HEAD_DIM_PAD: tl.constexpr,
    IS_VARLEN: tl.constexpr,
    WRITE_LSE2: tl.constexpr,
    BLOCK_M: tl.constexpr,
):
    pid_m = tl.program_id(0)
    pid_bh = tl.program_id(1)
    b = pid_bh // nheads
    h = pid_bh % nheads
    q_start, seqlen_q = sequence(CU_Q, b, seqlen_q, IS_VARLEN)
    rows = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    row_off = b.to(tl.int64) * stride_lb + h.to(tl.int64) * stride_lh + q_start + rows
    if WRITE_LSE2:
        # The hot loops want the logsumexp in log2 units (P = exp2(S2 - lse2)): convert once per row here
        # rather than once per row per tile there. +inf (rows that saw no key) stays +inf.
        lse = tl.load(LSE + row_off, mask=rows < seqlen_q, other=float("inf"))
        tl.store(LSE2 + row_off, lse * 1.4426950408889634, mask=rows < seqlen_q)
    o = load_rows(
        O + b.to(tl.int64) * stride_ob + q_start.to(tl.int64) * stride_os + h * stride_oh,
        rows,
        stride_os,
        seqlen_q,
        HEAD_DIM,
        HEAD_DIM_PAD,
        True,
    )
    do = load_rows(
        DO + b.to(tl.int64) * stride_db + q_start.to(tl.int64) * stride_ds + h * stride_dh,
        rows,
        stride_ds,
        seqlen_q,
        HEAD_DIM,
        HEAD_DIM_PAD,
        True,
    )
    delta = tl.sum(o.to(tl.float32) * do.to(tl.float32), axis=1)
    tl.store(DELTA + row_off, delta, mask=rows < seqlen_q)


@triton.jit
def _scores_t(k, q, qk_scale2, cap_scale, softcap2, SOFTCAP: tl.constexpr):
    """Transposed scores S2^T = (K Q^T) in log2 units, and tanh(x / c) for the softcap derivative."""
    st = tl.dot(k, tl.trans(q))
    if SOFTCAP:
        t = tanh(st * cap_scale)
        return softcap2 * t, t
    return st * qk_scale2, st


@triton.jit
def _dkdv_inner(
    dk,
    dv,
    k,
    v,
    q_base,
    do_base,
    q_src,
    do_src,
    lse_base,
    delta_base,
    dq_base,
    stride_qs,
    stride_dos,
    stride_dqs,
    m_start,
    m_end,
    n0,
    seqlen_q,
    seqlen_k,
    left,
    right,
    qk_scale2,
    cap_scale,
    softcap2,
    sm_scale,
    MASKED: tl.constexpr,
    HAS_LEFT: tl.constexpr,
    HAS_RIGHT: tl.constexpr,
    SOFTCAP: tl.constexpr,
    ATOMIC_DQ: tl.constexpr,
    USE_TMA: tl.constexpr,
    LSE_LOG2: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    HEAD_DIM: tl.constexpr,
    HEAD_DIM_PAD: tl.constexpr,
):
    offs_n = n0 + tl.arange(0, BLOCK_N)
    for m0 in tl.range(m_start, m_end, BLOCK_M):
        offs_m = m0 + tl.arange(0, BLOCK_M)
        if USE_TMA:  # rows past seqlen_q read as zeros
            q = q_src.load([m0, 0])
            do = do_src.load([m0, 0])
        else:
            q = load_rows(q_base, offs_m, stride_qs, seqlen_q, HEAD_DIM, HEAD_DIM_PAD, MASKED)
            do = load_rows(do_base, offs_m, stride_dos, seqlen_q, HEAD_DIM, HEAD_DIM_PAD, MASKED)
        if MASKED:
            # +inf lse for padding rows makes their probabilities exactly 0.
            lse2 = tl.load(lse_base + offs_m, mask=offs_m < seqlen_q, other=float("inf"))
            delta = tl.load(delta_base + offs_m, mask=offs_m < seqlen_q, other=0.0)
        else:
            lse2 = tl.load(lse_base + offs_m)
            delta = tl.load(delta_base + offs_m)
        if not LSE_LOG2:
            lse2 = lse2 * 1.4426950408889634
        s2t, t = _scores_t(k, q, qk_scale2, cap_scale, softcap2, SOFTCAP)
        if MASKED:
            keep_t = tl.trans(visible(offs_m, offs_n, seqlen_q, seqlen_k, left, right, HAS_LEFT, HAS_RIGHT))
            s2t = tl.where(keep_t, s2t, -float("inf"))
        pt = tl.exp2(s2t - lse2[None, :])  # (BLOCK_N, BLOCK_M)
        dv = tl.dot(pt.to(do.dtype), do, dv)
        dpt = tl.dot(v, tl.trans(do))
        dst = pt * (dpt - delta[None, :])
        if SOFTCAP:
            dst = dst * (1.0 - t * t)
        dst_lo = dst.to(q.dtype)
        dk = tl.dot(dst_lo, q, dk)
        if ATOMIC_DQ:
            dq = tl.dot(tl.trans(dst_lo), k) * sm_scale
            cols = tl.arange(0, HEAD_DIM_PAD)
            tl.atomic_add(
                dq_base + offs_m[:, None].to(tl.int64) * stride_dqs + cols[None, :],
                dq,
                mask=(offs_m[:, None] < seqlen_q) & (cols[None, :] < HEAD_DIM),
                sem="relaxed",
            )
    return dk, dv


@triton.jit
def _bwd_dkdv(
    Q,
    K,
    V,
    DO,
    LSE,
    DELTA,
    DQ,
    DK,
    DV,
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
    stride_dob,
    stride_dos,
    stride_doh,
    stride_dqb,
    stride_dqs,
    stride_dqh,
    stride_dkb,
    stride_dks,
    stride_dkh,
    stride_dvb,
    stride_dvs,
    stride_dvh,
    stride_lb,
    stride_lh,
    seqlen_q,
    seqlen_k,
    kheads,
    group,
    qk_scale2,
    cap_scale,
    softcap2,
    sm_scale,
    left,
    right,
    TUNE_Q,
    TUNE_K,
    HEAD_DIM: tl.constexpr,
    HEAD_DIM_PAD: tl.constexpr,
    IS_VARLEN: tl.constexpr,
    HAS_LEFT: tl.constexpr,
    HAS_RIGHT: tl.constexpr,
    SOFTCAP: tl.constexpr,
    ATOMIC_DQ: tl.constexpr,
    USE_TMA: tl.constexpr,
    LSE_LOG2: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
):
    pid_n = tl.program_id(0)
    pid_bh = tl.program_id(1)
    b = pid_bh // kheads
    kv_h = pid_bh % kheads
    q_start, seqlen_q = sequence(CU_Q, b, seqlen_q, IS_VARLEN)
    k_start, seqlen_k = sequence(CU_K, b, seqlen_k, IS_VARLEN)
    n0 = pid_n * BLOCK_N
    if n0 >= seqlen_k:
        return
    offs_n = n0 + tl.arange(0, BLOCK_N)
    b64 = b.to(tl.int64)
    k = load_rows(
        K + b64 * stride_kb + k_start.to(tl.int64) * stride_ks + kv_h * stride_kh,
        offs_n,
        stride_ks,
        seqlen_k,
        HEAD_DIM,
        HEAD_DIM_PAD,
        True,
    )
    v = load_rows(
        V + b64 * stride_vb + k_start.to(tl.int64) * stride_vs + kv_h * stride_vh,
        offs_n,
        stride_vs,
        seqlen_k,
        HEAD_DIM,
        HEAD_DIM_PAD,
        True,
    )
    dk = tl.zeros([BLOCK_N, HEAD_DIM_PAD], dtype=tl.float32)
    dv = tl.zeros([BLOCK_N, HEAD_DIM_PAD], dtype=tl.float32)

    # Query rows that see this key block: the forward's range computation read transposed (keys are the
    # outer index; a window's left bound limits rows from above, its right bound from below).
    lo, full_lo, full_hi, hi = block_range(
        n0, seqlen_k, seqlen_q, right, left, HAS_RIGHT, HAS_LEFT, BLOCK_N, BLOCK_M
    )
    if n0 + BLOCK_N > seqlen_k:  # ragged last key block: mask everything
        full_lo = hi
        full_hi = hi
    for g in range(0, group):  # every query head of the GQA group, in a fixed order
        h = kv_h * group + g
        q_base = Q + b64 * stride_qb + q_start.to(tl.int64) * stride_qs + h * stride_qh
        do_base = DO + b64 * stride_dob + q_start.to(tl.int64) * stride_dos + h * stride_doh
        dq_base = DQ + b64 * stride_dqb + q_start.to(tl.int64) * stride_dqs + h * stride_dqh
        lse_base = LSE + b64 * stride_lb + h.to(tl.int64) * stride_lh + q_start
        delta_base = DELTA + b64 * stride_lb + h.to(tl.int64) * stride_lh + q_start
        if USE_TMA:
            # Descriptors over this (sequence, head) slice: TMA streams the Q/dO tiles into shared memory
            # and zero-fills rows past the sequence's end.
            q_src = tl.make_tensor_descriptor(
                q_base,
                shape=[tl.maximum(seqlen_q, 1), HEAD_DIM],
                strides=[stride_qs, 1],
                block_shape=[BLOCK_M, HEAD_DIM_PAD],
            )
            do_src = tl.make_tensor_descriptor(
                do_base,
                shape=[tl.maximum(seqlen_q, 1), HEAD_DIM],
                strides=[stride_dos, 1],
                block_shape=[BLOCK_M, HEAD_DIM_PAD],
            )
        else:
            q_src = q_base
            do_src = do_base
        spans = (lo, full_lo, full_hi, hi)
        for i in tl.static_range(3):  # span i is [spans[i], spans[i + 1]); the middle one is unmasked
            dk, dv = _dkdv_inner(
                dk,
                dv,
                k,
                v,
                q_base,
                do_base,
                q_src,
                do_src,
                lse_base,
                delta_base,
                dq_base,
                stride_qs,
                stride_dos,
                stride_dqs,
                spans[i],
                spans[i + 1],
                n0,
                seqlen_q,
                seqlen_k,
                left,
                right,
                qk_scale2,
                cap_scale,
                softcap2,
                sm_scale,
                i != 1,
                HAS_LEFT,
                HAS_RIGHT,
                SOFTCAP,
                ATOMIC_DQ,
                USE_TMA,
                LSE_LOG2,
                BLOCK_M,
                BLOCK_N,
                HEAD_DIM,
                HEAD_DIM_PAD,
            )

    # dS was taken with respect to the scaled score; the chain rule through Q K^T * scale adds the scale.
    dk = dk * sm_scale
    store_rows(
        DK + b64 * stride_dkb + k_start.to(tl.int64) * stride_dks + kv_h * stride_dkh,
        offs_n,
        stride_dks,
        seqlen_k,
        dk.to(DK.dtype.element_ty),
        HEAD_DIM,
        HEAD_DIM_PAD,
    )
    store_rows(
        DV + b64 * stride_dvb + k_start.to(tl.int64) * stride_dvs + kv_h * stride_dvh,
        offs_n,
        stride_dvs,
        seqlen_k,
        dv.to(DV.dtype.element_ty),
        HEAD_DIM,
        HEAD_DIM_PAD,
    )


@triton.jit
def _dq_inner(
    dq,
    q,
    do,
    lse2,
    delta,
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
    USE_TMA: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    HEAD_DIM: tl.constexpr,
    HEAD_DIM_PAD: tl.constexpr,
):
    offs_m = m0 + tl.arange(0, BLOCK_M)
    for n0 in tl.range(n_start, n_end, BLOCK_N):
        offs_n = n0 + tl.arange(0, BLOCK_N)
        if USE_TMA:
            k = k_src.load([n0, 0])
            v = v_src.load([n0, 0])
        else:
            k = load_rows(k_src, offs_n, stride_ks, seqlen_k, HEAD_DIM, HEAD_DIM_PAD, MASKED)
            v = load_rows(v_src, offs_n, stride_vs, seqlen_k, HEAD_DIM, HEAD_DIM_PAD, MASKED)
        s = tl.dot(q, tl.trans(k))
        if SOFTCAP:
            t = tanh(s * cap_scale)
            s2 = softcap2 * t
        else:
            s2 = s * qk_scale2
        if MASKED:
            keep = visible(offs_m, offs_n, seqlen_q, seqlen_k, left, right, HAS_LEFT, HAS_RIGHT)
            s2 = tl.where(keep, s2, -float("inf"))
        p = tl.exp2(s2 - lse2[:, None])
        dp = tl.dot(do, tl.trans(v))
        ds = p * (dp - delta[:, None])
        if SOFTCAP:
            ds = ds * (1.0 - t * t)
        dq = tl.dot(ds.to(k.dtype), k, dq)
    return dq


@triton.jit
def _bwd_dq(
    Q,
    K,
    V,
    DO,
    LSE,
    DELTA,
    DQ,
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
    stride_dob,
    stride_dos,
    stride_doh,
    stride_dqb,
    stride_dqs,
    stride_dqh,
    stride_lb,
    stride_lh,
    seqlen_q,
    seqlen_k,
    nheads,
    group,
    qk_scale2,
    cap_scale,
    softcap2,
    sm_scale,
    left,
    right,
    TUNE_Q,
    TUNE_K,
    HEAD_DIM: tl.constexpr,
    HEAD_DIM_PAD: tl.constexpr,
    IS_VARLEN: tl.constexpr,
    HAS_LEFT: tl.constexpr,
    HAS_RIGHT: tl.constexpr,
    SOFTCAP: tl.constexpr,
    USE_TMA: tl.constexpr,
    LSE_LOG2: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
):
    pid_m = tl.program_id(0)
    pid_bh = tl.program_id(1)
    b = pid_bh // nheads
    h = pid_bh % nheads
    kv_h = h // group
    q_start, seqlen_q = sequence(CU_Q, b, seqlen_q, IS_VARLEN)
    k_start, seqlen_k = sequence(CU_K, b, seqlen_k, IS_VARLEN)
    m0 = pid_m * BLOCK_M
    if m0 >= seqlen_q:
        return
    offs_m = m0 + tl.arange(0, BLOCK_M)
    b64 = b.to(tl.int64)
    q = load_rows(
        Q + b64 * stride_qb + q_start.to(tl.int64) * stride_qs + h * stride_qh,
        offs_m,
        stride_qs,
        seqlen_q,
        HEAD_DIM,
        HEAD_DIM_PAD,
        True,
    )
    do = load_rows(
        DO + b64 * stride_dob + q_start.to(tl.int64) * stride_dos + h * stride_doh,
        offs_m,
        stride_dos,
        seqlen_q,
        HEAD_DIM,
        HEAD_DIM_PAD,
        True,
    )
    row_off = b64 * stride_lb + h.to(tl.int64) * stride_lh + q_start + offs_m
    lse2 = tl.load(LSE + row_off, mask=offs_m < seqlen_q, other=float("inf"))
    if not LSE_LOG2:
        lse2 = lse2 * 1.4426950408889634
    delta = tl.load(DELTA + row_off, mask=offs_m < seqlen_q, other=0.0)
    k_base = K + b64 * stride_kb + k_start.to(tl.int64) * stride_ks + kv_h * stride_kh
    v_base = V + b64 * stride_vb + k_start.to(tl.int64) * stride_vs + kv_h * stride_vh
    if USE_TMA:
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
    else:
        k_src = k_base
        v_src = v_base
    dq = tl.zeros([BLOCK_M, HEAD_DIM_PAD], dtype=tl.float32)
    lo, full_lo, full_hi, hi = block_range(
        m0, seqlen_q, seqlen_k, left, right, HAS_LEFT, HAS_RIGHT, BLOCK_M, BLOCK_N
    )
    spans = (lo, full_lo, full_hi, hi)
    for i in tl.static_range(3):  # span i is [spans[i], spans[i + 1]); the middle one is unmasked
        dq = _dq_inner(
            dq,
            q,
            do,
            lse2,
            delta,
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
            USE_TMA,
            BLOCK_M,
            BLOCK_N,
            HEAD_DIM,
            HEAD_DIM_PAD,
        )

    store_rows(
        DQ + b64 * stride_dqb + q_start.to(tl.int64) * stride_dqs + h * stride_dqh,
        offs_m,
        stride_dqs,
        seqlen_q,
        (dq * sm_scale).to(DQ.dtype.element_ty),
        HEAD_DIM,
        HEAD_DIM_PAD,
    )


# ---------------------------------------------------------------------------------------------------------
def _cfg(bm, bn, warps, stages):
    return triton.Config({"BLOCK_M": bm, "BLOCK_N": bn}, num_warps=warps, num_stages=stages)


# dK/dV: BLOCK_N keys stay resident (K, V, dK, dV: four tiles), BLOCK_M query rows stream.
_DKDV_CONFIGS = {
    "sm90": [
        _cfg(64, 128, 8, 2),
        _cfg(64, 128, 8, 3),
        _cfg(64, 64, 4, 2),
        _cfg(32, 128, 8, 2),
        _cfg(32, 64, 4, 2),
    ],
    "sm80": [
        _cfg(64, 128, 8, 2),
        _cfg(64, 128, 8, 3),
        _cfg(64, 64, 4, 2),
        _cfg(32, 64, 4, 2),
        _cfg(32, 32, 4, 1),
    ],
}
# dQ: BLOCK_M rows resident (Q, dO, dQ), keys stream.
_DQ_CONFIGS = {
    "sm90": [_cfg(128, 64, 8, 2), _cfg(128, 64, 8, 3), _cfg(64, 64, 4, 2), _cfg(64, 32, 4, 2)],
    "sm80": [_cfg(128, 64, 8, 2), _cfg(64, 64, 4, 2), _cfg(64, 32, 4, 2), _cfg(32, 32, 4, 1)],
}
# v2 Hopper lists. dK/dV at d <= 128: 128 resident keys (two warpgroups, 8 warps) against 64 streamed
# query rows with 2-3 TMA stages; d <= 64 also tries 128 streamed rows (half the registers per tile).
# dQ mirrors it: 128 resident rows, 64 (or 128 at d <= 64) streamed keys.
_DKDV_V2 = _DKDV_CONFIGS["sm90"] + [_cfg(64, 128, 4, 2), _cfg(128, 128, 8, 2), _cfg(64, 64, 4, 3)]
_DQ_V2 = _DQ_CONFIGS["sm90"] + [_cfg(128, 128, 8, 2), _cfg(64, 64, 4, 3)]
_SMEM = {"sm90": 227 * 1024, "sm80": 163 * 1024}


def _prune(path, resident, streamed):
    def prune(configs, named_args, **kwargs):
        pad = kwargs["HEAD_DIM_PAD"]
        elem = named_args["Q"].element_size()
        kept = []
        for c in configs:
            r, s = c.kwargs[resident], c.kwargs[streamed]
            smem = (2 * r * pad + max(c.num_stages, 1) * 2 * s * pad) * elem
            if smem > _SMEM[path] or (pad >= 256 and r * s > 64 * 64) or (pad >= 128 and r * s > 128 * 64):
                continue
            kept.append(c)
        return tuning_budget(kept) or [
            min(configs, key=lambda c: (c.kwargs["BLOCK_M"] * c.kwargs["BLOCK_N"], c.num_stages))
        ]

    return prune


_KEY = [
    "TUNE_Q",
    "TUNE_K",
    "HEAD_DIM",
    "IS_VARLEN",
    "HAS_LEFT",
    "HAS_RIGHT",
    "SOFTCAP",
    "USE_TMA",
    "LSE_LOG2",
]
_TUNED = {}


def _tuned(name, path, version="v2"):
    if (name, path, version) not in _TUNED:
        v2 = version == "v2" and path == "sm90"
        if name == "dkdv":
            _TUNED[name, path, version] = triton.autotune(
                _DKDV_V2 if v2 else _DKDV_CONFIGS[path],
                key=[*_KEY, "ATOMIC_DQ"],
                reset_to_zero=["DQ"],
                prune_configs_by={"early_config_prune": _prune(path, "BLOCK_N", "BLOCK_M")},
                do_bench=robust_bench,
            )(_bwd_dkdv)
        else:
            _TUNED[name, path, version] = triton.autotune(
                _DQ_V2 if v2 else _DQ_CONFIGS[path],
                key=_KEY,
                prune_configs_by={"early_config_prune": _prune(path, "BLOCK_M", "BLOCK_N")},
                do_bench=robust_bench,
            )(_bwd_dq)
    return _TUNED[name, path, version]


def separate_dq(path: str, head_dim_padded: int, mode: str, unmasked: bool = False) -> bool:
    """Whether the non-deterministic backward computes dQ in its own kernel instead of with atomics.

    "auto": on Hopper at padded head dims <= 64 or > 128, and at 128 without causal or window mask
    (``unmasked``). The H200 runs measured the separate (and deterministic) pass faster there: hd64
    fwd+bwd 356 vs 331 TFLOP/s (first run), and in the attn-bench run of 2026-11-22 (seqlen 16k) hd64 bwd
    335 vs 310, hd256 bwd 146 vs 84 (fp32 atomics of a 256-wide dQ row from every key block are the
    bottleneck). At 128 unmasked, twice: bwd 395 vs 381 (that run), and in the 16k run with every
    implementation bwd 412 vs 380, fwd+bwd 433 vs 411; causal 411 vs 415 there, so atomics stay for masks.
    """
    if mode == "separate":
        return True
    if mode == "atomic":
        return False
    if path != "sm90":
        return False
    return head_dim_padded <= 64 or head_dim_padded > 128 or (head_dim_padded == 128 and unmasked)


INTERPRET_BLOCKS = {"BLOCK_M": 32, "BLOCK_N": 32}


def flash_bwd(
    dout,
    q,
    k,
    v,
    out,
    lse,
    *,
    softmax_scale,
    left,
    right,
    softcap,
    deterministic=False,
    cu_seqlens_q=None,
    cu_seqlens_k=None,
    max_seqlen_q=None,
    max_seqlen_k=None,
    force_path=None,
    configs=None,
):
    """Gradients (dq, dk, dv) of the forward with the same arguments; ``lse`` is the forward's."""
    varlen = cu_seqlens_q is not None
    head_dim = q.shape[-1]
    pad = head_dim_pad(head_dim)
    dout = dout if dout.stride(-1) == 1 else dout.contiguous()
    dk = torch.empty_like(k)
    dv = torch.empty_like(v)
    kn = knobs()
    path = force_path or path_for(q.device)
    atomic = not deterministic and not separate_dq(path, pad, kn.bwd_dq, unmasked=left < 0 and right < 0)
    # Atomic dQ accumulates in fp32 and is cast at the end; the deterministic kernel writes dQ directly.
    dq = torch.zeros(q.shape, dtype=torch.float32, device=q.device) if atomic else torch.empty_like(q)
    delta = torch.empty_like(lse)
    if varlen:
        batch = cu_seqlens_q.numel() - 1
        nheads, kheads = q.shape[1], k.shape[1]
        sq, sk = max_seqlen_q, max_seqlen_k
        st = lambda t: (0, *t.stride()[:2])
        lse_strides = (0, lse.stride(0))
    else:
        batch, sq, nheads = q.shape[:3]
        sk, kheads = k.shape[1], k.shape[2]
        st = lambda t: t.stride()[:3]
        lse_strides = lse.stride()[:2]
    if q.numel() == 0 or k.numel() == 0 or batch == 0:
        return dq.zero_().to(q.dtype), dk.zero_(), dv.zero_()
    # Hopper: TMA for the streamed tiles when the tensors allow it (see the forward for the conditions).
    use_tma = kn.bwd_tma and path == "sm90" and pad == head_dim and tma_compatible(q, k, v, dout)
    if use_tma and q.is_cuda:
        ensure_allocator(path)
    lse_log2 = kn.bwd_lse2
    lse2 = torch.empty_like(lse) if lse_log2 else lse
    if softcap > 0:
        qk_scale2, cap_scale, softcap2 = 0.0, softmax_scale / softcap, softcap * LOG2E
    else:
        qk_scale2, cap_scale, softcap2 = softmax_scale * LOG2E, 0.0, 0.0
    dummy = torch.empty(1, dtype=torch.int32, device=q.device)
    cu_q = cu_seqlens_q if varlen else dummy
    cu_k = cu_seqlens_k if varlen else dummy
    fixed = interpreting() or configs is not None
    configs = configs or {}

    pre_block = 64 if not interpreting() else 16
    _bwd_preprocess[(triton.cdiv(sq, pre_block), batch * nheads)](
        out,
        dout,
        delta,
        lse,
        lse2,
        cu_q,
        *st(out),
        *st(dout),
        *lse_strides,
        sq,
        nheads,
        HEAD_DIM=head_dim,
        HEAD_DIM_PAD=pad,
        IS_VARLEN=varlen,
        WRITE_LSE2=lse_log2,
        BLOCK_M=pre_block,
    )
    scal = (
        qk_scale2,
        cap_scale,
        softcap2,
        softmax_scale,
        max(left, 0),
        max(right, 0),
        bucket(sq),
        bucket(sk),
    )
    meta = dict(
        HEAD_DIM=head_dim,
        HEAD_DIM_PAD=pad,
        IS_VARLEN=varlen,
        HAS_LEFT=left >= 0,
        HAS_RIGHT=right >= 0,
        SOFTCAP=softcap > 0,
        USE_TMA=use_tma,
        LSE_LOG2=lse_log2,
    )
    dkdv_args = (
        q,
        k,
        v,
        dout,
        lse2,
        delta,
        dq,
        dk,
        dv,
        cu_q,
        cu_k,
        *st(q),
        *st(k),
        *st(v),
        *st(dout),
        *st(dq),
        *st(dk),
        *st(dv),
        *lse_strides,
        sq,
        sk,
        kheads,
        nheads // kheads,
        *scal,
    )
    grid = lambda m: (triton.cdiv(sk, m["BLOCK_N"]), batch * kheads)
    if fixed:
        cfg = dict(configs.get("dkdv", INTERPRET_BLOCKS))
        _bwd_dkdv[grid(cfg)](*dkdv_args, **meta, ATOMIC_DQ=atomic, **cfg)
    else:
        _tuned("dkdv", path, kn.bwd_configs)[grid](*dkdv_args, **meta, ATOMIC_DQ=atomic)
    if atomic:
        return dq.to(q.dtype), dk, dv
    dq_args = (
        q,
        k,
        v,
        dout,
        lse2,
        delta,
        dq,
        cu_q,
        cu_k,
        *st(q),
        *st(k),
        *st(v),
        *st(dout),
        *st(dq),
        *lse_strides,
        sq,
        sk,
        nheads,
        nheads // kheads,
        *scal,
    )
    grid = lambda m: (triton.cdiv(sq, m["BLOCK_M"]), batch * nheads)
    if fixed:
        cfg = dict(configs.get("dq", INTERPRET_BLOCKS))
        _bwd_dq[grid(cfg)](*dq_args, **meta, **cfg)
    else:
        _tuned("dq", path, kn.bwd_configs)[grid](*dq_args, **meta)
    return dq, dk, dv
