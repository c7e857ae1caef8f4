"""Fused row softmax.

What it teaches: when a whole row fits in registers, one program can load it once, reduce it twice (max,
then sum of exponentials) and store the result once. Unfused PyTorch reads the row three times and writes
intermediates; the fused kernel moves 2 bytes per element per direction, so it runs near copy bandwidth.

Subtracting the row max before ``exp`` keeps the result finite (softmax is shift invariant); this is the
same trick flash attention later applies block by block ("online softmax").
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from attn_triton._runtime import check_device, interpreting

DTYPES = (torch.float16, torch.bfloat16, torch.float32)


@triton.jit
def _softmax_kernel(x_ptr, out_ptr, n_rows, n_cols, stride_x, stride_out, BLOCK: tl.constexpr):
    # A persistent loop: each program walks rows pid, pid + num_programs, ... so that the grid can be sized
    # to the machine instead of to the problem.
    pid = tl.program_id(0)
    step = tl.num_programs(0)
    cols = tl.arange(0, BLOCK)
    mask = cols < n_cols
    for row in tl.range(pid, n_rows, step):
        row64 = tl.cast(row, tl.int64)  # (the loop variable is a plain int under the interpreter)
        # Padding lanes read -inf so they neither win the max nor add to the sum (exp(-inf) = 0).
        x = tl.load(x_ptr + row64 * stride_x + cols, mask=mask, other=-float("inf")).to(tl.float32)
        x = x - tl.max(x, axis=0)
        num = tl.exp(x)
        y = num / tl.sum(num, axis=0)
        tl.store(out_ptr + row64 * stride_out + cols, y.to(out_ptr.dtype.element_ty), mask=mask)


def softmax(x: torch.Tensor) -> torch.Tensor:
    """Softmax over the last dimension of a 2-D tensor (fp16, bf16 or fp32; math in fp32)."""
    if x.ndim != 2:
        raise ValueError(f"softmax: x must be a 2-D tensor, got x of shape {tuple(x.shape)}")
    # The kernel computes in fp32 and stores in x's dtype: integers would come back truncated (mostly 0)
    # and float64 rounded through fp32, both without a word, so refuse them.
    if x.dtype not in DTYPES:
        raise ValueError(f"softmax: x must be float16, bfloat16 or float32, got x of dtype {x.dtype}")
    check_device("softmax", x=x)
    if x.stride(-1) != 1:
        x = x.contiguous()
    n_rows, n_cols = x.shape
    out = torch.empty_like(x)
    if x.numel() == 0:
        return out
    block = triton.next_power_of_2(n_cols)
    # More warps for longer rows: each warp holds block / (32 * num_warps) elements per thread.
    num_warps = 4 if block <= 2048 else 8 if block <= 8192 else 16
    if interpreting():
        grid = min(n_rows, 4)
    else:
        from attn_triton._runtime import sm_count

        grid = min(n_rows, sm_count(x.device) * 8)
    _softmax_kernel[(grid,)](
        x, out, n_rows, n_cols, x.stride(0), out.stride(0), BLOCK=block, num_warps=num_warps
    )
    return out
