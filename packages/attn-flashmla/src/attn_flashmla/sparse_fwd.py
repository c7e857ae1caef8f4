"""Sparse MLA in Triton: decoding against the "FP8 with scale" cache, and prefill over a bf16 ``kv``.

In DeepSeek V3.2's sparse attention an indexer picks, for every query token, ``topk`` cached tokens
(2048 in the model); attention then runs over that list only. Both FlashMLA entry points are the same
computation, "one query token's heads attend to a list of token addresses", and share one kernel here:

* decoding (``flash_mla_with_kvcache`` with ``indices``): addresses are ``block * page_size + offset`` in
  the paged FP8 cache, ``-1`` is invalid, ``topk_length[b]`` cuts each batch row's list, an optional
  second cache (``extra_k_cache``) joins the same softmax, and ``attn_sink`` adds ``exp(sink[h])`` to
  each head's denominator. ``lse`` is (b, h_q, s_q).
* prefill (``flash_mla_sparse_fwd``): addresses are rows of ``kv`` (bf16), anything outside ``[0, s_kv)`` is
  invalid, ``topk_length[s]`` per query token; returns ``max_logits`` too; ``lse`` is (s_q, h_q).

One program = one query token x ``BLOCK_H`` of its heads. It walks the list ``BLOCK_N`` addresses at a
time: gathers those tokens (rows of 656 bytes: no two need be adjacent, so there is no tile to TMA-copy,
which is why FlashMLA's sparse kernels gather too), dequantizes them to bf16 in registers, and runs the
same online softmax as dense decoding (``S = Q K^T``, ``O += P V`` with V the first 512 channels).

Dequantization. V3.2 layout (head dim 576, 656 bytes a token): 512 e4m3 bytes, 4 fp32 scales (one per 128
channels), 64 bf16 RoPE channels. MODEL1 layout (head dim 512): per page block, each token's 448 e4m3 +
64 bf16 channels (576 bytes), then after all tokens of the block 8 bytes per token of e8m0 scales (one per
64 channels; the byte is the exponent + 127). Scales are powers of two, so ``fp8 * scale`` is exact in
bf16, the dtype the tensor cores then multiply.

Invalid entries. An invalid address is never dereferenced: the load is masked (``other=0``) and the
score replaced by ``-inf`` with ``tl.where``; tokens no index points at may hold NaN.

Split lists (decoding; ``ATTN_FLASHMLA_SPARSE_SPLITS=auto|0|N``, default auto). At b 32, s_q 1 the
grid is 32-64 programs, so most SMs idle while each walks all 2048 entries. With ``N`` splits the grid
gains a third axis: split ``i`` walks the ``i``-th of ``N`` contiguous, tile-aligned chunks of the token's
main list and the ``i``-th chunk of its extra list (chunks cut from the row's own lengths), and writes a
partial (normalised ``o``, ``lse`` or ``-inf`` when it saw no valid entry) to fp32 scratch;
:func:`attn_flashmla.combine.combine_splits` merges them and applies the sink, as for dense decoding. The
policy is :func:`num_decode_splits` (measured on the H200: see :func:`decode_splits`).
"""

from __future__ import annotations

import math
import os

import torch
import triton
import triton.language as tl

from attn_flashmla._runtime import interpreting, num_sms
from attn_flashmla.combine import combine_splits, sink_denominator
from attn_flashmla.decode_fwd import online_softmax_step
from attn_reference.errors import AttentionArgumentError

LOG2E = math.log2(math.e)

#: Token formats the kernel gathers.
FMT_BF16 = 0  # rows of a bf16 tensor (sparse prefill)
FMT_FP8_V32 = 1  # 656-byte tokens: 512 e4m3 + 4 fp32 scales + 64 bf16
FMT_FP8_MODEL1 = 2  # per-block layout: 448 e4m3 + 64 bf16 per token, e8m0 scales after the block


@triton.jit
def _gather_tokens(
    kv_ptr,
    idx,
    ok,
    page_size,
    stride_block,
    stride_token,
    FMT: tl.constexpr,
    HAS_ROPE: tl.constexpr,
    BLOCK_N: tl.constexpr,
):
    """Load tokens ``idx`` (BLOCK_N,) where ``ok``: returns (main (BLOCK_N, 512) bf16, rope (BLOCK_N, 64))."""
    offs_d = tl.arange(0, 512)
    offs_r = tl.arange(0, 64)
    idx = tl.where(ok, idx, 0).to(tl.int64)
    if FMT == 0:
        rows = kv_ptr + idx * stride_token
        main = tl.load(rows[:, None] + offs_d[None, :], mask=ok[:, None], other=0.0)
        rope = tl.load(rows[:, None] + 512 + offs_r[None, :], mask=ok[:, None] & HAS_ROPE, other=0.0)
    elif FMT == 1:
        # Byte address of each token; page blocks may be strided, tokens in a block are 656 bytes apart.
        rows = kv_ptr + (idx // page_size) * stride_block + (idx % page_size) * 656
        raw = tl.load(rows[:, None] + offs_d[None, :], mask=ok[:, None], other=0)
        fp8 = raw.to(tl.float8e4nv, bitcast=True).to(tl.float32)
        scale_ptrs = (rows + 512).to(tl.pointer_type(tl.float32))
        scale = tl.load(scale_ptrs[:, None] + offs_d[None, :] // 128, mask=ok[:, None], other=0.0)
        main = (fp8 * scale).to(tl.bfloat16)
        rope_ptrs = (rows + 528).to(tl.pointer_type(tl.bfloat16))
        rope = tl.load(rope_ptrs[:, None] + offs_r[None, :], mask=ok[:, None], other=0.0)
    else:
        # MODEL1: 448 quantized channels then 64 bf16 ones form the 512 channels of K (and V).
        block = kv_ptr + (idx // page_size) * stride_block
        off = idx % page_size
        rows = block + off * 576
        is_fp8 = offs_d < 448
        raw = tl.load(rows[:, None] + offs_d[None, :], mask=ok[:, None] & is_fp8[None, :], other=0)
        exponent = tl.load(
            (block + page_size * 576 + off * 8)[:, None] + offs_d[None, :] // 64,
            mask=ok[:, None] & is_fp8[None, :],
            other=127,
        )
        # e8m0: 2 ** (byte - 127); 255 is NaN.
        scale = tl.where(exponent == 255, float("nan"), tl.exp2(exponent.to(tl.float32) - 127.0))
        fp8 = raw.to(tl.float8e4nv, bitcast=True).to(tl.float32) * scale
        tail_ptrs = (rows + 448).to(tl.pointer_type(tl.bfloat16))
        tail = tl.load(
            tail_ptrs[:, None] + (offs_d[None, :] - 448), mask=ok[:, None] & ~is_fp8[None, :], other=0.0
        )
        main = tl.where(is_fp8[None, :], fp8, tail.to(tl.float32)).to(tl.bfloat16)
        rope = tl.zeros([BLOCK_N, 64], dtype=tl.bfloat16)
    return main, rope


@triton.jit
def _attend_list(
    q_main,
    q_rope,
    m_i,
    l_i,
    acc,
    kv_ptr,
    idx_row_ptr,
    lo,
    hi,
    n_tokens,
    page_size,
    stride_block,
    stride_token,
    scale_log2,
    FMT: tl.constexpr,
    HAS_ROPE: tl.constexpr,
    PREFILL: tl.constexpr,
    UPCAST: tl.constexpr,
    BLOCK_N: tl.constexpr,
):
    """Online softmax over entries ``[lo, hi)`` of one index row (``hi <= lo``: none)."""
    offs_n = tl.arange(0, BLOCK_N)
    for start in range(lo, hi, BLOCK_N):
        pos = start + offs_n
        in_list = pos < hi
        idx = tl.load(idx_row_ptr + pos, mask=in_list, other=-1)
        if PREFILL:
            ok = in_list & (idx >= 0) & (idx < n_tokens)  # any out-of-range row of kv is "no token"
        else:
            ok = in_list & (idx != -1)  # FlashMLA's decoding marks invalid entries with -1 only
        main, rope = _gather_tokens(
            kv_ptr, idx, ok, page_size, stride_block, stride_token, FMT, HAS_ROPE, BLOCK_N
        )
        if UPCAST:
            main = main.to(tl.float32)
            rope = rope.to(tl.float32)
        s = tl.dot(q_main, tl.trans(main))
        if HAS_ROPE:
            s += tl.dot(q_rope, tl.trans(rope))
        s = tl.where(ok[None, :], s * scale_log2, float("-inf"))
        acc, m_i, l_i = online_softmax_step(acc, m_i, l_i, s, main)
    return m_i, l_i, acc


@triton.jit
def _split_range(n, split, num_splits, BLOCK_N: tl.constexpr):
    """Entries ``[lo, hi)`` of a list of ``n`` that split ``split`` of ``num_splits`` walks.

    Chunks are cut from this row's own length (not the list's capacity), so a short ``topk_length`` is
    still spread over every split, and are whole tiles, so no tile straddles two splits.
    """
    chunk = tl.cdiv(tl.cdiv(n, num_splits), BLOCK_N) * BLOCK_N
    lo = split * chunk
    return lo, tl.minimum(lo + chunk, n)


@triton.jit
def _sparse_attn_kernel(
    q_ptr,
    kv_ptr,
    idx_ptr,
    len_ptr,
    extra_kv_ptr,
    extra_idx_ptr,
    extra_len_ptr,
    sink_ptr,
    out_ptr,
    lse_ptr,
    max_logits_ptr,
    o_acc_ptr,
    lse_acc_ptr,
    stride_q_tok,
    stride_q_head,
    stride_idx_tok,
    stride_extra_idx_tok,
    topk,
    extra_topk,
    n_tokens,
    page_size,
    stride_block,
    stride_token,
    extra_page_size,
    extra_stride_block,
    h_q,
    rows_per_batch,
    stride_lse_b,
    stride_lse_h,
    stride_lse_s,
    num_splits,
    scale_log2,
    FMT: tl.constexpr,
    HAS_ROPE: tl.constexpr,
    PREFILL: tl.constexpr,
    HAS_LEN: tl.constexpr,
    HAS_EXTRA: tl.constexpr,
    HAS_EXTRA_LEN: tl.constexpr,
    HAS_SINK: tl.constexpr,
    SPLIT: tl.constexpr,
    BLOCK_H: tl.constexpr,
    BLOCK_N: tl.constexpr,
    UPCAST: tl.constexpr,
):
    tok = tl.program_id(0)  # query token: b * s_q + s in decoding, s in prefill
    hb = tl.program_id(1)
    split = tl.program_id(2)  # which chunk of the lists (SPLIT only; the grid has one otherwise)
    bi = tok // rows_per_batch  # batch row (decoding) or the token itself (prefill, rows_per_batch = 1)
    si = tok % rows_per_batch
    heads = hb * BLOCK_H + tl.arange(0, BLOCK_H)
    head_ok = heads < h_q
    offs_d = tl.arange(0, 512)
    offs_r = tl.arange(0, 64)
    ln2: tl.constexpr = 0.6931471805599453

    q_rows = q_ptr + tok.to(tl.int64) * stride_q_tok + heads * stride_q_head
    q_main = tl.load(q_rows[:, None] + offs_d[None, :], mask=head_ok[:, None], other=0.0)
    q_rope = tl.load(q_rows[:, None] + 512 + offs_r[None, :], mask=head_ok[:, None] & HAS_ROPE, other=0.0)
    if UPCAST:
        q_main = q_main.to(tl.float32)
        q_rope = q_rope.to(tl.float32)

    m_i = tl.full([BLOCK_H], float("-inf"), dtype=tl.float32)
    l_i = tl.zeros([BLOCK_H], dtype=tl.float32)
    acc = tl.zeros([BLOCK_H, 512], dtype=tl.float32)

    n = topk
    if HAS_LEN:
        n = tl.load(len_ptr + bi)
    lo = 0
    hi = n
    if SPLIT:
        lo, hi = _split_range(n, split, num_splits, BLOCK_N)
    m_i, l_i, acc = _attend_list(
        q_main,
        q_rope,
        m_i,
        l_i,
        acc,
        kv_ptr,
        idx_ptr + tok.to(tl.int64) * stride_idx_tok,
        lo,
        hi,
        n_tokens,
        page_size,
        stride_block,
        stride_token,
        scale_log2,
        FMT,
        HAS_ROPE,
        PREFILL,
        UPCAST,
        BLOCK_N,
    )
    if HAS_EXTRA:
        # The extra list is the same softmax's second half: every split takes its own chunk of it too, so
        # the splits' work stays even whatever the two lengths are.
        n_extra = extra_topk
        if HAS_EXTRA_LEN:
            n_extra = tl.load(extra_len_ptr + bi)
        lo_extra = 0
        hi_extra = n_extra
        if SPLIT:
            lo_extra, hi_extra = _split_range(n_extra, split, num_splits, BLOCK_N)
        m_i, l_i, acc = _attend_list(
            q_main,
            q_rope,
            m_i,
            l_i,
            acc,
            extra_kv_ptr,
            extra_idx_ptr + tok.to(tl.int64) * stride_extra_idx_tok,
            lo_extra,
            hi_extra,
            n_tokens,
            extra_page_size,
            extra_stride_block,
            stride_token,
            scale_log2,
            FMT,
            HAS_ROPE,
            PREFILL,
            UPCAST,
            BLOCK_N,
        )

    empty = l_i == 0.0
    l_safe = tl.where(empty, 1.0, l_i)
    lse = (m_i + tl.log2(l_safe)) * ln2  # natural log, as FlashMLA's current kernels return
    o = acc / l_safe[:, None]
    if SPLIT:
        # A partial, in fp32 and without the sink: the sink belongs to the whole row's denominator, so the
        # combine applies it once after merging. -inf lse ("saw nothing", also a chunk of -1 entries or past
        # topk_length) gives the chunk weight 0 there; its o is written as 0 because the combine multiplies
        # every o by its weight, and uninitialised scratch times 0 could be NaN.
        slot = (bi * num_splits + split).to(tl.int64) * rows_per_batch * h_q + si * h_q + heads
        o = tl.where(empty[:, None], 0.0, o)
        tl.store(o_acc_ptr + slot[:, None] * 512 + offs_d[None, :], o, mask=head_ok[:, None])
        tl.store(lse_acc_ptr + slot, tl.where(empty, float("-inf"), lse), mask=head_ok)
    else:
        if HAS_SINK:  # the sink joins the denominator only
            sink = tl.load(sink_ptr + heads, mask=head_ok, other=float("-inf"))
            o = o / sink_denominator(sink, lse, empty)[:, None]
        o = tl.where(empty[:, None], 0.0, o)
        out_rows = out_ptr + (tok.to(tl.int64) * h_q + heads) * 512
        tl.store(out_rows[:, None] + offs_d[None, :], o.to(out_ptr.dtype.element_ty), mask=head_ok[:, None])
        lse_ptrs = lse_ptr + bi.to(tl.int64) * stride_lse_b + heads * stride_lse_h + si * stride_lse_s
        tl.store(lse_ptrs, tl.where(empty, float("inf"), lse), mask=head_ok)
        if PREFILL:
            tl.store(max_logits_ptr + tok.to(tl.int64) * h_q + heads, m_i * ln2, mask=head_ok)


def _block_h(h_q: int) -> int:
    return max(16, min(64, triton.next_power_of_2(h_q)))


def _launch_config(h_q: int, prefill: bool) -> dict:
    """The kernel's tile and pipeline: ``BLOCK_H``, ``BLOCK_N``, ``num_warps``, ``num_stages``.

    Decoding gathers FP8 tokens and widens them to bf16 on chip; with two pipeline stages at ``BLOCK_H`` 64
    and ``BLOCK_N`` 64 Triton asks for 312 KB of shared memory (Hopper has 227 KB), so decoding keeps one
    stage and 32-token tiles, the fastest candidate of ``tools/sparse_configs.py`` on the H200 (b 32,
    top-k 2048: 16.4 TFLOP/s at h_q 128 vs 13.8 for 64-token tiles; two stages of 32 ran at 6.8). Prefill
    reads bf16 rows and pipelines two stages of 64.
    """
    block_h = _block_h(h_q)
    if interpreting():
        return dict(BLOCK_H=block_h, BLOCK_N=16, num_warps=4, num_stages=1)
    return dict(
        BLOCK_H=block_h,
        BLOCK_N=64 if prefill else 32,
        num_warps=4 if block_h < 64 else 8,
        num_stages=2 if prefill else 1,
    )


def _fp8_format(cache: torch.Tensor) -> int:
    return FMT_FP8_V32 if cache.shape[-1] == 656 else FMT_FP8_MODEL1


#: Fewest ``BLOCK_N`` tiles a split walks under ``auto``: below that, loading the query block and writing
#: a 512-channel fp32 partial per head cost about as much as the tiles themselves.
MIN_TILES_PER_SPLIT = 4
#: Most splits ``auto`` makes (bounds the fp32 scratch and the combine's loop).
MAX_AUTO_SPLITS = 64
SPLITS_ENV = "ATTN_FLASHMLA_SPARSE_SPLITS"


def num_decode_splits(programs: int, num_sms: int, topk: int, block_n: int) -> int:
    """How many chunks ``auto`` cuts each query token's index list into (1: no split).

    ``programs`` is the unsplit grid (query tokens x head blocks), ``topk`` the entries a token walks
    (main list plus extra list). Splitting pays only while the grid leaves SMs idle, so the split count is
    the whole number of copies of the grid that fit in one wave (``num_sms // programs``: a second, partial
    wave would take as long as the first and gain nothing), and no more than leaves every split
    ``MIN_TILES_PER_SPLIT`` tiles of the list.
    """
    if programs <= 0 or programs >= num_sms:
        return 1
    tiles = -(-topk // block_n)
    return max(1, min(num_sms // programs, tiles // MIN_TILES_PER_SPLIT, MAX_AUTO_SPLITS))


def splits_setting() -> int | str:
    """``ATTN_FLASHMLA_SPARSE_SPLITS``: ``auto`` (default), ``0`` (no split), or a forced count ``N``."""
    raw = os.environ.get(SPLITS_ENV, "").strip().lower()
    if raw == "0":
        return 0
    if raw in ("", "auto"):
        return "auto"
    if raw.isdigit():
        return int(raw)
    raise AttentionArgumentError(f"{SPLITS_ENV} must be 'auto', 0 or a positive split count, got {raw!r}")


def decode_splits(programs: int, num_sms: int, topk: int, block_n: int) -> int:
    """The split count sparse decoding runs with: ``splits_setting()`` applied (1: the unsplit kernel).

    ``auto`` by default since the H200 check of 2026-11-22: the split path passed the sparse grid and the
    sm90 split tests there, and at b 32, s_q 1, top-k 2048 ran 10.9 / 18.9 TFLOP/s (h_q 64 / 128) against
    7.0 / 13.9 unsplit.
    """
    setting = splits_setting()
    if setting == "auto":
        return num_decode_splits(programs, num_sms, topk, block_n)
    return max(1, setting)


def decode_plan(b: int, s_q: int, h_q: int, entries: int, device: torch.device) -> tuple[dict, int, int]:
    """(launch config, head blocks, split count) of sparse decoding; ``entries`` is the main list's length
    plus the extra list's (when there is one)."""
    cfg = _launch_config(h_q, prefill=False)
    head_blocks = triton.cdiv(h_q, cfg["BLOCK_H"])
    return cfg, head_blocks, decode_splits(b * s_q * head_blocks, num_sms(device), entries, cfg["BLOCK_N"])


def sparse_decode_triton(
    q: torch.Tensor,
    k_cache: torch.Tensor,
    indices: torch.Tensor,
    topk_length: torch.Tensor | None,
    attn_sink: torch.Tensor | None,
    extra_k_cache: torch.Tensor | None,
    extra_indices: torch.Tensor | None,
    extra_topk_length: torch.Tensor | None,
    softmax_scale: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sparse decoding over the FP8 cache: ``out`` (b, s_q, h_q, 512) bf16, ``lse`` (b, h_q, s_q) fp32."""
    b, s_q, h_q, d = q.shape
    interp = interpreting()
    kv = k_cache.view(torch.uint8)
    extra = extra_k_cache.view(torch.uint8) if extra_k_cache is not None else kv
    q_flat = q.reshape(b * s_q, h_q, d)
    idx = indices.reshape(b * s_q, -1)
    extra_idx = extra_indices.reshape(b * s_q, -1) if extra_indices is not None else idx
    out = torch.empty(b * s_q, h_q, 512, dtype=torch.float32 if interp else q.dtype, device=q.device)
    lse = torch.empty(b, h_q, s_q, dtype=torch.float32, device=q.device)
    entries = idx.shape[1] + (extra_idx.shape[1] if extra_k_cache is not None else 0)
    cfg, head_blocks, splits = decode_plan(b, s_q, h_q, entries, q.device)
    dummy = lse  # stands in for absent optional tensors; never read (the constexpr flag is off)
    o_acc = lse_acc = dummy
    if splits > 1:
        # One slot per (batch row, split), holding every (query token, head) row of that batch row: the
        # layout combine_splits reads for h_kv = 1, with split_offsets b * splits.
        o_acc = torch.empty(b * splits, 1, s_q * h_q, 512, dtype=torch.float32, device=q.device)
        lse_acc = torch.empty(b * splits, 1, s_q * h_q, dtype=torch.float32, device=q.device)
    _sparse_attn_kernel[(b * s_q, head_blocks, splits)](
        q_flat,
        kv,
        idx,
        topk_length if topk_length is not None else dummy,
        extra,
        extra_idx,
        extra_topk_length if extra_topk_length is not None else dummy,
        attn_sink if attn_sink is not None else dummy,
        out,
        lse,
        dummy,
        o_acc,
        lse_acc,
        q_flat.stride(0),
        q_flat.stride(1),
        idx.stride(0),
        extra_idx.stride(0),
        idx.shape[1],
        extra_idx.shape[1],
        0,
        kv.shape[1],
        kv.stride(0),
        656,
        extra.shape[1],
        extra.stride(0),
        h_q,
        s_q,
        h_q * s_q,
        s_q,
        1,
        splits,
        softmax_scale * LOG2E,
        FMT=_fp8_format(kv),
        HAS_ROPE=d == 576,
        PREFILL=False,
        HAS_LEN=topk_length is not None,
        HAS_EXTRA=extra_k_cache is not None,
        HAS_EXTRA_LEN=extra_topk_length is not None,
        HAS_SINK=attn_sink is not None,
        SPLIT=splits > 1,
        UPCAST=interp,
        **cfg,
    )
    out = out.view(b, s_q, h_q, 512)
    if splits > 1:
        offsets = torch.arange(0, (b + 1) * splits, splits, dtype=torch.int32, device=q.device)
        combine_splits(out, lse, o_acc, lse_acc, offsets, splits, group=h_q, attn_sink=attn_sink)
    return out.to(q.dtype), lse


def sparse_prefill_triton(
    q: torch.Tensor,
    kv: torch.Tensor,
    indices: torch.Tensor,
    sm_scale: float,
    attn_sink: torch.Tensor | None,
    topk_length: torch.Tensor | None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Sparse prefill over bf16 ``kv`` (s_kv, 1, d): ``out`` (s_q, h_q, 512), ``max_logits``, ``lse`` (s_q, h_q)."""
    s_q, h_q, d = q.shape
    interp = interpreting()
    idx = indices[:, 0]
    out = torch.empty(s_q, h_q, 512, dtype=torch.float32 if interp else q.dtype, device=q.device)
    lse = torch.empty(s_q, h_q, dtype=torch.float32, device=q.device)
    max_logits = torch.empty(s_q, h_q, dtype=torch.float32, device=q.device)
    cfg = _launch_config(h_q, prefill=True)
    _sparse_attn_kernel[(s_q, triton.cdiv(h_q, cfg["BLOCK_H"]))](
        q,
        kv,
        idx,
        topk_length if topk_length is not None else lse,
        kv,
        idx,
        lse,
        attn_sink if attn_sink is not None else lse,
        out,
        lse,
        max_logits,
        lse,
        lse,
        q.stride(0),
        q.stride(1),
        idx.stride(0),
        idx.stride(0),
        idx.shape[1],
        0,
        kv.shape[0],
        1,
        0,
        kv.stride(0),
        1,
        0,
        h_q,
        1,
        h_q,
        1,
        0,
        1,
        sm_scale * LOG2E,
        FMT=FMT_BF16,
        HAS_ROPE=d == 576,
        PREFILL=True,
        HAS_LEN=topk_length is not None,
        HAS_EXTRA=False,
        HAS_EXTRA_LEN=False,
        HAS_SINK=attn_sink is not None,
        SPLIT=False,
        UPCAST=interp,
        **cfg,
    )
    return out.to(q.dtype), max_logits, lse
