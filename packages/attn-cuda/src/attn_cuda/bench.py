"""attn-cuda's registration with attn-bench (entry point ``attn_bench.backends: cuda``).

Ops: ``attention_fwd`` (tensor-core FA-2, plus the scalar teaching kernels: FA-2's loop order as variant
``scalar``, FA-1's as ``scalar_v1``, so one run measures v1 against v2),
``attention_bwd`` (tensor-core forward + backward through autograd), ``vector_add``, ``softmax`` and
``matmul`` in its four steps. The reduction and stream-overlap lessons are not ops of the bench protocol;
``tools/gpu_check.py`` measures them.

Ablation variants (run by attn-bench's ``ablations`` preset only, beside the default): ``mma_kernel``, the
mma forward on its defaults (on sm_90a the op's default is the wgmma kernel; elsewhere the two are one
kernel), and against it every
other forward tiling of ``flash.FWD_VARIANTS`` (named as there), every other backward tiling of ``flash.BWD_VARIANTS``
(``bwd_<name>``), vector add with 4-byte loads (``scalar_loads``) and uncoalesced (``chunked``), the causal
launch order ``causal_per_head`` (the non-default of ``flash.CAUSAL_ORDERS``; causal shapes only) and the
other O rescale mode (``lazy_rescale`` or ``always_rescale``: the non-default of ``flash.RESCALE_MODES``),
both also against ``mma_kernel``, and the
tensor-core matmul's other block tiles and orders (``mma_<tile>_<order>``) and shared-memory layouts
(``mma_<layout>_smem``). Each passes its choice as an explicit argument, so no environment variable is
touched.
"""

from __future__ import annotations

from . import __version__

#: Largest matmul (m * n * k) the slow variants are timed at: beyond it they take seconds per call.
SLOW_MATMUL_MAX = {"naive": 2048**3, "tiled": 4096**3, "regblock": 8192**3}
#: The scalar attention kernel: one thread per query row, so long sequences take seconds.
SCALAR_MAX_SCORES = 1 << 30


def _fwd(q, k, v, *, causal, softmax_scale):
    from .interface import flash_attn_func

    return flash_attn_func(q, k, v, softmax_scale=softmax_scale, causal=causal)


def _scalar(version):
    def run(q, k, v, *, causal, softmax_scale):
        from .interface import flash_attn_scalar_func

        return flash_attn_scalar_func(q, k, v, softmax_scale=softmax_scale, causal=causal, version=version)

    run.__name__ = f"flash_fwd_scalar_{version}"
    return run


def _fwd_with(**choices):
    """The mma forward with ``choices`` (``variant=``, ``order=``, ``rescale=``) passed to ``flash.flash_fwd``,
    measured against ``mma_kernel`` (the mma kernel on its own defaults): on sm_90a the op's default runs
    the wgmma kernel, which is not what these choices vary."""

    def run(q, k, v, *, causal, softmax_scale):
        from . import flash

        scale = q.shape[-1] ** -0.5 if softmax_scale is None else softmax_scale
        # the choices are the mma kernel's: name it, whatever $ATTN_CUDA_FWD_KERNEL says
        return flash.flash_fwd(q, k, v, scale, causal, kernel="mma", **choices)[0]

    run.__name__ = "flash_fwd_mma_" + "_".join(str(c) for c in choices.values())
    if choices:
        run.baseline = "mma_kernel"
    return run


def _bwd_variant(variant):
    """The default forward, and the backward with ``variant``'s tiling (the op itself reads no argument)."""
    from . import flash
    from .interface import FlashAttnFunc

    class Fn(FlashAttnFunc):
        @staticmethod
        def backward(ctx, dout, _dlse):
            q, k, v, out, lse = ctx.saved_tensors
            grads = flash.flash_bwd(dout, q, k, v, out, lse, ctx.softmax_scale, ctx.causal, variant=variant)
            return (*grads, None, None)

    def run(q, k, v, *, causal, softmax_scale):
        scale = q.shape[-1] ** -0.5 if softmax_scale is None else softmax_scale
        return Fn.apply(q, k, v, scale, causal)[0]

    run.__name__ = f"flash_bwd_{variant}"
    return run


def _matmul(variant, **choices):
    def run(a, b):
        from .basics import matmul

        return matmul(a, b, variant=variant, **choices)

    run.__name__ = f"matmul_{variant}"
    return run


def matmul_ablations() -> dict[str, dict]:
    """The tensor-core matmul's non-default choices, by ablation variant name: ``tile``/``order``/``layout``
    keywords of ``basics.matmul`` (a layout keeps the device's default tile and the default order)."""
    from .basics.matmul import (
        MMA_DEFAULT_LAYOUT,
        MMA_DEFAULT_ORDER,
        MMA_DEFAULT_TILE,
        MMA_LAYOUTS,
        MMA_ORDERS,
        MMA_TILES,
    )

    out = {
        f"mma_{tile}_{order}": dict(tile=tile, order=order)
        for tile in MMA_TILES
        for order in MMA_ORDERS
        if (tile, order) != (MMA_DEFAULT_TILE, MMA_DEFAULT_ORDER)
    }
    out.update(
        {f"mma_{layout}_smem": dict(layout=layout) for layout in MMA_LAYOUTS if layout != MMA_DEFAULT_LAYOUT}
    )
    return out


def _vector_add(x, y):
    from .basics import vector_add

    return vector_add(x, y)


def _vector_add_with(**choices):
    def run(x, y):
        from .basics import vector_add

        return vector_add(x, y, **choices)

    run.__name__ = "vector_add_" + "_".join(f"{k}_{v}" for k, v in choices.items())
    return run


def _softmax(x):
    from .basics import softmax

    return softmax(x)


def supports(op: str, variant: str, shape: dict, device: str) -> str | None:
    """Why a case is out of reach, or None."""
    if device != "cuda":
        return "CUDA kernels need a GPU"
    if op in ("attention_fwd", "attention_bwd"):
        d = shape.get("head_dim")
        if d not in (64, 128):
            return f"head dim {d}: kernels are instantiated for 64 and 128"
        if shape.get("head_dim_v", d) != d:
            return "head_dim_v must equal head_dim"
        if variant == "causal_per_head" and not shape.get("causal"):
            return "the causal launch order: non-causal blocks all cost the same"
        if variant.startswith("scalar"):
            scores = shape["batch"] * shape["heads_q"] * shape["seqlen_q"] * shape["seqlen_k"]
            if scores > SCALAR_MAX_SCORES:
                return f"scalar teaching kernel: {scores:.1e} scores (limit {SCALAR_MAX_SCORES:.1e})"
    if op == "matmul" and variant in SLOW_MATMUL_MAX:
        size = shape["m"] * shape["n"] * shape["k"]
        if size > SLOW_MATMUL_MAX[variant]:
            return f"{variant} matmul at {shape['m']}x{shape['n']}x{shape['k']} takes too long to time"
    choices = matmul_ablations().get(variant) if op == "matmul" else None
    if choices:  # a tile that needs more shared memory per block than this GPU allows (e.g. sm_86/sm_89)
        import torch

        from .basics.matmul import MMA_DEFAULT_LAYOUT, MMA_TILES, default_tile
        from .runtime import max_dynamic_smem

        index = torch.cuda.current_device()
        tile = choices.get("tile") or default_tile(index)
        smem = MMA_TILES[tile].smem_for(choices.get("layout", MMA_DEFAULT_LAYOUT))
        if smem > max_dynamic_smem(index):
            return f"tile {tile} needs {smem} bytes of shared memory per block, more than this GPU allows"
    return None


def backend() -> dict:
    """The description attn-bench reads (see ``attn_bench.backend``)."""
    from .flash import BWD_VARIANTS, DEFAULT_BWD_VARIANT, DEFAULT_FWD_VARIANT, FWD_VARIANTS, other_rescale

    return {
        "name": "cuda",
        "version": __version__,
        "devices": ("cuda",),
        "ops": {
            "attention_fwd": {"mma": _fwd, "scalar": _scalar("v2"), "scalar_v1": _scalar("v1")},
            "attention_bwd": {"mma": _fwd},
            "vector_add": _vector_add,
            "softmax": _softmax,
            "matmul": {v: _matmul(v) for v in ("mma", "regblock", "tiled", "naive")},
        },
        "ablations": {
            "attention_fwd": {
                # the mma kernel as it is by default (against the op's default: wgmma on sm_90a)
                "mma_kernel": _fwd_with(),
                **{v: _fwd_with(variant=v) for v in FWD_VARIANTS if v != DEFAULT_FWD_VARIANT},
                "causal_per_head": _fwd_with(order="per_head"),
                f"{other_rescale()}_rescale": _fwd_with(rescale=other_rescale()),
            },
            "attention_bwd": {f"bwd_{v}": _bwd_variant(v) for v in BWD_VARIANTS if v != DEFAULT_BWD_VARIANT},
            "matmul": {name: _matmul("mma", **kw) for name, kw in matmul_ablations().items()},
            # 4-byte instead of 16-byte loads; each thread's own run of elements (uncoalesced)
            "vector_add": {
                "scalar_loads": _vector_add_with(vectorized=False),
                "chunked": _vector_add_with(access="chunked"),
            },
        },
        "supports": supports,
    }
