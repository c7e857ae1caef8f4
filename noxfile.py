"""Sessions for linting, testing, building and releasing the workspace.

    nox -s ci                                         # what .ci/run runs: lint, cpu tier, wheels, release
    nox -s lint
    nox -s "tests(package='attn-reference', tier='cpu')"
    nox -s wheels                                     # every wheel alone in a fresh venv (ci/check_wheels.py)
    nox -s release -- attn-reference-v0.1.0           # the release check (ci/check_release.py)
    nox -s bench -- --help                            # attn-bench run <args>
    nox -s docs                                       # mkdocs build --strict + the runnable doc examples

With a virtual environment (the default) every session installs from ``uv.lock`` with uv. On the GPU
machine (no network; torch, triton and cuda-python preinstalled) run with ``--no-venv``: nothing is
installed, the workspace's ``src/`` folders go on ``PYTHONPATH``, and the interpreter running nox runs the
tests. See ``ci/device-setup.sh``.
"""

from __future__ import annotations

import importlib.metadata
import os
import sys
from pathlib import Path

import nox

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: nox itself depends on tomli there
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent
MATRIX = tomllib.loads((ROOT / "ci" / "matrix.toml").read_text())
PACKAGES = sorted(p.name for p in (ROOT / "packages").iterdir() if (p / "pyproject.toml").is_file())
TIERS = ("cpu", "sm80", "sm90")
CI_SESSIONS = (
    "lint",
    *(f"tests(package='{p}', tier='cpu')" for p in PACKAGES),
    "wheels",
    "release",
    "docs",
)

nox.options.default_venv_backend = "uv"
nox.options.error_on_missing_interpreters = True
nox.options.sessions = ["ci"]


def _no_venv(session: nox.Session) -> bool:
    return session.venv_backend == "none"


def _uv_sync(session: nox.Session, *args: str) -> None:
    """Install into this session's venv exactly what ``uv.lock`` says for ``args`` (no re-resolution)."""
    session.run_install(
        "uv",
        "sync",
        "--locked",
        "--no-default-groups",
        *args,
        env={"UV_PROJECT_ENVIRONMENT": session.virtualenv.location},
        external=True,
    )


def _python(session: nox.Session) -> str:
    # With --no-venv, `python` may not exist (the GPU machine has only python3): use nox's own interpreter.
    return sys.executable if _no_venv(session) else "python"


def _src_path_env() -> dict[str, str]:
    """PYTHONPATH with every package's src/ first, for runs that install nothing (--no-venv)."""
    paths = [str(ROOT / "packages" / p / "src") for p in PACKAGES]
    if os.environ.get("PYTHONPATH"):
        paths.append(os.environ["PYTHONPATH"])
    return {"PYTHONPATH": os.pathsep.join(paths)}


def _plugin_installed(env: dict[str, str]) -> bool:
    """Whether pytest, run with ``env``'s PYTHONPATH, finds attn-reference's pytest11 entry point itself
    (an installed distribution, or an ``.egg-info`` left in src/ by an editable install)."""
    path = [*env["PYTHONPATH"].split(os.pathsep), *sys.path]
    for dist in importlib.metadata.distributions(path=path):
        if any(ep.group == "pytest11" and ep.name == "attn_reference" for ep in dist.entry_points):
            return True
    return False


@nox.session
def lint(session: nox.Session) -> None:
    """ruff check and ruff format --check over the whole workspace, with the root config."""
    if not _no_venv(session):
        _uv_sync(session, "--only-group", "dev")
    session.run("ruff", "check", ".", external=_no_venv(session))
    session.run("ruff", "format", "--check", ".", external=_no_venv(session))


@nox.session
@nox.parametrize("tier", TIERS)
@nox.parametrize("package", PACKAGES)
def tests(session: nox.Session, package: str, tier: str) -> None:
    """One package's tests of one tier, in an environment holding only that package and its test group."""
    # ci/matrix.toml lists the packages that must have tests in this tier: for those, pytest's exit code 5
    # (no test collected) fails the session. Any other package still runs whatever tests it has there.
    required = package in MATRIX["tiers"][tier]
    env = {"TRITON_INTERPRET": "1"} if tier == "cpu" else {}
    report = ROOT / ".nox" / "reports" / f"tests-{package}-{tier}.xml"  # .ci/run adds these up
    args = ["-m", "pytest", f"packages/{package}/tests", "--tier", tier, f"--junitxml={report}"]
    if _no_venv(session):
        env.update(_src_path_env())
        if not _plugin_installed(env):  # workspace not pip-installed: load the markers and --tier by hand
            args[2:2] = ["-p", "attn_reference.testing.pytest_plugin"]
    else:
        # --all-extras: attn-flashmla's `sm90` extra (the CuTe DSL) makes its CPU tier compile the CuTe
        # kernel for sm_90a instead of skipping those tests.
        # attn-bench's tests include the plans of its presets over the real backends: its session holds
        # the whole workspace (the wheel check still installs each package alone).
        scope = ("--all-packages",) if package == "attn-bench" else ("--package", package)
        _uv_sync(session, *scope, "--group", "test", "--all-extras")
    codes = [0] if required else [0, 5]
    session.run(
        _python(session), *args, *session.posargs, env=env, external=_no_venv(session), success_codes=codes
    )


@nox.session(venv_backend="none")
def wheels(session: nox.Session) -> None:
    """Build every package's wheel and sdist; install each wheel alone in a fresh venv, import, smoke-test."""
    session.run(sys.executable, "ci/check_wheels.py", *session.posargs)


@nox.session(venv_backend="none")
def release(session: nox.Session) -> None:
    """Release check: changelog entry for the version, __version__ == pyproject version, tag format.

    ``nox -s release`` checks every package; ``nox -s release -- attn-cuda-v0.2.0`` checks one tag.
    """
    session.run(sys.executable, "ci/check_release.py", *session.posargs)


@nox.session
def bench(session: nox.Session) -> None:
    """``attn-bench run <posargs>``: the comparison of the installed backends against the reference."""
    if _no_venv(session):
        # Call the console script's target directly: on the GPU machine it may not be installed.
        project = tomllib.loads((ROOT / "packages/attn-bench/pyproject.toml").read_text())["project"]
        module, func = project["scripts"]["attn-bench"].split(":")
        code = f"import sys; sys.argv[0] = 'attn-bench'; from {module} import {func} as f; sys.exit(f())"
        session.run(sys.executable, "-c", code, "run", *session.posargs, env=_src_path_env(), external=True)
    else:
        _uv_sync(session, "--all-packages")
        session.run("attn-bench", "run", *session.posargs)


@nox.session
def docs(session: nox.Session) -> None:
    """Build the documentation site (``mkdocs build --strict``), then run its runnable code blocks.

    One environment from the lock: the ``docs`` group (mkdocs-material, mkdocstrings, which reads the
    sources statically) plus the packages the examples import (attn-reference through its dependants;
    CPU only, Triton through its interpreter). ``ci/check_docs_code.py`` runs every block marked
    ``<!-- runnable -->`` and skips those marked ``<!-- runnable: gpu ... -->`` with the reason.
    ``nox -s docs -- --site-dir DIR`` passes its arguments to ``mkdocs build``.
    """
    if not (ROOT / "mkdocs.yml").is_file():
        session.error("the docs site does not exist: no mkdocs.yml")
    if not _no_venv(session):
        packages = ("attn-triton", "attn-flashmla", "attn-cutlass")
        _uv_sync(session, *(a for p in packages for a in ("--package", p)), "--group", "docs")
    env = {"NO_MKDOCS_2_WARNING": "1"}
    session.run("mkdocs", "build", "--strict", *session.posargs, env=env, external=_no_venv(session))
    session.run(
        _python(session),
        "ci/check_docs_code.py",
        env={"TRITON_INTERPRET": "1", **(_src_path_env() if _no_venv(session) else {})},
        external=_no_venv(session),
    )


@nox.session(venv_backend="none")
def ci(session: nox.Session) -> None:
    """Everything .ci/run checks: lint, the cpu tier of every package, the wheel and release checks, the docs."""
    for name in CI_SESSIONS:
        session.notify(name)
