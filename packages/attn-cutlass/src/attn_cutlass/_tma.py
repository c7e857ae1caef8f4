"""What a TMA descriptor can describe as it is, and the copy that makes any tensor describable."""

from __future__ import annotations

import torch


def tma_ready(t: torch.Tensor, contiguous_dim: int = -1) -> bool:
    """Whether ``t`` can back a TMA descriptor without a copy: stride 1 along ``contiguous_dim``, a 16-byte
    aligned base, and every other stride a positive multiple of 16 bytes (a broadcast stride 0 is not)."""
    dim = contiguous_dim % t.dim()
    size = t.element_size()
    return (
        t.stride(dim) == 1
        and t.data_ptr() % 16 == 0
        and all(s > 0 and s * size % 16 == 0 for i, s in enumerate(t.stride()) if i != dim)
    )


def fresh_copy(t: torch.Tensor) -> torch.Tensor:
    """``t``'s values in a new row-major tensor (16-byte aligned, as every allocation is). Not
    ``.contiguous()``: it returns a contiguous tensor as it is, misaligned base included."""
    return torch.empty(t.shape, dtype=t.dtype, device=t.device).copy_(t)
