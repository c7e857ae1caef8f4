"""The Triton decode kernel's config space (under the interpreter) and the first-call tuner's choice."""

from __future__ import annotations

import os

import pytest
import torch

from attn_flashmla import decode_fwd
from attn_flashmla.scheduler import default_num_parts, schedule_decode
from attn_reference import mla
from attn_reference.testing.mla import assert_mla_close, assert_mla_lse_close, mla_decode_inputs

needs_interpreter = pytest.mark.skipif(
    os.environ.get("TRITON_INTERPRET", "0") in ("", "0"), reason="CPU kernels need TRITON_INTERPRET=1"
)


@needs_interpreter
@pytest.mark.parametrize(
    "config, case",
    [
        # Two programs per (row block, KV head), 256 output channels each; split sequences and zero lengths.
        ((16, 16, 4, 1, 1, 2), dict(b=3, s_q=2, h_q=8, h_kv=1, s_k=70, causal=True, zero=True, d=576)),
        ((32, 16, 4, 1, 1, 2), dict(b=2, s_q=1, h_q=6, h_kv=2, s_k=45, causal=False, zero=False, d=512)),
        ((16, 32, 4, 1, 2, 1), dict(b=2, s_q=3, h_q=4, h_kv=1, s_k=50, causal=True, zero=False, d=576)),
    ],
    ids=["dvsplit2-causal-zeros", "dvsplit2-hkv2-d512", "bn32"],
)
def test_configs_match_reference(config, case):
    config = dict(zip(decode_fwd.CONFIG_FIELDS, config))
    inputs = mla_decode_inputs(
        case["b"], case["s_q"], case["h_q"], case["h_kv"], case["s_k"], head_dim=case["d"],
        dtype=torch.bfloat16, page_block_size=16, varlen=True, zero_lengths=case["zero"], causal=case["causal"],
    )  # fmt: skip
    rows = case["s_q"] * case["h_q"] // case["h_kv"]
    parts = default_num_parts(
        4, case["h_kv"], rows, config["BLOCK_M"], config["ctas_per_sm"], config["DV_SPLIT"]
    )
    schedule = schedule_decode(inputs.cache_seqlens, parts, config["BLOCK_N"], 1)
    counts = schedule.split_offsets[1:] - schedule.split_offsets[:-1]
    scale = case["d"] ** -0.5
    out, lse = decode_fwd.dense_decode_triton(
        inputs.q, inputs.k_cache, inputs.block_table, inputs.cache_seqlens, schedule.parts,
        schedule.split_offsets, schedule.total_splits, int(counts.max()), scale, case["causal"], config,
    )  # fmt: skip
    ref_out, ref_lse = mla.flash_mla_with_kvcache(**{**inputs.kwargs(), "softmax_scale": scale})
    assert_mla_close("out", out, ref_out)
    assert_mla_lse_close("lse", lse, ref_lse)


def test_candidate_configs_cover_the_compute_bound_designs():
    big = decode_fwd.candidate_configs(256)
    # 64- and 128-row tiles, 64-token tiles, 8 warps, output channels in one program or split over two.
    assert {c["BLOCK_M"] for c in big} == {64, 128}
    assert any(c["BLOCK_N"] == 64 and c["num_warps"] == 8 and c["DV_SPLIT"] == 1 for c in big)
    assert any(c["DV_SPLIT"] == 2 for c in big)
    assert all(set(c) == set(decode_fwd.CONFIG_FIELDS) for rows in (1, 16, 30, 64, 128) for c in
               decode_fwd.candidate_configs(rows))  # fmt: skip
    # From 33 rows the untuned default is the Gluon kernel's tile; the switch takes it out.
    assert (
        decode_fwd.candidate_configs(256)[0] == decode_fwd.candidate_configs(64)[0] == decode_fwd.GLUON_CONFIG
    )
    assert not any(c["GLUON"] for c in decode_fwd.candidate_configs(32))
    # The memory-bound default stays the measured best (16 rows, 64 tokens, 4 warps, 2 stages, 2 CTAs/SM, TMA).
    assert decode_fwd.candidate_configs(16)[0] == decode_fwd._cfg(16, 64, 4, 2, 2, 1, 1)


def test_tuner_keeps_the_fastest_and_skips_configs_that_fail(monkeypatch):
    n = len(decode_fwd.candidate_configs(256))
    times = iter([3.0, 1.0, 2.0, 0.5] + [4.0] * (n - 5))  # one config fails: n - 1 timings
    monkeypatch.setattr(decode_fwd.triton.testing, "do_bench", lambda fn, **kw: next(times))
    monkeypatch.setattr(decode_fwd, "TUNED", {})
    monkeypatch.setattr(decode_fwd, "TUNE_LOG", {})
    calls = []

    def run_with(config):
        calls.append(config)
        if len(calls) == 2:
            raise RuntimeError("out of resource: shared memory")
        return lambda: None

    chosen = decode_fwd.tune_config("key", 256, run_with)
    assert chosen == decode_fwd.candidate_configs(256)[4]  # the 0.5 ms one; the failing one skipped
    assert len(decode_fwd.TUNE_LOG["key"]) == len(decode_fwd.candidate_configs(256))
    assert decode_fwd.tune_config("key", 256, run_with) is chosen and len(calls) == n  # cached


def test_the_gluon_switch_takes_the_gluon_config_out(monkeypatch):
    monkeypatch.setenv(decode_fwd.GLUON_ENV, "0")
    assert not any(c["GLUON"] for rows in (64, 256) for c in decode_fwd.candidate_configs(rows))
    monkeypatch.delenv(decode_fwd.GLUON_ENV)
    monkeypatch.setenv(decode_fwd.TMA_ENV, "0")  # the Gluon kernel copies by TMA only
    assert not decode_fwd.gluon_switch()


def test_config_override_parses_five_or_six_fields(monkeypatch):
    monkeypatch.setenv("ATTN_FLASHMLA_TRITON_CONFIG", "0,64,8,2,1")
    assert decode_fwd.config_override()["DV_SPLIT"] == 1
    monkeypatch.setenv("ATTN_FLASHMLA_TRITON_CONFIG", "64,64,4,2,1,2")
    assert decode_fwd.config_override() == decode_fwd._cfg(64, 64, 4, 2, 1, 2, 0)
