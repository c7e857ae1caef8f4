"""Row softmax with the online (running max, running sum) formulation."""

from __future__ import annotations

import torch

from ..runtime import i32, i64, launch
from ._common import CTYPES, check_cuda, module

THREADS = 256


def softmax(x: torch.Tensor) -> torch.Tensor:
    """``torch.softmax(x, dim=-1)`` for 2-D (or more, flattened to rows) CUDA tensors."""
    check_cuda("softmax", x=x)
    if x.dim() < 1:
        raise ValueError("softmax: x must have at least one dimension")
    shape = x.shape
    x2 = x.reshape(-1, shape[-1]) if x.dim() != 2 else x
    if x2.stride(-1) != 1:
        x2 = x2.contiguous()
    out = torch.empty(x2.shape, dtype=x.dtype, device=x.device)
    rows, cols = x2.shape
    if rows and cols:
        name = f"row_softmax<{CTYPES[x.dtype]}, {THREADS}>"
        args = [x2, out, i32(cols), i64(x2.stride(0)), i64(out.stride(0))]
        launch(module("softmax.cu", name), name, rows, THREADS, args)
    return out.reshape(shape)
