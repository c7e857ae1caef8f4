"""Tensors and copies: how a tile is split across threads, and three ways of moving it (sm80, sm90).

A CuTe *tensor* is a pointer (or a counting iterator) composed with a layout; a *copy atom* is one
instruction moving ``num_bits_per_copy`` bits; a *tiled copy* repeats the atom over a thread layout and a
value layout, so that ``tiled_copy.get_slice(tid).partition_S(tile)`` is the part of ``tile`` that thread
``tid`` moves, shaped ``(values per copy, copies along rows, copies along columns)``.

1. **Partitioning on the CPU**. :func:`tile_partition` builds the tiled copy that the kernels below use
   (128 threads, a 64 x 64 16-bit tile, one 16-byte vector = 8 values per copy) in ``@cute.jit`` host
   code and partitions an identity tensor (whose "elements" are their own coordinates) and a counting
   tensor over a row-major tile (whose elements are their offsets). The thread layout is row-major
   ``(16, 8):(8, 1)``: 8 threads span a 64-element row, thread ``t`` starts at row ``t // 8``, column
   ``8 (t % 8)``, and the (16, 64) block the 128 threads cover is repeated 4 times down the tile. With
   32-bit copies (2 values) the same 128 threads are ``(4, 32)``: one warp covers one 128-byte row per
   instruction instead of four, and every thread issues 16 copies instead of 4.
2. **Kernels**, each copying an ``(M, N)`` fp16/bf16 tensor tile by tile (M, N multiples of 64):

   * :class:`VectorizedCopy`: global -> registers -> global with 128-bit ``ld.global.v4`` /
     ``st.global.v4`` (``CopyUniversalOp`` with ``num_bits_per_copy=128``); legal because the
     compiler knows the base is 16-byte aligned and the row stride a multiple of 64 elements.
   * :class:`CpAsyncCopy` (sm80): global -> shared with ``cp.async.cg`` (16 bytes, bypassing the
     registers and L1), ``commit_group`` / ``wait_group`` + a CTA barrier, then shared -> registers ->
     global with a *different* thread arrangement, so the barrier is what makes the result right.
   * :class:`TmaCopy` (sm90): one thread hands the whole tile to the TMA unit
     (``cp.async.bulk.tensor``) whose completion is counted in bytes by an mbarrier, then a TMA store
     writes the shared tile back (``cp.async.bulk.tensor`` shared -> global, ``bulk.commit/wait_group``).

3. **Host wrappers** :func:`copy_vectorized`, :func:`copy_cp_async`, :func:`copy_tma`: validate, check
   the GPU at call time (attn_reference.capability), compile once per (kernel, dtype), run.
   :func:`compile_copy` builds a kernel against fake tensors for a chosen arch (no GPU), as
   attn_cutlass.compile does for the attention kernels.

Importing this module loads the DSL (like attn_cutlass.layouts); ``import attn_cutlass`` does not import it.
"""

from __future__ import annotations

import functools
import threading

import cuda.bindings.driver as cuda
import cutlass
import cutlass.cute as cute
import torch

from attn_reference import capability
from attn_reference.errors import AttentionArgumentError, UnsupportedFeatureError, describe

from .kernels.copy_cp_async_sm80 import CpAsyncCopy
from .kernels.copy_tiling import THREADS, TILE, tiled_copy
from .kernels.copy_tma_sm90 import TmaCopy
from .kernels.copy_vectorized import VectorizedCopy

KINDS = ("vectorized", "cp_async", "tma")
_DTYPES = (torch.float16, torch.bfloat16)

_cache: dict[tuple, object] = {}
_cache_lock = threading.Lock()


def copy_cache_info() -> dict[tuple, object]:
    """The compiled copy kernels, keyed ``(kind, torch dtype)``."""
    return dict(_cache)


# ---------------------------------------------------------------------------------------------------------
# 1. Partitioning a tile across threads (CPU)


def _collect(res: dict, bits: int, tile: tuple, threads: int) -> None:
    # Plain Python, called from the jit function below but not rewritten by the DSL's AST pass: every
    # layout here is static, so coordinates and offsets come back as Python ints while tracing.
    tiled = tiled_copy(cute.nvgpu.CopyUniversalOp(), cutlass.Float16, bits, tile, threads)
    res["layout_tv"] = str(tiled.layout_tv_tiled)
    res["tiler"] = str(tiled.tiler_mn)
    coords = cute.make_identity_tensor(tile)  # element (r, c) *is* (r, c)
    offsets = cute.make_tensor(
        0, cute.make_layout(tile, stride=(tile[1], 1))
    )  # element (r, c) is tile[1] r + c
    res["threads"] = []
    for tid in range(threads):
        thr = tiled.get_slice(tid)
        c = thr.partition_S(coords)
        o = thr.partition_S(offsets)
        res["threads"].append(
            {
                "coords": [tuple(int(x) for x in c[i]) for i in range(cute.size(c))],
                "offsets": [int(o[i]) for i in range(cute.size(o))],
            }
        )
    res["partition_shape"] = str(c.shape)  # (values per copy, copies down the tile, copies across)
    res["values_per_copy"] = cute.size(c, mode=[0])
    res["copies_per_thread"] = cute.size(c) // cute.size(c, mode=[0])


@cute.jit
def _partition(
    res: cutlass.Constexpr, bits: cutlass.Constexpr, tile: cutlass.Constexpr, threads: cutlass.Constexpr
):
    _collect(res, bits, tile, threads)


@functools.cache
def _partition_cached(bits: int, tile: tuple, threads: int) -> dict:
    res: dict = {}
    _partition(res, bits, tile, threads)
    return res


def tile_partition(bits: int = 128, tile: tuple[int, int] = TILE, threads: int = THREADS) -> dict:
    """How ``threads`` threads split a row-major 16-bit ``tile`` with ``bits``-wide copies.

    Returns ``{"layout_tv", "tiler", "partition_shape", "values_per_copy", "copies_per_thread",
    "threads"}``;
    ``threads[t]`` is ``{"coords": [(row, col), ...], "offsets": [row * tile[1] + col, ...]}`` in the
    order of thread t's register fragment (values of one copy first, then copies down the tile).
    Evaluated by the DSL (~5 s for 128 threads), then cached.
    """
    if bits not in (16, 32, 64, 128):
        raise AttentionArgumentError(f"tile_partition: bits must be 16, 32, 64 or 128, got {bits!r}")
    res = _partition_cached(bits, tuple(tile), threads)
    return {**res, "threads": [dict(t) for t in res["threads"]]}


def thread_coords(tid: int, bits: int = 128) -> list[tuple[int, int]]:
    """The (row, col) of the 64 x 64 tile that thread ``tid`` of 128 copies, in fragment order."""
    return list(_partition_cached(bits, TILE, THREADS)["threads"][tid]["coords"])


def thread_offsets(tid: int, bits: int = 128) -> list[int]:
    """The row-major offsets (``64 row + col``) that thread ``tid`` of 128 copies, in fragment order."""
    return list(_partition_cached(bits, TILE, THREADS)["threads"][tid]["offsets"])


# ---------------------------------------------------------------------------------------------------------
# 2. Kernels (one per file in kernels/: copy_vectorized.py, copy_cp_async_sm80.py, copy_tma_sm90.py)


_KERNELS = {"vectorized": VectorizedCopy, "cp_async": CpAsyncCopy, "tma": TmaCopy}


def _cutlass_dtype(dtype):
    key = dtype if isinstance(dtype, str) else {torch.float16: "float16", torch.bfloat16: "bfloat16"}[dtype]
    return {"float16": cutlass.Float16, "bfloat16": cutlass.BFloat16}[key]


def make_kernel(kind: str, dtype):
    """The kernel object of ``kind`` for ``dtype`` (``"float16"``/``"bfloat16"`` or the torch dtype)."""
    if kind not in KINDS:
        raise AttentionArgumentError(f"kind must be one of {KINDS}, got {kind!r}")
    return _KERNELS[kind](_cutlass_dtype(dtype))


def fake_copy_args(dtype: str = "float16"):
    """Fake ``(M, N)`` row-major x and y: extents and row stride are runtime values, multiples of 64."""
    from cutlass.cute.runtime import make_fake_tensor

    def mat():
        div = TILE[1]
        shape = (cute.sym_int(divisibility=TILE[0]), cute.sym_int(divisibility=div))
        return make_fake_tensor(
            _cutlass_dtype(dtype), shape, stride=(cute.sym_int(divisibility=div), 1), assumed_align=16
        )

    return mat(), mat()


def compile_copy(kind: str, dtype: str = "float16", *, arch: str = "sm_90a", keep_ptx: bool = False):
    """Compile one copy kernel against fake tensors for ``arch`` (no GPU needed); a CompileResult."""
    from cutlass.cute.runtime import make_fake_stream

    from .compile import compile_kernel

    return compile_kernel(
        make_kernel(kind, dtype), *fake_copy_args(dtype), make_fake_stream(), arch=arch, keep_ptx=keep_ptx
    )


# ---------------------------------------------------------------------------------------------------------
# 3. Host wrappers


def _validate(x, fn: str) -> None:
    """Argument errors name ``x``, say what it was and what is allowed. The device is checked last so
    that every other rule can be exercised with CPU tensors."""
    if not isinstance(x, torch.Tensor):
        raise AttentionArgumentError(f"{fn}: x must be a torch.Tensor, got {describe(x)}")
    if x.dtype not in _DTYPES:
        raise AttentionArgumentError(f"{fn}: x must be float16 or bfloat16, got {describe(x)}")
    if x.dim() != 2:
        raise AttentionArgumentError(f"{fn}: x must be 2-D (M, N), got {describe(x)}")
    if not x.is_contiguous():
        raise AttentionArgumentError(
            f"{fn}: x must be contiguous (row-major), got strides {x.stride()} for {describe(x)}"
        )
    m, n = x.shape
    if m % TILE[0] or n % TILE[1]:
        raise AttentionArgumentError(
            f"{fn}: x's sizes must be multiples of the {TILE[0]} x {TILE[1]} tile, got {describe(x)}"
        )
    if x.numel() >= 2**31:
        raise AttentionArgumentError(
            f"{fn}: x must have fewer than 2**31 elements (32-bit extents), got {describe(x)}"
        )
    if n // TILE[1] > 65535:  # column tiles are the grid's y dimension
        raise AttentionArgumentError(f"{fn}: x may have at most {65535 * TILE[1]} columns, got {describe(x)}")
    if x.device.type != "cuda":
        raise AttentionArgumentError(f"{fn}: x must be a CUDA tensor, got {describe(x)}")
    if x.numel() and x.data_ptr() % 16:
        raise AttentionArgumentError(
            f"{fn}: x's data must be 16-byte aligned (128-bit copies), got address {x.data_ptr():#x}"
        )


def _require_arch(kind: str, device) -> None:
    """Raise UnsupportedFeatureError unless ``device`` runs ``kind``: sm80+ for all, Hopper for TMA."""
    cap = capability.cuda_capability(device)
    if cap is None or cap < (8, 0):
        raise UnsupportedFeatureError(f"copy_{kind}: the CuTe DSL copy kernels need an sm80+ GPU, got {cap}")
    if kind == "tma" and cap != (9, 0):
        raise UnsupportedFeatureError(
            f"copy_tma: TMA (cp.async.bulk.tensor) needs a Hopper GPU (sm_90), got sm_{cap[0]}{cap[1]}"
        )


def _to_cute(t: torch.Tensor):
    """Dynamic extents and row stride, declared multiples of the tile: the 128-bit accesses and the TMA
    descriptor's 16-byte stride rule follow from that at compile time."""
    from cutlass.cute.runtime import from_dlpack

    return (
        from_dlpack(t.detach(), assumed_align=16)
        .mark_compact_shape_dynamic(mode=1, stride_order=(0, 1), divisibility=TILE[1])
        .mark_compact_shape_dynamic(mode=0, stride_order=(0, 1), divisibility=TILE[0])
    )


def _run(kind: str, x: torch.Tensor) -> torch.Tensor:
    fn_name = f"copy_{kind}"
    _validate(x, fn_name)
    _require_arch(kind, x.device)
    y = torch.empty_like(x)
    if x.numel() == 0:
        return y
    with torch.cuda.device(x.device):
        args = (_to_cute(x), _to_cute(y), cuda.CUstream(torch.cuda.current_stream(x.device).cuda_stream))
        key = (kind, x.dtype)
        fn = _cache.get(key)
        if fn is None:
            with _cache_lock:
                fn = _cache.get(key)
                if fn is None:
                    fn = _cache[key] = cute.compile(make_kernel(kind, x.dtype), *args)
        fn(*args)
    return y


def copy_vectorized(x: torch.Tensor) -> torch.Tensor:
    """A copy of x (M, N) fp16/bf16, CUDA, contiguous, M and N multiples of 64: 128-bit loads/stores."""
    return _run("vectorized", x)


def copy_cp_async(x: torch.Tensor) -> torch.Tensor:
    """A copy of x (as :func:`copy_vectorized`) staged through shared memory by cp.async (sm80+)."""
    return _run("cp_async", x)


def copy_tma(x: torch.Tensor) -> torch.Tensor:
    """A copy of x (as :func:`copy_vectorized`) by TMA load + TMA store; Hopper (sm_90) only."""
    return _run("tma", x)


if __name__ == "__main__":  # python -m attn_cutlass.copies
    for b in (128, 32):
        p = tile_partition(b)
        print(
            f"{b}-bit: tv {p['layout_tv']}, thread 0 {p['threads'][0]['coords'][: p['values_per_copy']]} ..."
        )
