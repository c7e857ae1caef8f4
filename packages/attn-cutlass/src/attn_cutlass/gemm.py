"""``matmul(a, b)`` on the sm90 GEMM kernel, compiled once per (dtype, B's major mode)."""

from __future__ import annotations

import functools

import torch

from attn_reference import capability
from attn_reference.errors import AttentionArgumentError, UnsupportedFeatureError

_cache: dict[tuple, object] = {}


@functools.cache
def _num_sms(index: int) -> int:
    return torch.cuda.get_device_properties(index).multi_processor_count


def matmul(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``a @ b`` for 2-D fp16/bf16 CUDA tensors: a (M, K) row-major, b (K, N) row- or column-major."""
    import cuda.bindings.driver as cuda
    import cutlass
    import cutlass.cute as cute
    from cutlass.cute.runtime import from_dlpack

    if a.dim() != 2 or b.dim() != 2 or a.shape[1] != b.shape[0]:
        raise AttentionArgumentError(f"matmul: need (M, K) @ (K, N), got {tuple(a.shape)} @ {tuple(b.shape)}")
    if a.dtype not in (torch.float16, torch.bfloat16) or b.dtype != a.dtype:
        raise AttentionArgumentError(
            f"matmul: a and b must share dtype float16 or bfloat16, got {a.dtype}, {b.dtype}"
        )
    if not capability.is_hopper(a.device):
        raise UnsupportedFeatureError(
            "matmul: the CuTe DSL GEMM is sm90 only (the sm80 GEMM is not written yet)"
        )
    a = a if a.stride(1) == 1 and a.stride(0) % 8 == 0 else a.contiguous()
    bt = b.t()  # (N, K): wgmma's B operand
    if not ((bt.stride(1) == 1 and bt.stride(0) % 8 == 0) or (bt.stride(0) == 1 and bt.stride(1) % 8 == 0)):
        bt = bt.contiguous()
    c = torch.empty((a.shape[0], b.shape[1]), dtype=a.dtype, device=a.device)
    b_lead = 1 if bt.stride(1) == 1 else 0
    args = [
        from_dlpack(a.detach(), assumed_align=16).mark_layout_dynamic(leading_dim=1),
        from_dlpack(bt.detach(), assumed_align=16).mark_layout_dynamic(leading_dim=b_lead),
        from_dlpack(c, assumed_align=16).mark_layout_dynamic(leading_dim=1),
    ]
    index = a.device.index if a.device.index is not None else torch.cuda.current_device()
    tiles = -(-a.shape[0] // 128) * -(-b.shape[1] // 256)
    num_ctas = cutlass.Int32(max(1, min(tiles, _num_sms(index))))
    stream = cuda.CUstream(torch.cuda.current_stream(a.device).cuda_stream)
    key = (a.dtype, b_lead)
    fn = _cache.get(key)
    if fn is None:
        from .kernels.gemm_sm90 import GemmSm90

        dt = {torch.float16: cutlass.Float16, torch.bfloat16: cutlass.BFloat16}[a.dtype]
        fn = _cache[key] = cute.compile(GemmSm90(dt), *args, num_ctas, stream)
    fn(*args, num_ctas, stream)
    return c
