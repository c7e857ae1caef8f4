"""The command end to end in CPU mode."""

from __future__ import annotations

import runpy
import sys

import pytest
from typer.testing import CliRunner

from attn_bench import schema
from attn_bench.cli import app


def test_run_attention_fwd_on_cpu_writes_a_table_and_valid_json(tmp_path):
    out = tmp_path / "results.json"
    res = CliRunner().invoke(
        app,
        [
            "run",
            "--suite",
            "attention-fwd",
            "--device",
            "cpu",
            "--quick",
            "--backend",
            "reference",
            "-o",
            str(out),
        ],
    )
    assert res.exit_code == 0, res.output
    assert "CPU mode" in res.output and "CPU figures" in res.output
    assert "attention-fwd" in res.output and "reference/flash2" in res.output
    doc = schema.load(out)
    assert doc["mode"] == "cpu" and doc["device"]["name"] == "cpu"
    assert doc["suites"] == ["attention-fwd"]
    rows = doc["rows"]
    assert {r["impl"] for r in rows} == {"reference/naive", "reference/flash2"}
    assert all(r["status"] == "ok" and r["check"]["status"] == "pass" and r["ms"] > 0 for r in rows)
    assert doc["versions"]["attn-bench"] == "0.1.0" and doc["versions"]["torch"]
    assert doc["ceilings"]["matmul_tflops"] > 0 and doc["ceilings"]["copy_gbps"] > 0


def test_where_keeps_only_matching_shapes(tmp_path):
    out = tmp_path / "results.json"
    args = ["run", "-s", "attention-fwd", "--device", "cpu", "--backend", "reference", "--no-peers", "-o"]
    res = CliRunner().invoke(app, [*args, str(out), "--where", "causal=True", "--where", "head_dim=32"])
    assert res.exit_code == 0, res.output
    doc = schema.load(out)
    assert doc["options"]["where"] == {"causal": "True", "head_dim": "32"}
    assert doc["rows"] and all(r["shape"]["causal"] and r["shape"]["head_dim"] == 32 for r in doc["rows"])
    bad = CliRunner().invoke(app, [*args, str(tmp_path / "bad.json"), "--where", "causal"])
    assert bad.exit_code == 2 and "KEY=VALUE" in bad.output


def test_unknown_suite_is_a_usage_error(tmp_path):
    res = CliRunner().invoke(
        app, ["run", "--suite", "nope", "--device", "cpu", "-o", str(tmp_path / "r.json")]
    )
    assert res.exit_code == 2
    assert not (tmp_path / "r.json").exists()


def test_python_dash_m(monkeypatch, capsys):
    # In-process rather than a subprocess: importing torch again would cost more than the rest of the file.
    monkeypatch.setattr(sys, "argv", ["attn_bench", "--help"])
    with pytest.raises(SystemExit) as info:
        runpy.run_module("attn_bench", run_name="__main__")
    assert info.value.code == 0
    out = capsys.readouterr().out
    for command in ("run", "list", "plot", "report"):
        assert command in out
