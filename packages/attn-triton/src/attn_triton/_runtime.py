"""Where a kernel may run, decided at call time (never at import).

Three paths exist:

* ``"interpret"``: ``TRITON_INTERPRET=1``. Triton executes the kernel body with numpy on CPU tensors. Slow,
  but it lets the CPU tier of the tests exercise every kernel line without a GPU.
* ``"sm90"``: Hopper. Tiles move through tensor descriptors (TMA), and autotune picks among Hopper configs.
* ``"sm80"``: Ampere and newer non-Hopper parts. Plain pointer loads, ``cp.async`` pipelining from
  ``num_stages``, configs sized for 164 KiB of shared memory.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os

import torch

from attn_reference.errors import AttentionArgumentError
from attn_reference.triton_compat import interpreting, patch_interpreter_for_numpy2


def tuning_budget(configs: list) -> list:
    """Autotune candidates after pruning, capped by ``ATTN_TRITON_MAX_CONFIGS`` (0 or unset: no cap).

    Tests on a GPU set it to 1: they check every feature at many shapes, and tuning each new key over
    every config would spend minutes compiling variants whose speed the tests never look at. The cap keeps
    the smallest tiles: a lone config is launched untested by the autotuner, so it must surely fit.
    """
    cap = int(os.environ.get("ATTN_TRITON_MAX_CONFIGS", "0") or 0)
    if cap <= 0:
        return configs

    def footprint(c) -> int:
        return math.prod(v for k, v in c.kwargs.items() if k.startswith("BLOCK")) * max(c.num_stages, 1)

    return sorted(configs, key=footprint)[:cap]


@dataclasses.dataclass(frozen=True)
class Knobs:
    """Performance choices that the GPU benchmark compares side by side (``tools/h200_check.py``).

    Every field is a speed choice only: both settings compute the same result. ``PROFILES["v1"]`` is the
    first GPU run's code: the sm90 conformance suite passed with it on the H200. ``"v1b"`` is v1 with
    ``bwd_dq="auto"``: the attn-bench run of 2026-11-22 on the H200 measured the separate dQ kernel (the
    deterministic path, in the same suite) faster than atomics at head dims 64 and 256. ``"v1c"`` is v1b
    with v2's forward configs and folded scale, which passed the sm90 forward, varlen, head-dim and lse
    conformance tests on the H200 (50 passed; the skips are fp32, not run on GPU tiers), and v1's causal
    launch order (per head; see ``fwd_heavy_first``). The default, ``"v1d"``, is v1c with the Gluon forward
    on Hopper (``fwd_gluon``; the whole sm90 tier passed with it on an H100, 2026-12-07). ``"v2"`` holds
    every newer choice; its decoding measured slower than v1's. ``ATTN_TRITON_PROFILE`` picks the profile
    at import, :func:`set_profile` at run time.
    """

    #: Hopper forward: the Gluon kernel (:mod:`attn_triton.flash_fwd_sm90`: warp-specialised, asynchronous
    #: wgmma, FA3's schedule) for the calls it supports, instead of the tile-level Triton kernel
    fwd_gluon: bool = True
    #: forward autotune list: "v1" (first list) or "v2" (per-head-dim lists, warp-specialised candidates)
    fwd_configs: str = "v2"
    #: forward: scores stay unscaled; the row max is scaled once per row and ``exp2(qk * c - m)`` is one FMA
    fwd_fold_scale: bool = True
    #: causal forward launch order. True (v2): program axis 0 walks (batch, head), axis 1 the query blocks
    #: heaviest first, so the longest programs of *every* head start in the first wave. False (v1 and the
    #: default v1c): grid (query blocks reversed, batch*heads), heaviest first within each head; likely
    #: faster because one head's K/V (8 MB at 16k, hd128) stays in the 50 MB L2 while its query blocks run
    #: instead of 16 heads' (128 MB) streaming at once (measured: see PROFILES["v1c"]).
    fwd_heavy_first: bool = True
    #: backward: tensor descriptors (TMA) for the streamed Q/dO (dK/dV kernel) and K/V (dQ kernel) tiles
    bwd_tma: bool = True
    #: backward: the row constants read in the hot loop come precomputed (lse in log2 units) from the
    #: preprocess kernel
    bwd_lse2: bool = True
    #: dQ of the non-deterministic backward: "atomic" (fp32 atomics from the dK/dV kernel), "separate"
    #: (the deterministic dQ kernel), "auto" (separate on Hopper at head dims <= 64 and > 128, and at 128
    #: without a mask, where the GPU runs measured it faster, atomic otherwise; see flash_bwd.separate_dq)
    bwd_dq: str = "auto"
    #: paged decoding: one block-table read per key tile (page size a compile-time constant, tiles inside
    #: a page) instead of one per key row
    decode_page_tile: bool = True
    #: forward/backward/decode autotune configs: "v1" lists or "v2" lists
    bwd_configs: str = "v2"
    decode_configs: str = "v2"


PROFILES = {
    "v1": Knobs(
        fwd_gluon=False,
        fwd_configs="v1",
        fwd_fold_scale=False,
        fwd_heavy_first=False,
        bwd_tma=False,
        bwd_lse2=False,
        bwd_dq="atomic",
        decode_page_tile=False,
        bwd_configs="v1",
        decode_configs="v1",
    ),
    "v2": Knobs(),
}
PROFILES["v1b"] = dataclasses.replace(PROFILES["v1"], bwd_dq="auto")
# v1b's backward and decoding with v2's forward configs and folded scale: on the H200 (2026-11-22, bf16,
# 16k) v2's forward measured hd64 435 vs 400 TFLOP/s, hd128 502 vs 487, causal 475 vs 484 (slower), while
# v2's decoding measured slower (contiguous cache 2272 vs 2666 GB/s) and its backward the same. The causal
# launch order stays v1's, per head (fwd_heavy_first=False): the attn-bench ablations of 2026-12-03 (H200,
# bf16, same run, both checked against the reference) measured it faster than v2's all-heads-first order,
# b1 s16384 h16 d128 causal 501 vs 479 TFLOP/s (1.05x), h8 d256 causal 534 vs 527 (1.01x).
PROFILES["v1c"] = dataclasses.replace(
    PROFILES["v1b"], fwd_configs="v2", fwd_fold_scale=True, fwd_heavy_first=False
)
# v1c with the Gluon forward on Hopper (flash_fwd_sm90) where it applies.
PROFILES["v1d"] = dataclasses.replace(PROFILES["v1c"], fwd_gluon=True)
DEFAULT_PROFILE = "v1d"


def _profile_from_env() -> Knobs:
    name = os.environ.get("ATTN_TRITON_PROFILE") or DEFAULT_PROFILE
    if name not in PROFILES:
        raise ValueError(f"ATTN_TRITON_PROFILE must be one of {sorted(PROFILES)}, got {name!r}")
    return PROFILES[name]


_KNOBS = [_profile_from_env()]


def knobs() -> Knobs:
    """The performance choices in force now."""
    return _KNOBS[0]


def set_profile(profile: str | Knobs) -> Knobs:
    """Switch performance choices (a name from :data:`PROFILES` or a :class:`Knobs`); returns the old one."""
    old = _KNOBS[0]
    _KNOBS[0] = PROFILES[profile] if isinstance(profile, str) else profile
    return old


def robust_bench(kernel_call, quantiles):
    """Autotuner timing that scores a config the compiler rejects as infinitely slow instead of failing.

    Triton's autotuner forgives only out-of-resources and ptxas errors; a candidate that a newer pass (such
    as Hopper warp specialisation) cannot lower raises something else and would abort the whole call.
    """
    from triton.runtime import driver

    try:
        return driver.active.get_benchmarker()(kernel_call, quantiles=quantiles)
    except torch.cuda.OutOfMemoryError:
        raise
    except Exception as e:  # any compile failure just disqualifies the candidate
        if "CUDA error" in str(e) or "illegal" in str(e).lower():
            raise  # a broken context is not a slow config
        return [float("inf")] * len(quantiles)


@functools.cache
def gluon_available() -> bool:
    """Whether Gluon (``triton.experimental.gluon``) is there as :mod:`attn_triton.flash_fwd_sm90` uses it.

    Gluon is experimental and its API moves between releases; the kernel is written and tested against
    Triton 3.6, so older Tritons take the tile-level kernel instead.
    """
    import triton

    major, minor = (int(x) for x in triton.__version__.split(".")[:2])
    if (major, minor) < (3, 6):
        return False
    try:
        from triton.experimental.gluon.language.nvidia.hopper import warpgroup_mma_wait  # noqa: F401
    except ImportError:
        return False
    return True


def check_device(fn: str, **tensors: torch.Tensor) -> None:
    """Kernels run on CUDA tensors, or on CPU tensors only under the interpreter.

    ``tensors`` by argument name (``check_device(fn, q=q, k=k)``), so the message can say which one is off.
    """
    (first, t0), *rest = tensors.items()
    dev = t0.device
    for name, t in rest:
        if t.device != dev:
            raise AttentionArgumentError(
                f"{fn}: all tensors must be on one device, got {first} on {dev} and {name} on {t.device}"
            )
    if dev.type == "cuda":
        return
    if dev.type == "cpu" and interpreting():
        return
    raise AttentionArgumentError(
        f"{fn}: {', '.join(tensors)} on device {dev}; attn-triton runs on CUDA devices "
        "(or on CPU only under TRITON_INTERPRET=1)"
    )


def path_for(device: torch.device) -> str:
    """``"interpret"``, ``"sm90"`` or ``"sm80"`` for tensors on ``device``."""
    if device.type != "cuda" or interpreting():
        return "interpret"
    from attn_reference.capability import cuda_capability, is_hopper

    if is_hopper(device):
        return "sm90"
    cap = cuda_capability(device)
    if cap is None or cap < (8, 0):
        from attn_reference.errors import UnsupportedFeatureError

        raise UnsupportedFeatureError(f"attn-triton needs compute capability >= 8.0, got {cap}")
    return "sm80"


def _scratch(size: int, alignment: int, stream):
    return torch.empty(size, dtype=torch.int8, device="cuda")


def ensure_allocator(path: str) -> None:
    """Install the scratch allocator that in-kernel tensor descriptors need (Hopper path only).

    Tensor descriptors created inside a kernel (tl.make_tensor_descriptor) are written by the kernel into
    a small global-memory scratch buffer before TMA can use them; Triton asks for it through the allocator
    hook. The hook lives in a context variable, so it is set on every call rather than once: autograd runs
    the backward on its own thread, where an allocator set by the forward's thread is not visible.
    """
    if path == "sm90":
        import triton

        triton.set_allocator(_scratch)


@functools.cache
def num_sms(device_index: int) -> int:
    return torch.cuda.get_device_properties(device_index).multi_processor_count


def sm_count(device: torch.device) -> int:
    """Streaming multiprocessors on ``device`` (a nominal 132 under the interpreter, for heuristics)."""
    if device.type != "cuda":
        return 132
    return num_sms(device.index if device.index is not None else torch.cuda.current_device())


# Under TRITON_INTERPRET=1, patch the interpreter before any kernel of this package runs.
if interpreting():
    patch_interpreter_for_numpy2()
