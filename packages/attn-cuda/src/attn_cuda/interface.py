"""flash-attn's API over the CUDA kernels: validation, ``torch.library`` ops with fake impls, autograd.

``flash_attn_func`` validates with the shared rules of attn-reference (so messages match every other
backend), then calls the op ``attn_cuda::flash_fwd``; the autograd Function routes the gradient to
``attn_cuda::flash_bwd``. Both ops have fake (meta) implementations, so ``torch.compile`` and
``FakeTensor`` tracing see shapes without launching anything.
"""

from __future__ import annotations

import torch

from attn_reference.errors import UnsupportedFeatureError
from attn_reference.validation import check_qkv, check_softcap, check_window, default_softmax_scale

from . import flash
from .flash import DTYPES, HEAD_DIMS

#: The inputs every kernel here accepts, in check_qkv's terms.
_QKV_RULES = dict(dtypes=DTYPES, head_dims=HEAD_DIMS, device_type="cuda", head_dim_v_must_match=True)


@torch.library.custom_op("attn_cuda::flash_fwd", mutates_args=())
def flash_fwd_op(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, softmax_scale: float, causal: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """Tensor-core FlashAttention-2 forward: (out, lse)."""
    return flash.flash_fwd(q, k, v, softmax_scale, causal)


@flash_fwd_op.register_fake
def _flash_fwd_fake(q, k, v, softmax_scale, causal):
    b, sq, hq, _ = q.shape
    out = q.new_empty((b, sq, hq, v.shape[-1]))
    lse = q.new_empty((b, hq, sq), dtype=torch.float32)
    return out, lse


@torch.library.custom_op("attn_cuda::flash_bwd", mutates_args=())
def flash_bwd_op(
    dout: torch.Tensor,
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    out: torch.Tensor,
    lse: torch.Tensor,
    softmax_scale: float,
    causal: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Tensor-core FlashAttention-2 backward: (dq, dk, dv)."""
    return flash.flash_bwd(dout, q, k, v, out, lse, softmax_scale, causal)


@flash_bwd_op.register_fake
def _flash_bwd_fake(dout, q, k, v, out, lse, softmax_scale, causal):
    return torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)


class FlashAttnFunc(torch.autograd.Function):
    """Forward by ``attn_cuda::flash_fwd``; backward by ``attn_cuda::flash_bwd`` from the saved lse."""

    @staticmethod
    def forward(ctx, q, k, v, softmax_scale, causal):
        out, lse = torch.ops.attn_cuda.flash_fwd(q, k, v, softmax_scale, causal)
        ctx.save_for_backward(q, k, v, out, lse)
        ctx.softmax_scale, ctx.causal = softmax_scale, causal
        ctx.mark_non_differentiable(lse)
        return out, lse

    @staticmethod
    def backward(ctx, dout, _dlse):
        q, k, v, out, lse = ctx.saved_tensors
        dq, dk, dv = torch.ops.attn_cuda.flash_bwd(dout, q, k, v, out, lse, ctx.softmax_scale, ctx.causal)
        return dq, dk, dv, None, None


def _check_supported(window_size, causal, softcap) -> None:
    left, right = check_window(window_size, causal)
    if left != -1 or (right != -1 and not (causal and right == 0)):
        raise UnsupportedFeatureError(
            f"flash_attn_func: attn-cuda has no sliding window; window_size must be (-1, -1), got {window_size!r}"
        )
    if check_softcap(softcap) != 0.0:
        raise UnsupportedFeatureError(
            f"flash_attn_func: attn-cuda has no softcap; softcap must be 0, got {softcap!r}"
        )


def flash_attn_func(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    softmax_scale: float | None = None,
    causal: bool = False,
    window_size: tuple[int, int] = (-1, -1),
    softcap: float = 0.0,
    return_lse: bool = False,
):
    """Attention with flash-attn's API on the tensor-core CUDA kernels.

    Args:
        q: (batch, seqlen_q, heads_q, headdim); k, v: (batch, seqlen_k, heads_k, headdim); heads_q a
            multiple of heads_k (GQA/MQA). CUDA float16 or bfloat16, headdim 64 or 128, last dim contiguous.
        softmax_scale: default 1 / sqrt(headdim).
        causal: mask aligned at the bottom right when seqlen_q != seqlen_k.
        window_size, softcap: only the defaults; anything else raises ``UnsupportedFeatureError``.
    Returns:
        out (batch, seqlen_q, heads_q, headdim), and with ``return_lse`` also lse (batch, heads_q, seqlen_q)
        float32 (natural log; +inf for rows that see no key). Differentiable in q, k and v.
    """
    shape = check_qkv(q, k, v, fn="flash_attn_func", **_QKV_RULES)
    _check_supported(window_size, causal, softcap)
    scale = default_softmax_scale(softmax_scale, shape.head_dim)
    out, lse = FlashAttnFunc.apply(q, k, v, scale, bool(causal))
    return (out, lse) if return_lse else out


def flash_attn_scalar_func(q, k, v, softmax_scale=None, causal=False, version: str = "v2", return_lse=False):
    """The scalar (teaching) forward kernels, FA-1 (``version="v1"``) or FA-2 (``"v2"``); no autograd."""
    shape = check_qkv(q, k, v, fn="flash_attn_scalar_func", **_QKV_RULES)
    if version not in ("v1", "v2"):
        raise ValueError(f"version must be 'v1' or 'v2', got {version!r}")
    scale = default_softmax_scale(softmax_scale, shape.head_dim)
    out, lse = flash.flash_fwd(q, k, v, scale, bool(causal), kernel=f"scalar_{version}")
    return (out, lse) if return_lse else out
