"""Build every package's wheel and sdist, then install each wheel alone and use it.

For each package: ``uv build --package <name>`` (wheel and sdist); a fresh virtual environment; the wheel
installed with only its declared dependencies (other workspace packages from their freshly built wheels,
everything else at the versions of ``uv.lock``, through ``uv export`` as constraints, so torch is not
re-resolved); then every module of the package is imported and the smoke call of ``ci/matrix.toml`` runs.
This catches a cross-package import that the package does not declare, a module left out of the wheel, and
a broken entry point.

    python ci/check_wheels.py                 # every package
    python ci/check_wheels.py attn-cuda       # some packages
    python ci/check_wheels.py --keep DIR      # keep the build and the venvs in DIR
"""

from __future__ import annotations

import argparse
import email.parser
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent
MATRIX = tomllib.loads((ROOT / "ci" / "matrix.toml").read_text())

IMPORT_ALL = Path(__file__).with_name("import_all.py")


def uv() -> list[str]:
    exe = os.environ.get("UV") or shutil.which("uv")
    return [exe] if exe else [sys.executable, "-m", "uv"]


def run(*cmd: str | Path, **kw) -> subprocess.CompletedProcess:
    print("+", " ".join(str(c) for c in cmd), flush=True)
    return subprocess.run([str(c) for c in cmd], check=True, **kw)


def wheel_metadata(wheel: Path) -> tuple[list[str], list[str]]:
    """(requirements without an extra marker, extras provided) from the wheel's METADATA."""
    with zipfile.ZipFile(wheel) as zf:
        name = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
        msg = email.parser.Parser().parsestr(zf.read(name).decode())
    requires = [r for r in msg.get_all("Requires-Dist") or [] if "extra ==" not in r]
    return requires, msg.get_all("Provides-Extra") or []


def check(package: str, dist: Path, work: Path, constraints: Path) -> None:
    spec = MATRIX["packages"][package]
    module = spec["module"]
    stem = package.replace("-", "_")
    wheel = next(dist.glob(f"{stem}-*.whl"))
    requires, extras = wheel_metadata(wheel)
    # Workspace packages are not on the index: install the declared ones from the wheels just built.
    local = []
    for req in requires:
        dep = re.match(r"[A-Za-z0-9_.-]+", req).group(0).lower().replace("_", "-")
        if (ROOT / "packages" / dep / "pyproject.toml").is_file():
            local.append(next(dist.glob(f"{dep.replace('-', '_')}-*.whl")))
    venv = work / f"venv-{package}"
    run(*uv(), "venv", "--quiet", "--python", sys.executable, venv)
    py = venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    run(*uv(), "pip", "install", "--quiet", "--python", py, "--constraint", constraints, wheel, *local)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PATH"] = os.pathsep.join([str(py.parent), env.get("PATH", "")])
    run(
        py,
        IMPORT_ALL,
        module,
        json.dumps(spec.get("optional", {})),
        json.dumps(extras),
        spec["smoke"],
        cwd=work,  # not the repository: nothing but the installed wheel can be imported
        env=env,
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("packages", nargs="*", help="packages to check (default: all)")
    ap.add_argument("--keep", type=Path, help="build and create the venvs here, and keep them")
    args = ap.parse_args()
    packages = args.packages or sorted(MATRIX["packages"])
    unknown = sorted(set(packages) - set(MATRIX["packages"]))
    if unknown:
        ap.error(f"unknown packages {unknown}; known: {sorted(MATRIX['packages'])}")

    work = args.keep or Path(tempfile.mkdtemp(prefix="check-wheels-"))
    work.mkdir(parents=True, exist_ok=True)
    dist = work / "dist"
    shutil.rmtree(dist, ignore_errors=True)
    constraints = work / "constraints.txt"
    failed = []
    try:
        # Build everything first: a package's declared workspace dependencies install from these wheels.
        for package in sorted(MATRIX["packages"]):
            run(*uv(), "build", "--quiet", "--package", package, "--out-dir", dist, cwd=ROOT)
        for package in sorted(MATRIX["packages"]):
            stem = package.replace("-", "_")
            built = sorted(p.name for p in dist.glob(f"{stem}-*"))
            if not any(n.endswith(".whl") for n in built) or not any(n.endswith(".tar.gz") for n in built):
                failed.append(f"{package}: uv build gave {built}, not a wheel and an sdist")
        run(
            *uv(), "export", "--quiet", "--locked", "--all-packages", "--all-extras", "--all-groups",
            "--no-emit-workspace", "--no-hashes", "--no-header", "--no-annotate",
            "--format", "requirements-txt", "--output-file", constraints, cwd=ROOT,
        )  # fmt: skip
        for package in packages:
            print(f"== {package}", flush=True)
            start = time.perf_counter()
            try:
                check(package, dist, work, constraints)
            except subprocess.CalledProcessError as e:
                failed.append(f"{package}: {' '.join(map(str, e.cmd[:4]))}... exited {e.returncode}")
            else:
                print(f"ok {package} ({time.perf_counter() - start:.1f} s)", flush=True)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    if failed:
        print("wheel check FAILED:\n  " + "\n  ".join(failed), file=sys.stderr)
        return 1
    print(f"wheel check passed: {len(packages)} packages built, installed alone and smoke-tested")
    return 0


if __name__ == "__main__":
    sys.exit(main())
