"""The one place that asks what the machine can run.

Nothing here runs at import time: backends and tests call these functions when they need the answer, so
importing any package of this project works on a machine without a GPU.
"""

from __future__ import annotations

import contextlib
import functools

import torch

from attn_reference.errors import AttentionArgumentError

#: Test tiers, in order. A GPU tier is satisfied by a device of at least that compute capability, except
#: ``sm90``, which asks for Hopper itself (wgmma and TMA do not exist on later generations' consumer parts).
TIERS = ("cpu", "sm80", "sm90")


def cuda_capability(device: int | torch.device | None = None) -> tuple[int, int] | None:
    """Compute capability ``(major, minor)`` of a CUDA device, or ``None`` when CUDA is not usable."""
    if not torch.cuda.is_available():
        return None
    return torch.cuda.get_device_capability(device)


def is_hopper(device: int | torch.device | None = None) -> bool:
    """True on sm_90 devices (H100, H200, H800, H20)."""
    return cuda_capability(device) == (9, 0)


def is_sm80_or_newer(device: int | torch.device | None = None) -> bool:
    cap = cuda_capability(device)
    return cap is not None and cap >= (8, 0)


def common_device(devices, current: int) -> int:
    """The index of the CUDA device that ``devices`` (``torch.device`` objects) share: ``current`` stands
    for a bare ``"cuda"`` and for a list without CUDA devices. Devices of several GPUs are refused by name."""
    indices = sorted({current if d.index is None else d.index for d in devices if d.type == "cuda"})
    if len(indices) > 1:
        raise AttentionArgumentError(
            f"tensor arguments on several devices ({', '.join(f'cuda:{i}' for i in indices)}); "
            "a kernel runs on one: move them to the same device"
        )
    return indices[0] if indices else current


def device_guard(*tensors) -> contextlib.AbstractContextManager:
    """``torch.cuda.device`` of the CUDA tensors among ``tensors`` (:func:`common_device`), or a context that
    does nothing when there is none (CPU tensors, e.g. under the Triton interpreter). Kernels launch on the
    current device: an op whose inputs live on another GPU makes theirs current first, as flash-attn's
    device guard does."""
    devices = [t.device for t in tensors if isinstance(t, torch.Tensor) and t.is_cuda]
    if not devices:
        return contextlib.nullcontext()
    return torch.cuda.device(common_device(devices, torch.cuda.current_device()))


@functools.cache
def _device_name() -> str:
    return torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"


def tier_unavailable(tier: str) -> str | None:
    """``None`` when this machine can run tests of ``tier``; otherwise the reason it cannot."""
    if tier not in (*TIERS, "gpu"):
        raise ValueError(f"tier must be one of {(*TIERS, 'gpu')}, got {tier!r}")
    if tier == "cpu":
        return None
    cap = cuda_capability()
    if cap is None:
        return f"needs a CUDA GPU ({tier}); this machine has none"
    if tier == "sm80" and cap < (8, 0):
        return f"needs compute capability >= 8.0; {_device_name()} is sm_{cap[0]}{cap[1]}"
    if tier == "sm90" and cap != (9, 0):
        return f"needs a Hopper GPU (sm_90); {_device_name()} is sm_{cap[0]}{cap[1]}"
    return None


def current_tier() -> str:
    """The highest tier this machine runs: ``sm90``, ``sm80``, or ``cpu``."""
    for tier in reversed(TIERS):
        if tier_unavailable(tier) is None:
            return tier
    return "cpu"
