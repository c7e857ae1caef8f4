"""Where a kernel may run, decided at call time (never at import).

Three paths exist:

* ``"interpret"``: ``TRITON_INTERPRET=1``. Triton executes the kernel body with numpy on CPU tensors. Slow,
  but it lets the CPU tier of the tests exercise every kernel line without a GPU.
* ``"sm90"``: Hopper. Tiles move through tensor descriptors (TMA), and autotune picks among Hopper configs.
* ``"sm80"``: Ampere and newer non-Hopper parts. Plain pointer loads, ``cp.async`` pipelining from
  ``num_stages``, configs sized for 164 KiB of shared memory.
"""

from __future__ import annotations

import functools
import math
import os

import torch

from attn_reference.errors import AttentionArgumentError


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


def interpreting() -> bool:
    """True when Triton runs kernels in its CPU interpreter."""
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


@functools.cache
def _patch_interpreter_for_numpy2() -> None:
    # Triton 3.6's interpreter turns a scalar tensor into a Python int with int(array), which numpy >= 2.4
    # refuses for the shape-(1,) arrays that program_id() yields, so any loop bounded by a value derived
    # from program_id() fails (triton-lang/triton#9171, fixed upstream by #9172 after 3.6). Apply the same
    # one-line fix: reduce the array to a scalar first. Only ever runs under TRITON_INTERPRET=1.
    try:
        from triton.runtime import interpreter
    except ImportError:  # pragma: no cover
        return
    original = getattr(interpreter, "_patch_lang_tensor", None)
    if original is None or getattr(original, "_attn_triton_patched", False):
        return

    def patched(tensor, scope):
        original(tensor, scope)
        scope.set_attr(tensor, "__index__", lambda self: int(self.handle.data.reshape(-1)[0]))

    patched._attn_triton_patched = True
    interpreter._patch_lang_tensor = patched


def check_device(fn: str, *tensors: torch.Tensor) -> None:
    """Kernels run on CUDA tensors, or on CPU tensors only under the interpreter."""
    dev = tensors[0].device
    for t in tensors:
        if t.device != dev:
            raise AttentionArgumentError(f"{fn}: all tensors must be on one device, got {dev} and {t.device}")
    if dev.type == "cuda":
        return
    if dev.type == "cpu" and interpreting():
        return
    raise AttentionArgumentError(
        f"{fn}: tensors are on device {dev}; attn-triton runs on CUDA devices "
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


@functools.cache
def _install_allocator() -> None:
    # Tensor descriptors created inside a kernel (tl.make_tensor_descriptor) are written by the kernel into
    # a small global-memory scratch buffer before TMA can use them. Triton asks for that buffer through the
    # allocator hook; without one installed, such kernels fail at launch.
    import triton

    def alloc(size: int, alignment: int, stream):
        return torch.empty(size, dtype=torch.int8, device="cuda")

    triton.set_allocator(alloc)


def ensure_allocator(path: str) -> None:
    if path == "sm90":
        _install_allocator()


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
    _patch_interpreter_for_numpy2()
