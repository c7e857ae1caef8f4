"""The run loop: check before timing, failures recorded per row, derived figures by hand."""

from __future__ import annotations

import pytest
import torch

from attn_bench import engine, schema
from attn_bench.backend import Backend
from attn_bench.discovery import Discovered
from attn_bench.peers import Peer

pytestmark = pytest.mark.usefixtures("fast_timing")


def _attention(q, k, v, *, causal, softmax_scale):
    from attn_reference import attention_naive

    return attention_naive(q, k, v, causal=causal, softmax_scale=softmax_scale)


def _wrong(q, k, v, *, causal, softmax_scale):
    return _attention(q, k, v, causal=causal, softmax_scale=softmax_scale) + 0.01


def _raises(q, k, v, *, causal, softmax_scale):
    raise RuntimeError("kernel exploded")


def _unsupported(q, k, v, *, causal, softmax_scale):
    from attn_reference import UnsupportedFeatureError

    raise UnsupportedFeatureError("head dim 32 not implemented")


@pytest.fixture
def inventory():
    fake = Backend(
        name="fake",
        devices=("cpu",),
        impls={
            "attention_fwd": {"good": _attention, "wrong": _wrong, "raises": _raises, "unsup": _unsupported}
        },
        supports=lambda op, variant, shape, device: "causal not offered" if shape["causal"] else None,
    )
    return engine.Inventory([Discovered("fake", "tests:fake", backend=fake)], [Peer("fa4", error="absent")])


def test_rows_record_check_failures_errors_and_unsupported(inventory, tmp_path):
    opts = engine.Options(mode="cpu", suites=("attention-fwd",), quick=True, peers=[])
    seen = []
    doc = engine.run(opts, progress=lambda d, i, n: seen.append((i, n)), inv=inventory)
    assert seen[-1] == (16, 16)  # 4 quick cases x 4 variants
    rows = {(r["case"], r["variant"]): r for r in doc["rows"]}
    good = rows[("b1 s64 h2 d32", "good")]
    assert good["status"] == "ok" and good["check"]["status"] == "pass"
    assert good["ms"] > 0 and good["tflops"] > 0 and good["pct_of_ceiling"] > 0
    wrong = rows[("b1 s64 h2 d32", "wrong")]
    assert wrong["status"] == "check_failed" and wrong["ms"] is None  # never timed
    assert "max error" in wrong["message"]
    assert rows[("b1 s64 h2 d32", "raises")]["status"] == "error"
    assert "kernel exploded" in rows[("b1 s64 h2 d32", "raises")]["message"]
    assert rows[("b1 s64 h2 d32", "unsup")]["status"] == "unsupported"
    causal = rows[("b1 s64 h2 d32 causal", "good")]
    assert causal["status"] == "unsupported" and causal["message"] == "causal not offered"
    assert doc["mode"] == "cpu" and any("CPU mode" in n for n in doc["notes"])
    assert {i["name"]: i["reason"] for i in doc["implementations"]}["fa4"] == "absent"
    schema.load(schema.dump(doc, tmp_path / "r.json"))


class _Described:
    """A preparable op whose prepared callable says what it chose."""

    def prepare(self, q, k, v, *, causal, softmax_scale):
        def run():
            return _attention(q, k, v, causal=causal, softmax_scale=softmax_scale)

        run.description = f"config for seqlen {q.shape[1]}"
        return run


def test_a_prepared_ops_description_is_the_timed_rows_message():
    fake = Backend(name="fake", devices=("cpu",), impls={"attention_fwd": {"described": _Described()}})
    inv = engine.Inventory([Discovered("fake", "tests:fake", backend=fake)], [])
    opts = engine.Options(mode="cpu", suites=("attention-fwd",), quick=True, peers=[])
    rows = [r for r in engine.run(opts, inv=inv)["rows"] if r["status"] == "ok"]
    assert rows and all(r["message"] == f"config for seqlen {r['shape']['seqlen_q']}" for r in rows)


def test_no_check_leaves_rows_unchecked_but_timed(inventory):
    opts = engine.Options(mode="cpu", suites=("attention-fwd",), quick=True, check=False)
    doc = engine.run(opts, inv=inventory)
    wrong = [r for r in doc["rows"] if r["variant"] == "wrong" and not r["shape"]["causal"]]
    assert all(r["status"] == "ok" and r["check"]["status"] == "unchecked" for r in wrong)


def test_derive_by_hand():
    ceil = {"matmul_tflops": 100.0, "copy_gbps": 1000.0}

    def row(impl, kind, ms, flops=1e12, nbytes=1e9):
        return dict(suite="s", case="c", impl=impl, kind=kind, status="ok", ms=ms, flops=flops, bytes=nbytes)

    rows = [row("mine", "backend", 20.0), row("peer-a", "peer", 10.0), row("peer-b", "peer", 40.0),
            row("mem", "backend", 2.0, flops=1e9, nbytes=1e9)]  # fmt: skip
    rows[3]["case"] = "other"
    engine.derive(rows, ceil)
    mine, a, b, mem = rows
    assert mine["tflops"] == pytest.approx(50.0) and mine["gbps"] == pytest.approx(50.0)
    assert mine["bound"] == "compute" and mine["pct_of_ceiling"] == pytest.approx(50.0)
    assert mine["best_peer"] == "peer-a" and mine["ratio_to_best_peer"] == pytest.approx(0.5)
    assert a["ratio_to_best_peer"] == pytest.approx(1.0) and b["ratio_to_best_peer"] == pytest.approx(0.25)
    # 1 GB in 2 ms = 500 GB/s: memory-bound at half the copy ceiling; no peer ran its case.
    assert mem["bound"] == "memory" and mem["pct_of_ceiling"] == pytest.approx(50.0)
    assert mem.get("ratio_to_best_peer") is None


def test_resolve_mode():
    assert engine.resolve_mode("cpu") == "cpu"
    assert engine.resolve_mode("auto") == ("gpu" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ValueError):
        engine.resolve_mode("tpu")


def test_triton_interpreter_is_set_only_inside(monkeypatch):
    import os

    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    with engine.triton_interpreter(True):
        assert os.environ["TRITON_INTERPRET"] == "1"
    assert "TRITON_INTERPRET" not in os.environ


def test_peer_adapters_follow_the_op_conventions():
    """SDPA (math kernel) and torch run on CPU tensors too: their adapters pass the checks (the other SDPA
    kernels share the adapter, with another ``sdpa_kernel``)."""
    from attn_bench.peers import FACTORIES

    peers = []
    for name in ("sdpa-math", "torch"):
        b = FACTORIES[name]()
        b.name = name
        peers.append(Peer(name, backend=b))
    inv = engine.Inventory([], peers)
    suites = ("attention-fwd", "attention-bwd", "decode-kvcache", "basics")
    doc = engine.run(engine.Options(mode="cpu", suites=suites, quick=True), inv=inv)
    bad = [(r["case"], r["impl"], r["message"]) for r in doc["rows"] if r["status"] != "ok"]
    assert not bad
    assert {r["impl"] for r in doc["rows"]} == {"sdpa-math", "torch"}
    # Every row is a peer, so each one's ratio is against the fastest of them.
    assert all(r["ratio_to_best_peer"] <= 1.0 + 1e-9 for r in doc["rows"])


def test_memory_suite_builds_its_inputs_and_runner_on_cpu():
    """The memory suite only measures on a GPU; its inputs and call path are the forward's."""
    from attn_bench.suites import SUITES

    suite = SUITES["memory"]
    case = suite.cases("gpu", quick=True)[0]
    case.dtype = "float32"
    inp = suite.inputs(case, "cpu")
    out = suite.runner(_attention, case, inp).fn()
    assert out.shape == inp["q"].shape
    row = engine._measure_memory(suite, case, _attention, inp, {}, engine.Options(mode="cpu"))
    assert row["status"] == "skipped" and "CUDA" in row["message"]
