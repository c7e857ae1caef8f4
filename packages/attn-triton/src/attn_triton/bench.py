"""attn-triton's registration with attn-bench (entry point ``attn_bench.backends: triton``).

A plain description (no import of attn-bench): the flash attention forward/backward, split-KV decoding and
the three basics. Variants: ``default`` is the dispatched path (TMA on Hopper); ``deterministic`` runs the
atomic-free backward (dQ in its own kernel).

Ablation variants (attn-bench's ``ablations`` preset only), each one choice of the default taken back:

* ``attention_fwd/tiles``: the tile-level Triton forward (``Knobs.fwd_gluon=False``, the default before the
  Gluon kernel) against the default, which on Hopper is the Gluon kernel where it applies (dense, head dim
  64 or 128, causal or none); the variants below that name ``tiles`` as their baseline tune that kernel;
* ``attention_fwd/pingpong``, ``gluon_stages_3``: the Gluon kernel with its consumers taking turns at the
  tensor cores (FA3's ping-pong; within noise of the default so far, see ``flash_fwd_sm90``), and with three K/V
  stages (Hopper, head dims 64 and 128 only); ``attention_fwd/gluon_hd256``: the Gluon kernel at head dim
  256 (``flash_fwd_sm90.CANDIDATES``: compiled, not yet run on a GPU) against the tile-level default there;
* ``attention_fwd/pointer_loads``: the pointer path (masked ``tl.load``, pipelined by Triton with
  ``cp.async``; the sm80 path) forced on Hopper, against the default's tensor descriptors (TMA);
* ``attention_fwd/all_heads_order``: causal programs launched with the longest program of every head
  first (grid (batch*heads, query blocks reversed), ``Knobs.fwd_heavy_first=True``, v2's order) instead of
  the default's heaviest first within each head (grid (query blocks reversed, batch*heads)), which keeps
  one head's K/V in L2 while its query blocks run (measured: ``_runtime.PROFILES["v1c"]``);
* ``attention_fwd/unfolded_scale``: the scores scaled before the row max (``Knobs.fwd_fold_scale=False``)
  instead of the scale folded into one FMA per element;
* ``attention_fwd/stages_1``, ``stages_2`` against ``stages_3``: one 128 x 128 tile config (8 warps) with
  1, 2 or 3 K/V pipeline stages, the autotuner bypassed (``stages_3`` is measured against the default);
* ``attention_bwd/atomic_dq``: dQ added with fp32 atomics from the dK/dV kernel (``Knobs.bwd_dq="atomic"``)
  where the default takes the separate dQ kernel (Hopper: head dims 64 and 256, and 128 without a mask;
  at 128 causal both are the atomics); ``attention_bwd/tma_loads``: the backward's streamed tiles by
  tensor descriptors (``Knobs.bwd_tma=True``, v2's choice; Hopper only) instead of the default's pointers
  (``bwd_tma=False`` since ``v1``). It replaces ``pointer_loads`` (``bwd_tma=False``), which ran what the
  default runs (the H200 ablations of 2026-12-03: 0.99x-1.01x, a measurement of nothing). Backward knobs
  are read when the backward runs, so they are switched around the backward only;
* ``decode_kvcache/one_split``: split-KV decoding with ``num_splits=1`` (one program per sequence and KV
  head walks the whole cache) against the default's automatic split count.

``ATTN_TRITON_WARP_SPECIALIZE`` has no variant: it is read at import (it extends the autotune list), so one
process cannot hold both settings.
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
def _backward_function(**changes):
    """The forward op with its own autograd glue (``interface._fwd_setup`` / ``_fwd_backward``), the backward
    under the knobs ``changes``."""
    import torch

    from attn_triton import interface

    class WithKnobs(torch.autograd.Function):
        @staticmethod
        def forward(ctx, *inputs):
            output = interface._fwd(*inputs)
            interface._fwd_setup(ctx, inputs, output)
            ctx.mark_non_differentiable(output[1])
            return output

        @staticmethod
        def backward(ctx, dout, dlse):
            with _knobs(**changes):
                return interface._fwd_backward(ctx, dout, dlse)

    return WithKnobs


def _checked(q, k, v, causal, softmax_scale):
    """``flash_attn_func``'s checks: the window ``(left, right)``, softcap and scale it would pass on."""
    from attn_reference.validation import check_options, check_qkv
    from attn_triton import interface
    from attn_triton._runtime import check_device

    fn, rules = "flash_attn_func", dict(dtypes=interface.DTYPES, head_dims=interface.HEAD_DIMS)
    shape = check_qkv(q, k, v, fn=fn, **rules, head_dim_v_must_match=True)
    check_device(fn, q=q, k=k, v=v)
    return check_options(softmax_scale, causal, (-1, -1), 0.0, shape.head_dim)


def _backward_with(**changes):
    def run(q, k, v, *, causal, softmax_scale):
        (left, right), softcap, scale = _checked(q, k, v, causal, softmax_scale)
        fn = _backward_function(**changes)
        return fn.apply(q, k, v, None, None, 0, 0, scale, left, right, softcap, False)[0]

    run.__name__ = "bwd_" + "_".join(f"{k}_{v}" for k, v in changes.items())
    return run


_atomic_dq = _backward_with(bwd_dq="atomic")


def _forward_with(knobs=None, **launch):
    """The forward kernel called directly (no autograd) with ``launch``'s ``force_path`` / ``config`` and
    ``knobs`` changed around the call."""

    def run(q, k, v, *, causal, softmax_scale):
        from attn_triton.flash_fwd import flash_fwd

        (left, right), softcap, scale = _checked(q, k, v, causal, softmax_scale)
        with _knobs(**(knobs or {})):
            out, _lse = flash_fwd(
                q, k, v, softmax_scale=scale, left=left, right=right, softcap=softcap, **launch
            )
        return out

    return run


#: The tile the pipelining variants force (the Hopper lists' first 128 x 128 candidate, 8 warps).
STAGES_TILE = dict(BLOCK_M=128, BLOCK_N=128, num_warps=8)


def _stages(n: int, baseline: str):
    run = _forward_with(config={**STAGES_TILE, "num_stages": n})
    run.baseline = baseline
    return run


def _against(run, baseline: str):
    run.baseline = baseline
    return run


def _tiles(baseline: str = "tiles", **knobs):
    """The tile-level Triton forward (``Knobs.fwd_gluon=False``) with ``knobs``, against ``baseline``."""
    return _against(_forward_with(knobs=dict(fwd_gluon=False, **knobs)), baseline)


def _gluon_config(**changes):
    """The Gluon forward (:mod:`attn_triton.flash_fwd_sm90`) forced, with its config for the head dim changed
    by ``changes`` (at a ``CANDIDATES`` head dim, not yet dispatched to, that candidate's config)."""
    return _forward_with(gluon=changes)


def _decode(q, k_cache, v_cache, *, cache_seqlens, softmax_scale, block_table=None, num_splits=0):
    """Split-KV decoding; ``num_splits`` 0 lets the kernel choose (the default), 1 is no split."""
    from attn_triton import flash_attn_with_kvcache

    return flash_attn_with_kvcache(
        q,
        k_cache,
        v_cache,
        cache_seqlens=cache_seqlens,
        block_table=block_table,
        softmax_scale=softmax_scale,
        num_splits=num_splits,
    )


def _decode_one_split(q, k_cache, v_cache, **kwargs):
    return _decode(q, k_cache, v_cache, **kwargs, num_splits=1)


def _vector_add(x, y):
    from attn_triton.basics import vector_add

    return vector_add(x, y)


def _softmax(x):
    from attn_triton.basics import softmax

    return softmax(x)


def _matmul(a, b):
    from attn_triton.basics import matmul

    return matmul(a, b)


#: Ablations of the Gluon kernel's config (Hopper only) and the head dims each runs at.
GLUON_VARIANTS = {"pingpong": (64, 128), "gluon_stages_3": (64, 128), "gluon_hd256": (256,)}


def supports(op: str, variant: str, shape: dict, device: str) -> str | None:
    d = shape.get("head_dim")
    attention = op in ("attention_fwd", "attention_bwd", "decode_kvcache")
    if attention and d is not None and d not in (32, 64, 96, 128, 192, 256):
        return f"head dim {d} not in (32, 64, 96, 128, 192, 256)"
    if device == "cpu" and attention and shape.get("seqlen_q", 0) * shape.get("seqlen_k", 0) > 256 * 256:
        return "interpreter: only tiny attention shapes"
    if variant == "all_heads_order" and not shape.get("causal"):
        return "the causal launch order: non-causal programs all cost the same"
    if variant.startswith("stages_") and d is not None and d > 128:
        return f"the forced 128 x 128 tile's K/V stages do not fit shared memory at head dim {d}"
    if variant in GLUON_VARIANTS and (device != "cuda" or d not in GLUON_VARIANTS[variant]):
        return f"the Gluon forward's {variant}: Hopper, head dims {GLUON_VARIANTS[variant]}"
    if variant in ("pointer_loads", "tma_loads") and device == "cuda":
        import torch

        if torch.cuda.get_device_capability() != (9, 0):
            return "tensor descriptors (TMA) are Hopper's: below it both run pointer loads"
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
        "ablations": {
            "attention_fwd": {
                "tiles": _tiles(baseline="default"),
                "pingpong": _gluon_config(pingpong=True),
                "gluon_stages_3": _gluon_config(stages=3),
                "gluon_hd256": _gluon_config(),
                "pointer_loads": _against(_forward_with(force_path="sm80"), "tiles"),
                "all_heads_order": _tiles(fwd_heavy_first=True),
                "unfolded_scale": _tiles(fwd_fold_scale=False),
                "stages_3": _stages(3, baseline="tiles"),
                "stages_2": _stages(2, baseline="stages_3"),
                "stages_1": _stages(1, baseline="stages_3"),
            },
            "attention_bwd": {"atomic_dq": _atomic_dq, "tma_loads": _backward_with(bwd_tma=True)},
            "decode_kvcache": {"one_split": _decode_one_split},
        },
        "supports": supports,
    }
