"""pytest plugin shared by every package (loaded through the ``pytest11`` entry point).

Markers: ``gpu`` (any CUDA GPU), ``sm80`` (compute capability >= 8.0), ``sm90`` (Hopper), ``slow``.
A test whose tier this machine lacks is skipped with the reason. ``--tier`` selects the tests of one tier:
``cpu`` runs only tests with no GPU marker, ``sm80``/``sm90`` run only GPU tests (those the machine can
run; the rest are skipped with the reason). ``slow`` tests run only with ``--run-slow``.
"""

from __future__ import annotations

import pytest

_GPU_MARKERS = ("gpu", "sm80", "sm90")


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("attn-kernels")
    group.addoption(
        "--tier",
        choices=("all", "cpu", "sm80", "sm90"),
        default="all",
        help="run the tests of one tier: cpu (no GPU marker) or a GPU tier (GPU-marked tests only)",
    )
    group.addoption("--run-slow", action="store_true", help="also run tests marked slow")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "gpu: needs a CUDA GPU")
    config.addinivalue_line("markers", "sm80: needs an NVIDIA GPU of compute capability 8.0 or newer")
    config.addinivalue_line("markers", "sm90: needs a Hopper GPU (sm_90)")
    config.addinivalue_line("markers", "slow: long-running; only with --run-slow")


def _required_tier(item: pytest.Item) -> str:
    names = {m.name for m in item.iter_markers()}
    for tier in ("sm90", "sm80", "gpu"):
        if tier in names:
            return tier
    return "cpu"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    from attn_reference.capability import tier_unavailable  # imports torch: only once tests are collected

    tier = config.getoption("--tier")
    run_slow = config.getoption("--run-slow")
    selected, deselected = [], []
    for item in items:
        needed = _required_tier(item)
        if (tier == "cpu" and needed != "cpu") or (tier in ("sm80", "sm90") and needed == "cpu"):
            deselected.append(item)
            continue
        if tier == "sm80" and needed == "sm90":
            deselected.append(item)
            continue
        selected.append(item)
        reason = tier_unavailable(needed)
        if reason is not None:
            item.add_marker(pytest.mark.skip(reason=reason))
        elif "slow" in {m.name for m in item.iter_markers()} and not run_slow:
            item.add_marker(pytest.mark.skip(reason="slow: pass --run-slow"))
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = selected
