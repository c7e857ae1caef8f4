"""Test helpers for MLA decoding backends: seeded inputs, FlashMLA's tolerance rule, a conformance suite.

A backend package tests itself against the reference by subclassing :class:`MLAConformance`::

    from attn_reference.testing.mla import MLABackend, MLAConformance, MLAFeatures

    class TestMyMLA(MLAConformance):
        backend = MLABackend(
            name="mine",
            flash_mla_with_kvcache=my_decode,
            get_mla_metadata=my_metadata,          # or None
            flash_mla_sparse_fwd=my_sparse_prefill,  # or None
            features=MLAFeatures(dtypes=(torch.bfloat16,), page_sizes=(64,), sparse=True, fp8=True, ...),
        )
        device = "cuda"
        dtypes = (torch.bfloat16, torch.float16)
        size = "full"  # or "tiny"

Every declared feature is compared with the reference (:mod:`attn_reference.mla`) on a fixed grid with
:func:`assert_mla_close`; every undeclared one must raise ``UnsupportedFeatureError``; invalid arguments
must raise ``AttentionArgumentError``. GPU subclasses should carry ``pytestmark = pytest.mark.gpu`` (or
``sm90``) so CPU-only machines skip them.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable, Iterator, Sequence
from typing import Any, ClassVar

import pytest
import torch

from attn_reference import mla
from attn_reference.errors import AttentionArgumentError, UnsupportedFeatureError
from attn_reference.fp8_kvcache import dequantize_kvcache_fp8, quantize_kvcache_fp8
from attn_reference.testing.inputs import strided_view

#: What FlashMLA's decoding tests allow between a kernel's ``out`` and the reference's.
OUT_ABS_TOL = 8e-4
OUT_REL_TOL = 2.01 / 128
OUT_COS_DIFF_TOL = 5e-6
#: ... and between the two ``lse`` (an fp32 value rounded a few times more than the reference's).
LSE_ABS_TOL = 1e-6
LSE_REL_TOL = 8.01 / 65536
LSE_COS_DIFF_TOL = 1e-7

#: Block-table value FlashMLA's tests write past each sequence's last block: never read, so never checked.
UNUSED_BLOCK_ENTRY = 2147480000


# ---------------------------------------------------------------------------------------------------------
# Tolerance
# ---------------------------------------------------------------------------------------------------------


def mla_mismatch(
    actual: torch.Tensor,
    expected: torch.Tensor,
    abs_tol: float = OUT_ABS_TOL,
    rel_tol: float = OUT_REL_TOL,
    cos_diff_tol: float = OUT_COS_DIFF_TOL,
) -> str | None:
    """Why ``actual`` is not close to ``expected`` under FlashMLA's rule, or ``None`` when it is.

    The rule: +inf, -inf and NaN must sit at exactly the same positions; every other element must be within
    ``abs_tol`` absolutely *or* ``rel_tol`` relatively (relative to ``|expected| + 1e-6``); and the cosine
    difference ``1 - 2<a, e> / (|a|^2 + |e|^2)`` of the finite parts, in fp64, must not exceed
    ``cos_diff_tol`` (skipped when ``expected`` is all but zero).
    """
    if actual.shape != expected.shape:
        return f"shape {tuple(actual.shape)} != expected {tuple(expected.shape)}"
    if actual.dtype != expected.dtype:
        return f"dtype {actual.dtype} != expected {expected.dtype}"
    a = actual.detach().to("cpu", torch.float64)
    e = expected.detach().to("cpu", torch.float64)
    problems = []
    for label, where in (("+inf", torch.isposinf), ("-inf", torch.isneginf), ("NaN", torch.isnan)):
        in_a, in_e = where(a), where(e)
        if not torch.equal(in_a, in_e):
            first = tuple(int(x) for x in (in_a != in_e).nonzero()[0])
            problems.append(
                f"{label} at {int(in_a.sum())} positions, expected {int(in_e.sum())} (first difference at "
                f"{first}: {a[first].item()} vs expected {e[first].item()})"
            )
        a = a.masked_fill(in_a, 0.0)
        e = e.masked_fill(in_e, 0.0)
    if problems:
        return "; ".join(problems)

    abs_err = (a - e).abs()
    rel_err = abs_err / (e.abs() + 1e-6)
    ok = (abs_err < abs_tol) | (rel_err < rel_tol)
    if not ok.all():
        bad = ~ok
        flat = int(torch.argmax(torch.where(bad, abs_err, -1.0)))
        worst = _unravel(flat, tuple(a.shape))
        return (
            f"{int(bad.sum())} of {ok.numel()} elements beyond abs {abs_tol:g} and rel {rel_tol:g}; worst at "
            f"{worst}: {a[worst].item():.6g} vs expected {e[worst].item():.6g} (abs err "
            f"{abs_err[worst].item():.3g}, rel err {rel_err[worst].item():.3g})"
        )
    if (e * e).sum().item() >= 1e-12:
        cos_diff = 1.0 - 2.0 * (a * e).sum().item() / (a * a + e * e).sum().item()
        if abs(cos_diff) > cos_diff_tol:
            return f"cosine difference {cos_diff:.3g} exceeds {cos_diff_tol:g}"
    return None


def _unravel(flat: int, shape: tuple[int, ...]) -> tuple[int, ...]:
    index = []
    for size in reversed(shape):
        flat, i = divmod(flat, size)
        index.append(i)
    return tuple(reversed(index))


def assert_mla_close(
    name: str,
    actual: torch.Tensor,
    expected: torch.Tensor,
    abs_tol: float = OUT_ABS_TOL,
    rel_tol: float = OUT_REL_TOL,
    cos_diff_tol: float = OUT_COS_DIFF_TOL,
) -> None:
    """Assert FlashMLA's closeness rule (see :func:`mla_mismatch`); the defaults are those for ``out``.

    For ``lse`` pass ``abs_tol=LSE_ABS_TOL, rel_tol=LSE_REL_TOL, cos_diff_tol=LSE_COS_DIFF_TOL`` or use
    :func:`assert_mla_lse_close`.
    """
    why = mla_mismatch(actual, expected, abs_tol, rel_tol, cos_diff_tol)
    if why is not None:
        raise AssertionError(f"{name}: {why}")


def assert_mla_lse_close(name: str, actual: torch.Tensor, expected: torch.Tensor) -> None:
    """:func:`assert_mla_close` with FlashMLA's tolerances for ``lse`` and ``max_logits``."""
    assert_mla_close(name, actual, expected, LSE_ABS_TOL, LSE_REL_TOL, LSE_COS_DIFF_TOL)


# ---------------------------------------------------------------------------------------------------------
# Inputs
# ---------------------------------------------------------------------------------------------------------


@dataclasses.dataclass
class MLADecodeInputs:
    """Arguments of one ``flash_mla_with_kvcache`` call; :meth:`kwargs` gives them by name.

    ``dense_k_cache`` and ``extra_dense_k_cache`` keep the (dequantized, bf16) values of FP8 caches for
    independent checks. ``seqlens``/``extra_seqlens`` are the logical lengths sparse indices were drawn from.
    """

    q: torch.Tensor
    k_cache: torch.Tensor
    block_table: torch.Tensor | None
    cache_seqlens: torch.Tensor | None
    head_dim_v: int = 512
    softmax_scale: float | None = None
    causal: bool = False
    is_fp8_kvcache: bool = False
    indices: torch.Tensor | None = None
    attn_sink: torch.Tensor | None = None
    extra_k_cache: torch.Tensor | None = None
    extra_indices_in_kvcache: torch.Tensor | None = None
    topk_length: torch.Tensor | None = None
    extra_topk_length: torch.Tensor | None = None
    dense_k_cache: torch.Tensor | None = None
    extra_dense_k_cache: torch.Tensor | None = None

    _CALL_ARGS: ClassVar[tuple[str, ...]] = (
        "q",
        "k_cache",
        "block_table",
        "cache_seqlens",
        "head_dim_v",
        "softmax_scale",
        "causal",
        "is_fp8_kvcache",
        "indices",
        "attn_sink",
        "extra_k_cache",
        "extra_indices_in_kvcache",
        "topk_length",
        "extra_topk_length",
    )

    def kwargs(self) -> dict[str, Any]:
        """The ``flash_mla_with_kvcache`` arguments by name (the scheduler metadata left out)."""
        return {name: getattr(self, name) for name in self._CALL_ARGS}

    def call(self, fn, tile_scheduler_metadata=None, num_splits=None, **changes):
        """``fn(q, k_cache, block_table, cache_seqlens, head_dim_v, tile_scheduler_metadata, num_splits,
        **rest)``, FlashMLA's positional form, with ``changes`` replacing arguments of these inputs."""
        kw = {**self.kwargs(), **changes}
        head = [kw.pop(name) for name in ("q", "k_cache", "block_table", "cache_seqlens", "head_dim_v")]
        return fn(*head, tile_scheduler_metadata, num_splits, **kw)

    def to(self, device) -> MLADecodeInputs:
        moved = {
            f.name: (v.to(device) if isinstance(v, torch.Tensor) else v)
            for f in dataclasses.fields(self)
            for v in [getattr(self, f.name)]
        }
        return MLADecodeInputs(**moved)


def _draw_seqlens(rng: random.Random, b: int, s_k: int, s_q: int, varlen: bool, zero_lengths: bool):
    # FlashMLA's tests: normal with mean s_k and sd s_k / 2, never shorter than s_q.
    lens = [max(int(rng.normalvariate(s_k, s_k / 2)), s_q) if varlen else s_k for _ in range(b)]
    if zero_lengths:
        zero = [rng.random() < 0.5 for _ in range(b)]
        if b >= 2:
            zero[0], zero[-1] = True, False  # always both kinds
        lens = [0 if z else n for n, z in zip(lens, zero)]
    return lens


def _paged_cache(gen, rng, lens, page, h_kv, d, spare_blocks, nan_padding, garbage_block_table):
    """A paged cache for sequences of ``lens``, shuffled blocks, NaN in every slot no sequence uses."""
    b = len(lens)
    max_blocks = max(1, -(-max(lens) // page)) + spare_blocks
    num_blocks = b * max_blocks
    order = torch.randperm(num_blocks, generator=gen)
    table = order.view(b, max_blocks).to(torch.int32)
    cache = (torch.randn(num_blocks, page, h_kv, d, generator=gen) / 10).clamp(-1, 1)
    used_tokens = torch.zeros(num_blocks, page, dtype=torch.bool)
    for i, n in enumerate(lens):
        n_blocks = -(-n // page)
        for j in range(n_blocks):
            used_tokens[table[i, j], : min(page, n - j * page)] = True
        if garbage_block_table:
            table[i, n_blocks:] = UNUSED_BLOCK_ENTRY
    if nan_padding:
        cache[~used_tokens] = float("nan")
    return cache, table


def mla_decode_inputs(
    b: int,
    s_q: int,
    h_q: int,
    h_kv: int,
    s_k: int,
    *,
    head_dim: int = 576,
    dtype: torch.dtype = torch.bfloat16,
    device: str | torch.device = "cpu",
    page_block_size: int = 64,
    varlen: bool = False,
    zero_lengths: bool = False,
    causal: bool = False,
    softmax_scale: float | None = None,
    nan_padding: bool = True,
    garbage_block_table: bool = True,
    spare_blocks: int = 1,
    seed: int = 0,
    seqlens: Sequence[int] | None = None,
) -> MLADecodeInputs:
    """Seeded inputs for dense MLA decoding, drawn as FlashMLA's tests draw them.

    ``cache_seqlens`` is ``s_k`` for all, or with ``varlen`` normal(s_k, s_k / 2) clipped below at s_q;
    ``zero_lengths`` zeroes about half of them (always the first, never the last when b >= 2); or it is
    ``seqlens`` as given (b lengths; ``s_k``, ``varlen`` and ``zero_lengths`` are then unused). Blocks are
    handed out in a random permutation; every unused slot of a used block and every block no sequence
    uses is NaN (``nan_padding``), and block-table entries past a sequence's end hold a huge number
    (``garbage_block_table``), so a kernel that reads past a sequence shows it. q and K are
    ``randn / 10`` clamped to [-1, 1], generated on the CPU, then moved to ``device``.
    """
    rng = random.Random(seed)
    gen = torch.Generator().manual_seed(seed)
    if seqlens is None:
        lens = _draw_seqlens(rng, b, s_k, s_q, varlen, zero_lengths)
    elif len(seqlens) != b or any(n < 0 for n in seqlens):
        raise ValueError(f"seqlens: expected {b} lengths >= 0, got {list(seqlens)}")
    else:
        lens = [int(n) for n in seqlens]
    q = (torch.randn(b, s_q, h_q, head_dim, generator=gen) / 10).clamp(-1, 1)
    cache, table = _paged_cache(
        gen, rng, lens, page_block_size, h_kv, head_dim, spare_blocks, nan_padding, garbage_block_table
    )
    inputs = MLADecodeInputs(
        q=q.to(dtype),
        k_cache=cache.to(dtype),
        block_table=table,
        cache_seqlens=torch.tensor(lens, dtype=torch.int32),
        softmax_scale=softmax_scale,
        causal=causal,
    )
    return inputs.to(device)


def _sparse_scope(
    gen,
    rng,
    b,
    s_q,
    s_k,
    topk,
    page,
    head_dim,
    varlen,
    zero_lengths,
    with_topk_length,
    all_invalid_rows,
    nan_padding,
):
    """One FP8 cache with sparse indices into it: returns (packed, dense, indices, topk_length, lens)."""
    lens = _draw_seqlens(rng, b, s_k, s_q, varlen, zero_lengths)
    dense, table = _paged_cache(gen, rng, lens, page, 1, head_dim, 0, False, False)
    # Each query row picks distinct logical tokens of its sequence; rows with fewer tokens than topk pad
    # with -1, and optionally some rows are all -1.
    logical = torch.full((b, s_q, topk), -1, dtype=torch.long)
    for i in range(b):
        for j in range(s_q):
            if all_invalid_rows and rng.random() < 0.25:
                continue
            picks = torch.randperm(lens[i], generator=gen)[:topk]
            logical[i, j, : picks.numel()] = picks
            # Shuffle so -1 entries are spread among valid ones, as a top-k selector may leave them.
            logical[i, j] = logical[i, j, torch.randperm(topk, generator=gen)]
    # FlashMLA's indices are physical: block_table applied, block * page_block_size + offset.
    safe = logical.clamp_min(0)
    physical = table.long().gather(1, (safe // page).view(b, -1)).view(b, s_q, topk) * page + safe % page
    indices = torch.where(logical >= 0, physical, -1).to(torch.int32)
    topk_length = None
    if with_topk_length:
        topk_length = torch.randint(0, topk + 1, (b,), generator=gen, dtype=torch.int32)
    if nan_padding:
        # Every token no used index points at is NaN, so reading past topk_length or a -1 shows.
        used = indices.long()
        if topk_length is not None:
            used = torch.where(
                torch.arange(topk).view(1, 1, -1) < topk_length.view(-1, 1, 1).long(), used, -1
            )
        keep = torch.zeros(dense.shape[0] * page, dtype=torch.bool)
        keep[used[used >= 0]] = True
        dense.view(-1, head_dim)[~keep] = float("nan")
    dense = dense.to(torch.bfloat16)
    packed = quantize_kvcache_fp8(dense)
    return packed, dequantize_kvcache_fp8(packed), indices, topk_length, lens


def mla_sparse_decode_inputs(
    b: int,
    s_q: int,
    h_q: int,
    s_k: int,
    topk: int,
    *,
    head_dim: int = 576,
    device: str | torch.device = "cpu",
    page_block_size: int = 64,
    varlen: bool = True,
    zero_lengths: bool = False,
    topk_length: bool = False,
    attn_sink: bool = False,
    extra: tuple[int, int, int] | None = None,
    extra_topk_length: bool = False,
    all_invalid_rows: bool = False,
    softmax_scale: float | None = None,
    nan_padding: bool = True,
    seed: int = 0,
) -> MLADecodeInputs:
    """Seeded inputs for sparse MLA decoding (FP8 cache, h_kv = 1), drawn as FlashMLA's tests draw them.

    ``extra`` = (s_k, topk, page_block_size) of a second cache. ``attn_sink`` draws randn per head with
    some heads at +inf and -inf. The default ``softmax_scale`` is FlashMLA's test value d ** -0.55, not the
    API default, so that a backend ignoring the argument fails. Tokens no used index points at are NaN.
    """
    rng = random.Random(seed)
    gen = torch.Generator().manual_seed(seed)
    q = torch.randn(b, s_q, h_q, head_dim, generator=gen).clamp(-1, 1).to(torch.bfloat16)
    packed, dense, indices, lengths, _ = _sparse_scope(
        gen,
        rng,
        b,
        s_q,
        s_k,
        topk,
        page_block_size,
        head_dim,
        varlen,
        zero_lengths,
        topk_length,
        all_invalid_rows,
        nan_padding,
    )
    sink = None
    if attn_sink:
        sink = torch.randn(h_q, generator=gen)
        pick = torch.rand(h_q, generator=gen)
        sink[pick < 0.2] = float("inf")
        sink[pick > 0.8] = float("-inf")
    inputs = MLADecodeInputs(
        q=q,
        k_cache=packed,
        block_table=None,
        cache_seqlens=None,
        softmax_scale=head_dim**-0.55 if softmax_scale is None else softmax_scale,
        is_fp8_kvcache=True,
        indices=indices,
        attn_sink=sink,
        topk_length=lengths,
        dense_k_cache=dense,
    )
    if extra is not None:
        e_s_k, e_topk, e_page = extra
        e_packed, e_dense, e_indices, e_lengths, _ = _sparse_scope(
            gen,
            rng,
            b,
            s_q,
            e_s_k,
            e_topk,
            e_page,
            head_dim,
            varlen,
            zero_lengths,
            extra_topk_length,
            all_invalid_rows,
            nan_padding,
        )
        inputs.extra_k_cache = e_packed
        inputs.extra_indices_in_kvcache = e_indices
        inputs.extra_topk_length = e_lengths
        inputs.extra_dense_k_cache = e_dense
    return inputs.to(device)


@dataclasses.dataclass
class MLASparsePrefillInputs:
    """Arguments of one ``flash_mla_sparse_fwd`` call; :meth:`kwargs` gives them by name."""

    q: torch.Tensor
    kv: torch.Tensor
    indices: torch.Tensor
    sm_scale: float
    d_v: int = 512
    attn_sink: torch.Tensor | None = None
    topk_length: torch.Tensor | None = None

    def kwargs(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}


#: Invalid index values FlashMLA's prefill tests mix in: anything outside [0, s_kv) means "no token".
_PREFILL_INVALID = (-(2**31), -123456, -1, 114514, 1919810, 2147480000, 2**31 - 1)


def mla_sparse_inputs(
    s_q: int,
    s_kv: int,
    topk: int,
    h_q: int = 128,
    *,
    head_dim: int = 576,
    device: str | torch.device = "cpu",
    attn_sink: bool = False,
    topk_length: bool = False,
    all_invalid_rows: bool = False,
    sm_scale: float = 0.5,
    seed: int = 0,
) -> MLASparsePrefillInputs:
    """Seeded inputs for ``flash_mla_sparse_fwd`` (sparse prefill), drawn as FlashMLA's tests draw them.

    Each query row selects ``min(topk, s_kv)`` distinct rows of kv; the remaining entries are invalid
    values (``-1``, ``s_kv``, large positive and negative numbers). ``all_invalid_rows`` makes about a
    fifth of the rows entirely invalid. q and kv are ``randn / 10`` plus a small per-tensor offset, bf16.
    """
    rng = random.Random(seed)
    gen = torch.Generator().manual_seed(seed)
    q = (torch.randn(s_q, h_q, head_dim, generator=gen) / 10 + (rng.random() - 0.5) / 10).clamp(-10, 10)
    kv = (torch.randn(s_kv, 1, head_dim, generator=gen) / 10 + (rng.random() - 0.5) / 10).clamp(-10, 10)
    invalid = (*_PREFILL_INVALID, s_kv)
    indices = torch.empty(s_q, 1, topk, dtype=torch.int32)
    for i in range(s_q):
        row = torch.tensor([invalid[rng.randrange(len(invalid))] for _ in range(topk)], dtype=torch.int64)
        if not (all_invalid_rows and rng.random() < 0.2):
            picks = torch.randperm(s_kv, generator=gen)[:topk]
            row[: picks.numel()] = picks
            row = row[torch.randperm(topk, generator=gen)]
        indices[i, 0] = row.to(torch.int32)
    sink = None
    if attn_sink:
        sink = torch.randn(h_q, generator=gen)
        pick = torch.rand(h_q, generator=gen)
        sink[pick < 0.2] = float("inf")
        sink[pick > 0.8] = float("-inf")
    lengths = torch.randint(0, topk + 1, (s_q,), generator=gen, dtype=torch.int32) if topk_length else None
    return MLASparsePrefillInputs(
        q=q.to(torch.bfloat16).to(device),
        kv=kv.to(torch.bfloat16).to(device),
        indices=indices.to(device),
        sm_scale=sm_scale,
        attn_sink=None if sink is None else sink.to(device),
        topk_length=None if lengths is None else lengths.to(device),
    )


# ---------------------------------------------------------------------------------------------------------
# Backends and the conformance suite
# ---------------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class MLAFeatures:
    """What an MLA backend implements; the conformance suite checks each claim both ways.

    ``page_sizes`` and ``sparse_num_heads`` are ``None`` for "any". Sparse decoding in FlashMLA always
    reads the FP8 cache, so sparse decode tests run only when both ``sparse`` and ``fp8`` are declared.
    ``topk_multiple`` is the granularity the sparse kernels need of ``topk``.
    """

    dtypes: tuple[torch.dtype, ...] = (torch.bfloat16, torch.float16)
    head_dims: tuple[int, ...] = (576, 512)
    dense: bool = True
    sparse: bool = False
    fp8: bool = False
    attn_sink: bool = False
    extra_cache: bool = False
    page_sizes: tuple[int, ...] | None = None
    sparse_num_heads: tuple[int, ...] | None = None
    topk_multiple: int = 1


@dataclasses.dataclass(frozen=True)
class MLABackend:
    """An implementation of FlashMLA's Python API under test."""

    name: str
    flash_mla_with_kvcache: Callable[..., tuple[torch.Tensor, torch.Tensor]]
    get_mla_metadata: Callable[..., Any] | None = None
    flash_mla_sparse_fwd: Callable[..., tuple[torch.Tensor, torch.Tensor, torch.Tensor]] | None = None
    features: MLAFeatures = MLAFeatures()


#: The reference itself, declaring every feature.
REFERENCE_MLA_BACKEND = MLABackend(
    name="reference",
    flash_mla_with_kvcache=mla.flash_mla_with_kvcache,
    get_mla_metadata=mla.get_mla_metadata,
    flash_mla_sparse_fwd=mla.flash_mla_sparse_fwd,
    features=MLAFeatures(sparse=True, fp8=True, attn_sink=True, extra_cache=True),
)


def _flags(*flags: tuple[str, bool]) -> str:
    """The names of the flags that are on, joined: the tail of a case's id."""
    return "".join(name for name, on in flags if on)


@dataclasses.dataclass(frozen=True)
class DenseCase:
    b: int
    s_q: int
    s_k: int
    h_q: int
    h_kv: int
    causal: bool = False
    varlen: bool = False
    zero_lengths: bool = False
    head_dim: int = 576
    page: int = 64

    @property
    def id(self) -> str:
        flags = _flags(("-causal", self.causal), ("-varlen", self.varlen), ("-zeros", self.zero_lengths))
        return (
            f"b{self.b}-sq{self.s_q}-sk{self.s_k}-hq{self.h_q}-hkv{self.h_kv}-d{self.head_dim}"
            f"-page{self.page}{flags}"
        )


@dataclasses.dataclass(frozen=True)
class SparseCase:
    b: int
    s_q: int
    s_k: int
    topk: int
    h_q: int
    page: int = 64
    head_dim: int = 576
    topk_length: bool = False
    attn_sink: bool = False
    extra: tuple[int, int, int] | None = None
    extra_topk_length: bool = False
    zero_lengths: bool = False
    all_invalid_rows: bool = False

    @property
    def id(self) -> str:
        flags = _flags(
            ("-topklen", self.topk_length),
            ("-sink", self.attn_sink),
            ("-extralen", self.extra_topk_length),
            ("-zeros", self.zero_lengths),
            ("-allinvalid", self.all_invalid_rows),
        )
        extra = "" if self.extra is None else f"-extra{self.extra[0]}x{self.extra[1]}p{self.extra[2]}"
        return (
            f"b{self.b}-sq{self.s_q}-sk{self.s_k}-topk{self.topk}-hq{self.h_q}-d{self.head_dim}"
            f"-page{self.page}{extra}{flags}"
        )


@dataclasses.dataclass(frozen=True)
class PrefillCase:
    s_q: int
    s_kv: int
    topk: int
    h_q: int
    head_dim: int = 576
    attn_sink: bool = False
    topk_length: bool = False
    all_invalid_rows: bool = False

    @property
    def id(self) -> str:
        flags = _flags(
            ("-sink", self.attn_sink), ("-topklen", self.topk_length), ("-allinvalid", self.all_invalid_rows)
        )
        return f"sq{self.s_q}-skv{self.s_kv}-topk{self.topk}-hq{self.h_q}-d{self.head_dim}{flags}"


#: Page sizes tried when a backend takes any: FlashMLA's 64, a small one, an odd one, one token.
_ANY_PAGE_SIZES = (64, 16, 61, 1)


_GENERATORS = {
    DenseCase: mla_decode_inputs,
    SparseCase: mla_sparse_decode_inputs,
    PrefillCase: mla_sparse_inputs,
}


def _dense_grid(size: str) -> list[DenseCase]:
    if size == "tiny":
        return [
            DenseCase(1, 1, 20, 1, 1),
            DenseCase(2, 2, 37, 3, 1, causal=True, varlen=True),
            DenseCase(3, 4, 29, 4, 2, causal=True, varlen=True, zero_lengths=True),
            DenseCase(2, 3, 45, 9, 3),
            DenseCase(2, 1, 11, 8, 8, varlen=True, zero_lengths=True),
            DenseCase(2, 2, 23, 6, 2, causal=True, head_dim=512),
        ]
    # FlashMLA's own grid is b {1,2,6,64} x s_q {1,2,4} x s_k {20,140,4096} x h_q {1,3,9,63,64,126,128}
    # x h_kv {1,2,3,8} x varlen x causal. This covers every valid (h_q, h_kv) pair once, cycling the other
    # axes with co-prime strides so every value of each axis and every (s_q, causal) pair appears.
    pairs = [(h_q, h_kv) for h_kv in (1, 2, 3, 8) for h_q in (1, 3, 9, 63, 64, 126, 128) if h_q % h_kv == 0]
    bs, sqs, sks = (1, 2, 6, 64), (1, 2, 4), (20, 140, 4096)
    cases = []
    for i, (h_q, h_kv) in enumerate(pairs):
        b, s_q, s_k = bs[i % 4], sqs[i % 3], sks[(i // 3) % 3]
        if b == 64 and s_k == 4096:
            s_k = 140  # keeps the fp32 reference within a few hundred MB
        cases.append(DenseCase(b, s_q, s_k, h_q, h_kv, causal=i % 2 == 1, varlen=(i // 2) % 2 == 1))
    cases += [
        DenseCase(32, 2, 4096, 128, 1, causal=True, varlen=True, zero_lengths=True),
        DenseCase(16, 4, 1000, 64, 8, causal=False, varlen=True, zero_lengths=True),
        DenseCase(6, 2, 140, 128, 1, causal=True, varlen=True, head_dim=512),
        DenseCase(2, 1, 4096, 16, 2, head_dim=512),
    ]
    return cases


def _sparse_grid(size: str) -> list[SparseCase]:
    if size == "tiny":
        return [
            SparseCase(2, 1, 50, 24, 4, page=16),
            SparseCase(3, 2, 40, 48, 4, page=61, topk_length=True, attn_sink=True, zero_lengths=True),
            SparseCase(2, 3, 30, 16, 4, page=1, attn_sink=True, extra=(20, 8, 16), extra_topk_length=True),
            SparseCase(2, 2, 35, 16, 4, page=16, head_dim=512, all_invalid_rows=True),
        ]
    # After FlashMLA's sparse decoding grid: (s_k, topk, page) from its list, h_q 64/128, s_q 1/3.
    return [
        SparseCase(4, 1, 512, 64, 64, page=64),
        SparseCase(74, 3, 1024, 576, 128, page=61, attn_sink=True, topk_length=True),
        SparseCase(4, 3, 2046, 2048, 64, page=2, attn_sink=True),
        SparseCase(16, 3, 650, 576, 128, page=53, zero_lengths=True, all_invalid_rows=True, attn_sink=True),
        SparseCase(4, 3, 512, 64, 128, page=64, head_dim=512, extra=(512, 64, 2), extra_topk_length=True),
        SparseCase(8, 1, 1024, 576, 64, page=64, head_dim=512, topk_length=True, extra=(1024, 576, 61)),
    ]


def _prefill_grid(size: str) -> list[PrefillCase]:
    if size == "tiny":
        return [
            PrefillCase(5, 40, 16, 4),
            PrefillCase(3, 10, 16, 4, attn_sink=True, topk_length=True),  # topk > s_kv: out-of-bound topk
            PrefillCase(6, 33, 8, 4, head_dim=512, all_invalid_rows=True, attn_sink=True),
        ]
    return [
        PrefillCase(62, 592, 128, 128),
        PrefillCase(213, 1840, 256, 64, attn_sink=True, topk_length=True),
        PrefillCase(62, 153, 256, 128, head_dim=512),
        PrefillCase(62, 95, 128, 64, attn_sink=True, topk_length=True, all_invalid_rows=True),
        PrefillCase(1, 512, 512, 128, head_dim=512, attn_sink=True),
    ]


def _round_up(x: int, m: int) -> int:
    return -(-x // m) * m


def _dtype_id(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


class MLAConformance:
    """Subclass in a test module to run the MLA conformance suite on a backend (see the module docstring).

    Set ``backend`` (an :class:`MLABackend`), ``device``, ``dtypes`` (those to test; each must be declared
    in ``backend.features.dtypes`` to be compared, the undeclared ones are checked to raise) and ``size``
    (``"tiny"`` for CPU, ``"full"`` for a GPU). ``oracle_accum_dtype`` is what the reference accumulates
    in when it gives the expected values: the reference's own suite sets float64, so that its fp32
    default is compared with something other than itself.
    """

    backend: ClassVar[MLABackend]
    device: ClassVar[str] = "cuda"
    dtypes: ClassVar[tuple[torch.dtype, ...]] = (torch.bfloat16, torch.float16)
    size: ClassVar[str] = "tiny"
    oracle_accum_dtype: ClassVar[torch.dtype] = torch.float32

    # -- parametrization (pytest calls this hook on test classes too) --------------------------------------

    def pytest_generate_tests(self, metafunc: pytest.Metafunc) -> None:
        if "dense_case" in metafunc.fixturenames:
            params = [
                pytest.param(case, dtype, id=f"{case.id}-{_dtype_id(dtype)}")
                for case, dtype in self._dense_cases()
            ]
            metafunc.parametrize(("dense_case", "dtype"), params or [pytest.param(None, None, id="none")])
        if "sparse_case" in metafunc.fixturenames:
            params = [pytest.param(c, id=c.id) for c in self._sparse_cases()]
            metafunc.parametrize("sparse_case", params or [pytest.param(None, id="none")])
        if "prefill_case" in metafunc.fixturenames:
            params = [pytest.param(c, id=c.id) for c in self._prefill_cases()]
            metafunc.parametrize("prefill_case", params or [pytest.param(None, id="none")])
        if "bad_dense_arg" in metafunc.fixturenames:
            metafunc.parametrize("bad_dense_arg", sorted(_BAD_DENSE_ARGS))
        if "bad_sparse_arg" in metafunc.fixturenames:
            metafunc.parametrize("bad_sparse_arg", sorted(_BAD_SPARSE_ARGS))
        if "bad_prefill_arg" in metafunc.fixturenames:
            metafunc.parametrize("bad_prefill_arg", sorted(_BAD_PREFILL_ARGS))

    def _page_sizes(self) -> tuple[int, ...]:
        declared = self.backend.features.page_sizes
        return _ANY_PAGE_SIZES if declared is None else declared

    def _dense_cases(self) -> Iterator[tuple[DenseCase, torch.dtype]]:
        feats = self.backend.features
        if not feats.dense:
            return
        dtypes = [dt for dt in self.dtypes if dt in feats.dtypes]
        pages = self._page_sizes()
        for i, case in enumerate(_dense_grid(self.size)):
            if case.head_dim not in feats.head_dims or not dtypes:
                continue
            case = dataclasses.replace(case, page=pages[i % len(pages)])
            # Every dtype for the first cases, then one dtype a case: all dtypes meet every feature. The
            # dtype steps once per round of page sizes, so that every (page size, dtype) pair comes up
            # (stepping both with i would pair page 64 only with the first dtype).
            for dtype in dtypes if i < 2 else [dtypes[(i // len(pages)) % len(dtypes)]]:
                yield case, dtype

    def _sparse_num_heads(self, h_q: int) -> int:
        allowed = self.backend.features.sparse_num_heads
        return h_q if allowed is None or h_q in allowed else allowed[h_q % len(allowed)]

    def _sparse_cases(self) -> Iterator[SparseCase]:
        feats = self.backend.features
        if not (feats.sparse and feats.fp8):
            return
        pages = feats.page_sizes
        for case in _sparse_grid(self.size):
            if case.head_dim not in feats.head_dims:
                continue
            if case.attn_sink and not feats.attn_sink:
                case = dataclasses.replace(case, attn_sink=False)
            if case.extra is not None and not feats.extra_cache:
                case = dataclasses.replace(case, extra=None, extra_topk_length=False)
            extra = case.extra
            if extra is not None:
                e_page = extra[2] if pages is None or extra[2] in pages else pages[0]
                extra = (extra[0], _round_up(extra[1], feats.topk_multiple), e_page)
            yield dataclasses.replace(
                case,
                h_q=self._sparse_num_heads(case.h_q),
                topk=_round_up(case.topk, feats.topk_multiple),
                page=case.page if pages is None or case.page in pages else pages[0],
                extra=extra,
            )

    def _prefill_cases(self) -> Iterator[PrefillCase]:
        feats = self.backend.features
        if self.backend.flash_mla_sparse_fwd is None:
            return
        for case in _prefill_grid(self.size):
            if case.head_dim not in feats.head_dims:
                continue
            yield dataclasses.replace(
                case,
                h_q=self._sparse_num_heads(case.h_q),
                topk=_round_up(case.topk, feats.topk_multiple),
                attn_sink=case.attn_sink and feats.attn_sink,
            )

    # -- calling the backend -------------------------------------------------------------------------------

    def _decode(self, inputs: MLADecodeInputs) -> tuple[torch.Tensor, torch.Tensor]:
        metadata = (None, None)
        if self.backend.get_mla_metadata is not None:
            # The README's (legacy) signature; current FlashMLA ignores the arguments.
            q = inputs.q
            topk = None if inputs.indices is None else inputs.indices.shape[-1]
            h_kv = 1 if inputs.is_fp8_kvcache else inputs.k_cache.shape[2]
            seqlens = inputs.cache_seqlens
            metadata = self.backend.get_mla_metadata(
                seqlens, q.shape[1] * q.shape[2] // h_kv, h_kv, q.shape[2], inputs.is_fp8_kvcache, topk
            )
        return inputs.call(self.backend.flash_mla_with_kvcache, *metadata)

    def _inputs(self, case: DenseCase | SparseCase | PrefillCase, seed: int = 0, **kw):
        """The seeded inputs of ``case``: its fields are its generator's arguments (``page`` its page size)."""
        args = {f.name: getattr(case, f.name) for f in dataclasses.fields(case)}
        if "page" in args:
            args["page_block_size"] = args.pop("page")
        return _GENERATORS[type(case)](**args, device=self.device, seed=seed, **kw)

    def _smallest_dense(self, **overrides) -> tuple[MLADecodeInputs, DenseCase, torch.dtype]:
        feats = self.backend.features
        dtype = next((dt for dt in self.dtypes if dt in feats.dtypes), feats.dtypes[0])
        case = DenseCase(2, 2, 20, 4, 2, causal=True, head_dim=feats.head_dims[0], page=self._page_sizes()[0])
        case = dataclasses.replace(case, **overrides)
        return self._inputs(case, dtype=dtype), case, dtype

    def _smallest_sparse_case(self, **overrides) -> SparseCase:
        feats = self.backend.features
        case = SparseCase(
            2,
            1,
            30,
            _round_up(16, feats.topk_multiple),
            self._sparse_num_heads(4),
            page=self._page_sizes()[0],
            head_dim=feats.head_dims[0],
        )
        return dataclasses.replace(case, **overrides)

    # -- features the backend declares: compared with the reference ---------------------------------------

    def test_dense_decode_matches_reference(self, dense_case: DenseCase | None, dtype) -> None:
        if dense_case is None:
            pytest.skip(f"{self.backend.name} declares no dense decoding case for these dtypes/head dims")
        inputs = self._inputs(dense_case, dtype=dtype)
        out, lse = self._decode(inputs)
        ref_out, ref_lse = mla.flash_mla_with_kvcache(**inputs.kwargs(), accum_dtype=self.oracle_accum_dtype)
        _assert_no_nan(ref_out, ref_lse)
        assert_mla_close("out", out, ref_out)
        assert_mla_lse_close("lse", lse, ref_lse)

    def test_sparse_decode_matches_reference(self, sparse_case: SparseCase | None) -> None:
        if sparse_case is None:
            pytest.skip(f"{self.backend.name} does not declare sparse decoding with the FP8 cache")
        inputs = self._inputs(sparse_case)
        out, lse = self._decode(inputs)
        ref_out, ref_lse = mla.flash_mla_with_kvcache(**inputs.kwargs(), accum_dtype=self.oracle_accum_dtype)
        _assert_no_nan(ref_out, ref_lse)
        # FlashMLA's sparse tests allow abs 1e-3 on out (FP8 dequantization in bf16 inside the kernel).
        assert_mla_close("out", out, ref_out, abs_tol=1e-3)
        assert_mla_lse_close("lse", lse, ref_lse)

    def test_sparse_prefill_matches_reference(self, prefill_case: PrefillCase | None) -> None:
        if prefill_case is None:
            pytest.skip(f"{self.backend.name} has no flash_mla_sparse_fwd")
        inputs = self._inputs(prefill_case)
        out, max_logits, lse = self.backend.flash_mla_sparse_fwd(**inputs.kwargs())
        ref_out, ref_max, ref_lse = mla.flash_mla_sparse_fwd(
            **inputs.kwargs(), accum_dtype=self.oracle_accum_dtype
        )
        _assert_no_nan(ref_out, ref_max, ref_lse)
        # FlashMLA's prefill tests: out rel 3.01/128 and cosine 7e-6; max_logits and lse rel 2.01/65536.
        assert_mla_close("out", out, ref_out, abs_tol=8e-4, rel_tol=3.01 / 128, cos_diff_tol=7e-6)
        assert_mla_close("max_logits", max_logits, ref_max, LSE_ABS_TOL, 2.01 / 65536, LSE_COS_DIFF_TOL)
        assert_mla_close("lse", lse, ref_lse, LSE_ABS_TOL, 2.01 / 65536, LSE_COS_DIFF_TOL)

    def test_scheduler_metadata_is_reusable(self) -> None:
        """FlashMLA lets one metadata object serve every call with the same shapes (e.g. all layers)."""
        feats = self.backend.features
        if not feats.dense or self.backend.get_mla_metadata is None:
            pytest.skip(f"{self.backend.name} has no get_mla_metadata or no dense decoding")
        first, case, dtype = self._smallest_dense()
        meta = self.backend.get_mla_metadata(
            first.cache_seqlens, case.s_q * case.h_q // case.h_kv, case.h_kv, case.h_q, False, None
        )
        for seed in (1, 2):
            layer = self._inputs(case, seed=seed, dtype=dtype)  # same shapes and lengths, new values
            lk = layer.kwargs()
            out, lse = self.backend.flash_mla_with_kvcache(
                lk.pop("q"),
                lk.pop("k_cache"),
                lk.pop("block_table"),
                lk.pop("cache_seqlens"),
                lk.pop("head_dim_v"),
                meta[0],
                meta[1],
                **lk,
            )
            ref_out, ref_lse = mla.flash_mla_with_kvcache(
                **layer.kwargs(), accum_dtype=self.oracle_accum_dtype
            )
            assert_mla_close(f"out (call {seed})", out, ref_out)
            assert_mla_lse_close(f"lse (call {seed})", lse, ref_lse)

    # -- features the backend does not declare: must raise UnsupportedFeatureError ------------------------

    def test_undeclared_dtypes_raise(self) -> None:
        feats = self.backend.features
        missing = [dt for dt in (torch.bfloat16, torch.float16) if dt not in feats.dtypes]
        if not missing or not feats.dense:
            pytest.skip("every half dtype is declared")
        _, case, _ = self._smallest_dense()
        for dtype in missing:
            with pytest.raises(UnsupportedFeatureError):
                self._decode(self._inputs(case, dtype=dtype))

    def test_undeclared_head_dims_raise(self) -> None:
        feats = self.backend.features
        missing = [d for d in mla.MLA_HEAD_DIMS if d not in feats.head_dims]
        if not missing or not feats.dense:
            pytest.skip("every head dim is declared")
        for d in missing:
            inputs, _, _ = self._smallest_dense(head_dim=d)
            with pytest.raises(UnsupportedFeatureError):
                self._decode(inputs)

    def test_undeclared_page_sizes_raise(self) -> None:
        feats = self.backend.features
        if feats.page_sizes is None or not feats.dense:
            pytest.skip("any page size is declared")
        page = next(p for p in (*_ANY_PAGE_SIZES, 128, 256) if p not in feats.page_sizes)
        inputs, _, _ = self._smallest_dense(page=page)
        with pytest.raises(UnsupportedFeatureError):
            self._decode(inputs)

    def test_undeclared_sparse_raises(self) -> None:
        feats = self.backend.features
        if feats.sparse and feats.fp8:
            pytest.skip("sparse decoding is declared")
        inputs = self._inputs(self._smallest_sparse_case())
        with pytest.raises(UnsupportedFeatureError):
            self._decode(inputs)

    def test_undeclared_sparse_num_heads_raise(self) -> None:
        feats = self.backend.features
        if not (feats.sparse and feats.fp8) or feats.sparse_num_heads is None:
            pytest.skip("sparse decoding takes any number of heads (or is not declared)")
        h_q = next(h for h in (1, 3, 16, 32, 256) if h not in feats.sparse_num_heads)
        inputs = self._inputs(self._smallest_sparse_case(h_q=h_q))
        with pytest.raises(UnsupportedFeatureError):
            self._decode(inputs)

    def test_undeclared_attn_sink_raises(self) -> None:
        feats = self.backend.features
        if not (feats.sparse and feats.fp8) or feats.attn_sink:
            pytest.skip("attn_sink is declared (or sparse decoding is not)")
        inputs = self._inputs(self._smallest_sparse_case(attn_sink=True))
        with pytest.raises(UnsupportedFeatureError):
            self._decode(inputs)

    def test_undeclared_extra_cache_raises(self) -> None:
        feats = self.backend.features
        if not (feats.sparse and feats.fp8) or feats.extra_cache:
            pytest.skip("the extra cache is declared (or sparse decoding is not)")
        topk = _round_up(8, feats.topk_multiple)
        inputs = self._inputs(self._smallest_sparse_case(extra=(20, topk, self._page_sizes()[0])))
        with pytest.raises(UnsupportedFeatureError):
            self._decode(inputs)

    # -- invalid arguments: must raise AttentionArgumentError ---------------------------------------------

    def test_bad_dense_args_raise(self, bad_dense_arg: str) -> None:
        if not self.backend.features.dense:
            pytest.skip("dense decoding is not declared")
        inputs, _, _ = self._smallest_dense()
        kw = _BAD_DENSE_ARGS[bad_dense_arg](inputs.kwargs())
        with pytest.raises(AttentionArgumentError):
            self.backend.flash_mla_with_kvcache(**kw)

    def test_bad_sparse_args_raise(self, bad_sparse_arg: str) -> None:
        feats = self.backend.features
        if not (feats.sparse and feats.fp8):
            pytest.skip("sparse decoding is not declared")
        inputs = self._inputs(self._smallest_sparse_case())
        kw = _BAD_SPARSE_ARGS[bad_sparse_arg](inputs.kwargs())
        with pytest.raises(AttentionArgumentError):
            self.backend.flash_mla_with_kvcache(**kw)

    def test_bad_prefill_args_raise(self, bad_prefill_arg: str) -> None:
        if self.backend.flash_mla_sparse_fwd is None:
            pytest.skip("no flash_mla_sparse_fwd")
        feats = self.backend.features
        case = PrefillCase(
            3, 20, _round_up(8, feats.topk_multiple), self._sparse_num_heads(4), head_dim=feats.head_dims[0]
        )
        kw = _BAD_PREFILL_ARGS[bad_prefill_arg](self._inputs(case).kwargs())
        with pytest.raises(AttentionArgumentError):
            self.backend.flash_mla_sparse_fwd(**kw)


def _assert_no_nan(*tensors: torch.Tensor) -> None:
    # NaN positions only have to match, so a NaN in the reference would let a broken backend pass.
    for t in tensors:
        assert not torch.isnan(t).any(), "the reference produced NaN: the generated inputs are broken"


def _with(kw: dict, **changes) -> dict:
    return {**kw, **changes}


def _drop_q_head(kw: dict) -> dict:
    # h_q = 3 with h_kv = 2: not a whole number of query heads per KV head.
    return _with(kw, q=kw["q"][:, :, :3].contiguous())


# Each entry turns a valid call's keyword arguments into one FlashMLA rejects.
_BAD_DENSE_ARGS: dict[str, Callable[[dict], dict]] = {
    "head_dim_v-576": lambda kw: _with(kw, head_dim_v=576),
    "q-3d": lambda kw: _with(kw, q=kw["q"][0]),
    "q-head_dim-128": lambda kw: _with(kw, q=kw["q"][..., :128].contiguous()),
    "k_cache-dtype": lambda kw: _with(kw, k_cache=kw["k_cache"].float()),
    "h_q-not-multiple-of-h_kv": _drop_q_head,
    "cache_seqlens-int64": lambda kw: _with(kw, cache_seqlens=kw["cache_seqlens"].long()),
    "cache_seqlens-too-long": lambda kw: _with(kw, cache_seqlens=kw["cache_seqlens"] + 10_000),
    "block_table-int64": lambda kw: _with(kw, block_table=kw["block_table"].long()),
    "block_table-out-of-range": lambda kw: _with(kw, block_table=kw["block_table"].clone().fill_(1 << 30)),
    "block_table-none": lambda kw: _with(kw, block_table=None),
    "attn_sink-in-dense": lambda kw: _with(
        kw, attn_sink=torch.zeros(kw["q"].shape[2], device=kw["q"].device)
    ),
    "topk_length-in-dense": lambda kw: _with(
        kw, topk_length=torch.ones(kw["q"].shape[0], dtype=torch.int32, device=kw["q"].device)
    ),
    "fp8-in-dense": lambda kw: _with(kw, is_fp8_kvcache=True),
    "cache_seqlens-strided": lambda kw: _with(kw, cache_seqlens=strided_view(kw["cache_seqlens"])),
}

_BAD_SPARSE_ARGS: dict[str, Callable[[dict], dict]] = {
    "causal": lambda kw: _with(kw, causal=True),
    "not-fp8": lambda kw: _with(kw, is_fp8_kvcache=False),
    "q-fp16": lambda kw: _with(kw, q=kw["q"].half()),
    "indices-int64": lambda kw: _with(kw, indices=kw["indices"].long()),
    "indices-out-of-range": lambda kw: _with(kw, indices=kw["indices"].clone().fill_(1 << 30)),
    "indices-wrong-batch": lambda kw: _with(kw, indices=kw["indices"][:1].contiguous()),
    "k_cache-wrong-bytes": lambda kw: _with(kw, k_cache=kw["k_cache"][..., :-2]),
    "attn_sink-wrong-shape": lambda kw: _with(kw, attn_sink=torch.zeros(1000, device=kw["q"].device)),
    "attn_sink-bf16": lambda kw: _with(
        kw, attn_sink=torch.zeros(kw["q"].shape[2], dtype=torch.bfloat16, device=kw["q"].device)
    ),
    "topk_length-too-long": lambda kw: _with(
        kw, topk_length=torch.full((kw["q"].shape[0],), 1 << 20, dtype=torch.int32, device=kw["q"].device)
    ),
    "extra_indices-without-cache": lambda kw: _with(kw, extra_indices_in_kvcache=kw["indices"]),
    "attn_sink-strided": lambda kw: _with(
        kw, attn_sink=strided_view(torch.zeros(kw["q"].shape[2], device=kw["q"].device))
    ),
    "topk_length-strided": lambda kw: _with(
        kw, topk_length=strided_view(torch.ones(kw["q"].shape[0], dtype=torch.int32, device=kw["q"].device))
    ),
}

_BAD_PREFILL_ARGS: dict[str, Callable[[dict], dict]] = {
    "d_v-256": lambda kw: _with(kw, d_v=256),
    "q-fp16": lambda kw: _with(kw, q=kw["q"].half()),
    "kv-h_kv-2": lambda kw: _with(
        kw, kv=kw["kv"].expand(-1, 2, -1).contiguous(), indices=kw["indices"].expand(-1, 2, -1).contiguous()
    ),
    "indices-int64": lambda kw: _with(kw, indices=kw["indices"].long()),
    "indices-wrong-s_q": lambda kw: _with(kw, indices=kw["indices"][:1].contiguous()),
    "attn_sink-wrong-shape": lambda kw: _with(kw, attn_sink=torch.zeros(1000, device=kw["q"].device)),
    "topk_length-wrong-shape": lambda kw: _with(
        kw, topk_length=torch.zeros(1000, dtype=torch.int32, device=kw["q"].device)
    ),
    "attn_sink-strided": lambda kw: _with(
        kw, attn_sink=strided_view(torch.zeros(kw["q"].shape[1], device=kw["q"].device))
    ),
    "topk_length-strided": lambda kw: _with(
        kw, topk_length=strided_view(torch.ones(kw["q"].shape[0], dtype=torch.int32, device=kw["q"].device))
    ),
}
