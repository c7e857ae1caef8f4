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

Two ways to load a K tile (config field ``TMA``):

* gather (``TMA`` 0): a page lookup per token and masked pointer loads, so any page size and
  any cache strides work. The loads go through registers, which Hopper cannot overlap with the math the
  way it overlaps TMA copies.
* tensor descriptors (``TMA`` 1, the default since the H200 check of 2026-11-22, where every TMA candidate
  passed against the reference and the same config ran a third faster than with gather loads: h_q 128
  206 -> 273 TFLOP/s, h_q 16 2253 -> 2916 GB/s at s_k 8k): when the page size is a multiple
  of ``BLOCK_N`` a tile never crosses a page, so one block-table entry per tile gives its start row in the
  cache viewed as a 2-D (num_blocks * page_size, h_kv * d) matrix, and the tile is one TMA copy of
  (BLOCK_N, DV) (and (BLOCK_N, 64) for RoPE) at column ``hk * d + channel``. Only *full* tiles (every
  token < seqlen) are copied so: a copy cannot be masked per token, and the NaN past a sequence's end would
  reach ``P @ V`` (``0 * NaN = NaN`` inside the dot). A sequence's last, partial tile takes the gather
  path. A cache whose strides do not allow the 2-D view, or a page size that is not a multiple of
  ``BLOCK_N``, or a GPU before sm_90, runs the gather path whatever the config says
  (:func:`tma_unsupported`). The descriptors are built on the host
  (``triton.tools.tensor_descriptor.TensorDescriptor``), so no device-side allocator is needed.
"""

from __future__ import annotations

import functools
import importlib.util
import math
import os

import torch
import triton
import triton.language as tl

from attn_flashmla._runtime import interpreting

LOG2E = math.log2(math.e)
D_MAIN = 512  # NoPE channels: the part of K that is also V
D_ROPE = 64  # RoPE channels (head dim 576 only)


# --8<-- [start:tile-loop]
@triton.jit
def _scores_gather(
    q_own, q_other, q_rope, k_ptr, block_table_ptr, req, tok, tok_ok, hk, stride_bt, stride_kblock, stride_kpos,
    stride_kh, page_size, offs_own, offs_other, offs_r,
    D_MAIN: tl.constexpr, HAS_ROPE: tl.constexpr, DV_SPLIT: tl.constexpr, UPCAST: tl.constexpr,
):  # fmt: skip
    """S = Q K^T for a K tile loaded by pointers; returns S and this program's channels of K (its V)."""
    # Page lookup per token (so any page size works); entries past the sequence are never read.
    page = tl.load(
        block_table_ptr + tl.cast(req, tl.int64) * stride_bt + tok // page_size, mask=tok_ok, other=0
    )
    k_rows = k_ptr + page.to(tl.int64) * stride_kblock + (tok % page_size) * stride_kpos + hk * stride_kh
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
    return s, k_own


@triton.jit
def _softmax_update(acc, m_i, l_i, s, v, tok, tok_ok, limit, scale_log2):
    """Mask one tile's scores and fold it into the running (acc, m_i, l_i); ``v`` is its V."""
    visible = (tok[None, :] < limit[:, None]) & tok_ok[None, :]
    # V is this program's NoPE channels of the K tile already loaded (shared memory/registers).
    return online_softmax_step(acc, m_i, l_i, tl.where(visible, s * scale_log2, float("-inf")), v)


@triton.jit
def online_softmax_step(acc, m_i, l_i, s, v):
    """Fold one tile of scores ``s`` (base-2 units, masked entries -inf) and its ``v`` into the running
    (acc, m_i, l_i); dense and sparse decoding share it."""
    # A row that has seen nothing yet has m = -inf; use 0 as its shift so that exp2(-inf - -inf) (NaN)
    # never happens: its p are exp2(-inf) = 0 and alpha is exp2(-inf) = 0.
    m_new = tl.maximum(m_i, tl.max(s, 1))
    m_shift = tl.where(m_new == float("-inf"), 0.0, m_new)
    alpha = tl.exp2(m_i - m_shift)
    p = tl.exp2(s - m_shift[:, None])
    l_i = l_i * alpha + tl.sum(p, 1)
    acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v)
    return acc, m_new, l_i


# --8<-- [end:tile-loop]


@triton.jit
def _scores_tma(
    q_own, q_other, q_rope, k_desc, kr_desc, block_table_ptr, req, t, hk, stride_bt, stride_kh, page_size, half,
    BLOCK_N: tl.constexpr, DV: tl.constexpr, D_MAIN: tl.constexpr, HAS_ROPE: tl.constexpr,
    DV_SPLIT: tl.constexpr, UPCAST: tl.constexpr,
):  # fmt: skip
    """:func:`_scores_gather` for a *full* tile by TMA: the caller guarantees every token is < seqlen, as
    nothing here masks (NaN past the sequence's end would otherwise be copied)."""
    first = t * BLOCK_N
    # page_size % BLOCK_N == 0 (checked on the host): the tile lies in one page, one table entry says where.
    page = tl.load(block_table_ptr + tl.cast(req, tl.int64) * stride_bt + first // page_size)
    row = page * page_size + first % page_size  # row of the (num_blocks * page_size, h_kv * d) view
    col = hk * stride_kh
    k_own = k_desc.load([row, col + half * DV])
    if UPCAST:
        k_own = k_own.to(tl.float32)
    s = tl.dot(q_own, tl.trans(k_own))
    if DV_SPLIT == 2:
        k_other = k_desc.load([row, col + (1 - half) * DV])
        if UPCAST:
            k_other = k_other.to(tl.float32)
        s += tl.dot(q_other, tl.trans(k_other))
    if HAS_ROPE:
        k_rope = kr_desc.load([row, col + D_MAIN])
        if UPCAST:
            k_rope = k_rope.to(tl.float32)
        s += tl.dot(q_rope, tl.trans(k_rope))
    return s, k_own


@triton.jit
def _dense_decode_kernel(
    q_ptr,
    k_ptr,
    k_desc,  # TensorDescriptor of the NoPE part, block (BLOCK_N, DV); None unless TMA
    kr_desc,  # the same view, block (BLOCK_N, D_ROPE); None unless TMA and HAS_ROPE
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
    TMA: tl.constexpr,
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
        q_other = q_own  # placeholders: the helpers take all three, and read these only when they exist
        q_rope = q_own
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
        t_tail = t_begin
        if TMA:
            # Tiles wholly inside the sequence by TMA (no NaN can be copied); the rest, at most the last
            # partial tile (or the one empty tile of a zero-length sequence), by the masked gather below.
            t_tail = tl.minimum(tl.maximum(seqlen // BLOCK_N, t_begin), t_end)
            for t in range(t_begin, t_tail):
                tok = t * BLOCK_N + offs_n
                s, v = _scores_tma(
                    q_own, q_other, q_rope, k_desc, kr_desc, block_table_ptr, req, t, hk, stride_bt, stride_kh,
                    page_size, half, BLOCK_N, DV, D_MAIN, HAS_ROPE, DV_SPLIT, UPCAST,
                )  # fmt: skip
                acc, m_i, l_i = _softmax_update(acc, m_i, l_i, s, v, tok, tok < seqlen, limit, scale_log2)
        for t in range(t_tail, t_end):
            tok = t * BLOCK_N + offs_n
            tok_ok = tok < seqlen
            s, v = _scores_gather(
                q_own, q_other, q_rope, k_ptr, block_table_ptr, req, tok, tok_ok, hk, stride_bt, stride_kblock,
                stride_kpos, stride_kh, page_size, offs_own, offs_other, offs_r, D_MAIN, HAS_ROPE, DV_SPLIT,
                UPCAST,
            )  # fmt: skip
            acc, m_i, l_i = _softmax_update(acc, m_i, l_i, s, v, tok, tok_ok, limit, scale_log2)

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


#: Config fields: tile rows, tile tokens, warps, pipeline stages, CTAs per SM the scheduler plans for,
#: DV_SPLIT (1: one program owns all 512 output channels; 2: two programs own 256 each, both computing S),
#: TMA (1: full K tiles by tensor descriptor where :func:`tma_unsupported` allows; 0: gather only) and
#: GLUON (1: the Gluon Hopper kernel :mod:`attn_flashmla.decode_fwd_sm90_gluon` where it can run, this
#: kernel with the other fields where it cannot).
CONFIG_FIELDS = ("BLOCK_M", "BLOCK_N", "num_warps", "num_stages", "ctas_per_sm", "DV_SPLIT", "TMA", "GLUON")
#: Values of the trailing fields a config may leave out (configs written before the field existed).
_FIELD_DEFAULTS = {"DV_SPLIT": 1, "TMA": 0, "GLUON": 0}
#: Switch (default on): the candidates are the TMA versions of the configs (and, under the interpreter,
#: the default config is a TMA one); ``ATTN_FLASHMLA_TRITON_TMA=0`` gives the gather-only kernel.
TMA_ENV = "ATTN_FLASHMLA_TRITON_TMA"
#: Switch (default on): from 33 query rows per KV head the first candidate is the Gluon kernel's;
#: ``ATTN_FLASHMLA_TRITON_GLUON=0`` leaves the tile-level kernel alone (attn-bench's ``triton_tiles``).
GLUON_ENV = "ATTN_FLASHMLA_TRITON_GLUON"


def _cfg(*values) -> dict:
    """A config from its field values in :data:`CONFIG_FIELDS` order; DV_SPLIT and TMA may be left out."""
    n_required = len(CONFIG_FIELDS) - len(_FIELD_DEFAULTS)
    if not n_required <= len(values) <= len(CONFIG_FIELDS):
        raise ValueError(
            f"a config has {n_required} to {len(CONFIG_FIELDS)} values {CONFIG_FIELDS}, got {values}"
        )
    return {
        **dict(zip(CONFIG_FIELDS, values)),
        **{f: _FIELD_DEFAULTS[f] for f in CONFIG_FIELDS[len(values) :]},
    }


def tma_switch() -> bool:
    """Whether the candidates load full K tiles by TMA: yes unless ``ATTN_FLASHMLA_TRITON_TMA=0``."""
    return os.environ.get(TMA_ENV, "1").strip() not in ("", "0")


def gluon_switch() -> bool:
    """Whether the compute-bound candidates start with the Gluon kernel: yes unless
    ``ATTN_FLASHMLA_TRITON_GLUON=0`` (or the TMA switch is off: the Gluon kernel is all TMA)."""
    return tma_switch() and os.environ.get(GLUON_ENV, "1").strip() not in ("", "0")


#: The Gluon kernel's config: its tile (64 rows, 64 tokens, one CTA per SM, all 512 output channels) is
#: what the scheduler plans for; the other fields are the tile-level kernel's where Gluon cannot run.
GLUON_CONFIG = _cfg(64, 64, 8, 2, 1, 1, 1, 1)


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
    registers fail to compile and are skipped. By default each config is its ``TMA`` 1 version, followed
    (16 rows) by two deeper-pipelined TMA-only configs; ``ATTN_FLASHMLA_TRITON_TMA=0`` gives the gather list.
    From 33 rows the list starts with :data:`GLUON_CONFIG` (the Gluon Hopper kernel, the default where the
    tuner is off) unless ``ATTN_FLASHMLA_TRITON_GLUON=0``.
    """
    bucket = row_bucket(rows)
    if bucket == 16:
        return _with_tma(
            [
                _cfg(16, 64, 4, 2, 2, 1),
                _cfg(16, 64, 8, 2, 1, 1),
                _cfg(16, 32, 4, 3, 2, 1),
                _cfg(16, 64, 4, 2, 2, 2),
            ],
            # Deeper TMA-only pipelines. Compiled for sm_90 (Triton 3.6), 16-row tiles (mma.sync, not
            # wgmma) get a second K buffer only from 5 stages, the block-table load taking one: 93 KB
            # (32 tokens, two CTAs per SM fit) and 168 KB (64 tokens).
            extra=[_cfg(16, 32, 4, 5, 2, 1, 1), _cfg(16, 64, 4, 5, 1, 1, 1)],
        )
    if bucket == 32:
        return _with_tma(
            [
                _cfg(bucket, 64, 8, 2, 1, 1),
                _cfg(bucket, 64, 4, 2, 2, 1),
                _cfg(bucket, 32, 4, 3, 1, 1),
                _cfg(bucket, 64, 4, 2, 1, 2),
            ]
        )
    gluon = [GLUON_CONFIG] if gluon_switch() else []
    if bucket == 64:
        return gluon + _with_tma(
            [
                _cfg(64, 64, 8, 2, 1, 1),
                _cfg(64, 64, 4, 2, 2, 1),
                _cfg(64, 32, 4, 3, 1, 1),
                _cfg(64, 64, 4, 2, 1, 2),
            ]
        )
    return gluon + _with_tma(
        [
            _cfg(64, 64, 8, 2, 1, 1),
            _cfg(64, 64, 4, 2, 1, 2),
            _cfg(64, 64, 8, 2, 1, 2),
            _cfg(128, 64, 8, 1, 1, 2),
            _cfg(128, 32, 8, 2, 1, 2),
            _cfg(64, 32, 8, 3, 1, 1),
        ]
    )


def _with_tma(configs: list[dict], extra: list[dict] = ()) -> list[dict]:
    # TMA on (the default): the TMA version of every config, same order, then the TMA-only extras. The
    # gather versions are not timed as well: on the H200 each measured a third slower than its TMA twin,
    # and where TMA cannot run (tma_unsupported) a TMA config runs the gather path anyway.
    if not tma_switch():
        return configs
    return [{**c, "TMA": 1} for c in configs] + list(extra)


def config_override() -> dict | None:
    """``ATTN_FLASHMLA_TRITON_CONFIG=BLOCK_M,BLOCK_N,num_warps,num_stages,ctas_per_sm[,DV_SPLIT[,TMA[,GLUON]]]``
    (BLOCK_M 0 = the row bucket's), used as is instead of tuning."""
    override = os.environ.get("ATTN_FLASHMLA_TRITON_CONFIG", "").strip()
    if not override:
        return None
    try:
        values = [int(x) for x in override.split(",")]
    except ValueError:
        values = []
    if not 5 <= len(values) <= len(CONFIG_FIELDS):
        raise ValueError(
            f"ATTN_FLASHMLA_TRITON_CONFIG needs 5 to {len(CONFIG_FIELDS)} integers ({CONFIG_FIELDS}), "
            f"got {override!r}"
        )
    config = _cfg(*values)
    if config["DV_SPLIT"] not in (1, 2) or config["TMA"] not in (0, 1) or config["GLUON"] not in (0, 1):
        raise ValueError(
            f"ATTN_FLASHMLA_TRITON_CONFIG: DV_SPLIT must be 1 or 2, TMA and GLUON 0 or 1, got {override!r}"
        )
    return config


def default_config(rows: int, device: torch.device) -> dict:
    """The untuned config for ``rows = s_q * h_q / h_kv`` query rows per KV head.

    BLOCK_M: the smallest of 16/32/64 that holds the rows (16 is tl.dot's minimum), 64 past that (a row
    block of 64 against a 64-token tile, as FlashMLA's kernel). On a GPU the first of
    :func:`candidate_configs` (or ``ATTN_FLASHMLA_TRITON_CONFIG``); the interpreter uses 16-token tiles so
    that tiny tests cross tile and split boundaries (with TMA where ``ATTN_FLASHMLA_TRITON_TMA=1``).
    """
    block_m = min(row_bucket(rows), 64)
    if device.type != "cuda" or interpreting():
        # Nothing is tuned here, so the switch picks the TMA path directly: the CPU suites can run on it.
        return _cfg(block_m, 16, 4, 1, 1, 1, int(tma_switch()))
    override = config_override()
    if override is not None:
        return {**override, "BLOCK_M": override["BLOCK_M"] or block_m}
    return candidate_configs(rows)[0]


def autotune_enabled(device: torch.device) -> bool:
    """Tune on a schedule's first call: on CUDA, unless ``ATTN_FLASHMLA_AUTOTUNE=0`` or a config is forced."""
    if device.type != "cuda" or interpreting() or config_override() is not None:
        return False
    return os.environ.get("ATTN_FLASHMLA_AUTOTUNE", "1") not in ("", "0")


#: Tuned configs by (device, dtype, d, h_kv, row bucket, causal, batch bucket, mean-length bucket, and
#: whether the TMA candidates were in the running).
TUNED: dict = {}
#: What tuning measured: key -> list of (config, ms or error text).
TUNE_LOG: dict = {}


def tune_key(q: torch.Tensor, k_cache: torch.Tensor, total_tokens: int, causal: bool) -> tuple:
    b, s_q, h_q, d = q.shape
    h_kv = k_cache.shape[2]
    mean = max(total_tokens // max(b, 1), 1)
    return (
        torch.cuda.get_device_name(q.device), q.dtype, d, h_kv, row_bucket(s_q * h_q // h_kv), bool(causal),
        triton.next_power_of_2(b), triton.next_power_of_2(mean), tma_switch(),
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


def _cache_rows_view(k_cache: torch.Tensor) -> tuple[int, int] | None:
    """(rows, row stride) of the cache seen as a (num_blocks * page_size, h_kv * d) matrix, if it can be."""
    num_blocks, page, h_kv, d = k_cache.shape
    s_block, s_pos, s_head, s_chan = k_cache.stride()
    # Extents of 1 may have any stride (torch reports what the view it came from had): ignore those.
    row_stride = s_pos if page > 1 else s_block
    if s_chan != 1 or (h_kv > 1 and s_head != d) or (num_blocks > 1 and s_block != page * row_stride):
        return None
    if row_stride < h_kv * d:  # rows would overlap: not a matrix TMA can read
        return None
    return num_blocks * page, row_stride


def cache_matrix(k_cache: torch.Tensor) -> tuple[list[int], list[int]]:
    """Shape and strides of the cache as the 2-D (num_blocks * page_size, h_kv * d) matrix that TMA
    descriptors tile (the caller has checked that ``_cache_rows_view`` allows it)."""
    n_rows, row_stride = _cache_rows_view(k_cache)
    return [n_rows, k_cache.shape[2] * k_cache.shape[3]], [row_stride, 1]


@functools.cache
def _host_descriptors_available() -> bool:
    return importlib.util.find_spec("triton.tools.tensor_descriptor") is not None


def tma_unsupported(k_cache: torch.Tensor, block_n: int) -> str | None:
    """Why full K tiles of ``block_n`` tokens cannot be TMA copies for this cache, or None when they can."""
    if not _host_descriptors_available():  # the package allows Triton 3.2
        return f"host-side tensor descriptors need Triton >= 3.4 (this is {triton.__version__})"
    page = k_cache.shape[1]
    if page % block_n:
        return f"page size {page} is not a multiple of BLOCK_N {block_n}: a tile would cross pages"
    view = _cache_rows_view(k_cache)
    if view is None:
        return f"k_cache strides {tuple(k_cache.stride())} do not allow a (num_blocks * page_size, h_kv * d) view"
    n_rows, row_stride = view
    if n_rows >= 2**31 or k_cache.shape[2] * k_cache.shape[3] >= 2**31:
        return "the cache has more rows or columns than a descriptor's int32 coordinates reach"
    if (row_stride * k_cache.element_size()) % 16 or k_cache.data_ptr() % 16:
        return "TMA needs a 16-byte-aligned cache and row stride"
    if k_cache.device.type == "cuda" and not interpreting():
        from attn_reference.capability import cuda_capability

        cap = cuda_capability(k_cache.device)
        if cap is None or cap < (9, 0):
            return f"TMA needs sm_90 or newer, this GPU has capability {cap}"
    return None


def _k_descriptors(k_cache: torch.Tensor, block_n: int, dv: int, has_rope: bool):
    """Host-side descriptors over the 2-D view: NoPE tiles (block_n, dv) and RoPE tiles (block_n, 64)."""
    # Imported here: TensorDescriptor is Triton >= 3.4, and only the TMA configs need it.
    from triton.tools.tensor_descriptor import TensorDescriptor

    shape, strides = cache_matrix(k_cache)
    k_desc = TensorDescriptor(k_cache, shape, strides, [block_n, dv])
    kr_desc = TensorDescriptor(k_cache, shape, strides, [block_n, D_ROPE]) if has_rope else None
    return k_desc, kr_desc


def uses_tma(k_cache: torch.Tensor, config: dict) -> bool:
    """Whether ``config`` runs the TMA kernel on this cache (it asks for TMA and the cache allows it)."""
    return bool(config.get("TMA", 0)) and tma_unsupported(k_cache, config["BLOCK_N"]) is None


def uses_gluon(q: torch.Tensor, k_cache: torch.Tensor, config: dict, softmax_scale: float = 1.0) -> bool:
    """Whether ``config`` runs the Gluon Hopper kernel on this call (it asks for it and the call allows it:
    the kernel takes row maxima of unscaled scores, so it needs ``softmax_scale > 0``)."""
    if not config.get("GLUON", 0) or not softmax_scale > 0:
        return False
    from attn_flashmla.decode_fwd_sm90_gluon import BLOCK_N, ROWS, gluon_unsupported

    if (config["BLOCK_M"], config["BLOCK_N"], config.get("DV_SPLIT", 1)) != (ROWS, BLOCK_N, 1):
        raise ValueError(
            f"a GLUON config needs BLOCK_M {ROWS}, BLOCK_N {BLOCK_N} and DV_SPLIT 1 (its schedule's tile), "
            f"got {config}"
        )
    return gluon_unsupported(q, k_cache) is None


def decode_buffers(q: torch.Tensor, h_kv: int, total_splits: int, max_splits: int, out_dtype: torch.dtype):
    """``out`` (b, s_q, h_q, 512), ``lse`` (b, h_q, s_q) and the split partials' scratch ``o_acc`` (splits,
    h_kv, rows, 512), ``lse_acc`` (splits, h_kv, rows): empty when no sequence is split, since sequences in one
    part write ``out`` and ``lse`` directly."""
    b, s_q, h_q, _ = q.shape
    rows = s_q * h_q // h_kv
    out = torch.empty(b, s_q, h_q, D_MAIN, dtype=out_dtype, device=q.device)
    lse = torch.empty(b, h_q, s_q, dtype=torch.float32, device=q.device)
    n_scratch = total_splits if max_splits > 1 else 0
    o_acc = torch.empty(n_scratch, h_kv, rows, D_MAIN, dtype=torch.float32, device=q.device)
    lse_acc = torch.empty(n_scratch, h_kv, rows, dtype=torch.float32, device=q.device)
    return out, lse, o_acc, lse_acc


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

    if uses_gluon(q, k_cache, config, softmax_scale):
        from attn_flashmla.decode_fwd_sm90_gluon import dense_decode_gluon

        return dense_decode_gluon(
            q, k_cache, block_table, cache_seqlens, parts, split_offsets, total_splits, max_splits, softmax_scale,
            causal,
        )  # fmt: skip
    _, s_q, h_q, d = q.shape
    h_kv = k_cache.shape[2]
    group = h_q // h_kv
    rows = s_q * group
    # The interpreter casts fp32 -> bf16 by truncation, not rounding: there the kernel writes fp32 and
    # torch rounds afterwards, so CPU tests see the rounding a GPU does.
    out_dtype = torch.float32 if interpreting() else q.dtype
    out, lse, o_acc, lse_acc = decode_buffers(q, h_kv, total_splits, max_splits, out_dtype)
    if q.stride(-1) != 1:
        q = q.contiguous()
    dv_split = config.get("DV_SPLIT", 1)
    tma = uses_tma(k_cache, config)
    k_desc, kr_desc = (
        _k_descriptors(k_cache, config["BLOCK_N"], D_MAIN // dv_split, d > D_MAIN) if tma else (None, None)
    )
    grid = (parts.shape[0], triton.cdiv(rows, config["BLOCK_M"]), h_kv * dv_split)
    _dense_decode_kernel[grid](
        q,
        k_cache,
        k_desc,
        kr_desc,
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
        TMA=tma,
        num_warps=config["num_warps"],
        num_stages=config["num_stages"],
    )
    if max_splits > 1:
        combine_splits(out, lse, o_acc, lse_acc, split_offsets, max_splits, group)
    return out.to(q.dtype), lse
