"""Backends come from entry points; a broken one is reported, never fatal."""

from __future__ import annotations

import types

import pytest
from typer.testing import CliRunner

from attn_bench import discovery, engine
from attn_bench.backend import OPS, Backend, bind, first, normalise
from attn_bench.cli import app


def test_the_installed_reference_is_discovered():
    found = {d.name: d for d in discovery.discover()}
    ref = found["reference"]
    assert ref.ok, ref.error
    assert ref.value == "attn_reference.bench:backend"
    assert set(ref.backend.variants("attention_fwd")) == {"naive", "flash2"}
    assert ref.backend.runs_on("cpu") and ref.backend.runs_on("cuda")


def test_a_broken_entry_point_is_reported_not_fatal(entry_points):
    entry_points(
        ("reference", "attn_reference.bench:backend"),
        ("missing", "attn_no_such_package.bench:backend"),
        ("bad-shape", "attn_bench.formulas:vector_add_bytes"),  # callable, but needs arguments
    )
    found = {d.name: d for d in discovery.discover()}
    assert found["reference"].ok
    assert not found["missing"].ok and "ModuleNotFoundError" in found["missing"].error
    assert not found["bad-shape"].ok and "TypeError" in found["bad-shape"].error
    inv = engine.inventory("cpu")
    assert [b.name for b in inv.usable("cpu")] == ["reference"]
    reasons = {e["name"]: e["reason"] for e in inv.entries("cpu")}
    assert "attn_no_such_package" in reasons["missing"]
    assert reasons["sdpa-flash"] == "GPU only (CPU mode)"


def test_list_command_shows_why_a_backend_is_missing(entry_points):
    entry_points(("reference", "attn_reference.bench:backend"), ("missing", "attn_no_such_package:backend"))
    res = CliRunner().invoke(app, ["list", "--device", "cpu"])
    assert res.exit_code == 0, res.output
    assert "missing" in res.output and "ModuleNotFoundError" in res.output
    assert "attention-fwd" in res.output


def test_only_selects_backends(entry_points):
    entry_points(("reference", "attn_reference.bench:backend"), ("other", "nowhere:backend"))
    assert [d.name for d in discovery.discover(["reference"])] == ["reference"]


def _op(*args, **kwargs):
    return args


class _Prepared:
    def prepare(self, x):
        return lambda: x * 2


def test_normalise_accepts_mappings_objects_and_factories():
    as_map = normalise({"name": "m", "ops": {"attention_fwd": _op}, "devices": ["cpu"]})
    assert as_map.variants("attention_fwd") == {"default": _op}
    assert as_map.label("default") == "m" and as_map.devices == ("cpu",)
    as_obj = normalise(types.SimpleNamespace(name="o", ops={"softmax": {"a": _op, "b": _Prepared()}}))
    assert as_obj.label("a") == "o/a" and as_obj.devices == ("cuda",)
    factory = normalise(lambda: {"name": "f", "ops": {}, "interpreter": True})
    assert factory.runs_on("cpu") and factory.devices == ("cuda",)  # cpu through the interpreter
    assert bind(_Prepared(), 21)() == 42
    assert bind(_op, 1, k=2)() == (1,)
    assert first((3, 4)) == 3 and first(5) == 5


@pytest.mark.parametrize(
    ("desc", "match"),
    [
        ({"ops": {}}, "name"),
        ({"name": "x", "ops": []}, "mapping"),
        ({"name": "x", "ops": {"attention_fwd3": _op}}, "unknown op"),
        ({"name": "x", "ops": {"softmax": 3}}, "neither callable"),
    ],
)
def test_normalise_rejects_bad_descriptions(desc, match):
    with pytest.raises(TypeError, match=match):
        normalise(desc)


def test_supports_gives_reasons():
    b = Backend(name="x", supports=lambda op, variant, shape, device: "too big" if shape["n"] > 1 else None)
    assert b.why_not("softmax", "default", {"n": 2}, "cuda") == "too big"
    assert b.why_not("softmax", "default", {"n": 1}, "cuda") is None
    assert "attention_fwd" in OPS


def test_reference_limits_gpu_sizes_but_not_cpu():
    from attn_reference.bench import supports

    big = dict(batch=1, heads_q=16, seqlen_q=16384, seqlen_k=16384)
    assert supports("attention_fwd", "naive", big, "cpu") is None
    assert "GiB" in supports("attention_fwd", "naive", big, "cuda")
    assert "block steps" in supports("attention_fwd", "flash2", big, "cuda")
    small = dict(batch=16, heads_q=16, seqlen_q=1024, seqlen_k=1024)
    assert supports("attention_fwd", "flash2", small, "cuda") is None


def test_backends_named_in_the_environment(entry_points, monkeypatch):
    entry_points(("reference", "attn_no_such_package:backend"))
    monkeypatch.setenv("ATTN_BENCH_BACKENDS", "reference=attn_reference.bench:backend, extra=nowhere:backend")
    found = {d.name: d for d in discovery.discover()}
    assert found["reference"].ok  # the environment's value wins over the installed one
    assert not found["extra"].ok
