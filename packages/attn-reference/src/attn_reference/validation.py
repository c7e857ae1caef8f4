"""Argument validation shared by every backend.

Each check raises :class:`~attn_reference.errors.AttentionArgumentError` naming the function, the argument,
what it was and what is allowed; a backend passes what *it* allows (dtypes, head dims, device type) and gets
the same messages as every other backend. Checks that read tensor *values* (cu_seqlens, block tables) copy a
few integers to the host; backends call them before launching, where that sync is cheap next to a wrong
answer or an illegal memory access.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import torch

from .errors import AttentionArgumentError, UnsupportedFeatureError, describe

_DTYPE_NAMES = {
    torch.float16: "float16",
    torch.bfloat16: "bfloat16",
    torch.float32: "float32",
    torch.float64: "float64",
}


def _names(dtypes: Iterable[torch.dtype]) -> str:
    return ", ".join(_DTYPE_NAMES.get(d, str(d)) for d in dtypes)


@dataclass(frozen=True)
class AttnShape:
    """Sizes parsed from q, k, v. ``batch`` and seqlens are ``None`` for varlen (packed) inputs."""

    batch: int | None
    seqlen_q: int | None
    seqlen_k: int | None
    heads_q: int
    heads_k: int
    head_dim: int
    head_dim_v: int

    @property
    def group_size(self) -> int:
        """Query heads per KV head (1: MHA, heads_q: MQA)."""
        return self.heads_q // self.heads_k


def _check_tensor(fn: str, name: str, t, rank: int, layout: str) -> None:
    if not isinstance(t, torch.Tensor):
        raise AttentionArgumentError(f"{fn}: {name} must be a torch.Tensor, got {type(t).__name__}")
    if t.dim() != rank:
        raise AttentionArgumentError(f"{fn}: {name} must have rank {rank} {layout}, got {describe(t)}")
    _require_unit_stride(fn, name, t)


def _require_unit_stride(fn: str, name: str, t: torch.Tensor) -> None:
    # flash-attn's checks (contiguous last dim of q/k/v and block_table, CHECK_CONTIGUOUS on lengths): the
    # kernels read entry i of a row at base + i, so a strided view would be read as other values.
    if t.numel() and t.shape[-1] > 1 and t.stride(-1) != 1:
        raise AttentionArgumentError(
            f"{fn}: {name} must be contiguous in its last dimension (stride 1), got {describe(t)} "
            f"with strides {t.stride()}"
        )


def _check_common(fn, q, k, v, dtypes, head_dims, device_type, head_dim_v_must_match) -> None:
    if q.dtype != k.dtype or q.dtype != v.dtype:
        raise AttentionArgumentError(
            f"{fn}: q, k and v must share one dtype, got q {q.dtype}, k {k.dtype}, v {v.dtype}"
        )
    if dtypes is not None and q.dtype not in dtypes:
        raise AttentionArgumentError(f"{fn}: q must have dtype in ({_names(dtypes)}), got {describe(q)}")
    if not (q.device == k.device == v.device):
        raise AttentionArgumentError(
            f"{fn}: q, k and v must be on one device, got q {q.device}, k {k.device}, v {v.device}"
        )
    if device_type is not None and q.device.type != device_type:
        raise AttentionArgumentError(f"{fn}: q must be a {device_type} tensor, got {describe(q)}")
    heads_q, heads_k, heads_v = q.shape[-2], k.shape[-2], v.shape[-2]
    if heads_k != heads_v:
        raise AttentionArgumentError(
            f"{fn}: k and v must have the same number of heads, got {heads_k} and {heads_v}"
        )
    if heads_k == 0 or heads_q % heads_k:
        raise AttentionArgumentError(
            f"{fn}: the number of query heads ({heads_q}) must be a multiple of the number of KV heads ({heads_k})"
        )
    d, dk, dv = q.shape[-1], k.shape[-1], v.shape[-1]
    if dk != d:
        raise AttentionArgumentError(f"{fn}: q and k must have the same head dim, got q {d} and k {dk}")
    if head_dims is not None and d not in head_dims:
        raise UnsupportedFeatureError(
            f"{fn}: head dim {d} is not supported; supported head dims: {tuple(head_dims)}"
        )
    if head_dim_v_must_match and dv != d:
        raise UnsupportedFeatureError(f"{fn}: v's head dim ({dv}) must equal q's ({d}) for this backend")


def check_qkv(
    q,
    k,
    v,
    *,
    fn: str = "flash_attn_func",
    dtypes: Iterable[torch.dtype] | None = None,
    head_dims: Iterable[int] | None = None,
    device_type: str | None = None,
    head_dim_v_must_match: bool = False,
) -> AttnShape:
    """Validate (batch, seqlen, heads, headdim) q, k, v and return their sizes."""
    layout = "(batch, seqlen, heads, headdim)"
    for name, t in (("q", q), ("k", k), ("v", v)):
        _check_tensor(fn, name, t, 4, layout)
    dtypes = tuple(dtypes) if dtypes is not None else None
    head_dims = tuple(head_dims) if head_dims is not None else None
    _check_common(fn, q, k, v, dtypes, head_dims, device_type, head_dim_v_must_match)
    if not (q.shape[0] == k.shape[0] == v.shape[0]):
        raise AttentionArgumentError(
            f"{fn}: q, k and v must have the same batch size, got {q.shape[0]}, {k.shape[0]}, {v.shape[0]}"
        )
    if k.shape[1] != v.shape[1]:
        raise AttentionArgumentError(
            f"{fn}: k and v must have the same seqlen, got {k.shape[1]} and {v.shape[1]}"
        )
    return AttnShape(q.shape[0], q.shape[1], k.shape[1], q.shape[2], k.shape[2], q.shape[3], v.shape[3])


def check_window(window_size, causal: bool) -> tuple[int, int]:
    """Normalise ``window_size`` to ``(left, right)``, -1 meaning unbounded; ``causal`` sets right to 0.

    The convention is flash-attn's: query ``i`` sees key ``j`` iff
    ``i + seqlen_k - seqlen_q - left <= j <= i + seqlen_k - seqlen_q + right``.
    """
    try:
        left, right = (int(w) for w in window_size)
    except (TypeError, ValueError):
        raise AttentionArgumentError(
            f"window_size must be a pair (left, right) of ints >= -1, got {window_size!r}"
        ) from None
    if left < -1 or right < -1:
        raise AttentionArgumentError(
            f"window_size entries must be >= -1 (-1: unbounded), got {window_size!r}"
        )
    if causal:
        if right > 0:
            raise AttentionArgumentError(
                f"causal=True looks at no key to the right; window_size[1] must be -1 or 0, got {right}"
            )
        right = 0
    return left, right


def check_softcap(softcap) -> float:
    """``softcap`` as a float: 0 disables it; otherwise scores become ``softcap * tanh(scores / softcap)``."""
    try:
        value = float(softcap)
    except (TypeError, ValueError):
        raise AttentionArgumentError(f"softcap must be a number >= 0, got {softcap!r}") from None
    if not value >= 0.0 or math.isinf(value):
        raise AttentionArgumentError(f"softcap must be a finite number >= 0 (0 disables it), got {softcap!r}")
    return value


def default_softmax_scale(softmax_scale, head_dim: int) -> float:
    """``softmax_scale`` or, when ``None``, ``1 / sqrt(head_dim)``."""
    if softmax_scale is None:
        return head_dim**-0.5
    try:
        value = float(softmax_scale)
    except (TypeError, ValueError):
        raise AttentionArgumentError(
            f"softmax_scale must be a number or None, got {softmax_scale!r}"
        ) from None
    if not math.isfinite(value):
        raise AttentionArgumentError(f"softmax_scale must be finite, got {softmax_scale!r}")
    return value


def check_options(
    softmax_scale, causal, window_size, softcap, head_dim: int
) -> tuple[tuple[int, int], float, float]:
    """:func:`check_window`, :func:`check_softcap` and :func:`default_softmax_scale`, in that order:
    returns ``(window, softcap, softmax_scale)``."""
    return (
        check_window(window_size, causal),
        check_softcap(softcap),
        default_softmax_scale(softmax_scale, head_dim),
    )


def check_cu_seqlens(cu_seqlens, name: str, *, total: int, device: torch.device, fn: str) -> torch.Tensor:
    """Validate cumulative sequence lengths; return the per-sequence lengths (on the host, int64)."""
    if not isinstance(cu_seqlens, torch.Tensor):
        raise AttentionArgumentError(
            f"{fn}: {name} must be a torch.Tensor of int32, got {type(cu_seqlens).__name__}"
        )
    if cu_seqlens.dtype != torch.int32:
        raise AttentionArgumentError(f"{fn}: {name} must have dtype int32, got {describe(cu_seqlens)}")
    if cu_seqlens.dim() != 1 or cu_seqlens.numel() < 2:
        raise AttentionArgumentError(
            f"{fn}: {name} must be 1-D of length batch + 1 >= 2, got {describe(cu_seqlens)}"
        )
    if cu_seqlens.device != device:
        raise AttentionArgumentError(
            f"{fn}: {name} must be on q's device {device}, got {describe(cu_seqlens)}"
        )
    _require_unit_stride(fn, name, cu_seqlens)
    host = cu_seqlens.to("cpu", torch.int64)
    if host[0].item() != 0:
        raise AttentionArgumentError(f"{fn}: {name}[0] must be 0, got {host[0].item()}")
    lengths = host[1:] - host[:-1]
    if (lengths < 0).any():
        bad = int(torch.nonzero(lengths < 0)[0, 0])
        raise AttentionArgumentError(
            f"{fn}: {name} must be non-decreasing, but {name}[{bad + 1}] = {host[bad + 1].item()} < "
            f"{name}[{bad}] = {host[bad].item()}"
        )
    if host[-1].item() != total:
        raise AttentionArgumentError(
            f"{fn}: {name}[-1] must equal the number of packed tokens ({total}), got {host[-1].item()}"
        )
    return lengths


def check_varlen_qkv(
    q,
    k,
    v,
    cu_seqlens_q,
    cu_seqlens_k,
    max_seqlen_q,
    max_seqlen_k,
    *,
    fn: str = "flash_attn_varlen_func",
    dtypes: Iterable[torch.dtype] | None = None,
    head_dims: Iterable[int] | None = None,
    device_type: str | None = None,
    head_dim_v_must_match: bool = False,
) -> tuple[AttnShape, torch.Tensor, torch.Tensor]:
    """Validate packed (total, heads, headdim) q, k, v with their cu_seqlens.

    Returns the sizes and the host-side per-sequence lengths of q and k.
    """
    layout = "(total_tokens, heads, headdim)"
    for name, t in (("q", q), ("k", k), ("v", v)):
        _check_tensor(fn, name, t, 3, layout)
    dtypes = tuple(dtypes) if dtypes is not None else None
    head_dims = tuple(head_dims) if head_dims is not None else None
    _check_common(fn, q, k, v, dtypes, head_dims, device_type, head_dim_v_must_match)
    if k.shape[0] != v.shape[0]:
        raise AttentionArgumentError(
            f"{fn}: k and v must hold the same number of tokens, got {k.shape[0]} and {v.shape[0]}"
        )
    lengths_q = check_cu_seqlens(cu_seqlens_q, "cu_seqlens_q", total=q.shape[0], device=q.device, fn=fn)
    lengths_k = check_cu_seqlens(cu_seqlens_k, "cu_seqlens_k", total=k.shape[0], device=q.device, fn=fn)
    if lengths_q.numel() != lengths_k.numel():
        raise AttentionArgumentError(
            f"{fn}: cu_seqlens_q and cu_seqlens_k must describe the same batch, got lengths "
            f"{cu_seqlens_q.numel()} and {cu_seqlens_k.numel()}"
        )
    for name, bound, lengths in (
        ("max_seqlen_q", max_seqlen_q, lengths_q),
        ("max_seqlen_k", max_seqlen_k, lengths_k),
    ):
        longest = int(lengths.max())
        if not isinstance(bound, int) or bound < longest:
            raise AttentionArgumentError(
                f"{fn}: {name} must be an int >= the longest sequence ({longest}), got {bound!r}"
            )
    shape = AttnShape(None, None, None, q.shape[1], k.shape[1], q.shape[2], v.shape[2])
    return shape, lengths_q, lengths_k


@dataclass(frozen=True)
class KVCacheShape:
    """Sizes parsed for decoding against a KV cache."""

    attn: AttnShape
    paged: bool
    page_size: int  # tokens per page; the cache's seqlen when not paged
    num_pages: int  # pages in the pool; batch when not paged
    cache_seqlens: torch.Tensor  # (batch,) on the host, int64


def check_kvcache(
    q,
    k_cache,
    v_cache,
    cache_seqlens=None,
    block_table=None,
    *,
    fn: str = "flash_attn_with_kvcache",
    dtypes: Iterable[torch.dtype] | None = None,
    head_dims: Iterable[int] | None = None,
    device_type: str | None = None,
    page_size_multiple: int | None = None,
    head_dim_v_must_match: bool = False,
) -> KVCacheShape:
    """Validate decoding arguments.

    q: (batch, seqlen_q, heads, headdim). Without ``block_table`` the caches are (batch, seqlen_cache, heads_k,
    headdim); with it they are a page pool (num_pages, page_size, heads_k, headdim) and ``block_table``
    (batch, max_pages_per_seq) int32 maps each sequence's logical pages to pool pages. ``cache_seqlens``
    (batch,) int32, or an int, or None (the whole cache), says how many tokens of each cache are valid.
    """
    for name, t in (("q", q), ("k_cache", k_cache), ("v_cache", v_cache)):
        _check_tensor(
            fn,
            name,
            t,
            4,
            "(batch, seqlen, heads, headdim)"
            if name == "q"
            else "(batch, seqlen_cache, heads_k, headdim) or (num_pages, page_size, heads_k, headdim)",
        )
    dtypes = tuple(dtypes) if dtypes is not None else None
    head_dims = tuple(head_dims) if head_dims is not None else None
    _check_common(fn, q, k_cache, v_cache, dtypes, head_dims, device_type, head_dim_v_must_match)
    if k_cache.shape[:2] != v_cache.shape[:2]:
        raise AttentionArgumentError(
            f"{fn}: k_cache and v_cache must have the same leading dims, got {describe(k_cache)} and {describe(v_cache)}"
        )
    batch = q.shape[0]
    paged = block_table is not None
    if paged:
        if (
            not isinstance(block_table, torch.Tensor)
            or block_table.dtype != torch.int32
            or block_table.dim() != 2
        ):
            raise AttentionArgumentError(
                f"{fn}: block_table must be an int32 tensor (batch, max_pages_per_seq), got {describe(block_table)}"
            )
        if block_table.shape[0] != batch:
            raise AttentionArgumentError(
                f"{fn}: block_table must have one row per sequence ({batch}), got {describe(block_table)}"
            )
        if block_table.device != q.device:
            raise AttentionArgumentError(
                f"{fn}: block_table must be on q's device {q.device}, got {describe(block_table)}"
            )
        _require_unit_stride(fn, "block_table", block_table)
        page_size, num_pages = k_cache.shape[1], k_cache.shape[0]
        if page_size_multiple and page_size % page_size_multiple:
            raise UnsupportedFeatureError(
                f"{fn}: page size (k_cache.shape[1]) must be a multiple of {page_size_multiple}, got {page_size}"
            )
        capacity = block_table.shape[1] * page_size
    else:
        if k_cache.shape[0] != batch:
            raise AttentionArgumentError(
                f"{fn}: without block_table, k_cache must hold one cache per sequence (batch {batch}), "
                f"got {describe(k_cache)}"
            )
        page_size, num_pages = k_cache.shape[1], batch
        capacity = page_size

    if cache_seqlens is None:
        lengths = torch.full((batch,), capacity, dtype=torch.int64)
    elif isinstance(cache_seqlens, int):
        lengths = torch.full((batch,), cache_seqlens, dtype=torch.int64)
    elif isinstance(cache_seqlens, torch.Tensor):
        if cache_seqlens.dtype != torch.int32 or cache_seqlens.shape != (batch,):
            raise AttentionArgumentError(
                f"{fn}: cache_seqlens must be an int32 tensor of shape ({batch},), got {describe(cache_seqlens)}"
            )
        if cache_seqlens.device != q.device:
            raise AttentionArgumentError(
                f"{fn}: cache_seqlens must be on q's device {q.device}, got {describe(cache_seqlens)}"
            )
        _require_unit_stride(fn, "cache_seqlens", cache_seqlens)
        lengths = cache_seqlens.to("cpu", torch.int64)
    else:
        raise AttentionArgumentError(
            f"{fn}: cache_seqlens must be None, an int or an int32 tensor, got {cache_seqlens!r}"
        )
    if (lengths < 0).any() or (lengths > capacity).any():
        raise AttentionArgumentError(
            f"{fn}: cache_seqlens must lie in [0, {capacity}] (the cache's capacity), got {lengths.tolist()}"
        )
    if paged:
        pages_used = (lengths + page_size - 1) // page_size
        table = block_table.to("cpu", torch.int64)
        used = torch.arange(table.shape[1])[None, :] < pages_used[:, None]
        bad = used & ((table < 0) | (table >= num_pages))
        if bad.any():
            b, p = (int(x) for x in torch.nonzero(bad)[0])
            raise AttentionArgumentError(
                f"{fn}: block_table[{b}, {p}] = {int(table[b, p])} is out of range: pages in use must lie in "
                f"[0, {num_pages}) (k_cache.shape[0])"
            )
    attn = AttnShape(batch, q.shape[1], None, q.shape[2], k_cache.shape[2], q.shape[3], v_cache.shape[3])
    return KVCacheShape(attn, paged, page_size, num_pages, lengths)
