"""Multi-head Latent Attention (DeepSeek MLA) decoding, with FlashMLA's exact API and semantics.

MLA caches one latent vector per token instead of per-head keys and values. In FlashMLA's "MQA mode" the
query heads all attend to that latent: a token's key is its full 576-dim latent (512 NoPE channels + 64
RoPE channels) and its value is the first ``head_dim_v = 512`` channels of the same vector. So the cache
holds K only, and V is a slice of K.

Two entry points, matching ``flash_mla``:

* :func:`flash_mla_with_kvcache` - decoding against a paged cache. Dense mode reads each sequence's
  first ``cache_seqlens[i]`` tokens through ``block_table``; sparse mode (``indices``) reads an explicit
  list of tokens per query, needs the FP8 cache and supports an attention sink, ``topk_length`` and an
  extra cache.
* :func:`flash_mla_sparse_fwd` - sparse prefill over an unpaged cache.

Semantics checked against FlashMLA's sources (interface, C++ argument checks, kernels and tests):

* ``lse`` is the natural-log log-sum-exp of the *scaled* scores, in fp32. Decoding returns it as
  (b, h_q, s_q). A query that attends to nothing gets ``out = 0`` and ``lse = +inf``.
* Sparse prefill also returns natural-log ``lse`` and ``max_logits`` (the max scaled score), both
  (s_q, h_q); a query with no valid index gets ``max_logits = -inf`` and ``lse = +inf``. FlashMLA's first
  sparse release (Sept. 2025, and its README still) returned them in base 2 (``log2sumexp2`` of the scores
  times ``log2(e)``, ``-inf`` for empty rows); the kernels changed to natural log in Jan. 2026 (#150). This
  reference follows the current kernels; multiply by ``log2(e)`` to get the old values.
* The attention sink adds ``exp(attn_sink[h])`` to the softmax denominator of head ``h``: ``out`` is
  multiplied by ``exp(lse) / (exp(lse) + exp(sink))``; ``lse`` is returned *without* the sink.
* Sparse decode ``indices`` are physical token addresses in the flattened cache,
  ``block_index * page_block_size + offset`` (the block table is already applied), and only ``-1`` marks
  an invalid entry. Sparse prefill ``indices`` address rows of ``kv``; any index ``< 0`` or ``>= s_kv`` is
  invalid there.
* Causal masking (dense only) is bottom-right aligned: query ``i`` of ``s_q`` sees keys
  ``j < s_k - s_q + i + 1``. GQA maps query head ``h`` to KV head ``h // (h_q // h_kv)``.
"""

from __future__ import annotations

import dataclasses
import math

import torch

from attn_reference.errors import AttentionArgumentError, describe
from attn_reference.fp8_kvcache import dequantize_kvcache_fp8, fp8_bytes_per_token

#: Q/K head dims FlashMLA accepts (576: DeepSeek V3.x latent + RoPE; 512: "MODEL1").
MLA_HEAD_DIMS = (576, 512)
#: The only V head dim FlashMLA accepts.
MLA_HEAD_DIM_V = 512

_HALF_DTYPES = (torch.bfloat16, torch.float16)
_FP8_CACHE_DTYPES = (torch.uint8, torch.int8, torch.float8_e4m3fn)


# ---------------------------------------------------------------------------------------------------------
# Argument validation, shared with backends (attn-flashmla calls these before launching kernels).
# ---------------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class MLADecodeSizes:
    """What :func:`check_mla_decode_args` parsed out of a valid call."""

    batch: int
    s_q: int
    h_q: int
    h_kv: int
    head_dim: int
    head_dim_v: int
    num_blocks: int
    page_block_size: int
    softmax_scale: float
    causal: bool
    sparse: bool
    is_fp8_kvcache: bool
    max_blocks_per_seq: int | None = None  # dense only
    topk: int | None = None  # sparse only
    extra_num_blocks: int | None = None
    extra_page_block_size: int | None = None
    extra_topk: int | None = None


@dataclasses.dataclass(frozen=True)
class MLASparsePrefillSizes:
    """What :func:`check_mla_sparse_prefill_args` parsed out of a valid call."""

    s_q: int
    s_kv: int
    h_q: int
    h_kv: int
    head_dim: int
    head_dim_v: int
    topk: int
    sm_scale: float


def _fail(message: str) -> None:
    raise AttentionArgumentError(message)


def _require_tensor(name: str, t) -> None:
    if not isinstance(t, torch.Tensor):
        _fail(f"{name}: expected a torch.Tensor, got {type(t).__name__}")


def _require_ndim(name: str, t: torch.Tensor, ndim: int, layout: str) -> None:
    _require_tensor(name, t)
    if t.dim() != ndim:
        _fail(f"{name}: expected {ndim} dims {layout}, got {describe(t)}")


def _require_shape(name: str, t: torch.Tensor, shape: tuple[int, ...], layout: str) -> None:
    _require_tensor(name, t)
    if tuple(t.shape) != shape:
        _fail(f"{name}: expected shape {shape} {layout}, got {describe(t)}")


def _require_dtype(name: str, t: torch.Tensor, allowed: tuple[torch.dtype, ...]) -> None:
    if t.dtype not in allowed:
        names = ", ".join(str(d).removeprefix("torch.") for d in allowed)
        _fail(f"{name}: dtype must be {names}; got {describe(t)}")


def _require_device(name: str, t: torch.Tensor, q: torch.Tensor) -> None:
    if t.device != q.device:
        _fail(f"{name}: must be on q's device {q.device}; got {describe(t)}")


def _require_last_dim_contiguous(name: str, t: torch.Tensor) -> None:
    # FlashMLA's kernels address rows by stride and read the channels of a row as one contiguous run.
    if t.dim() > 0 and t.shape[-1] > 1 and t.stride(-1) != 1:
        _fail(f"{name}: last dim must be contiguous (stride 1); got {describe(t)} with strides {t.stride()}")


def _check_vector(name: str, t, length: int, q: torch.Tensor, meaning: str, dtype=torch.int32) -> None:
    _require_shape(name, t, (length,), meaning)
    _require_dtype(name, t, (dtype,))
    _require_device(name, t, q)
    # FlashMLA's CHECK_CONTIGUOUS: the kernels read entry i at base + i, so a strided view would be
    # read as some other tensor's values.
    _require_last_dim_contiguous(name, t)


def _check_scale(name: str, scale) -> float:
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not math.isfinite(scale):
        _fail(f"{name}: expected a finite float, got {scale!r}")
    return float(scale)


def _check_q(q, allowed: tuple[torch.dtype, ...], ndim: int, layout: str) -> None:
    _require_ndim("q", q, ndim, layout)
    _require_dtype("q", q, allowed)
    _require_last_dim_contiguous("q", q)
    if q.shape[-1] not in MLA_HEAD_DIMS:
        _fail(f"q: head dim (last dim) must be 576 or 512; got {describe(q)}")
    if any(s == 0 for s in q.shape[:-1]):
        _fail(f"q: every dim must be non-empty {layout}; got {describe(q)}")


def _check_head_dim_v(name: str, head_dim_v) -> None:
    if head_dim_v != MLA_HEAD_DIM_V or isinstance(head_dim_v, bool):
        _fail(f"{name}: FlashMLA only supports a V head dim of 512 (V = K[..., :512]); got {head_dim_v!r}")


def check_mla_decode_args(
    q,
    k_cache,
    block_table,
    cache_seqlens,
    head_dim_v,
    softmax_scale=None,
    causal: bool = False,
    is_fp8_kvcache: bool = False,
    indices=None,
    attn_sink=None,
    extra_k_cache=None,
    extra_indices_in_kvcache=None,
    topk_length=None,
    extra_topk_length=None,
    *,
    check_values: bool = True,
    allow_fp32: bool = False,
) -> MLADecodeSizes:
    """Validate the arguments of :func:`flash_mla_with_kvcache` as FlashMLA does; return the parsed sizes.

    Raises :class:`AttentionArgumentError` naming the argument, what it was and what is allowed.
    ``check_values`` also reads ``cache_seqlens``, ``block_table``, ``indices`` and the topk lengths
    (a device sync on GPU): lengths within the cache, used block-table entries within
    ``[0, num_blocks)``, used indices ``-1`` or within the cache. ``allow_fp32`` admits fp32 ``q`` (the
    reference computes it; FlashMLA does not).
    """
    sparse = indices is not None
    if sparse:
        allowed_q = (torch.bfloat16, torch.float32) if allow_fp32 else (torch.bfloat16,)
    else:
        allowed_q = (*_HALF_DTYPES, torch.float32) if allow_fp32 else _HALF_DTYPES
    _check_q(q, allowed_q, 4, "(batch, s_q, h_q, head_dim)")
    d = q.shape[-1]
    _check_head_dim_v("head_dim_v", head_dim_v)
    scale = d**-0.5 if softmax_scale is None else _check_scale("softmax_scale", softmax_scale)
    if not isinstance(causal, bool):
        _fail(f"causal: expected a bool, got {causal!r}")
    if not isinstance(is_fp8_kvcache, bool):
        _fail(f"is_fp8_kvcache: expected a bool, got {is_fp8_kvcache!r}")

    if sparse:
        return _check_sparse_decode(
            q,
            k_cache,
            scale,
            causal,
            is_fp8_kvcache,
            indices,
            attn_sink,
            extra_k_cache,
            extra_indices_in_kvcache,
            topk_length,
            extra_topk_length,
            check_values,
        )
    sparse_only = {
        "attn_sink": attn_sink,
        "extra_k_cache": extra_k_cache,
        "extra_indices_in_kvcache": extra_indices_in_kvcache,
        "topk_length": topk_length,
        "extra_topk_length": extra_topk_length,
    }
    for name, value in sparse_only.items():
        if value is not None:
            _fail(f"{name}: only allowed with sparse attention (indices given); dense decoding got {name}")
    return _check_dense_decode(
        q, k_cache, block_table, cache_seqlens, scale, causal, is_fp8_kvcache, check_values
    )


def _check_dense_decode(q, k_cache, block_table, cache_seqlens, scale, causal, is_fp8_kvcache, check_values):
    b, s_q, h_q, d = q.shape
    if is_fp8_kvcache:
        _fail(
            "is_fp8_kvcache: FlashMLA reads the FP8 cache only in sparse mode (indices given); dense decoding "
            "takes a k_cache of q's dtype"
        )
    if block_table is None or cache_seqlens is None:
        missing = "block_table" if block_table is None else "cache_seqlens"
        _fail(f"{missing}: required for dense decoding (no indices given); got None")

    _require_ndim("k_cache", k_cache, 4, "(num_blocks, page_block_size, h_kv, head_dim)")
    _require_device("k_cache", k_cache, q)
    if k_cache.dtype != q.dtype:
        _fail(f"k_cache: dtype must equal q's dtype {q.dtype}; got {describe(k_cache)}")
    _require_last_dim_contiguous("k_cache", k_cache)
    num_blocks, page, h_kv, d_k = k_cache.shape
    if d_k != d:
        _fail(f"k_cache: head dim must equal q's head dim {d}; got {describe(k_cache)}")
    if num_blocks == 0 or page == 0 or h_kv == 0:
        _fail(f"k_cache: num_blocks, page_block_size and h_kv must be positive; got {describe(k_cache)}")
    if h_q % h_kv != 0:
        _fail(
            f"k_cache: h_kv must divide q's h_q = {h_q} (GQA groups); got h_kv = {h_kv} ({describe(k_cache)})"
        )

    _require_ndim("block_table", block_table, 2, "(batch, max_blocks_per_seq)")
    _require_dtype("block_table", block_table, (torch.int32,))
    _require_device("block_table", block_table, q)
    _require_last_dim_contiguous("block_table", block_table)
    if block_table.shape[0] != b:
        _fail(f"block_table: first dim must be q's batch {b}; got {describe(block_table)}")
    max_blocks = block_table.shape[1]
    _check_vector("cache_seqlens", cache_seqlens, b, q, "(batch,)")

    if check_values:
        lens = cache_seqlens.cpu().long()
        capacity = max_blocks * page
        bad = (lens < 0) | (lens > capacity)
        if bad.any():
            i = int(bad.nonzero()[0, 0])
            _fail(
                f"cache_seqlens: must lie in [0, max_blocks_per_seq * page_block_size = {capacity}]; "
                f"cache_seqlens[{i}] = {int(lens[i])}"
            )
        # Entries past a sequence's last block are never read, so FlashMLA lets them hold anything.
        table = block_table.cpu().long()
        used = torch.arange(max_blocks).unsqueeze(0) < ((lens + page - 1) // page).unsqueeze(1)
        bad = used & ((table < 0) | (table >= num_blocks))
        if bad.any():
            i, j = (int(x) for x in bad.nonzero()[0])
            _fail(
                f"block_table: entries used by a sequence must lie in [0, num_blocks = {num_blocks}); "
                f"block_table[{i}, {j}] = {int(table[i, j])} (cache_seqlens[{i}] = {int(lens[i])})"
            )
    return MLADecodeSizes(
        batch=b,
        s_q=s_q,
        h_q=h_q,
        h_kv=h_kv,
        head_dim=d,
        head_dim_v=MLA_HEAD_DIM_V,
        num_blocks=num_blocks,
        page_block_size=page,
        softmax_scale=scale,
        causal=causal,
        sparse=False,
        is_fp8_kvcache=False,
        max_blocks_per_seq=max_blocks,
    )


def _check_fp8_cache(name: str, cache, q: torch.Tensor) -> tuple[int, int]:
    d = q.shape[-1]
    _require_ndim(name, cache, 4, "(num_blocks, page_block_size, 1, bytes_per_token)")
    _require_device(name, cache, q)
    _require_dtype(name, cache, _FP8_CACHE_DTYPES)
    nbytes = fp8_bytes_per_token(d)
    num_blocks, page, h_kv, last = cache.shape
    if h_kv != 1:
        _fail(f"{name}: sparse decoding supports only MQA (h_kv == 1); got {describe(cache)}")
    if last != nbytes:
        _fail(
            f"{name}: the FP8 cache for head dim {d} has {nbytes} bytes a token (see fp8_kvcache); "
            f"got {describe(cache)}"
        )
    if num_blocks == 0 or page == 0:
        _fail(f"{name}: num_blocks and page_block_size must be positive; got {describe(cache)}")
    if cache.stride(-1) != 1 or (page > 1 and cache.stride(1) != nbytes):
        _fail(f"{name}: each page block must be contiguous (token stride {nbytes}); strides {cache.stride()}")
    return num_blocks, page


def _check_indices(name: str, t, b: int, s_q: int, q: torch.Tensor) -> int:
    _require_ndim(name, t, 3, "(batch, s_q, topk)")
    _require_dtype(name, t, (torch.int32,))
    _require_device(name, t, q)
    _require_last_dim_contiguous(name, t)
    if t.shape[0] != b or t.shape[1] != s_q or t.shape[2] == 0:
        _fail(f"{name}: expected shape ({b}, {s_q}, topk) with topk > 0; got {describe(t)}")
    return t.shape[2]


def _check_index_values(name: str, idx, length, length_name: str, n_tokens: int) -> None:
    topk = idx.shape[-1]
    idx = idx.cpu().long()
    used = torch.ones_like(idx, dtype=torch.bool)
    if length is not None:
        lens = length.cpu().long()
        bad = (lens < 0) | (lens > topk)
        if bad.any():
            i = int(bad.nonzero()[0, 0])
            _fail(f"{length_name}: must lie in [0, topk = {topk}]; {length_name}[{i}] = {int(lens[i])}")
        used = torch.arange(topk).view(1, 1, topk) < lens.view(-1, 1, 1)
    bad = used & (idx != -1) & ((idx < 0) | (idx >= n_tokens))
    if bad.any():
        pos = tuple(int(x) for x in bad.nonzero()[0])
        _fail(
            f"{name}: used entries must be -1 (invalid) or a token address block * page_block_size + offset "
            f"in [0, {n_tokens}); {name}[{', '.join(map(str, pos))}] = {int(idx[pos])}"
        )


def _check_sparse_decode(
    q,
    k_cache,
    scale,
    causal,
    is_fp8_kvcache,
    indices,
    attn_sink,
    extra_k_cache,
    extra_indices,
    topk_length,
    extra_topk_length,
    check_values,
):
    b, s_q, h_q, d = q.shape
    if causal:
        _fail("causal: must be False with sparse attention (indices given); the indices define the mask")
    if not is_fp8_kvcache:
        _fail("is_fp8_kvcache: FlashMLA's sparse decoding reads only the FP8 cache; pass is_fp8_kvcache=True")
    num_blocks, page = _check_fp8_cache("k_cache", k_cache, q)
    topk = _check_indices("indices", indices, b, s_q, q)
    if topk_length is not None:
        _check_vector("topk_length", topk_length, b, q, "(batch,)")
    if attn_sink is not None:
        _check_vector("attn_sink", attn_sink, h_q, q, "(h_q,)", torch.float32)

    extra_blocks = extra_page = extra_topk = None
    if extra_k_cache is None:
        if extra_indices is not None:
            _fail("extra_indices_in_kvcache: given without extra_k_cache")
        if extra_topk_length is not None:
            _fail("extra_topk_length: given without extra_k_cache")
    else:
        if extra_indices is None:
            _fail("extra_indices_in_kvcache: required when extra_k_cache is given; got None")
        extra_blocks, extra_page = _check_fp8_cache("extra_k_cache", extra_k_cache, q)
        if extra_k_cache.dtype != k_cache.dtype:
            _fail(f"extra_k_cache: dtype must equal k_cache's {k_cache.dtype}; got {describe(extra_k_cache)}")
        extra_topk = _check_indices("extra_indices_in_kvcache", extra_indices, b, s_q, q)
        if extra_topk_length is not None:
            _check_vector("extra_topk_length", extra_topk_length, b, q, "(batch,)")

    if check_values:
        _check_index_values("indices", indices, topk_length, "topk_length", num_blocks * page)
        if extra_k_cache is not None:
            _check_index_values(
                "extra_indices_in_kvcache",
                extra_indices,
                extra_topk_length,
                "extra_topk_length",
                extra_blocks * extra_page,
            )
    return MLADecodeSizes(
        batch=b,
        s_q=s_q,
        h_q=h_q,
        h_kv=1,
        head_dim=d,
        head_dim_v=MLA_HEAD_DIM_V,
        num_blocks=num_blocks,
        page_block_size=page,
        softmax_scale=scale,
        causal=False,
        sparse=True,
        is_fp8_kvcache=True,
        topk=topk,
        extra_num_blocks=extra_blocks,
        extra_page_block_size=extra_page,
        extra_topk=extra_topk,
    )


def check_mla_sparse_prefill_args(
    q,
    kv,
    indices,
    sm_scale,
    d_v=MLA_HEAD_DIM_V,
    attn_sink=None,
    topk_length=None,
    *,
    check_values=True,
    allow_fp32: bool = False,
) -> MLASparsePrefillSizes:
    """Validate the arguments of :func:`flash_mla_sparse_fwd` as FlashMLA does; return the parsed sizes.

    ``check_values`` reads ``topk_length`` (must lie in [0, topk]). Index values need no check: any value
    outside ``[0, s_kv)`` simply marks an invalid entry.
    """
    allowed = (torch.bfloat16, torch.float32) if allow_fp32 else (torch.bfloat16,)
    _check_q(q, allowed, 3, "(s_q, h_q, head_dim)")
    s_q, h_q, d = q.shape
    _check_head_dim_v("d_v", d_v)
    scale = _check_scale("sm_scale", sm_scale)
    _require_ndim("kv", kv, 3, "(s_kv, h_kv, head_dim)")
    _require_device("kv", kv, q)
    if kv.dtype != q.dtype:
        _fail(f"kv: dtype must equal q's dtype {q.dtype}; got {describe(kv)}")
    _require_last_dim_contiguous("kv", kv)
    s_kv, h_kv, d_k = kv.shape
    if d_k != d:
        _fail(f"kv: head dim must equal q's head dim {d}; got {describe(kv)}")
    if h_kv != 1:
        _fail(f"kv: sparse prefill supports only MQA (h_kv == 1); got {describe(kv)}")
    if s_kv == 0:
        _fail(f"kv: s_kv must be positive; got {describe(kv)}")
    _require_ndim("indices", indices, 3, "(s_q, h_kv, topk)")
    _require_dtype("indices", indices, (torch.int32,))
    _require_device("indices", indices, q)
    _require_last_dim_contiguous("indices", indices)
    if indices.shape[0] != s_q or indices.shape[1] != h_kv or indices.shape[2] == 0:
        _fail(f"indices: expected shape ({s_q}, {h_kv}, topk) with topk > 0; got {describe(indices)}")
    topk = indices.shape[2]
    if attn_sink is not None:
        _check_vector("attn_sink", attn_sink, h_q, q, "(h_q,)", torch.float32)
    if topk_length is not None:
        _check_vector("topk_length", topk_length, s_q, q, "(s_q,)")
        if check_values:
            lens = topk_length.cpu().long()
            bad = (lens < 0) | (lens > topk)
            if bad.any():
                i = int(bad.nonzero()[0, 0])
                _fail(f"topk_length: must lie in [0, topk = {topk}]; topk_length[{i}] = {int(lens[i])}")
    return MLASparsePrefillSizes(s_q, s_kv, h_q, h_kv, d, MLA_HEAD_DIM_V, topk, scale)


# ---------------------------------------------------------------------------------------------------------
# The computation
# ---------------------------------------------------------------------------------------------------------


def _check_accum_dtype(accum_dtype: torch.dtype) -> None:
    if accum_dtype not in (torch.float32, torch.float64):
        _fail(f"accum_dtype: must be torch.float32 or torch.float64; got {accum_dtype}")


def _softmax_attend(scores, valid, v, attn_sink=None):
    """Masked softmax attention over the last dim of ``scores`` (..., n), with ``v`` (..., n, dv).

    ``valid`` (broadcastable to ``scores``) marks the keys a query may see; ``attn_sink`` (broadcastable to
    the rows) adds ``exp(sink)`` to each row's denominator. Returns ``out`` (..., dv), ``lse`` (...) with
    ``+inf`` for rows that see no key (their ``out`` is 0), and the row max of the valid scores.
    """
    scores = scores.masked_fill(~valid, float("-inf"))
    lse = torch.logsumexp(scores, dim=-1)
    max_logits = scores.amax(dim=-1)
    empty = torch.isneginf(lse)
    # exp(-inf - -inf) would be NaN: empty rows get probability 0 everywhere instead.
    p = torch.exp(scores - torch.where(empty, 0.0, lse).unsqueeze(-1))
    out = p @ v
    if attn_sink is not None:
        # exp(lse) / (exp(lse) + exp(sink)); +inf sink -> 0, -inf sink -> 1.
        out = out / (1.0 + torch.exp(attn_sink - lse)).unsqueeze(-1)
    out = torch.where(empty.unsqueeze(-1), 0.0, out)
    lse = torch.where(empty, float("inf"), lse)
    return out, lse, max_logits


def get_mla_metadata(*args, **kwargs) -> tuple[None, None]:
    """FlashMLA's scheduler-metadata call; the reference needs no schedule, so this returns (None, None)."""
    return None, None


def flash_mla_with_kvcache(
    q: torch.Tensor,
    k_cache: torch.Tensor,
    block_table: torch.Tensor | None,
    cache_seqlens: torch.Tensor | None,
    head_dim_v: int,
    tile_scheduler_metadata=None,
    num_splits=None,
    softmax_scale: float | None = None,
    causal: bool = False,
    is_fp8_kvcache: bool = False,
    indices: torch.Tensor | None = None,
    attn_sink: torch.Tensor | None = None,
    extra_k_cache: torch.Tensor | None = None,
    extra_indices_in_kvcache: torch.Tensor | None = None,
    topk_length: torch.Tensor | None = None,
    extra_topk_length: torch.Tensor | None = None,
    *,
    accum_dtype: torch.dtype = torch.float32,
) -> tuple[torch.Tensor, torch.Tensor]:
    """MLA decoding against a paged KV cache, exactly as ``flash_mla.flash_mla_with_kvcache``.

    q: (b, s_q, h_q, d), bf16/fp16 (fp32 accepted here), d = 576 or 512.
    Dense (``indices`` None): k_cache (num_blocks, page_block_size, h_kv, d) of q's dtype; block_table
    (b, max_blocks_per_seq) int32; cache_seqlens (b,) int32; ``causal`` masks bottom-right aligned.
    Sparse (``indices`` (b, s_q, topk) int32 token addresses, -1 invalid): ``is_fp8_kvcache=True`` and
    k_cache the uint8 FP8 layout (num_blocks, page_block_size, 1, 656 or 584); block_table and
    cache_seqlens are ignored; ``topk_length`` (b,) int32 keeps only the first entries of each row;
    ``attn_sink`` (h_q,) fp32; ``extra_k_cache``/``extra_indices_in_kvcache``/``extra_topk_length`` a second
    cache attended in the same softmax.
    V is ``K[..., :head_dim_v]``, head_dim_v must be 512. ``softmax_scale`` defaults to d ** -0.5.
    ``tile_scheduler_metadata`` and ``num_splits`` are accepted and ignored.

    Returns ``out`` (b, s_q, h_q, 512) in q's dtype and ``lse`` (b, h_q, s_q) fp32, natural log of the
    scaled scores; rows that see no key give out 0, lse +inf. Computed in ``accum_dtype`` (fp32 or fp64).
    """
    sizes = check_mla_decode_args(
        q,
        k_cache,
        block_table,
        cache_seqlens,
        head_dim_v,
        softmax_scale,
        causal,
        is_fp8_kvcache,
        indices,
        attn_sink,
        extra_k_cache,
        extra_indices_in_kvcache,
        topk_length,
        extra_topk_length,
        allow_fp32=True,
    )
    _check_accum_dtype(accum_dtype)
    if sizes.sparse:
        out, lse = _sparse_decode(
            q,
            sizes,
            accum_dtype,
            k_cache,
            indices,
            topk_length,
            attn_sink,
            extra_k_cache,
            extra_indices_in_kvcache,
            extra_topk_length,
        )
    else:
        out, lse = _dense_decode(q, sizes, accum_dtype, k_cache, block_table, cache_seqlens)
    # Kernels hold lse as (b, s_q, h_q) and return it transposed; callers only see the (b, h_q, s_q) shape.
    return out.to(q.dtype), lse.transpose(1, 2).contiguous().float()


def _dense_decode(q, sizes: MLADecodeSizes, accum_dtype, k_cache, block_table, cache_seqlens):
    b, s_q, h_q, d = q.shape
    h_kv, page, dv = sizes.h_kv, sizes.page_block_size, sizes.head_dim_v
    group = h_q // h_kv
    out = torch.zeros(b, s_q, h_q, dv, dtype=accum_dtype, device=q.device)
    lse = torch.full((b, s_q, h_q), float("inf"), dtype=accum_dtype, device=q.device)
    lens = cache_seqlens.tolist()
    for i in range(b):
        s_k = lens[i]
        if s_k == 0:
            continue  # nothing to attend to: out 0, lse +inf
        # Gather only this sequence's blocks and cut at its length, so padding is never read.
        blocks = block_table[i, : -(-s_k // page)].long()
        k = k_cache[blocks].reshape(-1, h_kv, d)[:s_k].to(accum_dtype)  # (s_k, h_kv, d)
        qi = q[i].to(accum_dtype).view(s_q, h_kv, group, d)
        scores = torch.einsum("qhgd,khd->hgqk", qi, k) * sizes.softmax_scale  # (h_kv, group, s_q, s_k)
        if sizes.causal:
            # Bottom-right aligned: the last query row sees the whole cache.
            rows = torch.arange(s_q, device=q.device).unsqueeze(1)
            cols = torch.arange(s_k, device=q.device).unsqueeze(0)
            valid = cols <= rows + (s_k - s_q)
        else:
            valid = torch.ones(1, 1, dtype=torch.bool, device=q.device)
        v = k[..., :dv].transpose(0, 1).unsqueeze(1)  # (h_kv, 1, s_k, dv)
        o, l, _ = _softmax_attend(scores, valid, v)
        out[i] = o.permute(2, 0, 1, 3).reshape(s_q, h_q, dv)
        lse[i] = l.permute(2, 0, 1).reshape(s_q, h_q)
    return out, lse


def _gather_sparse(cache, idx, length, accum_dtype):
    """Dequantize ``cache`` and gather the tokens ``idx`` (b, s_q, topk) addresses.

    Returns keys (b, s_q, topk, d) with invalid entries zeroed (their slots may hold NaN padding, and
    0 * NaN would leak through the PV product) and the validity mask (b, s_q, topk).
    """
    b, _, topk = idx.shape
    tokens = dequantize_kvcache_fp8(cache)  # (num_blocks, page, 1, d)
    tokens = tokens.reshape(-1, tokens.shape[-1])
    idx = idx.long()
    valid = idx != -1
    if length is not None:
        valid &= torch.arange(topk, device=idx.device).view(1, 1, topk) < length.view(b, 1, 1).long()
    k = tokens[torch.where(valid, idx, 0)].to(accum_dtype)
    k = torch.where(valid.unsqueeze(-1), k, 0.0)
    return k, valid


def _sparse_decode(
    q,
    sizes: MLADecodeSizes,
    accum_dtype,
    k_cache,
    indices,
    topk_length,
    attn_sink,
    extra_k_cache,
    extra_indices,
    extra_topk_length,
):
    k, valid = _gather_sparse(k_cache, indices, topk_length, accum_dtype)
    if extra_k_cache is not None:
        # The extra cache's tokens join the same softmax, as if appended to the topk list.
        k2, valid2 = _gather_sparse(extra_k_cache, extra_indices, extra_topk_length, accum_dtype)
        k, valid = torch.cat([k, k2], dim=2), torch.cat([valid, valid2], dim=2)
    qf = q.to(accum_dtype)
    scores = torch.einsum("bqhd,bqkd->bqhk", qf, k) * sizes.softmax_scale  # (b, s_q, h_q, n)
    sink = None if attn_sink is None else attn_sink.to(accum_dtype)
    out, lse, _ = _softmax_attend(scores, valid.unsqueeze(2), k[..., : sizes.head_dim_v], sink)
    return out, lse


def flash_mla_sparse_fwd(
    q: torch.Tensor,
    kv: torch.Tensor,
    indices: torch.Tensor,
    sm_scale: float,
    d_v: int = 512,
    attn_sink: torch.Tensor | None = None,
    topk_length: torch.Tensor | None = None,
    *,
    accum_dtype: torch.dtype = torch.float32,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Sparse MLA prefill, exactly as ``flash_mla.flash_mla_sparse_fwd``.

    q: (s_q, h_q, d) bf16 (fp32 accepted here), d = 576 or 512; kv: (s_kv, 1, d) same dtype;
    indices: (s_q, 1, topk) int32 rows of ``kv``, any value outside [0, s_kv) is invalid;
    ``sm_scale`` required; d_v must be 512 (V = kv[..., :512]); ``attn_sink`` (h_q,) fp32;
    ``topk_length`` (s_q,) int32 keeps only ``indices[i, :, :topk_length[i]]``.

    Returns ``out`` (s_q, h_q, 512) in q's dtype, ``max_logits`` (s_q, h_q) fp32, the largest scaled score,
    and ``lse`` (s_q, h_q) fp32, natural-log log-sum-exp of the scaled scores (the sink is not in it).
    Queries with no valid index: out 0, max_logits -inf, lse +inf.
    """
    sizes = check_mla_sparse_prefill_args(
        q, kv, indices, sm_scale, d_v, attn_sink, topk_length, allow_fp32=True
    )
    _check_accum_dtype(accum_dtype)
    topk = sizes.topk
    idx = indices[:, 0].long()  # h_kv == 1
    valid = (idx >= 0) & (idx < sizes.s_kv)
    if topk_length is not None:
        valid &= torch.arange(topk, device=q.device).unsqueeze(0) < topk_length.long().unsqueeze(1)
    k = kv[:, 0][torch.where(valid, idx, 0)].to(accum_dtype)  # (s_q, topk, d)
    k = torch.where(valid.unsqueeze(-1), k, 0.0)
    scores = torch.einsum("qhd,qkd->qhk", q.to(accum_dtype), k) * sizes.sm_scale
    sink = None if attn_sink is None else attn_sink.to(accum_dtype)
    out, lse, max_logits = _softmax_attend(scores, valid.unsqueeze(1), k[..., : sizes.head_dim_v], sink)
    return out.to(q.dtype), max_logits.float(), lse.float()
