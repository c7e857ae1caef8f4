"""Ablation variants: registered apart, run only by the ``ablations`` preset, compared with their default."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from attn_bench import discovery, engine, presets, report, schema
from attn_bench.backend import normalise
from attn_bench.discovery import Discovered
from attn_bench.suites import SUITES

DATA = Path(__file__).parent / "data"


def _decode(q, k_cache, v_cache, *, cache_seqlens, softmax_scale):
    from attn_reference import flash_attn_with_kvcache

    return flash_attn_with_kvcache(
        q, k_cache, v_cache, cache_seqlens=cache_seqlens, softmax_scale=softmax_scale
    )


def _fake(name="fake", ablations=True):
    desc = {"name": name, "devices": ("cpu",), "ops": {"decode_kvcache": {"fast": _decode, "other": _decode}}}
    if ablations:
        desc["ablations"] = {"decode_kvcache": {"off": _decode}}
    return normalise(desc)


def test_ablation_variants_are_kept_apart():
    b = _fake()
    assert list(b.variants("decode_kvcache")) == ["fast", "other"]
    assert list(b.variants("decode_kvcache", ablations=True)) == ["fast", "other", "off"]
    assert b.ablations == {"decode_kvcache": ("off",)}
    assert b.default_variant("decode_kvcache") == "fast"  # no "default": the first listed
    assert normalise({"name": "x", "ops": {"softmax": _decode}}).default_variant("softmax") == "default"


def test_a_variant_may_name_its_baseline():
    def forced(*args, **kwargs):
        return _decode(*args, **kwargs)

    forced.baseline = "other"
    b = normalise({"name": "x", "ops": {"decode_kvcache": {"fast": _decode, "other": _decode}},
                   "ablations": {"decode_kvcache": {"off": forced}}})  # fmt: skip
    assert b.baseline("decode_kvcache", "off") == "other"
    assert b.baseline("decode_kvcache", "other") == "fast"
    assert b.baseline("decode_kvcache", "fast") is None


@pytest.mark.parametrize(
    "ablations, match",
    [
        ({"softmax": {"off": _decode}}, "need its default"),
        ({"decode_kvcache": {"fast": _decode}}, "also in ops"),
        ({"decode_kvcache": _decode}, "must map"),
        ({"decode_kvcache": {"off": 3}}, "neither callable"),
    ],
)
def test_bad_ablations_are_refused(ablations, match):
    with pytest.raises(TypeError, match=match):
        normalise({"name": "x", "ops": {"decode_kvcache": {"fast": _decode}}, "ablations": ablations})


def test_plan_runs_ablations_only_when_asked():
    suite = SUITES["decode-kvcache"]
    cases = suite.cases("cpu", quick=True)
    impls = [_fake(), _fake("plain", ablations=False)]
    regular = {(b.name, v) for _, b, v in engine.plan(suite, cases, impls, "cpu")}
    assert regular == {("fake", "fast"), ("fake", "other"), ("plain", "fast"), ("plain", "other")}
    # Only backends with ablations of the op, and all their variants (the default to compare with).
    ablated = {(b.name, v) for _, b, v in engine.plan(suite, cases, impls, "cpu", ablations=True)}
    assert ablated == {("fake", "fast"), ("fake", "other"), ("fake", "off")}


@pytest.mark.usefixtures("fast_timing")
def test_ablations_preset_run_compares_each_variant_with_its_default(tmp_path, monkeypatch):
    # A suite the preset does not name keeps its whole grid when given with -s: here decode-kvcache (whose
    # GPU cases the real preset names), so the CPU grid runs.
    real = presets.PRESETS["ablations"]
    unnamed = tuple(s for s in real.suites if s != "decode-kvcache")
    monkeypatch.setitem(presets.PRESETS, "ablations", dataclasses.replace(real, suites=unnamed))
    inv = engine.Inventory([Discovered("fake", "tests:fake", backend=_fake())], [])
    opts = engine.Options(mode="cpu", suites=("decode-kvcache",), quick=True, peers=[], preset="ablations")
    doc = engine.run(opts, inv=inv)
    rows = {r["impl"]: r for r in doc["rows"]}
    assert set(rows) == {"fake/fast", "fake/other", "fake/off"}
    assert rows["fake/fast"]["baseline"] is None and rows["fake/fast"]["ratio_to_baseline"] is None
    for impl in ("fake/other", "fake/off"):
        assert rows[impl]["baseline"] == "fake/fast"
        assert rows[impl]["ratio_to_baseline"] == pytest.approx(rows["fake/fast"]["ms"] / rows[impl]["ms"])
    schema.load(schema.dump(doc, tmp_path / "r.json"))
    md = report.markdown(doc)
    assert "| vs baseline |" in md and "x fake/fast |" in md
    # Without the preset the same run has no ablation row.
    plain = engine.run(engine.Options(mode="cpu", suites=("decode-kvcache",), quick=True, peers=[]), inv=inv)
    assert {r["impl"] for r in plain["rows"]} == {"fake/fast", "fake/other"}


def test_report_shows_no_default_column_without_ratios(fixture_results):
    md = report.markdown(schema.load(fixture_results))
    assert "vs baseline" not in md.split("% ceiling:")[0]


def _real_backends():
    found = discovery.discover()
    names = {d.name for d in found if d.ok}
    if not {"cuda", "cutlass", "flashmla", "reference", "triton"} <= names:
        pytest.skip(f"needs every workspace backend installed, found {sorted(names)}")
    return [d.backend for d in found if d.ok]


def _planned(preset: str) -> list[str]:
    p = presets.PRESETS[preset]
    impls = _real_backends()
    lines = []
    for name in p.suites:
        cases = [c for c in SUITES[name].cases(p.mode) if p.keeps(c)]
        for c, b, v in engine.plan(SUITES[name], cases, impls, p.mode, p.ablations):
            lines.append(f"{c.suite} | {c.name} | {b.label(v)}")
    return lines


def test_deliverable_plans_the_rows_main_planned():
    # data/deliverable-plan.txt: what main planned before ablation variants existed (peers aside).
    assert _planned("deliverable") == (DATA / "deliverable-plan.txt").read_text().splitlines()


def test_ablations_preset_selects_the_guide_pairs():
    cases = [(c.suite, c.name) for c in presets.cases("ablations")]
    assert cases == [
        ("attention-fwd", "b1 s16384 h32 d64"),
        ("attention-fwd", "b1 s16384 h16 d128"),
        ("attention-fwd", "b1 s16384 h16 d128 causal"),
        ("attention-fwd", "b1 s16384 h8 d256 causal"),
        *[
            ("attention-bwd", f"b1 s16384 {hd}{c} {p}")
            for hd, c in (("h32 d64", ""), ("h16 d128", ""), ("h16 d128", " causal"), ("h8 d256", ""))
            for p in ("bwd", "fwd+bwd")
        ],
        *[("decode-kvcache", f"b64 hq32 hkv8 d128 cache{s}") for s in (8192, 32768)],
        *[("mla-decode", f"b128 hq{h} sq1 sk{s}") for h in (16, 128) for s in (8192, 32768)],
        ("basics", "vector_add n268435456"),
        ("basics", "matmul 8192^3"),
    ]
    impls: dict[str, set[str]] = {}
    for line in _planned("ablations"):
        suite, _, impl = line.split(" | ")
        impls.setdefault(suite, set()).add(impl)
    # Each op's default and every other variant of the backends with ablations; no peer, no reference.
    assert impls["attention-fwd"] == {
        "cuda/mma", "cuda/scalar", "cuda/scalar_v1", "cuda/mma_kernel", "cuda/base", "cuda/wide", "cuda/wide8", "cuda/wide256",
        "cuda/wide48", "cuda/wide48c", "cuda/wide64c", "cuda/causal_per_head", "cuda/always_rescale", "cutlass", "cutlass/causal_sections",
        "cutlass/no_pingpong", "cutlass/always_rescale", "cutlass/two_consumers", "cutlass/unroll2", "cutlass/rolled", "cutlass/register_store",
        "triton", "triton/tiles", "triton/pingpong", "triton/gluon_stages_3", "triton/gluon_hd256",
        "triton/pointer_loads", "triton/all_heads_order", "triton/unfolded_scale",
        "triton/stages_3", "triton/stages_2", "triton/stages_1",
    }  # fmt: skip
    assert impls["attention-bwd"] == {
        "cuda/mma", "cuda/bwd_base", "cuda/bwd_wide8", "cuda/bwd_wide8q", "cuda/bwd_wide8v", "cuda/bwd_wide8qv",
        "cutlass",
        "cutlass/dq_atomic", "cutlass/dq_tma", "cutlass/dq_bulk", "cutlass/prefetch", "cutlass/serial",
        "triton", "triton/deterministic", "triton/atomic_dq", "triton/tma_loads",
    }  # fmt: skip
    assert impls["decode-kvcache"] == {"triton", "triton/one_split"}
    assert impls["mla-decode"] == {
        "flashmla", "flashmla/triton", "flashmla/cute",
        "flashmla/triton_gather", "flashmla/triton_tiles", "flashmla/cute_split_s", "flashmla/cute_single_cta",
    }  # fmt: skip
    assert impls["basics"] == {
        "cuda/mma", "cuda/regblock", "cuda/tiled", "cuda/naive", "cuda/mma_128x128_grouped",
        "cuda/mma_128x128_plain", "cuda/mma_128x256_plain", "cuda/mma_padded_smem", "cuda/mma_plain_smem",
        "cutlass", "cutlass/one_cta_per_tile", "cutlass/no_multicast", "cuda", "cuda/scalar_loads", "cuda/chunked",
    }  # fmt: skip


def test_cli_plan_lists_the_ablations_preset():
    from typer.testing import CliRunner

    from attn_bench.cli import app

    res = CliRunner().invoke(app, ["plan", "--preset", "ablations"])
    assert res.exit_code == 0, res.output
    assert "20 cases" in res.output and "b128 hq128 sq1 sk32768" in res.output
