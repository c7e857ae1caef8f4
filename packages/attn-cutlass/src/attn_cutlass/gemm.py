"""``matmul(a, b)``: the sm90 GEMM on Hopper, the sm80 GEMM (warp MMA + cp.async) on other sm80+ GPUs.

Compiled once per (kernel, dtype, B's major mode). The architecture is asked at call time
(attn_reference.capability); ``ATTN_CUTLASS_FORCE_ARCH=sm80`` picks the sm80 kernel on a Hopper GPU too
(how the Hopper test machine checks it).
"""

from __future__ import annotations

import functools
import os

import torch

from attn_reference import capability
from attn_reference.errors import AttentionArgumentError, UnsupportedFeatureError, describe

from ._tma import fresh_copy, tma_ready

_cache: dict[tuple, object] = {}
#: The sm90 GEMM's output tile.
TILE_M, TILE_N = 128, 256


@functools.cache
def _num_sms(index: int) -> int:
    return torch.cuda.get_device_properties(index).multi_processor_count


def matmul(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``a @ b`` for 2-D fp16/bf16 CUDA tensors a (M, K) and b (K, N), any strides, any M, N, K >= 0
    (empty M or N: an empty result; K = 0: zeros)."""
    for name, t in (("a", a), ("b", b)):
        if not isinstance(t, torch.Tensor) or t.dim() != 2:
            raise AttentionArgumentError(f"matmul: {name} must be a 2-D tensor, got {describe(t)}")
    if a.shape[1] != b.shape[0]:
        raise AttentionArgumentError(
            f"matmul: need a (M, K) and b (K, N) with the same K, got a {describe(a)} and b {describe(b)}"
        )
    if a.dtype not in (torch.float16, torch.bfloat16):
        raise AttentionArgumentError(f"matmul: a must be float16 or bfloat16, got {describe(a)}")
    if b.dtype != a.dtype:
        raise AttentionArgumentError(f"matmul: b must have a's dtype ({a.dtype}), got {describe(b)}")
    if a.device.type != "cuda":
        raise AttentionArgumentError(f"matmul: a must be a CUDA tensor, got {describe(a)}")
    if b.device != a.device:
        raise AttentionArgumentError(f"matmul: b must be on a's device ({a.device}), got {describe(b)}")
    cap = capability.cuda_capability(a.device)
    if cap is None or cap < (8, 0):
        raise UnsupportedFeatureError(f"matmul: the CuTe DSL GEMMs need an sm80+ GPU, got capability {cap}")
    if os.environ.get("ATTN_CUTLASS_FORCE_ARCH") == "sm80" or not capability.is_hopper(a.device):
        return _matmul_sm80(a, b)
    return _matmul_sm90(a, b)


def _trivial_product(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor | None:
    """``a @ b`` where there is nothing to launch: M or N empty (an empty result; a grid of no tiles) or
    K empty (zeros; a k-loop of no tiles would leave the accumulator unwritten). None otherwise."""
    (m, k), n = a.shape, b.shape[1]
    if m == 0 or n == 0:
        return torch.empty((m, n), dtype=a.dtype, device=a.device)
    if k == 0:
        return torch.zeros((m, n), dtype=a.dtype, device=a.device)
    return None


#: TMA's global strides must be multiples of 16 bytes: 8 elements of 16 bits.
_TMA_ALIGN = 8


def _tma_ready(x: torch.Tensor, major: int) -> bool:
    """Whether 2-D ``x``, contiguous along dim ``major``, can back a TMA descriptor as it is, its rows not
    overlapping."""
    return tma_ready(x, major) and x.stride(1 - major) >= x.shape[major]


def _sm90_operands(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(A (M, K'), B^T (N, K')) as the sm90 kernel's TMA descriptors need them, K' = K rounded up to 8:
    the zero columns of K' - K add nothing to the products, and copies only where the strides or the base
    are not TMA's. A stays K-major; B^T keeps whichever major it has if that one is TMA-ready."""
    k = a.shape[1]
    kp = -(-k // _TMA_ALIGN) * _TMA_ALIGN
    a, b = a.detach(), b.detach()
    if kp != k:
        a = torch.nn.functional.pad(a, (0, kp - k))
        b = torch.nn.functional.pad(b, (0, 0, 0, kp - k))
    a = a if _tma_ready(a, 1) else fresh_copy(a)
    bt = b.t()  # (N, K'): wgmma's B operand
    if not (_tma_ready(bt, 1) or _tma_ready(bt, 0)):
        bt = fresh_copy(bt)
    return a, bt


def _matmul_sm90(
    a: torch.Tensor, b: torch.Tensor, num_ctas: int | None = None, cluster_m: int | None = None
) -> torch.Tensor:
    """The persistent Hopper GEMM on checked inputs (any M, N, K: see :func:`_trivial_product` and
    :func:`_sm90_operands`). ``num_ctas`` (default: one CTA per SM, at most one per tile) is the grid;
    ``tools/gpu_check.py`` passes the tile count to time a non-persistent launch. ``cluster_m`` (default 2
    where the M tiles pair up, else 1; ``ATTN_CUTLASS_GEMM_CLUSTER=1`` turns the pairs off) is how many
    CTAs along M share each B tile by TMA multicast."""
    trivial = _trivial_product(a, b)
    if trivial is not None:
        return trivial
    import cuda.bindings.driver as cuda
    import cutlass
    import cutlass.cute as cute
    from cutlass.cute.runtime import from_dlpack

    a, bt = _sm90_operands(a, b)
    m, n = a.shape[0], bt.shape[0]
    c = torch.empty((m, n), dtype=a.dtype, device=a.device)
    b_lead = 1 if bt.stride(1) == 1 else 0
    m_tiles, n_tiles = -(-m // TILE_M), -(-n // TILE_N)
    if cluster_m is None:
        cluster_m = 1 if os.environ.get("ATTN_CUTLASS_GEMM_CLUSTER") == "1" or m_tiles % 2 else 2
    if cluster_m not in (1, 2) or m_tiles % cluster_m:
        raise ValueError(
            f"cluster_m must be 1, or 2 with an even number of M tiles; got {cluster_m}, {m_tiles}"
        )
    c_arg = from_dlpack(c, assumed_align=16).mark_layout_dynamic(leading_dim=1)
    # Rows of C a multiple of 8 elements apart: the epilogue may store whole tiles in 32-bit pairs.
    wide_c = n % 8 == 0
    if wide_c:
        c_arg = c_arg.mark_compact_shape_dynamic(mode=1, stride_order=(0, 1), divisibility=8)
    args = [
        from_dlpack(a, assumed_align=16).mark_layout_dynamic(leading_dim=1),
        from_dlpack(bt, assumed_align=16).mark_layout_dynamic(leading_dim=b_lead),
        c_arg,
    ]
    index = a.device.index if a.device.index is not None else torch.cuda.current_device()
    if num_ctas is None:
        num_ctas = max(cluster_m, min(m_tiles * n_tiles, _num_sms(index)) // cluster_m * cluster_m)
    num_ctas = cutlass.Int32(num_ctas)
    stream = cuda.CUstream(torch.cuda.current_stream(a.device).cuda_stream)
    key = (a.dtype, b_lead, cluster_m, wide_c)
    fn = _cache.get(key)
    if fn is None:
        from .kernels.gemm_sm90 import GemmSm90

        dt = {torch.float16: cutlass.Float16, torch.bfloat16: cutlass.BFloat16}[a.dtype]
        kernel = GemmSm90(dt, (TILE_M, TILE_N, 64), cluster_m=cluster_m)
        fn = _cache[key] = cute.compile(kernel, *args, num_ctas, stream)
    fn(*args, num_ctas, stream)
    return c


SM80_TILE_K = 32


def _matmul_sm80(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """The sm80 kernel takes K-contiguous A (M, K) and B^T (N, K) with K a multiple of its k-tile: other
    inputs are copied (and K zero-padded) here, so any M, N, K works."""
    import cuda.bindings.driver as cuda
    import cutlass
    import cutlass.cute as cute
    from cutlass.cute.runtime import from_dlpack

    m, k = a.shape
    n = b.shape[1]
    c = torch.empty((m, n), dtype=a.dtype, device=a.device)
    if m == 0 or n == 0:
        return c
    if k == 0:
        return c.zero_()
    kp = -(-k // SM80_TILE_K) * SM80_TILE_K
    a2, bt = a.detach(), b.detach().t()
    if kp != k:
        a2 = torch.nn.functional.pad(a2, (0, kp - k))
        bt = torch.nn.functional.pad(bt, (0, kp - k))
    a2, bt = (x if x.is_contiguous() and x.data_ptr() % 16 == 0 else fresh_copy(x) for x in (a2, bt))

    def operand(x):
        return (
            from_dlpack(x, assumed_align=16)
            .mark_layout_dynamic(leading_dim=1)
            .mark_compact_shape_dynamic(mode=1, stride_order=(0, 1), divisibility=SM80_TILE_K)
        )

    args = [operand(a2), operand(bt), from_dlpack(c, assumed_align=16).mark_layout_dynamic(leading_dim=1)]
    stream = cuda.CUstream(torch.cuda.current_stream(a.device).cuda_stream)
    key = ("sm80", a.dtype)
    fn = _cache.get(key)
    if fn is None:
        from .kernels.gemm_sm80 import GemmSm80

        dt = {torch.float16: cutlass.Float16, torch.bfloat16: cutlass.BFloat16}[a.dtype]
        fn = _cache[key] = cute.compile(GemmSm80(dt), *args, stream)
    fn(*args, stream)
    return c
