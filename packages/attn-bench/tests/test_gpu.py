"""sm90 tier: a short version of every suite on the GPU, with every peer that is installed."""

from __future__ import annotations

import pytest

from attn_bench import engine, schema
from attn_bench.suites import SUITES

pytestmark = pytest.mark.sm90

#: Reasons a timed row may carry an ``unchecked`` check (prefixes of its detail). None yet: at the quick
#: shapes every reference fits and runs in time, so every timed row must have passed its check; adding a
#: reason here needs the case that makes it unavoidable.
ALLOWED_UNCHECKED: tuple[str, ...] = ()


def test_every_suite_runs_short_on_the_gpu(tmp_path):
    opts = engine.Options(mode="gpu", suites=tuple(SUITES), quick=True)
    doc = engine.run(opts)
    schema.load(schema.dump(doc, tmp_path / "results.json"))
    assert doc["device"]["capability"] == "9.0"
    assert doc["ceilings"]["matmul_tflops"] > 100 and doc["ceilings"]["copy_gbps"] > 1000
    for suite in SUITES:
        rows = [r for r in doc["rows"] if r["suite"] == suite]
        assert any(r["status"] == "ok" for r in rows), (suite, [(r["impl"], r["message"]) for r in rows])
    ref_failures = [
        r for r in doc["rows"] if r["backend"] == "reference" and r["status"] in ("check_failed", "error")
    ]
    assert not ref_failures, [(r["case"], r["impl"], r["message"]) for r in ref_failures]
    # A timed row stands for a checked result: every "ok" time row (backends, peers, and the reference's
    # own rows too) passed its check, or is unchecked for an allowed reason that the row records.
    unproven = [
        r
        for r in doc["rows"]
        if r["status"] == "ok"
        and r["suite"] != "memory"  # peak memory rows are measured, not checked
        and not _checked_or_allowed(r["check"])
    ]
    assert not unproven, [(r["suite"], r["case"], r["impl"], r["check"]) for r in unproven]
    memory = [r for r in doc["rows"] if r["suite"] == "memory" and r["status"] == "ok"]
    assert all(r["peak_memory_bytes"] > 0 for r in memory)


def _checked_or_allowed(check: dict | None) -> bool:
    if not check:
        return False
    if check["status"] == "pass":
        return True
    detail = check.get("detail") or ""
    return check["status"] == "unchecked" and bool(detail) and detail.startswith(ALLOWED_UNCHECKED)


def test_main_kernel_ms_picks_the_longest_kernel():
    """Two kernels a call, a 4096^3 matmul and an in-place relu: the matmul is the main kernel, and its
    median is shorter than the whole call's."""
    import torch

    from attn_bench import timing

    a = torch.randn(4096, 4096, device="cuda")
    call = lambda: (a @ a).relu_()
    ms, name = timing.main_kernel_ms(call)
    whole, _ = timing.time_gpu(call)
    assert "relu" not in name.lower() and "elementwise" not in name.lower(), name
    assert 0 < ms < whole
