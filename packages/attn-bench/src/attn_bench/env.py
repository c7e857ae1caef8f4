"""What the run ran on: host, GPU, driver, CUDA, and the version of every package and peer."""

from __future__ import annotations

import importlib.metadata as metadata
import os
import platform
import shutil
import subprocess

import torch

#: Distributions whose versions every results file records (absent ones are recorded as None).
PACKAGES = (
    "attn-bench",
    "attn-reference",
    "attn-triton",
    "attn-cuda",
    "attn-cutlass",
    "attn-flashmla",
    "torch",
    "triton",
    "numpy",
    "flash-attn",
    "flash-attn-4",
    "flash-attn-cute",
    "nvidia-cutlass-dsl",
    "flashinfer-python",
    "flash-mla",
    "flash_mla",
)


def versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def host() -> dict[str, object]:
    return {
        "hostname": platform.node(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
    }


def _driver_version() -> str | None:
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return None
    try:
        res = subprocess.run(
            [smi, "--query-gpu=driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=20,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return res.stdout.strip().splitlines()[0] if res.stdout.strip() else None


def gpu(mode: str) -> dict[str, object]:
    """The device block; on CPU everything but ``name`` is None."""
    if mode != "gpu" or not torch.cuda.is_available():
        return {
            "name": "cpu",
            "capability": None,
            "driver": None,
            "cuda": torch.version.cuda,
            "cudnn": None,
            "memory_gb": None,
            "sm_count": None,
        }
    props = torch.cuda.get_device_properties(0)
    return {
        "name": props.name,
        "capability": f"{props.major}.{props.minor}",
        "driver": _driver_version(),
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "memory_gb": round(props.total_memory / 2**30, 1),
        "sm_count": props.multi_processor_count,
    }
