"""Vector add: the smallest complete Triton kernel.

What it teaches: a kernel is launched as a 1-D grid of *programs*; each program owns one contiguous block
of ``BLOCK`` elements, computes its offsets with ``tl.arange``, and masks the tail so that sizes that are
not a multiple of ``BLOCK`` stay correct. The kernel is purely memory bound: it reads two elements and
writes one per add, so its speed is judged in GB/s against a device-to-device copy.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from attn_triton._runtime import check_device


@triton.jit
def _vector_add_kernel(x_ptr, y_ptr, out_ptr, n, BLOCK: tl.constexpr):
    pid = tl.program_id(0)
    # int64 offsets: tensors above 2**31 elements would overflow int32 arithmetic.
    offs = pid.to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n  # the last program may run past the end
    x = tl.load(x_ptr + offs, mask=mask)
    y = tl.load(y_ptr + offs, mask=mask)
    tl.store(out_ptr + offs, x + y, mask=mask)


def vector_add(x: torch.Tensor, y: torch.Tensor, *, block: int = 1024) -> torch.Tensor:
    """``x + y`` for two tensors of one shape and dtype."""
    if x.shape != y.shape or x.dtype != y.dtype:
        raise ValueError(
            f"vector_add: x and y must have one shape and dtype, got x of shape {tuple(x.shape)}, {x.dtype} "
            f"and y of shape {tuple(y.shape)}, {y.dtype}"
        )
    check_device("vector_add", x=x, y=y)
    x, y = x.contiguous(), y.contiguous()
    out = torch.empty_like(x)
    n = x.numel()
    if n:
        _vector_add_kernel[(triton.cdiv(n, block),)](x, y, out, n, BLOCK=block)
    return out
