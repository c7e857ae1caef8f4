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
