"""Decoding against a (paged) KV cache: split-KV attention plus a combine kernel.

Decoding is memory bound: each new token's few query rows must read the whole cache once. Two ideas make
that read fast:

* **Pack the GQA group into the M dimension.** All ``group = heads_q / heads_k`` query heads of one KV
  head (times the few query tokens) become the rows of one tile, so each K/V tile is read from HBM once
  and used by every head that shares it. ``tl.dot`` needs at least 16 rows, so small groups are padded.
* **Split the keys across programs** (FlashDecoding). With batch x KV heads programs alone a long cache
  may leave SMs idle; ``num_splits`` programs per (sequence, KV head) each reduce a contiguous slice of
  the cache to a partial output and its logsumexp, and ``_combine_kernel`` merges the slices:
  ``lse = log(sum_s exp(lse_s))``, ``out = sum_s exp(lse_s - lse) * out_s``.

Paged caches: ``block_table[b, p]`` is the pool page that holds tokens ``[p * page_size, (p+1) * page_size)``
of sequence ``b``. Each key row finds its page with one table lookup, so any page size works (the API
asks for multiples of 16, like flash-attn) and a tile may straddle pages.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from attn_triton._runtime import interpreting, knobs, path_for, robust_bench, sm_count, tuning_budget
from attn_triton.flash_common import LOG2E, head_dim_pad, tanh, visible


@triton.jit
def _load_kv(
    base,
    table_row,
    offs_n,
    cache_len,
    page_size,
    stride_page,
    stride_slot,
    PAGED: tl.constexpr,
    HEAD_DIM: tl.constexpr,
    HEAD_DIM_PAD: tl.constexpr,
):
    cols = tl.arange(0, HEAD_DIM_PAD)
    valid = offs_n < cache_len  # slots past the sequence (and the pages behind them) are never read
    if PAGED:
        page = tl.load(table_row + offs_n // page_size, mask=valid, other=0).to(tl.int64)
        row_off = page * stride_page + (offs_n % page_size) * stride_slot
    else:
        row_off = offs_n.to(tl.int64) * stride_slot
    mask = valid[:, None]
    if HEAD_DIM != HEAD_DIM_PAD:
        mask = mask & (cols[None, :] < HEAD_DIM)
    return tl.load(base + row_off[:, None] + cols[None, :], mask=mask, other=0.0)


@triton.jit
def _load_page_tile(
    base,
    table_row,
    n0,
    offs_n,
    cache_len,
    stride_page,
    stride_slot,
    PAGE_SIZE: tl.constexpr,
    HEAD_DIM: tl.constexpr,
    HEAD_DIM_PAD: tl.constexpr,
):
    """A key tile that lies inside one page (BLOCK_N divides PAGE_SIZE): one scalar block-table read for
    the whole tile, and rows at a fixed stride from the page's base, so the address math is the same as
    for a contiguous cache (wide vector loads, no per-row gather, no per-row division)."""
    cols = tl.arange(0, HEAD_DIM_PAD)
    page = tl.load(table_row + n0 // PAGE_SIZE).to(tl.int64)
    slots = offs_n - (n0 // PAGE_SIZE) * PAGE_SIZE  # contiguous within the page
    mask = (offs_n < cache_len)[:, None]
    if HEAD_DIM != HEAD_DIM_PAD:
        mask = mask & (cols[None, :] < HEAD_DIM)
    ptrs = base + page * stride_page + slots[:, None].to(tl.int64) * stride_slot + cols[None, :]
    return tl.load(ptrs, mask=mask, other=0.0)


@triton.jit
def _decode_kernel(
    Q,
    K,
    V,
    O,
    LSE,
    O_PART,
    LSE_PART,
    BLOCK_TABLE,
    CACHE_SEQLENS,
    stride_qb,
    stride_qs,
    stride_qh,
    stride_kp,
    stride_ks,
    stride_kh,
    stride_vp,
    stride_vs,
    stride_vh,
    stride_ob,
    stride_os,
    stride_oh,
    stride_lb,
    stride_lh,
    stride_btb,
    seqlen_q,
    kheads,
    group,
    page_size,
    keys_per_split,
    qk_scale2,
    cap_scale,
    softcap2,
    left,
    right,
    TUNE_K,
    HEAD_DIM: tl.constexpr,
    HEAD_DIM_PAD: tl.constexpr,
    PAGED: tl.constexpr,
    HAS_LEFT: tl.constexpr,
    HAS_RIGHT: tl.constexpr,
    SOFTCAP: tl.constexpr,
    SPLIT: tl.constexpr,
    PAGE_SIZE: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
):
    # PAGE_SIZE > 0: the page size as a compile-time constant, and the key tiles never straddle a page.
    # (0: the general path, any page size, one block-table read per key row.)
    PAGE_TILE: tl.constexpr = PAGED and PAGE_SIZE > 0 and PAGE_SIZE % BLOCK_N == 0
    split = tl.program_id(0)
    pid_bh = tl.program_id(1)
    pid_m = tl.program_id(2)
    b = pid_bh // kheads
    kv_h = pid_bh % kheads
    b64 = b.to(tl.int64)
    cache_len = tl.load(CACHE_SEQLENS + b)
    n_rows = seqlen_q * group

    # Row r of the tile is query token r // group of query head kv_h * group + r % group.
    rows = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    tok = rows // group
    head = kv_h * group + rows % group
    cols = tl.arange(0, HEAD_DIM_PAD)
    q_ptrs = (
        Q
        + b64 * stride_qb
        + tok[:, None].to(tl.int64) * stride_qs
        + head[:, None] * stride_qh
        + cols[None, :]
    )
    q = tl.load(q_ptrs, mask=(rows[:, None] < n_rows) & (cols[None, :] < HEAD_DIM), other=0.0)

    # This split's keys, narrowed to what the window lets any of the query tokens see.
    n_lo = split * keys_per_split
    n_hi = tl.minimum(n_lo + keys_per_split, cache_len)
    diag = cache_len - seqlen_q
    if HAS_LEFT:
        n_lo = tl.maximum(n_lo, ((tl.maximum(diag - left, 0) // BLOCK_N) * BLOCK_N))
    if HAS_RIGHT:
        n_hi = tl.minimum(n_hi, tl.maximum(seqlen_q - 1 + diag + right + 1, 0))

    k_base = K + kv_h * stride_kh
    v_base = V + kv_h * stride_vh
    if not PAGED:
        k_base += b64 * stride_kp
        v_base += b64 * stride_vp
    table_row = BLOCK_TABLE + b64 * stride_btb

    m_i = tl.full([BLOCK_M], -float("inf"), dtype=tl.float32)
    l_i = tl.zeros([BLOCK_M], dtype=tl.float32)
    acc = tl.zeros([BLOCK_M, HEAD_DIM_PAD], dtype=tl.float32)
    for n0 in tl.range(n_lo, n_hi, BLOCK_N):
        offs_n = n0 + tl.arange(0, BLOCK_N)
        if PAGE_TILE:
            k = _load_page_tile(
                k_base, table_row, n0, offs_n, n_hi, stride_kp, stride_ks, PAGE_SIZE, HEAD_DIM, HEAD_DIM_PAD
            )
        else:
            k = _load_kv(
                k_base,
                table_row,
                offs_n,
                n_hi,
                page_size,
                stride_kp,
                stride_ks,
                PAGED,
                HEAD_DIM,
                HEAD_DIM_PAD,
            )
        s = tl.dot(q, tl.trans(k))
        if SOFTCAP:
            s = softcap2 * tanh(s * cap_scale)
        else:
            s = s * qk_scale2
        keep = visible(tok, offs_n, seqlen_q, cache_len, left, right, HAS_LEFT, HAS_RIGHT)
        keep = keep & (offs_n[None, :] < n_hi)
        s = tl.where(keep, s, -float("inf"))
        m_new = tl.maximum(m_i, tl.max(s, 1))
        m_use = tl.where(m_new == -float("inf"), 0.0, m_new)
        p = tl.exp2(s - m_use[:, None])
        alpha = tl.exp2(m_i - m_use)
        l_i = l_i * alpha + tl.sum(p, 1)
        if PAGE_TILE:
            v = _load_page_tile(
                v_base, table_row, n0, offs_n, n_hi, stride_vp, stride_vs, PAGE_SIZE, HEAD_DIM, HEAD_DIM_PAD
            )
        else:
            v = _load_kv(
                v_base,
                table_row,
                offs_n,
                n_hi,
                page_size,
                stride_vp,
                stride_vs,
                PAGED,
                HEAD_DIM,
                HEAD_DIM_PAD,
            )
        acc = acc * alpha[:, None]
        acc = tl.dot(p.to(v.dtype), v, acc)
        m_i = m_new

    empty = l_i == 0.0
    out = acc / tl.where(empty, 1.0, l_i)[:, None]
    lse = (m_i + tl.log2(tl.where(empty, 1.0, l_i))) * 0.6931471805599453
    row_ok = rows < n_rows
    if SPLIT:
        # Partials: (splits, batch, kheads, rows[, d]) fp32; an empty split weighs exp(-inf) = 0.
        part = (split * tl.num_programs(1) + pid_bh).to(tl.int64) * n_rows + rows
        tl.store(LSE_PART + part, tl.where(empty, -float("inf"), lse), mask=row_ok)
        tl.store(O_PART + part[:, None] * HEAD_DIM_PAD + cols[None, :], out, mask=row_ok[:, None])
    else:
        tl.store(
            LSE + b64 * stride_lb + head.to(tl.int64) * stride_lh + tok,
            tl.where(empty, float("inf"), lse),
            mask=row_ok,
        )
        o_ptrs = (
            O
            + b64 * stride_ob
            + tok[:, None].to(tl.int64) * stride_os
            + head[:, None] * stride_oh
            + cols[None, :]
        )
        tl.store(o_ptrs, out.to(O.dtype.element_ty), mask=row_ok[:, None] & (cols[None, :] < HEAD_DIM))


@triton.jit
def _combine_kernel(
    O,
    LSE,
    O_PART,
    LSE_PART,
    stride_ob,
    stride_os,
    stride_oh,
    stride_lb,
    stride_lh,
    num_splits,
    kheads,
    group,
    n_rows,
    HEAD_DIM: tl.constexpr,
    HEAD_DIM_PAD: tl.constexpr,
    BLOCK_M: tl.constexpr,
):
    pid_bh = tl.program_id(0)
    pid_m = tl.program_id(1)
    b = pid_bh // kheads
    kv_h = pid_bh % kheads
    rows = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    row_ok = rows < n_rows
    cols = tl.arange(0, HEAD_DIM_PAD)
    n_bh = tl.num_programs(0)
    # Pass 1: the largest partial lse per row, so that the exponentials below cannot overflow.
    lse_max = tl.full([BLOCK_M], -float("inf"), dtype=tl.float32)
    for s in range(0, num_splits):
        part = (s * n_bh + pid_bh).to(tl.int64) * n_rows + rows
        lse_max = tl.maximum(lse_max, tl.load(LSE_PART + part, mask=row_ok, other=-float("inf")))
    safe_max = tl.where(lse_max == -float("inf"), 0.0, lse_max)
    # Pass 2: weights exp(lse_s - max), their sum, and the weighted outputs.
    total = tl.zeros([BLOCK_M], dtype=tl.float32)
    acc = tl.zeros([BLOCK_M, HEAD_DIM_PAD], dtype=tl.float32)
    for s in range(0, num_splits):
        part = (s * n_bh + pid_bh).to(tl.int64) * n_rows + rows
        w = tl.exp(tl.load(LSE_PART + part, mask=row_ok, other=-float("inf")) - safe_max)
        o = tl.load(O_PART + part[:, None] * HEAD_DIM_PAD + cols[None, :], mask=row_ok[:, None], other=0.0)
        total += w
        acc += w[:, None] * o
    empty = total == 0.0
    out = acc / tl.where(empty, 1.0, total)[:, None]
    lse = tl.where(empty, float("inf"), safe_max + tl.log(tl.where(empty, 1.0, total)))
    tok = rows // group
    head = kv_h * group + rows % group
    tl.store(LSE + b.to(tl.int64) * stride_lb + head.to(tl.int64) * stride_lh + tok, lse, mask=row_ok)
    o_ptrs = (
        O + b.to(tl.int64) * stride_ob + tok[:, None].to(tl.int64) * stride_os + head[:, None] * stride_oh
    )
    tl.store(
        o_ptrs + cols[None, :], out.to(O.dtype.element_ty), mask=row_ok[:, None] & (cols[None, :] < HEAD_DIM)
    )


def _cfg(bn, warps, stages):
    return triton.Config({"BLOCK_N": bn}, num_warps=warps, num_stages=stages)


_CONFIGS = [_cfg(64, 4, 2), _cfg(64, 4, 3), _cfg(64, 4, 4), _cfg(128, 4, 2), _cfg(128, 8, 3), _cfg(32, 4, 4)]
# v2 adds deeper pipelines for the 64-key tiles that page-sized tiles favour (more bytes in flight per SM).
_CONFIGS_V2 = [*_CONFIGS, _cfg(64, 8, 4), _cfg(32, 4, 3)]
_TUNED = {}


def _prune(configs, named_args, **kwargs):
    pad = kwargs["HEAD_DIM_PAD"]
    kept = [c for c in configs if 2 * c.num_stages * c.kwargs["BLOCK_N"] * pad * 2 <= 160 * 1024]
    page = kwargs.get("PAGE_SIZE", 0)
    if page > 0:
        # Keep the tiles that fit inside a page (the one-table-read-per-tile path), when there are any.
        inside = [c for c in kept if page % c.kwargs["BLOCK_N"] == 0]
        kept = inside or kept
    return tuning_budget(kept) or configs[:1]


def _tuned(path, version="v2"):
    if (path, version) not in _TUNED:
        _TUNED[path, version] = triton.autotune(
            _CONFIGS_V2 if version == "v2" else _CONFIGS,
            key=[
                "TUNE_K",
                "HEAD_DIM",
                "PAGED",
                "SPLIT",
                "BLOCK_M",
                "HAS_LEFT",
                "HAS_RIGHT",
                "SOFTCAP",
                "PAGE_SIZE",
            ],
            prune_configs_by={"early_config_prune": _prune},
            do_bench=robust_bench,
        )(_decode_kernel)
    return _TUNED[path, version]


def choose_num_splits(programs: int, sms: int, key_blocks: int, max_splits: int = 64) -> int:
    """FlashAttention's wave-quantisation heuristic: enough programs to fill the SMs, with the last wave
    as full as possible, and never more splits than key blocks."""
    if programs >= 0.8 * sms or key_blocks <= 1:
        return 1
    max_splits = min(max_splits, sms, key_blocks)
    eff = []
    for s in range(1, max_splits + 1):
        waves = programs * s / sms
        eff.append(waves / -(-waves // 1))
    best = max(eff)
    for s in range(1, max_splits + 1):
        if eff[s - 1] >= 0.85 * best:
            return s
    return 1


def flash_decode(
    q,
    k_cache,
    v_cache,
    cache_seqlens,
    block_table,
    *,
    softmax_scale,
    left,
    right,
    softcap,
    max_cache_len,
    num_splits=0,
    force_path=None,
    config=None,
):
    """Attention of q (batch, seqlen_q, heads_q, d) over the first ``cache_seqlens[b]`` cache slots.

    ``cache_seqlens``: int32 (batch,) on q's device. ``block_table``: int32 (batch, pages) or None.
    Returns (out, lse (batch, heads_q, seqlen_q) fp32).
    """
    batch, sq, hq, d = q.shape
    hk = k_cache.shape[2]
    group = hq // hk
    pad = head_dim_pad(d)
    out = torch.empty_like(q)
    lse = torch.empty((batch, hq, sq), dtype=torch.float32, device=q.device)
    if q.numel() == 0:
        return out, lse
    paged = block_table is not None
    page_size = k_cache.shape[1]
    n_rows = sq * group
    block_m = min(64, max(16, triton.next_power_of_2(n_rows)))
    m_blocks = triton.cdiv(n_rows, block_m)
    path = force_path or path_for(q.device)
    fixed = interpreting() or config is not None
    if num_splits <= 0:
        num_splits = choose_num_splits(
            batch * hk * m_blocks, sm_count(q.device), triton.cdiv(max(max_cache_len, 1), 256)
        )
    # Each split is a whole number of 128-key chunks, so every config's BLOCK_N tiles it exactly.
    keys_per_split = triton.cdiv(triton.cdiv(max(max_cache_len, 1), num_splits), 128) * 128
    num_splits = max(1, triton.cdiv(max(max_cache_len, 1), keys_per_split))
    split = num_splits > 1
    if split:
        o_part = torch.empty((num_splits, batch, hk, n_rows, pad), dtype=torch.float32, device=q.device)
        lse_part = torch.empty((num_splits, batch, hk, n_rows), dtype=torch.float32, device=q.device)
    else:
        o_part = lse_part = lse  # unused
    if softcap > 0:
        qk_scale2, cap_scale, softcap2 = 0.0, softmax_scale / softcap, softcap * LOG2E
    else:
        qk_scale2, cap_scale, softcap2 = softmax_scale * LOG2E, 0.0, 0.0
    table = block_table if paged else cache_seqlens
    args = (
        q,
        k_cache,
        v_cache,
        out,
        lse,
        o_part,
        lse_part,
        table,
        cache_seqlens,
        *q.stride()[:3],
        k_cache.stride(0),
        k_cache.stride(1),
        k_cache.stride(2),
        v_cache.stride(0),
        v_cache.stride(1),
        v_cache.stride(2),
        *out.stride()[:3],
        *lse.stride()[:2],
        table.stride(0),
        sq,
        hk,
        group,
        page_size,
        keys_per_split,
        qk_scale2,
        cap_scale,
        softcap2,
        max(left, 0),
        max(right, 0),
        triton.next_power_of_2(max(max_cache_len // num_splits, 16)),
    )
    meta = dict(
        HEAD_DIM=d,
        HEAD_DIM_PAD=pad,
        PAGED=paged,
        HAS_LEFT=left >= 0,
        HAS_RIGHT=right >= 0,
        SOFTCAP=softcap > 0,
        SPLIT=split,
        PAGE_SIZE=page_size if paged and knobs().decode_page_tile else 0,
        BLOCK_M=block_m,
    )
    grid = (num_splits, batch * hk, m_blocks)
    if fixed:
        cfg = dict(config or {"BLOCK_N": 32})
        _decode_kernel[grid](*args, **meta, **cfg)
    else:
        _tuned(path, knobs().decode_configs)[grid](*args, **meta)
    if split:
        _combine_kernel[(batch * hk, m_blocks)](
            out,
            lse,
            o_part,
            lse_part,
            *out.stride()[:3],
            *lse.stride()[:2],
            num_splits,
            hk,
            group,
            n_rows,
            HEAD_DIM=d,
            HEAD_DIM_PAD=pad,
            BLOCK_M=block_m,
        )
    return out, lse
