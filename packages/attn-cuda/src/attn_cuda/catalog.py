"""Every kernel the package launches, by source file: what the CPU tier compiles for sm_80 and sm_90a.

``TENSOR_CORE`` names the instantiations meant to run on tensor cores: their sm_80 SASS must hold HMMA.
:func:`hopper_kernels` are the ones built for sm_90a alone (wgmma and TMA exist nowhere else).
"""

from __future__ import annotations

import torch

from .basics._common import CTYPES
from .basics.matmul import (
    MATMUL_VARIANTS,
    MMA_DEFAULT_LAYOUT,
    MMA_DEFAULT_ORDER,
    MMA_LAYOUTS,
    MMA_ORDERS,
    MMA_TILES,
    kernel_name,
)
from .basics.softmax import THREADS as SOFTMAX_THREADS
from .flash import SM90_FWD_FILE, all_instantiations, sm90_instantiations

ARCHS = ("sm_80", "sm_90a")


def kernels() -> dict[str, list[str]]:
    """file -> name expressions (extern "C" kernels are listed by name too, for the SASS checks)."""
    dtypes = (torch.float32, torch.float16, torch.bfloat16)
    out = {
        "hello.cu": ["hello"],
        "vector_add.cu": [f"vector_add<{CTYPES[d]}>" for d in dtypes]
        + [f"vector_add_chunked<{CTYPES[d]}>" for d in dtypes]
        + ["vector_add_f32x4"],
        "softmax.cu": [f"row_softmax<{CTYPES[d]}, {SOFTMAX_THREADS}>" for d in dtypes],
        "overlap.cu": ["busy_transform"],
        "reduction.cu": [
            f"reduce_{v}"
            for v in ("v1_interleaved", "v2_sequential", "v3_first_add", "v4_shuffle", "v5_multi")
        ],
        # The tensor-core kernel in every tile x block order it can be launched with (fp16/bf16 only), and
        # every tile in the other shared-memory layouts (default order).
        "matmul.cu": [kernel_name(v, d) for v in MATMUL_VARIANTS if v != "mma" for d in dtypes]
        + [kernel_name("mma", d, o, t) for t in MMA_TILES for o in MMA_ORDERS for d in dtypes[1:]]
        + [
            kernel_name("mma", d, MMA_DEFAULT_ORDER, t, lay)
            for t in MMA_TILES
            for lay in MMA_LAYOUTS
            if lay != MMA_DEFAULT_LAYOUT
            for d in dtypes[1:]
        ],
    }
    out.update(all_instantiations())
    return out


def hopper_kernels() -> dict[str, list[str]]:
    """file -> name expressions of the kernels compiled for sm_90a only (the opt-in wgmma forward)."""
    return {SM90_FWD_FILE: sm90_instantiations()}


def name_expressions(filename: str) -> list[str]:
    """The templated names of a file (what NVRTC must instantiate); extern "C" names need none."""
    names = kernels().get(filename) or hopper_kernels()[filename]
    return [n for n in names if "<" in n]


def is_tensor_core(name: str) -> bool:
    return name.startswith(("flash_fwd_mma", "flash_bwd_mma", "matmul_mma"))
