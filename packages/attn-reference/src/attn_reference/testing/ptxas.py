"""ptxas on a kernel's PTX, without a GPU: what the register allocator did to a Hopper kernel.

The CPU tiers keep the PTX of their CuTe DSL kernels; assembling it with ``ptxas -v`` for sm_90a reports
spills, and warning C7519 when ptxas had to make a wgmma wait because its accumulator registers are
touched while it is in flight, which silently serialises a schedule built to overlap GEMMs with softmax.
Both are regressions a GPU run would only show as lost speed.
"""

from __future__ import annotations

import functools
import re
import shutil
import subprocess
from pathlib import Path


@functools.cache
def find_ptxas(min_major: int = 13) -> str | None:
    """A ``ptxas`` of CUDA ``min_major`` or newer (the CuTe DSL emits PTX ISA 8.8): on PATH, or the one
    torch's CUDA 13 wheels ship in ``torch/bin``; None if there is none."""
    candidates = [shutil.which("ptxas")]
    try:
        import torch

        candidates.append(str(Path(torch.__file__).parent / "bin" / "ptxas"))
    except ImportError:
        pass
    for path in candidates:
        if not path or not Path(path).is_file():
            continue
        out = subprocess.run([path, "--version"], capture_output=True, text=True).stdout
        found = re.search(r"release (\d+)\.", out)
        if found and int(found.group(1)) >= min_major:
            return path
    return None


def assemble(ptx: str, workdir: Path, arch: str = "sm_90a") -> str:
    """``ptxas -v`` of ``ptx`` for ``arch`` in ``workdir``; its report (stderr). Raises if it fails."""
    ptxas = find_ptxas()
    if ptxas is None:
        raise FileNotFoundError("no CUDA 13 ptxas: neither on PATH nor in torch's bin/")
    src = Path(workdir) / "kernel.ptx"
    src.write_text(ptx)
    res = subprocess.run(
        [ptxas, f"-arch={arch}", "-v", str(src), "-o", str(src.with_suffix(".cubin"))],
        capture_output=True,
        text=True,
    )
    if res.returncode != 0:
        raise RuntimeError(f"ptxas failed:\n{res.stderr[-2000:]}")
    return res.stderr


def assert_no_spills_or_serialised_wgmma(
    ptx: str,
    workdir: Path,
    arch: str = "sm_90a",
    allow: tuple[str, ...] = (),
    max_spill_bytes: int = 0,
) -> None:
    """Every function of ``ptx`` assembles with no spill and with no wgmma serialised, for any reason:
    C7519 (its registers touched while in flight), C7512 (insufficient register resources), C7510 (a
    function call inside the pipeline), ... ``allow`` names warning codes a caller accepts on purpose, and
    ``max_spill_bytes`` the spill stores (and loads) it accepts per function."""
    report = assemble(ptx, workdir, arch)
    spills = re.findall(r"(\d+) bytes spill stores, (\d+) bytes spill loads", report)
    assert spills, f"ptxas reported no resource usage:\n{report[-2000:]}"
    worst = max(max(int(st), int(ld)) for st, ld in spills)
    assert worst <= max_spill_bytes, f"spills {spills} (at most {max_spill_bytes} allowed):\n{report[-2000:]}"
    # C7519 words it as an injected warpgroup.arrive; the other codes as "instructions are serialized".
    serialised = [
        line
        for line in report.splitlines()
        if ("instructions are serialized" in line or "(C7519)" in line)
        and not any(f"({code})" in line for code in allow)
    ]
    assert not serialised, "ptxas serialised a wgmma:\n" + "\n".join(serialised)[-2000:]


# --- Triton/Gluon kernels compiled for sm_90a on the CPU ----------------------------------------------------


def summarise_compiled(kernel) -> dict:
    """What the Hopper checks read of a ``triton.compile(...)`` result, as JSON-ready values: shared memory
    bytes, warps, the PTX, the ``wgmma.wait_group`` depths and the TMA load and store counts."""
    ptx = kernel.asm["ptx"]
    return dict(
        shared=kernel.metadata.shared,
        warps=kernel.metadata.num_warps,
        ptx=ptx,
        waits=sorted({int(n) for n in re.findall(r"wgmma\.wait_group\.sync\.aligned (\d+)", ptx)}),
        tma_loads=len(re.findall(r"cp\.async\.bulk\.tensor\.\dd\.shared::cluster\.global", ptx)),
        tma_stores=len(re.findall(r"cp\.async\.bulk\.tensor\.\dd\.global\.shared::cta", ptx)),
    )


def compile_in_subprocess(script: str) -> dict:
    """Run ``script`` in a fresh Python without ``TRITON_INTERPRET`` (the interpreter would stand in for the
    compiler) and return the JSON object it prints last (by convention, name -> :func:`summarise_compiled`)."""
    import json
    import os
    import sys

    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.splitlines()[-1])


def assert_overlapped_hopper_kernel(
    name: str, got: dict, workdir: Path, *, warps: int = 12, max_spill_bytes: int = 0
) -> None:
    """A warp-specialised Hopper kernel as :func:`summarise_compiled` saw it: ``warps`` warps, within the
    227 KB of shared memory an sm_90 CTA may have, a ``wgmma.wait_group 1`` (a GEMM retired while the next
    one still runs: the softmax overlaps it) and, where a CUDA 13 ptxas is at hand, no wgmma serialised and
    at most ``max_spill_bytes`` of spills."""
    assert got["warps"] == warps, f"{name}: {got['warps']} warps, expected {warps}"
    assert got["shared"] <= 227 * 1024, f"{name}: {got['shared']} bytes of shared memory"
    assert 1 in got["waits"], f"{name}: no wgmma.wait_group 1, the softmax no longer overlaps a wgmma"
    if find_ptxas():
        assert_no_spills_or_serialised_wgmma(got["ptx"], workdir, max_spill_bytes=max_spill_bytes)
