"""The reference's registration with attn-bench (entry point ``attn_bench.backends: reference``).

attn-bench calls :func:`backend` and gets a plain description (no import of attn-bench here): the naive
and FlashAttention-2 PyTorch implementations, the kv-cache and MLA oracles, and eager torch for the
basics. They run on the CPU and on the GPU; on the GPU the Python-level tiling loops of the FA-2 oracle
and the materialised softmax limit the sizes worth timing, which :func:`supports` states.
"""

from __future__ import annotations

import torch

from attn_reference import __version__, attention_naive, flash_attn_func, flash_attn_with_kvcache, mla

#: Largest fp32 score matrix (batch * heads * s_q * s_k elements) the naive path materialises on a GPU.
NAIVE_MAX_SCORES = 1 << 30
#: Largest number of (query block, key block) steps the FA-2 oracle's Python loop may take on a GPU.
FLASH2_MAX_STEPS = {"attention_fwd": 64 * 64, "attention_bwd": 32 * 32, "decode_kvcache": 8192}
#: Largest gathered tensor (s_q * topk * d fp32 elements) the sparse MLA oracle builds on a GPU.
SPARSE_MAX_GATHER = 1 << 31


def _naive(q, k, v, *, causal, softmax_scale):
    return attention_naive(q, k, v, softmax_scale=softmax_scale, causal=causal)


def _flash2(q, k, v, *, causal, softmax_scale):
    return flash_attn_func(q, k, v, softmax_scale=softmax_scale, causal=causal)


def _decode(q, k_cache, v_cache, *, cache_seqlens, softmax_scale):
    return flash_attn_with_kvcache(
        q, k_cache, v_cache, cache_seqlens=cache_seqlens, softmax_scale=softmax_scale
    )


def _mla_decode(q, k_cache, block_table, cache_seqlens, head_dim_v, *, softmax_scale, causal):
    # (out, lse), as FlashMLA returns them: attn-bench checks both
    return mla.flash_mla_with_kvcache(
        q, k_cache, block_table, cache_seqlens, head_dim_v, softmax_scale=softmax_scale, causal=causal
    )


def _mla_sparse(q, kv, indices, sm_scale, d_v):
    return mla.flash_mla_sparse_fwd(q, kv, indices, sm_scale, d_v)  # (out, max_logits, lse)


def supports(op: str, variant: str, shape: dict, device: str) -> str | None:
    """Why a GPU case is out of reach for the oracle (too slow or too large to be worth timing), or None."""
    if device != "cuda":
        return None
    if op in ("attention_fwd", "attention_bwd") and variant == "naive":
        scores = shape["batch"] * shape["heads_q"] * shape["seqlen_q"] * shape["seqlen_k"]
        if scores > NAIVE_MAX_SCORES:
            return f"naive would materialise {scores * 4 / 2**30:.0f} GiB of fp32 scores (limit 4 GiB)"
    if op in FLASH2_MAX_STEPS and variant == "flash2":
        steps = -(-shape["seqlen_q"] // 64) * -(-shape["seqlen_k"] // 64)
        if op == "decode_kvcache":
            steps = shape["batch"] * -(-shape["seqlen_k"] // 64)  # one sequence at a time
        if steps > FLASH2_MAX_STEPS[op]:
            return f"Python-loop FA-2 oracle: {steps} block steps per call (limit {FLASH2_MAX_STEPS[op]})"
    if op == "mla_sparse":
        gather = shape["seqlen_q"] * shape["topk"] * shape["head_dim"]
        if gather > SPARSE_MAX_GATHER:
            limit = SPARSE_MAX_GATHER * 4 >> 30
            return f"sparse oracle would gather {gather * 4 / 2**30:.0f} GiB of fp32 (limit {limit} GiB)"
    return None


def backend() -> dict:
    """The description attn-bench reads (see ``attn_bench.backend``)."""
    return {
        "name": "reference",
        "version": __version__,
        "devices": ("cpu", "cuda"),
        "ops": {
            "attention_fwd": {"naive": _naive, "flash2": _flash2},
            "attention_bwd": {"naive": _naive, "flash2": _flash2},
            "decode_kvcache": {"flash2": _decode},
            "mla_decode": _mla_decode,
            "mla_sparse": _mla_sparse,
            "vector_add": torch.add,
            "softmax": lambda x: torch.softmax(x, dim=-1),
            "matmul": torch.matmul,
        },
        "supports": supports,
    }
