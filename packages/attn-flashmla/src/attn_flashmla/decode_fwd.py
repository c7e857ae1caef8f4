"""Split-KV dense MLA decoding in Triton: the portable path (sm_80 and newer, and the CPU interpreter).

The problem, in FlashMLA's "MQA mode": every query head of a KV head attends to the same cached latent
vector per token. A token's key is its 576 channels (512 "NoPE" + 64 "RoPE"); its value is the first 512
of them. So the kernel loads each KV tile **once** and uses it twice, for ``S = Q K^T`` and ``O += P V``:
that, and not re-reading the cache per query head, is what makes MLA decoding fast.

Rows. For one KV head, the query heads of its group and the ``s_q`` query tokens are all rows of one
matrix: row ``r = s * group + g`` is query token ``s``, head ``hk * group + g``. With h_q = 128, s_q = 2 that
is 256 rows against one K tile, which is why MLA decoding is compute-bound at large h_q (unlike classic MHA
decoding). ``BLOCK_M`` rows go to one program; ``program_id(1)`` picks the row block.

Work. ``program_id(0)`` is an SM *part* of :mod:`attn_flashmla.scheduler`: it walks its run of
(sequence, tile range) pieces. A sequence the scheduler left whole is finished here and written to ``out``;
a split one writes a partial result (normalised ``o`` and its ``lse``) to scratch, merged by
:mod:`attn_flashmla.combine`.

Masks, and why NaN never leaks. Paged caches hold garbage (NaN in the tests) past each sequence's end and
block tables hold garbage entries past its last block. Every load of the block table and of K is masked
by ``token < seqlen`` with ``other=0``, so masked tokens *are* zeros, never NaN; scores of masked tokens
are then replaced (``tl.where``, not multiplied) by ``-inf``. Multiplying a NaN row by a zero probability
would still be NaN, so we never rely on ``p == 0`` to hide a row. Causal masking (bottom-right aligned)
lets row ``s`` see tokens ``< seqlen - s_q + s + 1``.

Softmax in base 2. Scores are scaled by ``softmax_scale * log2(e)`` so the kernel uses ``exp2`` (one
MUFU instruction); ``lse`` is converted back to the natural log FlashMLA returns.
"""

from __future__ import annotations

import math
import os

import torch
import triton
import triton.language as tl

from attn_flashmla._runtime import interpreting

LOG2E = math.log2(math.e)
D_MAIN = 512  # NoPE channels: the part of K that is also V
D_ROPE = 64  # RoPE channels (head dim 576 only)


@triton.jit
def _dense_decode_kernel(
    q_ptr,
    k_ptr,
    block_table_ptr,
    seqlens_ptr,
    parts_ptr,
    split_offsets_ptr,
    out_ptr,
    lse_ptr,
    o_acc_ptr,
    lse_acc_ptr,
    stride_qb,
    stride_qs,
    stride_qh,
    stride_kblock,
    stride_kpos,
    stride_kh,
    stride_bt,
    stride_ob,
    stride_os,
    stride_oh,
    s_q,
    h_q,
    h_kv,
    group,
    rows,
    page_size,
    scale_log2,
    CAUSAL: tl.constexpr,
    HAS_ROPE: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    D_MAIN: tl.constexpr,
    D_ROPE: tl.constexpr,
    DV_SPLIT: tl.constexpr,
    UPCAST: tl.constexpr,
):
    part = tl.program_id(0)
    row_block = tl.program_id(1)
    hk = tl.program_id(2) // DV_SPLIT
    half = tl.program_id(2) % DV_SPLIT  # which DV = 512 / DV_SPLIT output channels this program owns

    # This part's work list (scheduler.DecodeSchedule.parts): a run of sequences, ends possibly partial.
    begin_req = tl.load(parts_ptr + part * 5 + 0)
    begin_tile = tl.load(parts_ptr + part * 5 + 1)
    end_req = tl.load(parts_ptr + part * 5 + 2)
    end_tile = tl.load(parts_ptr + part * 5 + 3)
    begin_split = tl.load(parts_ptr + part * 5 + 4)

    offs_m = row_block * BLOCK_M + tl.arange(0, BLOCK_M)
    row_ok = offs_m < rows
    s_idx = offs_m // group  # query token of each row
    head = hk * group + offs_m % group  # query head of each row
    DV: tl.constexpr = D_MAIN // DV_SPLIT
    # Channels [own, own + DV) are this program's V (and its output); with DV_SPLIT 2 the other 256 NoPE
    # channels [other, other + DV) only enter S. S = Q K^T is a sum over channels, so splitting it as
    # own + other (+ RoPE) gives the same S in both programs while each K channel is loaded once.
    offs_own = half * DV + tl.arange(0, DV)
    offs_other = (1 - half) * DV + tl.arange(0, DV)
    offs_r = tl.arange(0, D_ROPE)
    offs_n = tl.arange(0, BLOCK_N)
    ln2: tl.constexpr = 0.6931471805599453

    for req in range(begin_req, end_req + 1):
        seqlen = tl.load(seqlens_ptr + req)
        n_tiles = tl.maximum(tl.cdiv(seqlen, BLOCK_N), 1)
        t_begin = tl.where(req == begin_req, begin_tile, 0)
        t_end = tl.where(req == end_req, end_tile, n_tiles)
        split = tl.where(req == begin_req, begin_split, 0)

        # q rows of this block, loaded once per sequence piece and kept for every tile.
        q_rows = q_ptr + tl.cast(req, tl.int64) * stride_qb + s_idx * stride_qs + head * stride_qh
        q_own = tl.load(q_rows[:, None] + offs_own[None, :], mask=row_ok[:, None], other=0.0)
        if DV_SPLIT == 2:
            q_other = tl.load(q_rows[:, None] + offs_other[None, :], mask=row_ok[:, None], other=0.0)
        if HAS_ROPE:
            q_rope = tl.load(q_rows[:, None] + D_MAIN + offs_r[None, :], mask=row_ok[:, None], other=0.0)
        if UPCAST:
            q_own = q_own.to(tl.float32)
            if DV_SPLIT == 2:
                q_other = q_other.to(tl.float32)
            if HAS_ROPE:
                q_rope = q_rope.to(tl.float32)
        # Last visible token (exclusive) of each row.
        if CAUSAL:
            limit = seqlen - s_q + s_idx + 1
        else:
            limit = tl.zeros([BLOCK_M], dtype=tl.int32) + seqlen

        m_i = tl.full([BLOCK_M], float("-inf"), dtype=tl.float32)
        l_i = tl.zeros([BLOCK_M], dtype=tl.float32)
        acc = tl.zeros([BLOCK_M, DV], dtype=tl.float32)
        # --8<-- [start:tile-loop]
        for t in range(t_begin, t_end):
            tok = t * BLOCK_N + offs_n
            tok_ok = tok < seqlen
            # Page lookup per token (so any page size works); entries past the sequence are never read.
            page = tl.load(
                block_table_ptr + tl.cast(req, tl.int64) * stride_bt + tok // page_size, mask=tok_ok, other=0
            )
            k_rows = (
                k_ptr + page.to(tl.int64) * stride_kblock + (tok % page_size) * stride_kpos + hk * stride_kh
            )
            k_own = tl.load(k_rows[:, None] + offs_own[None, :], mask=tok_ok[:, None], other=0.0)
            if UPCAST:
                k_own = k_own.to(tl.float32)
            s = tl.dot(q_own, tl.trans(k_own))
            if DV_SPLIT == 2:
                k_other = tl.load(k_rows[:, None] + offs_other[None, :], mask=tok_ok[:, None], other=0.0)
                if UPCAST:
                    k_other = k_other.to(tl.float32)
                s += tl.dot(q_other, tl.trans(k_other))
            if HAS_ROPE:
                k_rope = tl.load(k_rows[:, None] + D_MAIN + offs_r[None, :], mask=tok_ok[:, None], other=0.0)
                if UPCAST:
                    k_rope = k_rope.to(tl.float32)
                s += tl.dot(q_rope, tl.trans(k_rope))
            visible = (tok[None, :] < limit[:, None]) & tok_ok[None, :]
            s = tl.where(visible, s * scale_log2, float("-inf"))

            # Online softmax. A row that has seen nothing yet has m = -inf; use 0 as its shift so that
            # exp2(-inf - -inf) (NaN) never happens: its p are exp2(-inf) = 0 and alpha is exp2(-inf) = 0.
            m_new = tl.maximum(m_i, tl.max(s, 1))
            m_shift = tl.where(m_new == float("-inf"), 0.0, m_new)
            alpha = tl.exp2(m_i - m_shift)
            p = tl.exp2(s - m_shift[:, None])
            l_i = l_i * alpha + tl.sum(p, 1)
            # V is this program's NoPE channels of the K tile already loaded (shared memory/registers).
            acc = acc * alpha[:, None] + tl.dot(p.to(k_own.dtype), k_own)
            m_i = m_new
        # --8<-- [end:tile-loop]

        empty = l_i == 0.0  # no visible token in this piece (zero-length sequence, or causally masked)
        o = acc / tl.where(empty, 1.0, l_i)[:, None]
        lse = (m_i + tl.log2(tl.where(empty, 1.0, l_i))) * ln2
        lse_ok = row_ok & (half == 0)  # both halves know lse; one writes it

        split_base = tl.load(split_offsets_ptr + req)
        n_splits = tl.load(split_offsets_ptr + req + 1) - split_base
        if n_splits == 1:
            # The whole sequence was ours: final result, +inf lse for rows that saw nothing.
            o_ptrs = out_ptr + tl.cast(req, tl.int64) * stride_ob + s_idx * stride_os + head * stride_oh
            tl.store(
                o_ptrs[:, None] + offs_own[None, :], o.to(out_ptr.dtype.element_ty), mask=row_ok[:, None]
            )
            lse_ptrs = lse_ptr + (tl.cast(req, tl.int64) * h_q + head) * s_q + s_idx
            tl.store(lse_ptrs, tl.where(empty, float("inf"), lse), mask=lse_ok)
        else:
            # A partial: -inf lse marks "saw nothing" so the combine gives it weight exp(-inf) = 0.
            slot = ((split_base + split).to(tl.int64) * h_kv + hk) * rows + offs_m
            tl.store(o_acc_ptr + slot[:, None] * D_MAIN + offs_own[None, :], o, mask=row_ok[:, None])
            tl.store(lse_acc_ptr + slot, tl.where(empty, float("-inf"), lse), mask=lse_ok)


#: Config fields: tile rows, tile tokens, warps, pipeline stages, CTAs per SM the scheduler plans for, and
#: DV_SPLIT (1: one program owns all 512 output channels; 2: two programs own 256 each, both computing S).
CONFIG_FIELDS = ("BLOCK_M", "BLOCK_N", "num_warps", "num_stages", "ctas_per_sm", "DV_SPLIT")


def _cfg(*values) -> dict:
    return dict(zip(CONFIG_FIELDS, values))


def row_bucket(rows: int) -> int:
    """Query rows per KV head, bucketed as the configs are: 16, 32, 64, or 128 (anything larger)."""
    return 16 if rows <= 16 else 32 if rows <= 32 else 64 if rows <= 64 else 128


def candidate_configs(rows: int) -> list[dict]:
    """The configs :func:`attn_flashmla.interface` times on a schedule's first call (first = the default).

    Memory-bound (<= 16 rows: h_q 16 with h_kv 1): a 16-row tile, 64 tokens, two CTAs per SM to keep more
    loads in flight (measured best on H200 so far). Compute-bound (> 64 rows: h_q 128): 64 (or 128) rows
    against a 64-token tile, with the 512 output channels either in one program of 8 warps (two warpgroups
    split the channels, as FlashMLA's two warpgroups do) or split over two programs of 256 channels each
    (half the accumulator per program, S computed twice). Configs that do not fit shared memory or
    registers fail to compile and are skipped.
    """
    bucket = row_bucket(rows)
    if bucket == 16:
        return [
            _cfg(16, 64, 4, 2, 2, 1),
            _cfg(16, 64, 8, 2, 1, 1),
            _cfg(16, 32, 4, 3, 2, 1),
            _cfg(16, 64, 4, 2, 2, 2),
        ]
    if bucket in (32, 64):
        return [
            _cfg(bucket, 64, 8, 2, 1, 1),
            _cfg(bucket, 64, 4, 2, 2, 1),
            _cfg(bucket, 32, 4, 3, 1, 1),
            _cfg(bucket, 64, 4, 2, 1, 2),
        ]
    return [
        _cfg(64, 64, 8, 2, 1, 1),
        _cfg(64, 64, 4, 2, 1, 2),
        _cfg(64, 64, 8, 2, 1, 2),
        _cfg(128, 64, 8, 1, 1, 2),
        _cfg(128, 32, 8, 2, 1, 2),
        _cfg(64, 32, 8, 3, 1, 1),
    ]


def config_override() -> dict | None:
    """``ATTN_FLASHMLA_TRITON_CONFIG=BLOCK_M,BLOCK_N,num_warps,num_stages,ctas_per_sm[,DV_SPLIT]`` (BLOCK_M 0
    = the row bucket's), used as is instead of tuning."""
    override = os.environ.get("ATTN_FLASHMLA_TRITON_CONFIG", "").strip()
    if not override:
        return None
    values = [int(x) for x in override.split(",")]
    if len(values) not in (5, 6):
        raise ValueError(
            f"ATTN_FLASHMLA_TRITON_CONFIG needs 5 or 6 integers ({CONFIG_FIELDS}), got {override!r}"
        )
    return _cfg(*values, *([1] if len(values) == 5 else []))


def default_config(rows: int, device: torch.device) -> dict:
    """The untuned config for ``rows = s_q * h_q / h_kv`` query rows per KV head.

    BLOCK_M: the smallest of 16/32/64 that holds the rows (16 is tl.dot's minimum), 64 past that (a row
    block of 64 against a 64-token tile, as FlashMLA's kernel). On a GPU the first of
    :func:`candidate_configs` (or ``ATTN_FLASHMLA_TRITON_CONFIG``); the interpreter uses 16-token tiles so
    that tiny tests cross tile and split boundaries.
    """
    block_m = min(row_bucket(rows), 64)
    if device.type != "cuda" or interpreting():
        return _cfg(block_m, 16, 4, 1, 1, 1)
    override = config_override()
    if override is not None:
        return {**override, "BLOCK_M": override["BLOCK_M"] or block_m}
    return candidate_configs(rows)[0]


def autotune_enabled(device: torch.device) -> bool:
    """Tune on a schedule's first call: on CUDA, unless ``ATTN_FLASHMLA_AUTOTUNE=0`` or a config is forced."""
    if device.type != "cuda" or interpreting() or config_override() is not None:
        return False
    return os.environ.get("ATTN_FLASHMLA_AUTOTUNE", "1") not in ("", "0")


#: Tuned configs by (device, dtype, d, h_kv, row bucket, causal, batch bucket, mean-length bucket).
TUNED: dict = {}
#: What tuning measured: key -> list of (config, ms or error text).
TUNE_LOG: dict = {}


def tune_key(q: torch.Tensor, k_cache: torch.Tensor, total_tokens: int, causal: bool) -> tuple:
    b, s_q, h_q, d = q.shape
    h_kv = k_cache.shape[2]
    mean = max(total_tokens // max(b, 1), 1)
    return (
        torch.cuda.get_device_name(q.device), q.dtype, d, h_kv, row_bucket(s_q * h_q // h_kv), bool(causal),
        triton.next_power_of_2(b), triton.next_power_of_2(mean),
    )  # fmt: skip


def tune_config(key: tuple, rows: int, run_with) -> dict:
    """Time every candidate config with ``run_with(config)`` (a callable to time) and keep the fastest.

    ``run_with(config)`` makes the config's schedule and returns the call to time. Configs that fail (out of
    shared memory or registers) are recorded in :data:`TUNE_LOG` and skipped.
    """
    if key in TUNED:
        return TUNED[key]
    log = TUNE_LOG.setdefault(key, [])
    best = None
    for config in candidate_configs(rows):
        try:
            fn = run_with(config)
            fn()  # compiles
            ms = triton.testing.do_bench(fn, warmup=5, rep=20, return_mode="median")
        except Exception as e:
            log.append((config, f"{type(e).__name__}: {str(e)[:200]}"))
            continue
        log.append((config, ms))
        if best is None or ms < best[0]:
            best = (ms, config)
    if best is None:
        raise RuntimeError(f"attn_flashmla: no Triton config ran for {key}: {log}")
    TUNED[key] = best[1]
    return best[1]


def dense_decode_triton(
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
    config: dict,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Launch the split kernel, then the combine; returns ``out`` (b, s_q, h_q, 512), ``lse`` (b, h_q, s_q)."""
    from attn_flashmla.combine import combine_splits

    b, s_q, h_q, d = q.shape
    h_kv = k_cache.shape[2]
    group = h_q // h_kv
    rows = s_q * group
    # The interpreter casts fp32 -> bf16 by truncation, not rounding: there the kernel writes fp32 and
    # torch rounds afterwards, so CPU tests see the rounding a GPU does.
    out_dtype = torch.float32 if interpreting() else q.dtype
    out = torch.empty(b, s_q, h_q, D_MAIN, dtype=out_dtype, device=q.device)
    lse = torch.empty(b, h_q, s_q, dtype=torch.float32, device=q.device)
    # Scratch for split sequences only (sequences in one part write out/lse directly).
    n_scratch = total_splits if max_splits > 1 else 0
    o_acc = torch.empty(n_scratch, h_kv, rows, D_MAIN, dtype=torch.float32, device=q.device)
    lse_acc = torch.empty(n_scratch, h_kv, rows, dtype=torch.float32, device=q.device)
    if q.stride(-1) != 1:
        q = q.contiguous()
    dv_split = config.get("DV_SPLIT", 1)
    grid = (parts.shape[0], triton.cdiv(rows, config["BLOCK_M"]), h_kv * dv_split)
    _dense_decode_kernel[grid](
        q,
        k_cache,
        block_table,
        cache_seqlens,
        parts,
        split_offsets,
        out,
        lse,
        o_acc,
        lse_acc,
        q.stride(0),
        q.stride(1),
        q.stride(2),
        k_cache.stride(0),
        k_cache.stride(1),
        k_cache.stride(2),
        block_table.stride(0),
        out.stride(0),
        out.stride(1),
        out.stride(2),
        s_q,
        h_q,
        h_kv,
        group,
        rows,
        k_cache.shape[1],
        softmax_scale * LOG2E,
        CAUSAL=causal and s_q > 1,
        HAS_ROPE=d > D_MAIN,
        BLOCK_M=config["BLOCK_M"],
        BLOCK_N=config["BLOCK_N"],
        D_MAIN=D_MAIN,
        D_ROPE=D_ROPE,
        DV_SPLIT=dv_split,
        UPCAST=interpreting(),
        num_warps=config["num_warps"],
        num_stages=config["num_stages"],
    )
    if max_splits > 1:
        combine_splits(out, lse, o_acc, lse_acc, split_offsets, max_splits, group)
    return out.to(q.dtype), lse
