"""attn-flashmla's registration with attn-bench (entry point ``attn_bench.backends: flashmla``).

Two ops, in FlashMLA's conventions (see ``attn_bench.backend``):

* ``mla_decode``, with variants ``default`` (the dispatch a user gets: on Hopper the CuTe DSL kernel from
  64 query rows per KV head, Triton below), ``triton`` (the portable path forced) and ``cute`` (the CuTe
  DSL kernel forced, Hopper only). Each is *preparable*: ``prepare`` makes the scheduler metadata with one
  untimed call, so the timed callable is what a model's later layers pay.
* ``mla_sparse``: sparse prefill (``flash_mla_sparse_fwd``).

Ablation variants of ``mla_decode`` (attn-bench's ``ablations`` preset only), each measured against the
forced path it changes: ``triton_gather`` (``ATTN_FLASHMLA_TRITON_TMA=0``: K tiles gathered token by token,
against ``triton``'s TMA tiles), ``triton_tiles`` (``ATTN_FLASHMLA_TRITON_GLUON=0``: the tile-level kernel where
``triton`` runs the Gluon Hopper kernel, from 33 query rows per KV head), ``cute_split_s`` (``ATTN_FLASHMLA_CUTE_SEESAW=0``: the first CuTe kernel,
two warpgroups splitting each tile's ``S``) and ``cute_single_cta`` (``ATTN_FLASHMLA_CUTE_CLUSTER=1``: the
seesaw kernel without its CTA pairs), both against ``cute``. Sparse prefill has none: the split of the index
lists (``ATTN_FLASHMLA_SPARSE_SPLITS``) is sparse *decoding*'s, which no attn-bench op runs.
"""

from __future__ import annotations

import contextlib
import os

from attn_flashmla import __version__
from attn_flashmla.interface import flash_mla_sparse_fwd, flash_mla_with_kvcache, get_mla_metadata


@contextlib.contextmanager
def _environ(values: dict[str, str]):
    """``values`` in ``os.environ`` for the body; those keys' earlier state back afterwards, even on errors."""
    old = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in old.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


class _Decode:
    """``mla_decode`` with the switches ``env`` set; ``prepare`` keeps the scheduling outside the timed region.

    The path and Triton's TMA switch are fixed in the schedule that ``prepare`` makes, so the timed calls
    run without them. The CuTe kernel's warpgroups and split S are read again on every call (the compiled
    kernels are keyed on them): ``every_call`` sets those around each timed call too. ``baseline``: the
    variant an ablation variant is measured against (attn-bench), when not the op's default.
    """

    def __init__(self, every_call: bool = False, baseline: str | None = None, **env: str):
        self.env, self.every_call = env, every_call
        if baseline is not None:
            self.baseline = baseline

    def __call__(
        self, q, k_cache, block_table, cache_seqlens, head_dim_v, *, softmax_scale=None, causal=False
    ):
        meta, _ = get_mla_metadata()
        with _environ(self.env):
            return flash_mla_with_kvcache(
                q, k_cache, block_table, cache_seqlens, head_dim_v, meta,
                softmax_scale=softmax_scale, causal=causal,
            )  # fmt: skip

    def prepare(
        self, q, k_cache, block_table, cache_seqlens, head_dim_v, *, softmax_scale=None, causal=False
    ):
        meta, _ = get_mla_metadata()

        def run():
            return flash_mla_with_kvcache(
                q, k_cache, block_table, cache_seqlens, head_dim_v, meta,
                softmax_scale=softmax_scale, causal=causal,
            )  # fmt: skip

        with _environ(self.env):
            run()  # makes the schedule (reads cache_seqlens on the host once)
            described = describe(meta)
        if not (self.every_call and self.env):
            run.description = described
            return run

        def switched():
            with _environ(self.env):
                return run()

        switched.description = described
        return switched


def describe(meta) -> str:
    """What a schedule runs, for attn-bench's row message: the path and its config (the CuTe kernel's form
    as its switches read now; the Triton config that tuning chose)."""
    config = getattr(meta, "kernel_config", None) or {}
    path = getattr(meta, "path", None)
    if path == "cute":
        from attn_flashmla import decode_fwd_sm90

        form = "seesaw" if decode_fwd_sm90.seesaw() else "first kernel"
        return f"cute ({form}), {config.get('num_warps')} warps"
    fields = ",".join(f"{k}={v}" for k, v in config.items())
    return f"{path} {fields}" if path else fields


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
    if op == "mla_decode" and (variant == "cute" or variant.startswith("cute_")):
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
            "mla_decode": {
                "default": _Decode(),
                "triton": _Decode(ATTN_FLASHMLA_PATH="triton"),
                "cute": _Decode(ATTN_FLASHMLA_PATH="cute"),
            },
            "mla_sparse": _mla_sparse,
        },
        "ablations": {
            "mla_decode": {
                "triton_gather": _Decode(
                    baseline="triton", ATTN_FLASHMLA_PATH="triton", ATTN_FLASHMLA_TRITON_TMA="0"
                ),
                "triton_tiles": _Decode(
                    baseline="triton", ATTN_FLASHMLA_PATH="triton", ATTN_FLASHMLA_TRITON_GLUON="0"
                ),
                "cute_split_s": _Decode(
                    every_call=True,
                    baseline="cute",
                    ATTN_FLASHMLA_PATH="cute",
                    ATTN_FLASHMLA_CUTE_SEESAW="0",
                ),
                "cute_single_cta": _Decode(
                    every_call=True,
                    baseline="cute",
                    ATTN_FLASHMLA_PATH="cute",
                    ATTN_FLASHMLA_CUTE_CLUSTER="1",
                ),
            }
        },
        "supports": supports,
    }
