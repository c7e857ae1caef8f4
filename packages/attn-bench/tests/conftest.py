from __future__ import annotations

import functools
import importlib.metadata as metadata
from pathlib import Path

import pytest

from attn_bench import engine, timing

DATA = Path(__file__).parent / "data"


@pytest.fixture
def fixture_results() -> Path:
    """A small synthetic GPU-mode results file (committed; see its notes)."""
    return DATA / "results-small.json"


@pytest.fixture
def entry_points(monkeypatch):
    """Replace the installed ``attn_bench.backends`` entry points with the given (name, value) pairs."""

    def install(*pairs: tuple[str, str]) -> None:
        eps = metadata.EntryPoints(
            metadata.EntryPoint(name, value, "attn_bench.backends") for name, value in pairs
        )
        monkeypatch.setattr("attn_bench.discovery.metadata.entry_points", lambda: eps)

    return install


@pytest.fixture
def fast_timing(monkeypatch):
    """Ceilings and repeated timing are exercised by the CLI test; in the run-loop tests they only cost time."""
    monkeypatch.setattr(
        engine.ceilings, "measure", lambda mode, quick=False: {"matmul_tflops": 0.1, "copy_gbps": 10.0}
    )
    quick = functools.partial(timing.time_cpu, min_reps=1, max_reps=1, budget_s=0.0)
    monkeypatch.setattr(engine.timing, "time_cpu", quick)
