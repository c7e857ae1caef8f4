#!/usr/bin/env bash
# Set up the GPU machine (no network; python3 3.12 with torch, triton and cuda-python preinstalled) to run
# the GPU tiers from this checkout. Run from the repository root, after ../shared/device/prepare's two runs
# (they put nox and the CuTe DSL into /tmp/site and write /tmp/site.pythonpath):
#
#     bash ci/device-setup.sh && export PYTHONPATH=$(cat /tmp/site.pythonpath) \
#         && python3 -m nox --no-venv -s "tests(package='attn-reference', tier='sm90')"
#
# Installs every workspace package in editable mode with no dependencies, no index and no build isolation,
# so entry points (the pytest plugin, attn-bench's backends and CLI) exist. Nothing is downloaded. If that
# install is refused, the GPU tiers still run: `nox --no-venv` puts the src/ folders on PYTHONPATH itself
# and loads the pytest plugin by name.
set -uo pipefail
cd "$(dirname "$0")/.."

if [[ -f /tmp/site.pythonpath ]]; then
    export PYTHONPATH="$(cat /tmp/site.pythonpath)"
else
    echo "device-setup: no /tmp/site.pythonpath: nox and the CuTe DSL are missing; run ../shared/device/prepare" \
         "here and its two runs there first (see ../shared/device/README.md)" >&2
fi

python3 - <<'PY'
import importlib
for name in ("torch", "triton", "cuda.core", "cuda.bindings", "pytest", "nox", "cutlass"):
    try:
        mod = importlib.import_module(name)
        print(f"  {name:14} {getattr(mod, '__version__', 'present')}")
    except Exception as e:  # report, do not stop: a tier may not need it
        print(f"  {name:14} MISSING ({type(e).__name__}: {e})")
import torch
if torch.cuda.is_available():
    print(f"  GPU            {torch.cuda.get_device_name()} sm_{''.join(map(str, torch.cuda.get_device_capability()))}")
else:
    print("  GPU            none visible to torch")
PY

# PEP 668 (externally managed system Python) would refuse the install: this machine is disposable.
export PIP_BREAK_SYSTEM_PACKAGES=1 PIP_DISABLE_PIP_VERSION_CHECK=1
installed=0
for pkg in packages/*/; do
    if python3 -m pip install --quiet --no-deps --no-build-isolation --no-index -e "$pkg"; then
        installed=$((installed + 1))
    else
        echo "device-setup: could not install $pkg editable; nox --no-venv will use its src/ folder" >&2
    fi
done
echo "device-setup: $installed workspace packages installed (editable, --no-deps)"

cat <<'TXT'
Run a GPU tier (nox runs the tests with this python3; nothing is installed):
    export PYTHONPATH=$(cat /tmp/site.pythonpath)
    python3 -m nox --no-venv -s "tests(package='attn-reference', tier='sm90')"
    python3 -m nox --no-venv -s "tests(package='attn-reference', tier='sm80')"
Every package and tier: python3 -m nox --no-venv -l ; benchmarks: python3 -m nox --no-venv -s bench -- <args>
Test reports land in .nox/reports/ (copy them to $OUT to bring them back).
TXT
