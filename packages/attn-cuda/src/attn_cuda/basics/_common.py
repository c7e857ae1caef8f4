"""Shared helpers of the basics wrappers."""

from __future__ import annotations

import torch

from ..runtime import package_module

CTYPES = {torch.float16: "__half", torch.bfloat16: "__nv_bfloat16", torch.float32: "float"}


def module(filename: str, *names: str, arch: str | None = None):
    return package_module(filename, names, arch)


def check_cuda(fn: str, **tensors: torch.Tensor) -> None:
    for name, t in tensors.items():
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{fn}: {name} must be a torch.Tensor, got {type(t).__name__}")
        if t.device.type != "cuda":
            raise ValueError(f"{fn}: {name} must be a CUDA tensor, got device {t.device}")
        if t.dtype not in CTYPES:
            raise ValueError(f"{fn}: {name} must be float16, bfloat16 or float32, got {t.dtype}")
