"""attn-cuda's registration with attn-bench (entry point ``attn_bench.backends: cuda``).

Ops: ``attention_fwd`` (tensor-core FA-2, plus the scalar teaching kernels: FA-2's loop order as variant
``scalar``, FA-1's as ``scalar_v1``, so one run measures v1 against v2),
``attention_bwd`` (tensor-core forward + backward through autograd), ``vector_add``, ``softmax`` and
``matmul`` in its four steps. The reduction and stream-overlap lessons are not ops of the bench protocol;
``tools/gpu_check.py`` measures them.
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


def _matmul(variant):
    def run(a, b):
        from .basics import matmul

        return matmul(a, b, variant=variant)

    run.__name__ = f"matmul_{variant}"
    return run


def _vector_add(x, y):
    from .basics import vector_add

    return vector_add(x, y)


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
        if variant.startswith("scalar"):
            scores = shape["batch"] * shape["heads_q"] * shape["seqlen_q"] * shape["seqlen_k"]
            if scores > SCALAR_MAX_SCORES:
                return f"scalar teaching kernel: {scores:.1e} scores (limit {SCALAR_MAX_SCORES:.1e})"
    if op == "matmul" and variant in SLOW_MATMUL_MAX:
        size = shape["m"] * shape["n"] * shape["k"]
        if size > SLOW_MATMUL_MAX[variant]:
            return f"{variant} matmul at {shape['m']}x{shape['n']}x{shape['k']} takes too long to time"
    return None


def backend() -> dict:
    """The description attn-bench reads (see ``attn_bench.backend``)."""
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
        "supports": supports,
    }
