from __future__ import annotations

import importlib.metadata as metadata
from pathlib import Path

import pytest

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
