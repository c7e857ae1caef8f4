"""attn-triton's registration with attn-bench (entry point ``attn_bench.backends: triton``).

A plain description (no import of attn-bench): the flash attention forward/backward, split-KV decoding and
the three basics. Variants: ``default`` is the dispatched path (TMA on Hopper); ``deterministic`` runs the
atomic-free backward (dQ in its own kernel).

Ablation variant (attn-bench's ``ablations`` preset only): ``attention_bwd/atomic_dq``, dQ added with fp32
atomics from the dK/dV kernel (``Knobs.bwd_dq="atomic"``) where the default takes the separate dQ kernel
(Hopper: head dims 64 and 256, and 128 without a mask; at 128 causal both are the atomics). The knob is read
when the backward runs, so it is switched around the backward only. ``ATTN_TRITON_WARP_SPECIALIZE`` has no
variant: it is read at import (it extends the autotune list), so one process cannot hold both settings.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools

from attn_triton import __version__


def _fwd(q, k, v, *, causal, softmax_scale):
    from attn_triton import flash_attn_func

    return flash_attn_func(q, k, v, softmax_scale=softmax_scale, causal=causal)


def _fwd_det(q, k, v, *, causal, softmax_scale):
    from attn_triton import flash_attn_func

    return flash_attn_func(q, k, v, softmax_scale=softmax_scale, causal=causal, deterministic=True)


@contextlib.contextmanager
def _knobs(**changes):
    """:func:`attn_triton._runtime.knobs` with ``changes`` for the body; the earlier knobs back afterwards."""
    from attn_triton import _runtime

    old = _runtime.set_profile(dataclasses.replace(_runtime.knobs(), **changes))
    try:
        yield
    finally:
        _runtime.set_profile(old)


@functools.cache
def _atomic_dq_function():
    """The forward op with its own autograd glue (``interface._fwd_setup`` / ``_fwd_backward``), the backward
    under ``bwd_dq="atomic"``."""
    import torch

    from attn_triton import interface

    class AtomicDq(torch.autograd.Function):
        @staticmethod
        def forward(ctx, *inputs):
            output = interface._fwd(*inputs)
            interface._fwd_setup(ctx, inputs, output)
            ctx.mark_non_differentiable(output[1])
            return output

        @staticmethod
        def backward(ctx, dout, dlse):
            with _knobs(bwd_dq="atomic"):
                return interface._fwd_backward(ctx, dout, dlse)

    return AtomicDq


def _atomic_dq(q, k, v, *, causal, softmax_scale):
    """``flash_attn_func``'s checks and arguments, through :func:`_atomic_dq_function`."""
    from attn_reference.validation import check_options, check_qkv
    from attn_triton import interface
    from attn_triton._runtime import check_device

    fn, rules = "flash_attn_func", dict(dtypes=interface.DTYPES, head_dims=interface.HEAD_DIMS)
    shape = check_qkv(q, k, v, fn=fn, **rules, head_dim_v_must_match=True)
    check_device(fn, q, k, v)
    (left, right), softcap, scale = check_options(softmax_scale, causal, (-1, -1), 0.0, shape.head_dim)
    return _atomic_dq_function().apply(q, k, v, None, None, 0, 0, scale, left, right, softcap, False)[0]


def _decode(q, k_cache, v_cache, *, cache_seqlens, softmax_scale, block_table=None):
    from attn_triton import flash_attn_with_kvcache

    return flash_attn_with_kvcache(
        q, k_cache, v_cache, cache_seqlens=cache_seqlens, block_table=block_table, softmax_scale=softmax_scale
    )


def _vector_add(x, y):
    from attn_triton.basics import vector_add

    return vector_add(x, y)


def _softmax(x):
    from attn_triton.basics import softmax

    return softmax(x)


def _matmul(a, b):
    from attn_triton.basics import matmul

    return matmul(a, b)


def supports(op: str, variant: str, shape: dict, device: str) -> str | None:
    d = shape.get("head_dim")
    attention = op in ("attention_fwd", "attention_bwd", "decode_kvcache")
    if attention and d is not None and d not in (32, 64, 96, 128, 192, 256):
        return f"head dim {d} not in (32, 64, 96, 128, 192, 256)"
    if device == "cpu" and attention and shape.get("seqlen_q", 0) * shape.get("seqlen_k", 0) > 256 * 256:
        return "interpreter: only tiny attention shapes"
    return None


def backend() -> dict:
    return {
        "name": "triton",
        "version": __version__,
        "devices": ("cuda",),
        "interpreter": True,
        "ops": {
            "attention_fwd": {"default": _fwd},
            "attention_bwd": {"default": _fwd, "deterministic": _fwd_det},
            "decode_kvcache": {"default": _decode},
            "vector_add": _vector_add,
            "softmax": _softmax,
            "matmul": _matmul,
        },
        "ablations": {"attention_bwd": {"atomic_dq": _atomic_dq}},
        "supports": supports,
    }
