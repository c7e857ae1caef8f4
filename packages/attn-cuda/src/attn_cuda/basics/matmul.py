"""Matrix multiply in four steps: naive, shared-memory tiled, register-blocked, tensor cores."""

from __future__ import annotations

import torch

from ..runtime import i32, launch
from ._common import CTYPES, check_cuda, module

MATMUL_VARIANTS = ("naive", "tiled", "regblock", "mma")
TILE = 32
#: Tensor-core kernel: 128 x 128 block tile, 64-deep K tiles, 3 stages of A and B tiles in shared memory.
MMA_BM = MMA_BN = 128
MMA_BK, MMA_STAGES = 64, 3
MMA_SMEM = MMA_STAGES * (MMA_BM * MMA_BK + MMA_BK * MMA_BN) * 2
#: Block order and occupancy of the tensor-core kernel: "grouped" walks GROUP_M = 8 block rows at a time
#: (L2 reuse of the A and B panels); "plain" is the first version
#: (row-major block order, no occupancy hint), kept selectable to compare and to fall back.
MMA_ORDERS = {"grouped": (8, 1), "plain": (1, 1)}
#: Both passed the sm90 tier on the H200; "grouped" measured faster there (8192^3 fp16: 310 vs 288 TFLOP/s).
MMA_DEFAULT_ORDER = "grouped"


def kernel_name(variant: str, dtype: torch.dtype, order: str = MMA_DEFAULT_ORDER) -> str:
    ct = CTYPES[dtype]
    group_m, min_blocks = MMA_ORDERS[order]
    return {
        "naive": f"matmul_naive<{ct}>",
        "tiled": f"matmul_tiled<{ct}, {TILE}>",
        "regblock": f"matmul_regblock<{ct}>",
        "mma": f"matmul_mma<{ct}, {group_m}, {min_blocks}>",
    }[variant]


def launch_shape(variant: str, m: int, n: int) -> tuple[tuple[int, int], tuple[int, ...], int]:
    """(grid, block, dynamic shared memory) of a variant for an m x n output."""
    cdiv = lambda a, b: (a + b - 1) // b
    if variant == "naive":
        return (cdiv(n, 32), cdiv(m, 8)), (32, 8), 0
    if variant == "tiled":
        return (cdiv(n, TILE), cdiv(m, TILE)), (TILE, TILE), 0
    if variant == "regblock":
        return (cdiv(n, 128), cdiv(m, 128)), (256,), 0
    if variant == "mma":
        return (cdiv(n, MMA_BN), cdiv(m, MMA_BM)), (256,), MMA_SMEM
    raise ValueError(f"variant must be one of {MATMUL_VARIANTS}, got {variant!r}")


def matmul(
    a: torch.Tensor, b: torch.Tensor, *, variant: str = "mma", order: str = MMA_DEFAULT_ORDER
) -> torch.Tensor:
    """``a @ b`` for 2-D CUDA tensors of one dtype, fp32 accumulation. ``mma`` needs fp16/bf16 and
    K, N multiples of 8 (16-byte rows for cp.async); ``order`` (:data:`MMA_ORDERS`) is its block order."""
    check_cuda("matmul", a=a, b=b)
    if a.dim() != 2 or b.dim() != 2 or a.shape[1] != b.shape[0] or a.dtype != b.dtype:
        raise ValueError(
            f"matmul: need a (M, K) and b (K, N) of one dtype, got {tuple(a.shape)} {a.dtype}, {tuple(b.shape)} {b.dtype}"
        )
    m, k = a.shape
    n = b.shape[1]
    if variant == "mma" and (a.dtype == torch.float32 or k % 8 or n % 8):
        raise ValueError(
            f"matmul: the tensor-core variant needs fp16/bf16 and K, N multiples of 8, got {a.dtype}, K={k}, N={n}"
        )
    a, b = a.contiguous(), b.contiguous()
    c = torch.empty((m, n), dtype=a.dtype, device=a.device)
    if c.numel() == 0:
        return c
    if k == 0:
        return c.zero_()
    grid, block, smem = launch_shape(variant, m, n)
    if order not in MMA_ORDERS:
        raise ValueError(f"matmul: order must be one of {sorted(MMA_ORDERS)}, got {order!r}")
    name = kernel_name(variant, a.dtype, order)
    launch(module("matmul.cu", name), name, grid, block, [a, b, c, i32(m), i32(n), i32(k)], smem=smem)
    return c
