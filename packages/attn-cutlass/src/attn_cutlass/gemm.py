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
from attn_reference.errors import AttentionArgumentError, UnsupportedFeatureError

_cache: dict[tuple, object] = {}
#: The sm90 GEMM's output tile.
TILE_M, TILE_N = 128, 256


@functools.cache
def _num_sms(index: int) -> int:
    return torch.cuda.get_device_properties(index).multi_processor_count


def matmul(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``a @ b`` for 2-D fp16/bf16 CUDA tensors: a (M, K) row-major, b (K, N) row- or column-major."""
    if a.dim() != 2 or b.dim() != 2 or a.shape[1] != b.shape[0]:
        raise AttentionArgumentError(f"matmul: need (M, K) @ (K, N), got {tuple(a.shape)} @ {tuple(b.shape)}")
    if a.dtype not in (torch.float16, torch.bfloat16) or b.dtype != a.dtype:
        raise AttentionArgumentError(
            f"matmul: a and b must share dtype float16 or bfloat16, got {a.dtype}, {b.dtype}"
        )
    if a.device.type != "cuda" or b.device != a.device:
        raise AttentionArgumentError(f"matmul: need CUDA tensors on one device, got {a.device}, {b.device}")
    cap = capability.cuda_capability(a.device)
    if cap is None or cap < (8, 0):
        raise UnsupportedFeatureError(f"matmul: the CuTe DSL GEMMs need an sm80+ GPU, got capability {cap}")
    if os.environ.get("ATTN_CUTLASS_FORCE_ARCH") == "sm80" or not capability.is_hopper(a.device):
        return _matmul_sm80(a, b)
    return _matmul_sm90(a, b)


def _matmul_sm90(
    a: torch.Tensor, b: torch.Tensor, num_ctas: int | None = None, cluster_m: int | None = None
) -> torch.Tensor:
    """The persistent Hopper GEMM on checked inputs. ``num_ctas`` (default: one CTA per SM, at most one
    per tile) is the grid; ``tools/gpu_check.py`` passes the tile count to time a non-persistent launch.
    ``cluster_m`` (default 2 where the M tiles pair up, else 1; ``ATTN_CUTLASS_GEMM_CLUSTER=1`` turns
    the pairs off) is how many CTAs along M share each B tile by TMA multicast."""
    import cuda.bindings.driver as cuda
    import cutlass
    import cutlass.cute as cute
    from cutlass.cute.runtime import from_dlpack

    a = a if a.stride(1) == 1 and a.stride(0) % 8 == 0 else a.contiguous()
    bt = b.t()  # (N, K): wgmma's B operand
    if not ((bt.stride(1) == 1 and bt.stride(0) % 8 == 0) or (bt.stride(0) == 1 and bt.stride(1) % 8 == 0)):
        bt = bt.contiguous()
    m, n = a.shape[0], b.shape[1]
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
        from_dlpack(a.detach(), assumed_align=16).mark_layout_dynamic(leading_dim=1),
        from_dlpack(bt.detach(), assumed_align=16).mark_layout_dynamic(leading_dim=b_lead),
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
    a2, bt = (x if x.is_contiguous() and x.data_ptr() % 16 == 0 else x.contiguous() for x in (a2, bt))

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
