"""attn-bench backend: ``[project.entry-points."attn_bench.backends"] cutlass = "attn_cutlass.bench:backend"``.

Ablation variants (attn-bench's ``ablations`` preset only, beside the default): ``matmul/one_cta_per_tile``,
the persistent sm90 GEMM launched with one CTA per output tile (its tile loop then runs once), and
``matmul/no_multicast``, the same GEMM without CTA pairs sharing B tiles by TMA multicast, and
``attention_bwd/dq_atomic``, the sm90 backward adding dQ with fp32 atomics (``ATTN_CUTLASS_BWD_DQ``, read
when the backward runs, so set around the backward only), ``attention_bwd/dq_tma``, by TMA reduce-adds into
a row-major accumulator (hd64's default), and ``attention_bwd/dq_bulk``, dQ's accumulator stored tile by
tile in the MMA's order and added by one contiguous reduce-add per warpgroup and block (hd128's default),
and ``attention_bwd/prefetch``, the sm90 backward prefetching the next query block's LSE and D into L1
(``ATTN_CUTLASS_BWD_PREFETCH=1``), and
``attention_bwd/serial``, the sm90 backward waiting for every GEMM before its next phase
(``ATTN_CUTLASS_BWD_SCHEDULE=serial``) instead of the default's FA4 order of work, set around the backward
only, and
``attention_fwd/causal_sections``, the sm90 forward dealing causal tiles in L2-sized sections of heads
(``ATTN_CUTLASS_CAUSAL_SCHEDULE=sections``, read per call) instead of the default's longest first over the
whole problem with odd rounds reversed; causal shapes only, and ``attention_fwd/no_pingpong``, the
consumer warpgroups without the named barriers that make them take turns at the tensor cores
(``ATTN_CUTLASS_PINGPONG=0``), and ``attention_fwd/always_rescale``, the sm90 forward rescaling the output
at every key block (``ATTN_CUTLASS_RESCALE=always``) instead of the default's lazy rescale, and
``attention_fwd/two_consumers``, the head dim 64 forward with two consumer warpgroups
(``ATTN_CUTLASS_HD64_CONSUMERS=2``) instead of the default's three, and
``attention_fwd/unroll2``, the sm90 forward's unmasked key-block loop unrolled by two at every head dim
(``ATTN_CUTLASS_FWD_UNROLL=2``; the default unrolls bf16 at head dim 128 only), and ``attention_fwd/rolled``,
the loop rolled at every head dim (``ATTN_CUTLASS_FWD_UNROLL=1``, the default's "before" at head dim 128),
and ``attention_fwd/register_store``, the sm90 forward storing O from registers, one value at a time
(``ATTN_CUTLASS_FWD_STORE=registers``) instead of the default's TMA store (at hd256 through one tile the
two consumer warpgroups take turns at).
"""

from __future__ import annotations

import contextlib
import functools
import os

from . import __version__


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


def _fwd(q, k, v, *, causal=False, softmax_scale=None):
    from .interface import flash_attn_func

    return flash_attn_func(q, k, v, softmax_scale=softmax_scale, causal=causal)


@functools.cache
def _function_with_backward_under(items: tuple[tuple[str, str], ...]):
    """``interface._FlashAttnFunc`` whose backward runs with the switches ``items`` set (the forward is the
    default one, the same compiled kernel ``flash_attn_func`` runs)."""
    from . import interface

    values = dict(items)

    class BackwardUnder(interface._FlashAttnFunc):
        @staticmethod
        def backward(ctx, dout, dlse):
            with _environ(values):
                return interface._FlashAttnFunc.backward(ctx, dout, dlse)

    return BackwardUnder


def _bwd_under(values: dict[str, str]):
    """``flash_attn_func``'s checks and arguments, through :func:`_function_with_backward_under`."""
    items = tuple(sorted(values.items()))

    def run(q, k, v, *, causal=False, softmax_scale=None):
        from attn_reference.validation import check_options, check_qkv

        from . import interface

        shape = check_qkv(
            q, k, v, dtypes=interface.DTYPES, head_dims=interface.HEAD_DIMS, head_dim_v_must_match=True
        )
        (left, right), softcap, scale = check_options(softmax_scale, causal, (-1, -1), 0.0, shape.head_dim)
        is_causal = causal or (right == 0 and left < 0)
        args = (None, None, shape.seqlen_q, shape.seqlen_k, scale, is_causal, left, right, softcap)
        return _function_with_backward_under(items).apply(q, k, v, *args)[0]

    return run


_dq_atomic = _bwd_under({"ATTN_CUTLASS_BWD_DQ": "atomic"})
_dq_tma = _bwd_under({"ATTN_CUTLASS_BWD_DQ": "tma"})
_dq_bulk = _bwd_under({"ATTN_CUTLASS_BWD_DQ": "bulk"})
_bwd_prefetch = _bwd_under({"ATTN_CUTLASS_BWD_PREFETCH": "1"})
_bwd_serial = _bwd_under({"ATTN_CUTLASS_BWD_SCHEDULE": "serial"})


def _fwd_under(values: dict[str, str]):
    """The default forward with the switches ``values`` set around each call."""

    def run(q, k, v, *, causal=False, softmax_scale=None):
        with _environ(values):
            return _fwd(q, k, v, causal=causal, softmax_scale=softmax_scale)

    return run


_no_pingpong = _fwd_under({"ATTN_CUTLASS_PINGPONG": "0"})
_causal_sections = _fwd_under({"ATTN_CUTLASS_CAUSAL_SCHEDULE": "sections"})
_always_rescale = _fwd_under({"ATTN_CUTLASS_RESCALE": "always"})
_two_consumers = _fwd_under({"ATTN_CUTLASS_HD64_CONSUMERS": "2"})
_unroll2 = _fwd_under({"ATTN_CUTLASS_FWD_UNROLL": "2"})
_rolled = _fwd_under({"ATTN_CUTLASS_FWD_UNROLL": "1"})
_register_store = _fwd_under({"ATTN_CUTLASS_FWD_STORE": "registers"})


def _matmul(a, b):
    from .gemm import matmul

    return matmul(a, b)


def _matmul_one_cta_per_tile(a, b):
    from .gemm import TILE_M, TILE_N, _matmul_sm90

    # tools/gpu_check.py times the same launch.
    tiles = -(-a.shape[0] // TILE_M) * -(-b.shape[1] // TILE_N)
    return _matmul_sm90(a, b, num_ctas=tiles)


def _matmul_no_multicast(a, b):
    from .gemm import _matmul_sm90

    return _matmul_sm90(a, b, cluster_m=1)


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
    if variant == "two_consumers" and head_dim != 64:
        return "head dim 64 only: the others run two consumer warpgroups already"
    if variant == "causal_sections" and not shape.get("causal"):
        return "the causal tile schedule: non-causal tiles are dealt in one fixed order"
    if (
        variant in ("one_cta_per_tile", "no_multicast")
        and os.environ.get("ATTN_CUTLASS_FORCE_ARCH") == "sm80"
    ):
        return "ATTN_CUTLASS_FORCE_ARCH=sm80: the default row runs the sm80 GEMM, not the persistent one"
    return None


def backend():
    return {
        "name": "cutlass",
        "version": __version__,
        "devices": ("cuda",),
        # attention_bwd: the harness differentiates the forward (flash_bwd_sm90 underneath).
        "ops": {"attention_fwd": _fwd, "attention_bwd": _fwd, "matmul": _matmul},
        "ablations": {
            "attention_fwd": {
                "causal_sections": _causal_sections,
                "no_pingpong": _no_pingpong,
                "always_rescale": _always_rescale,
                "two_consumers": _two_consumers,
                "unroll2": _unroll2,
                "rolled": _rolled,
                "register_store": _register_store,
            },
            "attention_bwd": {
                "dq_atomic": _dq_atomic,
                "dq_tma": _dq_tma,
                "dq_bulk": _dq_bulk,
                "prefetch": _bwd_prefetch,
                "serial": _bwd_serial,
            },
            "matmul": {"one_cta_per_tile": _matmul_one_cta_per_tile, "no_multicast": _matmul_no_multicast},
        },
        "supports": _supports,
    }
