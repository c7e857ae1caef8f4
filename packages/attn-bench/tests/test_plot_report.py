"""Plots and the markdown report from the stored results file."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from attn_bench import report, schema
from attn_bench.cli import app


@pytest.fixture(scope="module")
def plotted(tmp_path_factory):
    """``attn-bench plot`` run once on the stored results (drawing is the slow part of this file)."""
    from pathlib import Path

    results = Path(__file__).parent / "data" / "results-small.json"
    out = tmp_path_factory.mktemp("plots")
    res = CliRunner().invoke(app, ["plot", str(results), "--out-dir", str(out)])
    assert res.exit_code == 0, res.output
    return out


def test_plot_draws_png_and_svg(plotted):
    names = {p.name for p in plotted.iterdir()}
    for stem in ("throughput-attention-fwd", "throughput-decode-kvcache", "roofline", "memory"):
        assert {f"{stem}.png", f"{stem}.svg"} <= names
    for p in plotted.iterdir():
        assert p.stat().st_size > 1000
    assert (plotted / "roofline.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert b"<svg" in (plotted / "memory.svg").read_bytes()[:2000]


def test_markdown_report(fixture_results):
    doc = schema.load(fixture_results)
    md = report.markdown(doc, plots=["plots/roofline.png"])
    assert md.startswith("# attn-bench results\n")
    assert "800 TFLOP/s" in md and "4270 GB/s" in md
    assert "## attention-fwd" in md and "## memory" in md
    assert "CHECK FAILED" in md  # the fixture's broken row
    assert "ModuleNotFoundError" in md  # why a backend is missing
    assert "![roofline](plots/roofline.png)" in md
    # The peer's row is its own best peer (ratio 1); the reference's is ~16x slower.
    assert "1.00x sdpa-flash" in md and "0.06x sdpa-flash" in md


def test_report_command_links_the_plots(fixture_results, plotted, tmp_path):
    out = tmp_path / "report.md"
    res = CliRunner().invoke(
        app, ["report", str(fixture_results), "-o", str(out), "--plots-dir", str(plotted)]
    )
    assert res.exit_code == 0, res.output
    assert "roofline.png)" in out.read_text()
    res = CliRunner().invoke(app, ["report", str(fixture_results), "-o", str(tmp_path / "plain.md")])
    assert res.exit_code == 0 and "## Figures" not in (tmp_path / "plain.md").read_text()


def test_commands_refuse_invalid_files(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"schema_version": 1}')
    res = CliRunner().invoke(app, ["report", str(bad)])
    assert res.exit_code == 2
    assert "invalid results document" in res.output
    res = CliRunner().invoke(app, ["plot", str(tmp_path / "absent.json")])
    assert res.exit_code != 0


def test_main_kernel_column_where_rows_have_one(fixture_results):
    """MLA rows carry their main kernel's time (what FlashMLA's figures count): the report shows it in a
    column of its own, with both throughputs, and only for suites where some row has one."""
    doc = schema.load(fixture_results)
    row = next(r for r in doc["rows"] if r["status"] == "ok" and r.get("flops"))
    assert "main kernel" not in report.markdown(doc)
    compute = {**row, "ms": 1.2, "kernel_ms": 1.0, "kernel": "main", "flops": 5e11, "bytes": 2e9}
    assert report.cells(compute)["kernel"] == "1.000 ms, 500 TFLOP/s, 2,000 GB/s"
    assert report.cells({**compute, "flops": 0})["kernel"] == "1.000 ms, 2,000 GB/s"
    assert report.cells(row)["kernel"] == "-"
    assert report.cells({**compute, "ms": 2.5})["kernel"] == "-"  # under half the call: not its bulk
    assert ("kernel", "main kernel") in report.columns(row["suite"], [compute])
    assert ("kernel", "main kernel") not in report.columns(row["suite"], [row])
    doc["rows"] = [compute if r is row else r for r in doc["rows"]]
    assert schema.problems(doc) == []
    assert "| main kernel |" in report.markdown(doc)


def test_main_kernel_ms_without_cuda_kernels():
    """No CUDA (or no kernel in the call): no figure rather than a wrong one. The GPU rows are
    ``test_gpu.py``'s."""
    import torch

    from attn_bench import timing

    x = torch.ones(8)
    assert timing.main_kernel_ms(lambda: x * 2, reps=2) is None
