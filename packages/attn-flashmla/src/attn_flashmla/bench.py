"""attn-flashmla's registration with attn-bench (entry point ``attn_bench.backends: flashmla``).

Two ops, in FlashMLA's conventions (see ``attn_bench.backend``):

* ``mla_decode``, with variants ``default`` (the dispatch a user gets: on Hopper the CuTe DSL kernel from
  64 query rows per KV head, Triton below), ``triton`` (the portable path forced) and ``cute`` (the CuTe
  DSL kernel forced, Hopper only). Each is *preparable*: ``prepare`` makes the scheduler metadata with one
  untimed call, so the timed callable is what a model's later layers pay.
* ``mla_sparse``: sparse prefill (``flash_mla_sparse_fwd``).
"""

from __future__ import annotations

import os

from attn_flashmla import __version__
from attn_flashmla.interface import flash_mla_sparse_fwd, flash_mla_with_kvcache, get_mla_metadata


class _Decode:
    """``mla_decode`` on one path; ``prepare`` keeps the scheduling outside the timed region."""

    def __init__(self, path: str | None):
        self.path = path

    def _run(self, meta, q, k_cache, block_table, cache_seqlens, head_dim_v, softmax_scale, causal):
        old = os.environ.get("ATTN_FLASHMLA_PATH")
        if self.path is not None:
            os.environ["ATTN_FLASHMLA_PATH"] = self.path
        try:
            return flash_mla_with_kvcache(
                q, k_cache, block_table, cache_seqlens, head_dim_v, meta,
                softmax_scale=softmax_scale, causal=causal,
            )  # fmt: skip
        finally:
            if self.path is not None:
                if old is None:
                    os.environ.pop("ATTN_FLASHMLA_PATH", None)
                else:
                    os.environ["ATTN_FLASHMLA_PATH"] = old

    def __call__(
        self, q, k_cache, block_table, cache_seqlens, head_dim_v, *, softmax_scale=None, causal=False
    ):
        meta, _ = get_mla_metadata()
        return self._run(meta, q, k_cache, block_table, cache_seqlens, head_dim_v, softmax_scale, causal)

    def prepare(
        self, q, k_cache, block_table, cache_seqlens, head_dim_v, *, softmax_scale=None, causal=False
    ):
        meta, _ = get_mla_metadata()
        args = (q, k_cache, block_table, cache_seqlens, head_dim_v, softmax_scale, causal)
        self._run(meta, *args)  # makes the schedule (reads cache_seqlens on the host once)
        # The path is fixed in the schedule now; later calls need no environment switch.
        return lambda: flash_mla_with_kvcache(
            q,
            k_cache,
            block_table,
            cache_seqlens,
            head_dim_v,
            meta,
            softmax_scale=softmax_scale,
            causal=causal,
        )


def _mla_sparse(q, kv, indices, sm_scale, d_v):
    return flash_mla_sparse_fwd(q, kv, indices, sm_scale, d_v)


def supports(op: str, variant: str, shape: dict, device: str) -> str | None:
    dtype = shape.get("dtype")
    if op == "mla_decode" and dtype not in (None, "bfloat16", "float16"):
        return f"FlashMLA's decoding takes bfloat16 or float16, not {dtype}"
    if op == "mla_sparse" and dtype not in (None, "bfloat16"):
        return f"FlashMLA's sparse prefill takes bfloat16, not {dtype}"
    if op == "mla_decode" and shape.get("head_dim", 576) not in (576, 512):
        return "FlashMLA's head dims are 576 and 512"
    if op == "mla_decode" and variant == "cute":
        if device != "cuda":
            return "the CuTe DSL kernel runs on Hopper GPUs only"
        if shape.get("head_dim", 576) != 576 or shape.get("block_size", 64) != 64:
            return "the CuTe DSL kernel takes head dim 576 and page size 64"
    return None


def backend() -> dict:
    """The description attn-bench reads (see ``attn_bench.backend``)."""
    return {
        "name": "flashmla",
        "version": __version__,
        "devices": ("cuda",),
        "interpreter": True,
        "ops": {
            "mla_decode": {"default": _Decode(None), "triton": _Decode("triton"), "cute": _Decode("cute")},
            "mla_sparse": _mla_sparse,
        },
        "supports": supports,
    }
