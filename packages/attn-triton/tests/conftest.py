"""Fixtures shared by attn-triton's tests: the knobs, and a record of what the kernels were launched with.
(The oracle under the tolerance rule is attn_reference.testing.tolerance.assert_matches_reference.)"""

from __future__ import annotations

import importlib

import pytest

from attn_triton import _runtime


@pytest.fixture
def profile():
    """Switch attn_triton's performance knobs for one test, restoring them afterwards."""
    old = _runtime.knobs()
    yield _runtime.set_profile
    _runtime.set_profile(old)


class _Recorded:
    """A Triton kernel whose ``kernel[grid](...)`` launches go through, recording the grid and keywords."""

    def __init__(self, kernel, seen: list):
        self._kernel, self._seen = kernel, seen

    def __getitem__(self, grid):
        launch = self._kernel[grid]

        def call(*args, **kwargs):
            self._seen.append({"grid": grid, **kwargs})
            return launch(*args, **kwargs)

        return call


@pytest.fixture
def launches(monkeypatch):
    """``record("flash_fwd", "_fwd_kernel")`` -> a list that gets one dict (``grid`` and the keyword
    arguments, the compile-time constants among them) per launch of that kernel during the test.

    Only for fixed-config launches (the interpreter, or a forced config): the autotuner wraps the kernel
    once, so its launches bypass the module attribute."""

    def record(module: str, kernel: str) -> list[dict]:
        mod = importlib.import_module(f"attn_triton.{module}")
        seen: list[dict] = []
        monkeypatch.setattr(mod, kernel, _Recorded(getattr(mod, kernel), seen))
        return seen

    return record
