"""Matrix multiply in four steps: naive, shared-memory tiled, register-blocked, tensor cores."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..runtime import i32, launch
from ._common import CTYPES, check_cuda, module

MATMUL_VARIANTS = ("naive", "tiled", "regblock", "mma")
TILE = 32


@dataclass(frozen=True)
class MmaTile:
    """One tiling of the tensor-core kernel (the template arguments of ``matmul_mma`` after the dtype)."""

    bm: int  #: block tile rows (M)
    bn: int  #: block tile columns (N)
    bk: int  #: depth of one K tile
    stages: int  #: K tiles of A and B in shared memory at once (cp.async pipeline depth)
    wm: int  #: warp tile rows
    wn: int  #: warp tile columns

    @property
    def threads(self) -> int:
        return (self.bm // self.wm) * (self.bn // self.wn) * 32

    @property
    def smem(self) -> int:
        """Dynamic shared memory in bytes (16-bit elements, swizzled); above 48 KB ``launch`` opts in for it."""
        return self.smem_for("swizzled")

    def smem_for(self, layout: str) -> int:
        """Dynamic shared memory in bytes with the tiles laid out as ``layout`` (:data:`MMA_LAYOUTS`)."""
        pad = 8 if layout == "padded" else 0
        return self.stages * (self.bm * (self.bk + pad) + self.bk * (self.bn + pad)) * 2

    def template_args(self) -> str:
        return f"{self.bm}, {self.bn}, {self.bk}, {self.stages}, {self.wm}, {self.wn}"


#: Block tiles of the tensor-core kernel. "128x128" (8 warps of 64 x 32, 96 KB) is the first version;
#: "128x256" (8 warps of 64 x 64, 144 KB: a third fewer shared-memory bytes per mma, 128 accumulators per
#: thread). 144 KB needs a GPU that allows that much per block (A100, H100/H200; not the 99-100 KB of
#: sm_86/sm_89), which is why the default depends on the device (:func:`default_tile`).
MMA_TILES = {
    "128x128": MmaTile(128, 128, 64, 3, 64, 32),
    "128x256": MmaTile(128, 256, 64, 3, 64, 64),
}
#: The default where the device has the shared memory for it: on the H200 (2026-11-22) every tile x order
#: passed the GPU tests and compute-sanitizer, and 8192^3 fp16 ran 359 TFLOP/s against 301 for 128x128
#: (grouped order both; torch.matmul 677 in the same run: 0.53x).
MMA_DEFAULT_TILE = "128x256"
#: The tile of GPUs with less shared memory per block than MMA_DEFAULT_TILE needs.
MMA_FALLBACK_TILE = "128x128"
#: Block order and occupancy of the tensor-core kernel: "grouped" walks GROUP_M = 8 block rows at a time
#: (L2 reuse of the A and B panels); "plain" is the first version
#: (row-major block order, no occupancy hint), kept selectable to compare and to fall back.
MMA_ORDERS = {"grouped": (8, 1), "plain": (1, 1)}
#: Both passed the sm90 tier on the H200; "grouped" measured faster there (8192^3 fp16: 310 vs 288 TFLOP/s).
MMA_DEFAULT_ORDER = "grouped"
#: Shared-memory layouts of the A and B tiles (the kernel's LAYOUT, common.cuh): "swizzled" (XOR of the
#: 16-byte chunk index with row % 8, the default), "padded" (8 spare elements a row) and "plain" (neither:
#: ldmatrix reads 8-way bank-conflicted). Kept selectable to measure the swizzle against its alternatives.
MMA_LAYOUTS = {"swizzled": 0, "padded": 1, "plain": 2}
MMA_DEFAULT_LAYOUT = "swizzled"


def default_tile(device_index: int) -> str:
    """:data:`MMA_DEFAULT_TILE` if the device allows its shared memory per block, else the fallback."""
    from ..runtime import max_dynamic_smem

    if MMA_TILES[MMA_DEFAULT_TILE].smem <= max_dynamic_smem(device_index):
        return MMA_DEFAULT_TILE
    return MMA_FALLBACK_TILE


def _check_choice(argument: str, value: str, allowed) -> None:
    if value not in allowed:
        raise ValueError(f"matmul: {argument} must be one of {sorted(allowed)}, got {value!r}")


def kernel_name(
    variant: str,
    dtype: torch.dtype,
    order: str = MMA_DEFAULT_ORDER,
    tile: str = MMA_DEFAULT_TILE,
    layout: str = MMA_DEFAULT_LAYOUT,
) -> str:
    ct = CTYPES[dtype]
    if variant == "mma":
        _check_choice("order", order, MMA_ORDERS)
        _check_choice("tile", tile, MMA_TILES)
        _check_choice("layout", layout, MMA_LAYOUTS)
        group_m, min_blocks = MMA_ORDERS[order]
        name = f"matmul_mma<{ct}, {MMA_TILES[tile].template_args()}, {group_m}, {min_blocks}"
        # The default layout is the template's default argument: the name (and cache key) stays as it was.
        return name + (">" if layout == MMA_DEFAULT_LAYOUT else f", {MMA_LAYOUTS[layout]}>")
    return {
        "naive": f"matmul_naive<{ct}>",
        "tiled": f"matmul_tiled<{ct}, {TILE}>",
        "regblock": f"matmul_regblock<{ct}>",
    }[variant]


def launch_shape(
    variant: str, m: int, n: int, tile: str = MMA_DEFAULT_TILE, layout: str = MMA_DEFAULT_LAYOUT
) -> tuple[tuple[int, int], tuple[int, ...], int]:
    """(grid, block, dynamic shared memory) of a variant for an m x n output."""
    cdiv = lambda a, b: (a + b - 1) // b
    if variant == "naive":
        return (cdiv(n, 32), cdiv(m, 8)), (32, 8), 0
    if variant == "tiled":
        return (cdiv(n, TILE), cdiv(m, TILE)), (TILE, TILE), 0
    if variant == "regblock":
        return (cdiv(n, 128), cdiv(m, 128)), (256,), 0
    if variant == "mma":
        _check_choice("tile", tile, MMA_TILES)
        t = MMA_TILES[tile]
        return (cdiv(n, t.bn), cdiv(m, t.bm)), (t.threads,), t.smem_for(layout)
    raise ValueError(f"variant must be one of {MATMUL_VARIANTS}, got {variant!r}")


def matmul(
    a: torch.Tensor,
    b: torch.Tensor,
    *,
    variant: str = "mma",
    order: str = MMA_DEFAULT_ORDER,
    tile: str | None = None,
    layout: str = MMA_DEFAULT_LAYOUT,
) -> torch.Tensor:
    """``a @ b`` for 2-D CUDA tensors of one dtype, fp32 accumulation. ``mma`` needs fp16/bf16 and
    K, N multiples of 8 (16-byte rows for cp.async); ``order`` (:data:`MMA_ORDERS`) is its block order,
    ``tile`` (:data:`MMA_TILES`; None: :func:`default_tile` of the inputs' device) its block tile and
    ``layout`` (:data:`MMA_LAYOUTS`) its shared-memory layout. All are validated for every variant, used by
    ``mma``."""
    # Before the tensor checks: a misspelt option is a caller's error whatever the inputs are.
    _check_choice("variant", variant, MATMUL_VARIANTS)
    _check_choice("order", order, MMA_ORDERS)
    _check_choice("layout", layout, MMA_LAYOUTS)
    if tile is not None:
        _check_choice("tile", tile, MMA_TILES)
    check_cuda("matmul", a=a, b=b)
    if tile is None:
        tile = default_tile(a.device.index if a.device.index is not None else torch.cuda.current_device())
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
    grid, block, smem = launch_shape(variant, m, n, tile, layout)
    name = kernel_name(variant, a.dtype, order, tile, layout)
    launch(module("matmul.cu", name), name, grid, block, [a, b, c, i32(m), i32(n), i32(k)], smem=smem)
    return c
