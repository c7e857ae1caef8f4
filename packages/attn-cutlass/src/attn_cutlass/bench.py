"""attn-bench backend: ``[project.entry-points."attn_bench.backends"] cutlass = "attn_cutlass.bench:backend"``."""

from __future__ import annotations

from . import __version__


def _fwd(q, k, v, *, causal=False, softmax_scale=None):
    from .interface import flash_attn_func

    return flash_attn_func(q, k, v, softmax_scale=softmax_scale, causal=causal)


def _matmul(a, b):
    from .gemm import matmul

    return matmul(a, b)


def _supports(op, variant, shape, device):
    if device != "cuda":
        return "CuTe DSL kernels run on CUDA GPUs only"
    import torch

    if torch.cuda.get_device_capability() != (9, 0):
        return "only the sm90 (Hopper) kernels exist so far"
    head_dim = shape.get("head_dim") or shape.get("headdim") or shape.get("d")
    if op == "attention_bwd" and head_dim is not None and head_dim not in (64, 128):
        return f"the sm90 backward covers head dims 64 and 128, not {head_dim}"
    if op.startswith("attention") and head_dim is not None and head_dim not in (64, 128, 256):
        return f"head dim {head_dim} not compiled (64, 128, 256)"
    return None


def backend():
    return {
        "name": "cutlass",
        "version": __version__,
        "devices": ("cuda",),
        # attention_bwd: the harness differentiates the forward (flash_bwd_sm90 underneath).
        "ops": {"attention_fwd": _fwd, "attention_bwd": _fwd, "matmul": _matmul},
        "supports": _supports,
    }
