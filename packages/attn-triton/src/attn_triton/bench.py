"""attn-triton's registration with attn-bench (entry point ``attn_bench.backends: triton``).

A plain description (no import of attn-bench): the flash attention forward/backward, split-KV decoding and
the three basics. Variants: ``default`` is the dispatched path (TMA on Hopper); ``deterministic`` runs the
atomic-free backward.
"""

from __future__ import annotations

from attn_triton import __version__


def _fwd(q, k, v, *, causal, softmax_scale):
    from attn_triton import flash_attn_func

    return flash_attn_func(q, k, v, softmax_scale=softmax_scale, causal=causal)


def _fwd_det(q, k, v, *, causal, softmax_scale):
    from attn_triton import flash_attn_func

    return flash_attn_func(q, k, v, softmax_scale=softmax_scale, causal=causal, deterministic=True)


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
        "supports": supports,
    }
