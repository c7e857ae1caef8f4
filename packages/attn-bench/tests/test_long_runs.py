"""Runs that must fit a limited GPU session: time budget, incremental JSON, --resume, the per-row guard,
the deliverable preset and --split. CPU only: fake backends and clocks."""

from __future__ import annotations

import json
import time

import pytest
from typer.testing import CliRunner

from attn_bench import engine, presets, report, schema
from attn_bench.backend import Backend
from attn_bench.cli import app
from attn_bench.discovery import Discovered
from attn_bench.peers import Peer
from attn_bench.suites import GPU_HEAD_DIMS, GPU_SEQLENS, HIDDEN, TOKENS

pytestmark = pytest.mark.usefixtures("fast_timing")


def _attention(q, k, v, *, causal, softmax_scale):
    from attn_reference import attention_naive

    return attention_naive(q, k, v, causal=causal, softmax_scale=softmax_scale)


def _inv(**variants):
    fake = Backend(name="fake", devices=("cpu",), impls={"attention_fwd": variants})
    return engine.Inventory([Discovered("fake", "tests:fake", backend=fake)], [])


def _opts(**kw):
    return engine.Options(mode="cpu", suites=("attention-fwd",), quick=True, peers=[], **kw)


def test_time_budget_skips_the_rest_and_still_writes(tmp_path, monkeypatch):
    """A fake clock: every call of the op costs 100 s (check, warm-up, one timed call: 300 s a row).

    Large fake steps because the row alarm is real time: the third row gets the budget left (100 s),
    which a loaded CI machine never exhausts (with 1 s steps it once did)."""
    now = [0.0]

    def ticking(q, k, v, *, causal, softmax_scale):
        now[0] += 100.0
        return _attention(q, k, v, causal=causal, softmax_scale=softmax_scale)

    monkeypatch.setattr(engine, "BUDGET_RESERVE_S", 0.0)
    out = tmp_path / "r.json"
    doc = engine.run(
        _opts(time_budget=700.0),
        inv=_inv(a=ticking),
        write=lambda d: schema.dump(d, out),
        clock=lambda: now[0],
    )
    statuses = [r["status"] for r in doc["rows"]]
    # Rows start at 0, 300 and 600; at 900 the budget (700) is spent.
    assert statuses == ["ok", "ok", "ok", "skipped"]
    assert doc["rows"][-1]["message"] == "time budget"
    assert doc["runs"][-1]["stopped"] == "time budget" and doc["runs"][-1]["rows_run"] == 3
    assert schema.load(out)["rows"] == json.loads(json.dumps(doc["rows"]))


def test_budget_interrupts_a_running_row(monkeypatch):
    """A row still running when the budget ends is cut (SIGALRM) and skipped like the rows after it."""

    def slow(q, k, v, *, causal, softmax_scale):
        time.sleep(30)

    monkeypatch.setattr(engine, "BUDGET_RESERVE_S", 0.0)
    t0 = time.monotonic()
    doc = engine.run(_opts(time_budget=0.5), inv=_inv(slow=slow))
    assert time.monotonic() - t0 < 10
    assert [r["status"] for r in doc["rows"]] == ["skipped"] * 4
    assert all(r["message"] == "time budget" for r in doc["rows"])


def test_row_timeout_records_an_error_and_moves_on():
    def slow(q, k, v, *, causal, softmax_scale):
        if q.shape[1] == 64 and not causal:
            time.sleep(30)  # a compile that never ends
        return _attention(q, k, v, causal=causal, softmax_scale=softmax_scale)

    t0 = time.monotonic()
    doc = engine.run(_opts(row_timeout=2.0), inv=_inv(slow=slow, good=_attention))
    assert time.monotonic() - t0 < 20
    rows = {(r["case"], r["variant"]): r for r in doc["rows"]}
    assert len(rows) == 8
    hung = rows[("b1 s64 h2 d32", "slow")]
    assert hung["status"] == "error" and "row timeout" in hung["message"]
    others = [r for key, r in rows.items() if key != ("b1 s64 h2 d32", "slow")]
    assert all(r["status"] == "ok" and r["check"]["status"] == "pass" for r in others)


def test_a_failing_peer_cannot_stop_the_run():
    """Exceptions outside the op itself (here: a peer's supports) become that row's error."""

    def broken_supports(op, variant, shape, device):
        raise ValueError("peer probe exploded")

    peer = Backend(
        name="bad-peer", kind="peer", impls={"attention_fwd": {"": _attention}}, supports=broken_supports
    )
    inv = _inv(good=_attention)
    inv.peers.append(Peer("bad-peer", backend=peer))
    doc = engine.run(_opts(), inv=inv)
    bad = [r for r in doc["rows"] if r["impl"] == "bad-peer"]
    assert bad and all(r["status"] == "error" and "peer probe exploded" in r["message"] for r in bad)
    assert all(r["status"] == "ok" for r in doc["rows"] if r["impl"] == "fake/good")


def test_incremental_json_survives_a_killed_run(tmp_path):
    calls = [0]

    def dies(q, k, v, *, causal, softmax_scale):
        calls[0] += 1
        if calls[0] > 6:  # two rows done (3 calls each), then the process is killed
            raise KeyboardInterrupt
        return _attention(q, k, v, causal=causal, softmax_scale=softmax_scale)

    out = tmp_path / "r.json"
    with pytest.raises(KeyboardInterrupt):
        engine.run(_opts(), inv=_inv(a=dies), write=lambda d: schema.dump(d, out))
    left = schema.load(out)
    assert [r["status"] for r in left["rows"]] == ["ok", "ok"]
    assert not list(tmp_path.glob(".*.tmp"))

    # --resume: the two rows are kept, the two missing ones run, nothing runs twice.
    doc = engine.run(_opts(), inv=_inv(a=_attention), resume=left)
    assert [r["status"] for r in doc["rows"]] == ["ok"] * 4
    assert len({engine.row_key(r) for r in doc["rows"]}) == 4
    assert doc["rows"][:2] == left["rows"] and doc["created"] == left["created"]
    assert [r["rows_run"] for r in doc["runs"]] == [2, 2]


def test_resume_reruns_budget_skipped_rows_and_merges_splits(monkeypatch):
    monkeypatch.setattr(engine, "BUDGET_RESERVE_S", 0.0)
    now = [0.0]

    def ticking(q, k, v, *, causal, softmax_scale):
        now[0] += 100.0  # large steps: the row alarm counts real seconds
        return _attention(q, k, v, causal=causal, softmax_scale=softmax_scale)

    first = engine.run(_opts(time_budget=400.0), inv=_inv(a=ticking), clock=lambda: now[0])
    assert [r["status"] for r in first["rows"]] == ["ok", "ok", "skipped", "skipped"]
    again = engine.run(_opts(), inv=_inv(a=_attention), resume=first)
    assert [r["status"] for r in again["rows"]] == ["ok"] * 4
    assert again["runs"][-1]["rows_run"] == 2

    part1 = engine.run(_opts(split=(1, 2)), inv=_inv(a=_attention))
    part2 = engine.run(_opts(split=(2, 2)), inv=_inv(a=_attention), resume=part1)
    assert len(part1["rows"]) == 2 and len(part2["rows"]) == 4
    assert {r["case"] for r in part2["rows"]} == {r["case"] for r in again["rows"]}
    assert [r["split"] for r in part2["runs"]] == ["1/2", "2/2"]
    nothing = engine.run(_opts(), inv=_inv(a=_attention), resume=part2)
    assert nothing["runs"][-1]["rows_planned"] == 0 and nothing["rows"] == part2["rows"]


def test_merge_joins_parts_run_side_by_side(tmp_path):
    """Parts run in parallel (two GPUs) merge into one document; a row that ran beats a skipped one."""
    part1 = engine.run(_opts(split=(1, 2)), inv=_inv(a=_attention))
    part2 = engine.run(_opts(split=(2, 2)), inv=_inv(a=_attention))
    stale = dict(part2["rows"][0], status="skipped", message="time budget", ms=None)
    part1["rows"].append(stale)
    merged = engine.merge([part2, part1])
    assert schema.problems(merged) == []
    assert len(merged["rows"]) == 4 and len({engine.row_key(r) for r in merged["rows"]}) == 4
    assert all(r["status"] == "ok" for r in merged["rows"])
    assert sorted(r["split"] for r in merged["runs"]) == ["1/2", "2/2"]
    assert merged["ceilings"] == part2["ceilings"]

    a, b, out = tmp_path / "a.json", tmp_path / "b.json", tmp_path / "m.json"
    schema.dump(part1, a)
    schema.dump(part2, b)
    from typer.testing import CliRunner

    from attn_bench.cli import app

    res = CliRunner().invoke(app, ["merge", str(a), str(b), "-o", str(out)])
    assert res.exit_code == 0, res.output
    assert len(schema.load(out)["rows"]) == 4
    part2["mode"] = "gpu"
    with pytest.raises(ValueError, match="different modes"):
        engine.merge([part1, part2])


def test_resume_refuses_the_other_mode():
    doc = engine.run(_opts(), inv=_inv(a=_attention))
    doc["mode"] = "gpu"
    with pytest.raises(ValueError, match="gpu-mode"):
        engine.run(_opts(), inv=_inv(a=_attention), resume=doc)


# --- the deliverable preset and --split ----------------------------------------------------------------


def test_deliverable_preset_lists_exactly_the_issue_shapes():
    cases = presets.cases("deliverable")
    by = {}
    for c in cases:
        by.setdefault(c.suite, []).append(c)
    assert list(by) == ["attention-fwd", "attention-bwd", "decode-kvcache", "mla-decode", "basics", "memory"]

    fwd = by["attention-fwd"]
    grid = {(c.shape["seqlen_q"], c.shape["head_dim"], c.shape["causal"]) for c in fwd}
    assert grid == {(s, d, cz) for s in GPU_SEQLENS for d in GPU_HEAD_DIMS for cz in (False, True)}
    assert (
        len(fwd) == 30 and GPU_SEQLENS == (1024, 2048, 4096, 8192, 16384) and GPU_HEAD_DIMS == (64, 128, 256)
    )
    for c in fwd + by["attention-bwd"]:
        sh = c.shape
        assert c.dtype == "bfloat16"
        assert sh["batch"] * sh["seqlen_q"] == TOKENS == 16384
        assert sh["heads_q"] * sh["head_dim"] == HIDDEN == 2048 and sh["heads_k"] == sh["heads_q"]
        assert sh["seqlen_k"] == sh["seqlen_q"]
    bwd = by["attention-bwd"]
    assert len(bwd) == 60 and {c.shape["pass"] for c in bwd} == {"bwd", "fwd+bwd"}

    (dec,) = by["decode-kvcache"]
    assert dec.dtype == "bfloat16" and dec.shape == dict(
        batch=64, seqlen_q=1, seqlen_k=8192, heads_q=32, heads_k=8, head_dim=128
    )

    mla = by["mla-decode"]
    assert {(c.shape["heads_q"], c.shape["seqlen_q"], c.shape["seqlen_k"]) for c in mla} == {
        (h, s_q, s_k) for h in (16, 128) for s_q in (1, 2) for s_k in (8192, 32768)
    }
    for c in mla:
        assert c.dtype == "bfloat16" and c.shape["batch"] == 128 and c.shape["heads_kv"] == 1
        assert (c.shape["head_dim"], c.shape["head_dim_v"], c.shape["block_size"]) == (576, 512, 64)

    assert {c.shape["kernel"] for c in by["basics"]} == {"vector_add", "softmax", "matmul"}
    assert len(by["basics"]) == 9
    assert [c.shape["seqlen_q"] for c in by["memory"]] == list(GPU_SEQLENS)
    assert len(cases) == 30 + 60 + 1 + 8 + 9 + 5
    # A suite added with -s that the preset does not name keeps its whole grid.
    from attn_bench.suites import SUITES

    sparse = SUITES["mla-sparse"].cases("gpu")
    assert all(presets.PRESETS["deliverable"].keeps(c) for c in sparse)


@pytest.mark.parametrize("parts", [1, 2, 3, 4, 7])
def test_split_is_a_balanced_partition_that_keeps_groups(parts):
    cases = presets.cases("deliverable")
    split = presets.split_cases(cases, parts)
    assert len(split) == parts
    flat = [c for part in split for c in part]
    assert sorted(id(c) for c in flat) == sorted(id(c) for c in cases)
    owner = {id(c): i for i, part in enumerate(split) for c in part}
    for c in cases:  # a backward's bwd and fwd+bwd rows share inputs and check: same part
        mates = [d for d in cases if presets.group_key(d) == presets.group_key(c)]
        assert {owner[id(d)] for d in mates} == {owner[id(c)]}
    weights = [sum(map(presets.cost, p)) for p in split]
    heaviest = max(
        sum(presets.cost(d) for d in cases if presets.group_key(d) == presets.group_key(c)) for c in cases
    )
    assert max(weights) - min(weights) <= heaviest + 1e-9
    assert presets.split_cases(cases, parts)[0] == split[0]  # deterministic


@pytest.mark.parametrize("bad", ["0/3", "4/3", "x", "1/2/3", "2"])
def test_parse_split_rejects(bad):
    with pytest.raises(ValueError):
        presets.parse_split(bad)
    assert presets.parse_split("2/3") == (2, 3)


def test_cli_plan_lists_the_deliverable_and_its_parts():
    res = CliRunner().invoke(app, ["plan", "--preset", "deliverable", "--parts", "3"])
    assert res.exit_code == 0, res.output
    assert "113 cases" in res.output and "b64 hq32 hkv8 d128 cache8192" in res.output
    assert "part 3/3" in res.output
    res = CliRunner().invoke(app, ["plan", "--split", "2/3"])
    assert res.exit_code == 0 and "part 2/3" in res.output


def test_cli_preset_needs_a_gpu(tmp_path):
    res = CliRunner().invoke(
        app, ["run", "--preset", "deliverable", "--device", "cpu", "-o", str(tmp_path / "r.json")]
    )
    assert res.exit_code == 2 and "needs a GPU" in res.output


def test_cli_split_budget_and_resume_end_to_end(tmp_path):
    out = tmp_path / "results.json"
    base = ["run", "-s", "attention-fwd", "--device", "cpu", "--quick", "-b", "reference", "--no-peers"]
    res = CliRunner().invoke(app, [*base, "--split", "1/2", "--time-budget", "300", "-o", str(out)])
    assert res.exit_code == 0, res.output
    first = schema.load(out)
    assert first["options"]["split"] == "1/2" and len(first["rows"]) == 4  # 2 cases x naive, flash2
    res = CliRunner().invoke(app, [*base, "--split", "2/2", "--resume", str(out), "-o", str(out)])
    assert res.exit_code == 0, res.output
    doc = schema.load(out)
    assert len(doc["rows"]) == 8 and all(r["status"] == "ok" for r in doc["rows"])
    assert "8 rows, 4 run now" in res.output
    assert [r["split"] for r in doc["runs"]] == ["1/2", "2/2"]
    res = CliRunner().invoke(app, [*base, "--split", "3/2", "-o", str(out)])
    assert res.exit_code == 2
    # The merged file feeds plot and report like any other.
    res = CliRunner().invoke(app, ["plot", str(out), "-o", str(tmp_path / "plots")])
    assert res.exit_code == 0, res.output
    assert list((tmp_path / "plots").glob("*.png"))
    res = CliRunner().invoke(app, ["report", str(out), "--plots-dir", str(tmp_path / "plots")])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "results.md").read_text().count("reference/flash2") >= 4


def test_a_lost_cuda_context_stops_the_run_for_a_resume(monkeypatch):
    """After an error row, a sticky CUDA error would fail every later row: the rest is skipped instead."""

    def crashes(q, k, v, *, causal, softmax_scale):
        raise RuntimeError("CUDA error: an illegal memory access was encountered")

    monkeypatch.setattr(engine, "_cuda_broken", lambda mode: "AcceleratorError: illegal memory access")
    doc = engine.run(_opts(), inv=_inv(a=crashes))
    assert [r["status"] for r in doc["rows"]] == ["error", "skipped", "skipped", "skipped"]
    assert all("CUDA context lost" in r["message"] for r in doc["rows"][1:])
    assert "CUDA context lost" in doc["runs"][-1]["stopped"]
    again = engine.run(_opts(), inv=_inv(a=_attention), resume=doc)  # the crashing row is not retried
    assert [r["status"] for r in again["rows"]] == ["error", "ok", "ok", "ok"]


def test_a_reference_past_the_row_timeout_is_not_recomputed(monkeypatch):
    from attn_bench.suites import SUITES

    calls = [0]

    def slow_reference(case, inp, lowp):
        calls[0] += 1
        time.sleep(30)

    monkeypatch.setattr(SUITES["attention-fwd"], "reference", slow_reference)
    # 2 s, not 1: a case's first row also collects garbage and draws its inputs inside its limit, and on a
    # loaded machine 1 s ran out before the reference started (that row's case was then timed out twice).
    opts = engine.Options(mode="cpu", suites=("attention-fwd",), quick=True, row_timeout=2.0)
    t0 = time.monotonic()
    doc = engine.run(opts, inv=_inv(a=_attention, b=_attention, c=_attention))
    rows = [r for r in doc["rows"] if r["case"] == "b1 s64 h2 d32"]
    assert rows[0]["status"] == "error" and "row timeout" in rows[0]["message"]
    # Timed without a check, and saying why where the figures are read.
    reason = "reference failed: RuntimeError: the reference outlived the row timeout; rows left unchecked"
    seen = [(r["status"], r["message"], r["check"]) for r in rows]
    assert all(r["status"] == "ok" and r["check"]["status"] == "unchecked" for r in rows[1:]), seen
    assert all(r["check"]["detail"] == reason for r in rows[1:])
    assert all(report.cells(r)["note"].startswith(f"UNCHECKED: {reason}") for r in rows[1:])
    assert calls[0] == 4 and time.monotonic() - t0 < 20  # once per case, never again for its other rows
