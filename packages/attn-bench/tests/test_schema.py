"""The results document: versioned, validated on load, round-trips through JSON."""

from __future__ import annotations

import copy
import json

import pytest

from attn_bench import schema


@pytest.fixture
def doc(fixture_results):
    return json.loads(fixture_results.read_text())


def test_the_fixture_is_valid_and_round_trips(doc, tmp_path):
    assert schema.problems(doc) == []
    path = schema.dump(doc, tmp_path / "sub" / "r.json")
    assert schema.load(path) == doc


def test_non_finite_numbers_are_written_as_null(doc, tmp_path):
    doc["rows"][0]["check"]["max_abs_err"] = float("nan")
    doc["rows"][0]["pct_of_ceiling"] = float("inf")
    loaded = schema.load(schema.dump(doc, tmp_path / "r.json"))
    assert loaded["rows"][0]["check"]["max_abs_err"] is None
    assert loaded["rows"][0]["pct_of_ceiling"] is None


def _broken(doc, edit):
    bad = copy.deepcopy(doc)
    edit(bad)
    return schema.problems(bad)


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (lambda d: d.pop("rows"), "$.rows: missing"),
        (lambda d: d.update(schema_version=99), "reads version 1"),
        (lambda d: d.update(mode="tpu"), "$.mode"),
        (lambda d: d["device"].pop("name"), "$.device.name: missing"),
        (lambda d: d["ceilings"].update(matmul_tflops="fast"), "$.ceilings.matmul_tflops"),
        (lambda d: d["rows"][0].update(status="great"), "$.rows[0].status"),
        (lambda d: d["rows"][0].update(ms=True), "got bool"),
        (lambda d: d["rows"][1].update(ms=None), "neither ms nor peak_memory_bytes"),
        (lambda d: d["rows"][0]["check"].update(status="maybe"), "check.status"),
        (lambda d: d["implementations"][0].pop("available"), "implementations[0].available"),
        (lambda d: d["rows"].append(3), "$.rows["),
    ],
)
def test_bad_documents_are_rejected(doc, edit, expected):
    found = _broken(doc, edit)
    assert any(expected in p for p in found), found


def test_load_raises_with_every_problem(doc, tmp_path):
    bad = copy.deepcopy(doc)
    bad.pop("host")
    bad["rows"][0]["flops"] = "many"
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(bad))
    with pytest.raises(schema.SchemaError) as info:
        schema.load(path)
    assert len(info.value.problems) == 2
    (tmp_path / "not.json").write_text("{")
    with pytest.raises(schema.SchemaError, match="not JSON"):
        schema.load(tmp_path / "not.json")
    assert schema.problems([]) == ["$: expected an object, got list"]
