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


# --- MLA checks: every output FlashMLA returns, under its own rules, dtype included ----------------------


def _mla_decode(q, k_cache, block_table, cache_seqlens, head_dim_v, *, softmax_scale, causal):
    from attn_reference import mla

    return mla.flash_mla_with_kvcache(
        q, k_cache, block_table, cache_seqlens, head_dim_v, softmax_scale=softmax_scale, causal=causal
    )


def _mla_sparse(q, kv, indices, sm_scale, d_v):
    from attn_reference import mla

    return mla.flash_mla_sparse_fwd(q, kv, indices, sm_scale, d_v)


def _replacing(fn, index, change):
    """``fn`` with output ``index`` of its tuple replaced by ``change(that output)``."""

    def wrong(*args, **kwargs):
        outputs = list(fn(*args, **kwargs))
        outputs[index] = change(outputs[index])
        return tuple(outputs)

    return wrong


def _mla_rows(op, variants):
    fake = Backend(name="fake", devices=("cpu",), impls={op: variants})
    inv = engine.Inventory([Discovered("fake", "tests:fake", backend=fake)], [])
    suite = {"mla_decode": "mla-decode", "mla_sparse": "mla-sparse"}[op]
    doc = engine.run(engine.Options(mode="cpu", suites=(suite,), quick=True, peers=[]), inv=inv)
    assert len(doc["rows"]) == len(variants)  # one quick case
    return {r["variant"]: r for r in doc["rows"]}


def _assert_failed(row, *words):
    assert row["status"] == "check_failed" and row["check"]["status"] == "fail", row
    assert row["ms"] is None  # never timed
    assert all(w in row["message"] for w in words), row["message"]


def test_mla_decode_checks_out_lse_and_dtypes():
    rows = _mla_rows(
        "mla_decode",
        {
            "good": _mla_decode,
            "out_only": lambda *a, **k: _mla_decode(*a, **k)[0],
            "wrong_out": _replacing(_mla_decode, 0, lambda out: out + 0.01),
            "bad_lse": _replacing(_mla_decode, 1, lambda lse: torch.full_like(lse, 123.0)),
            "fp64_out": _replacing(_mla_decode, 0, lambda out: out.double()),
            "fp16_lse": _replacing(_mla_decode, 1, lambda lse: lse.half()),
            "extra": lambda *a, **k: (*_mla_decode(*a, **k), torch.zeros(1)),
        },
    )
    good = rows["good"]
    assert good["status"] == "ok" and good["check"]["status"] == "pass" and good["check"]["detail"] == ""
    assert good["ms"] > 0
    # out alone is the op's convention too: it passes on out, and says lse went unchecked.
    only = rows["out_only"]
    assert only["status"] == "ok" and only["check"]["status"] == "pass"
    assert only["check"]["detail"] == "lse not returned: not checked"
    _assert_failed(rows["wrong_out"], "out:", "beyond abs")
    _assert_failed(rows["bad_lse"], "lse:", "beyond abs")
    assert "out:" not in rows["bad_lse"]["message"]
    _assert_failed(rows["fp64_out"], "out: dtype torch.float64 != expected torch.float32")
    _assert_failed(rows["fp16_lse"], "lse: dtype torch.float16 != expected torch.float32")
    _assert_failed(rows["extra"], "expected at most 2 outputs (out, lse), got 3")


def test_mla_sparse_checks_out_max_logits_lse_and_dtypes():
    rows = _mla_rows(
        "mla_sparse",
        {
            "good": _mla_sparse,
            "out_only": lambda *a: _mla_sparse(*a)[0],
            "wrong_out": _replacing(_mla_sparse, 0, lambda out: out * 1.1),
            "bad_max_logits": _replacing(_mla_sparse, 1, lambda m: m + 1.0),
            "bad_lse": _replacing(_mla_sparse, 2, lambda lse: torch.full_like(lse, 123.0)),
            "fp64_out": _replacing(_mla_sparse, 0, lambda out: out.double()),
        },
    )
    assert rows["good"]["status"] == "ok" and rows["good"]["check"]["status"] == "pass"
    assert rows["good"]["check"]["detail"] == ""
    only = rows["out_only"]
    assert only["status"] == "ok" and only["check"]["detail"] == "max_logits, lse not returned: not checked"
    _assert_failed(rows["wrong_out"], "out:")
    _assert_failed(rows["bad_max_logits"], "max_logits:")
    _assert_failed(rows["bad_lse"], "lse:")
    assert "max_logits" not in rows["bad_lse"]["message"]
    _assert_failed(rows["fp64_out"], "out: dtype torch.float64 != expected torch.float32")


def test_mla_lse_is_held_to_flashmlas_lse_tolerance():
    """An lse off by 1e-3 relative passes FlashMLA's out rule (rel 2.01/128) but not its lse rule (rel
    8.01/65536): lse is checked under the latter."""
    from attn_bench.checks import compare_mla

    out = torch.rand(2, 1, 16, 512) + 0.5
    lse = torch.rand(2, 16, 1) + 5.0
    assert compare_mla((out, lse), (out, lse), ("out", "lse")).status == "pass"
    off = compare_mla((out, lse * (1 + 1e-3)), (out, lse), ("out", "lse"))
    assert off.status == "fail" and off.detail.startswith("lse:")
    assert compare_mla((out * (1 + 1e-3), lse), (out, lse), ("out", "lse")).status == "pass"


# --- a prepared op: prepared once per row, and the callable checked is the callable timed -----------------


class _CountedPrepare:
    """A preparable op whose every ``prepare`` hands out a new callable: wrong ones after the first of a row
    would pass unnoticed if the check and the timing prepared separately."""

    def __init__(self, good):
        self.good, self.prepared, self.calls = good, [], []

    def prepare(self, *args, **kwargs):
        index = len(self.prepared)
        self.prepared.append(index)

        def run():
            self.calls.append(index)
            return self.good(*args, **kwargs)

        return run


def test_a_prepared_op_is_prepared_once_and_the_checked_callable_is_timed():
    op = _CountedPrepare(_attention)
    fake = Backend(name="fake", devices=("cpu",), impls={"attention_fwd": {"prepared": op}})
    inv = engine.Inventory([Discovered("fake", "tests:fake", backend=fake)], [])
    doc = engine.run(engine.Options(mode="cpu", suites=("attention-fwd",), quick=True, peers=[]), inv=inv)
    assert all(r["status"] == "ok" and r["check"]["status"] == "pass" for r in doc["rows"])
    assert len(op.prepared) == len(doc["rows"]) == 4
    # Row i's check call and its timed calls (1 warm-up + 1 with fast_timing) all go to callable i.
    assert op.calls == [i for i in range(4) for _ in range(3)]


def test_a_prepared_backward_is_prepared_once_per_row_and_checked_through_its_own_gradients():
    op = _CountedPrepare(_attention)
    wrong = _CountedPrepare(lambda q, k, v, **kw: _attention(q, k, v, **kw) * 1.01)
    impls = {"attention_bwd": {"prepared": op, "wrong": wrong}}
    fake = Backend(name="fake", devices=("cpu",), impls=impls)
    inv = engine.Inventory([Discovered("fake", "tests:fake", backend=fake)], [])
    opts = engine.Options(
        mode="cpu", suites=("attention-bwd",), quick=True, peers=[], where={"head_dim": "32"}
    )
    doc = engine.run(opts, inv=inv)
    rows = {(r["case"], r["variant"]): r for r in doc["rows"]}
    good = [r for (_, v), r in rows.items() if v == "prepared"]
    assert len(good) == 8 and all(r["status"] == "ok" and r["check"]["status"] == "pass" for r in good)
    assert len(op.prepared) == 8  # bwd and fwd+bwd rows of a shape each prepare (and check) their own
    bad = [r for (_, v), r in rows.items() if v == "wrong"]
    assert all(r["status"] == "check_failed" and r["message"].startswith("dq") for r in bad)


# --- rows whose check could not run: timed, and saying so ------------------------------------------------


def test_a_failing_reference_leaves_rows_timed_but_marked_unchecked(inventory, monkeypatch):
    from attn_bench import report
    from attn_bench.suites import SUITES

    def broken(case, inp, lowp):
        raise RuntimeError("oracle unavailable")

    monkeypatch.setattr(SUITES["attention-fwd"], "reference", broken)
    doc = engine.run(
        engine.Options(mode="cpu", suites=("attention-fwd",), quick=True, peers=[]), inv=inventory
    )
    rows = [r for r in doc["rows"] if r["variant"] in ("good", "wrong") and not r["shape"]["causal"]]
    assert rows
    for r in rows:
        assert r["status"] == "ok" and r["ms"] > 0
        assert r["check"]["status"] == "unchecked"
        assert r["check"]["detail"] == "reference failed: RuntimeError: oracle unavailable"
        cells = report.cells(r)
        assert cells["check"] == "UNCHECKED"
        assert cells["note"].startswith("UNCHECKED: reference failed: RuntimeError: oracle unavailable")
    assert "UNCHECKED: reference failed" in report.markdown(doc)
