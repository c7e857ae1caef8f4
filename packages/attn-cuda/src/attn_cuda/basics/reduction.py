"""Parallel sum in five successive versions (see kernels/reduction.cu)."""

from __future__ import annotations

import torch

from attn_reference.errors import describe

from ..runtime import i64, launch
from ._common import module

REDUCTION_VARIANTS = ("v1_interleaved", "v2_sequential", "v3_first_add", "v4_shuffle", "v5_multi")
THREADS = 256


def elements_per_block(variant: str) -> int | None:
    """Inputs one block consumes (None: v5's fixed grid with a grid-stride loop)."""
    return {
        "v1_interleaved": THREADS,
        "v2_sequential": THREADS,
        "v3_first_add": 2 * THREADS,
        "v4_shuffle": 2 * THREADS,
    }.get(variant)


def pass_grid(variant: str, n: int, sms: int) -> int:
    per_block = elements_per_block(variant)
    if per_block is None:
        return max(1, min(4 * sms, (n + 4 * THREADS - 1) // (4 * THREADS)))
    return (n + per_block - 1) // per_block


def reduce_sum(x: torch.Tensor, variant: str = "v5_multi") -> torch.Tensor:
    """Sum of a float32 CUDA tensor as a 0-d tensor, by passes of ``variant`` until one value is left."""
    if variant not in REDUCTION_VARIANTS:
        raise ValueError(f"variant must be one of {REDUCTION_VARIANTS}, got {variant!r}")
    if not isinstance(x, torch.Tensor) or x.device.type != "cuda" or x.dtype != torch.float32:
        got = describe(x) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"reduce_sum: x must be a float32 CUDA tensor; got {got}")
    cur = x.contiguous().reshape(-1)
    if cur.numel() == 0:
        return torch.zeros((), dtype=torch.float32, device=x.device)
    if cur.data_ptr() % 16:
        cur = cur.clone()
    mod = module("reduction.cu")
    name = f"reduce_{variant}"
    sms = torch.cuda.get_device_properties(x.device).multi_processor_count
    smem = THREADS * 4 if variant in ("v1_interleaved", "v2_sequential", "v3_first_add") else 0
    while cur.numel() > 1:
        blocks = pass_grid(variant, cur.numel(), sms)
        out = torch.empty(blocks, dtype=torch.float32, device=x.device)
        launch(mod, name, blocks, THREADS, [cur, out, i64(cur.numel())], smem=smem)
        cur = out
    return cur.reshape(())
