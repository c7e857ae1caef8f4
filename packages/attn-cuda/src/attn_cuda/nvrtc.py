"""Run-time compilation of CUDA C++ with NVRTC, through ``cuda.core``.

Compiling needs no GPU (only the NVRTC library, from the ``nvidia-cuda-nvrtc`` wheel), so this layer is
tested on the CPU; loading and launching the result needs the GPU tiers.
"""

from __future__ import annotations

from typing import Any

try:  # cuda-core >= 0.4 exports these at the top level; older releases only under .experimental
    from cuda.core import Device, LaunchConfig, ObjectCode, Program, ProgramOptions, launch
except ImportError:  # pragma: no cover - depends on the installed cuda-core
    from cuda.core.experimental import Device, LaunchConfig, ObjectCode, Program, ProgramOptions, launch

__all__ = [
    "ARCHS",
    "Device",
    "LaunchConfig",
    "ObjectCode",
    "Program",
    "ProgramOptions",
    "compile_kernel",
    "launch",
]

#: Architectures the kernels target: Ampere (sm_80) and Hopper with its arch-specific features (sm_90a).
ARCHS = ("sm_80", "sm_90a")


def compile_kernel(
    source: str,
    arch: str = "sm_90a",
    *,
    std: str = "c++17",
    name: str = "attn_cuda_kernel.cu",
    **options: Any,
) -> bytes:
    """Compile CUDA C++ ``source`` with NVRTC and return the cubin (an ELF image) for ``arch``.

    ``arch`` is an NVRTC architecture such as ``"sm_80"`` or ``"sm_90a"``. Kernels meant to be looked up by
    name should be declared ``extern "C"``. Further keyword arguments go to ``cuda.core.ProgramOptions``
    (for example ``use_fast_math=True`` or ``define_macro=("HEAD_DIM", "128")``). Compile errors raise with
    NVRTC's log.
    """
    if not arch.startswith("sm_"):
        raise ValueError(f"arch must name a real architecture such as 'sm_80' or 'sm_90a', got {arch!r}")
    program = Program(source, "c++", ProgramOptions(arch=arch, std=std, name=name, **options))
    obj = program.compile("cubin")
    return bytes(obj.code)
