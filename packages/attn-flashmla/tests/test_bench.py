"""The attn-bench registration: the description's shape, and the preparable decode on CPU (interpreter)."""

from __future__ import annotations

import importlib.metadata
import os

import pytest
import torch

from attn_flashmla.bench import backend
from attn_reference import mla
from attn_reference.testing.mla import assert_mla_close, mla_decode_inputs, mla_sparse_inputs


def test_entry_point_is_registered():
    names = {ep.name: ep.value for ep in importlib.metadata.entry_points(group="attn_bench.backends")}
    assert names.get("flashmla") == "attn_flashmla.bench:backend"


def test_description():
    desc = backend()
    assert desc["name"] == "flashmla"
    assert set(desc["ops"]) == {"mla_decode", "mla_sparse"}
    assert set(desc["ops"]["mla_decode"]) == {"default", "triton", "cute"}
    assert all(callable(getattr(fn, "prepare", None)) for fn in desc["ops"]["mla_decode"].values())


@pytest.mark.skipif(os.environ.get("TRITON_INTERPRET", "0") in ("", "0"), reason="needs TRITON_INTERPRET=1")
def test_prepared_decode_and_sparse_run_on_cpu():
    ops = backend()["ops"]
    inputs = mla_decode_inputs(2, 1, 4, 1, 30, dtype=torch.float16, page_block_size=16, varlen=True)
    args = (inputs.q, inputs.k_cache, inputs.block_table, inputs.cache_seqlens, 512)
    run = ops["mla_decode"]["triton"].prepare(*args, softmax_scale=None, causal=False)
    assert run.description.startswith("interpret BLOCK_M=")  # the row message: path (CPU) and config
    out, _ = run()
    assert_mla_close("out", out, mla.flash_mla_with_kvcache(*args)[0])
    sp = mla_sparse_inputs(3, 20, 8, 4)
    out = ops["mla_sparse"](sp.q, sp.kv, sp.indices, sp.sm_scale, 512)[0]
    assert_mla_close(
        "out", out, mla.flash_mla_sparse_fwd(sp.q, sp.kv, sp.indices, sp.sm_scale)[0], 8e-4, 3.01 / 128, 7e-6
    )


def test_supports_refuses_dtypes_the_kernels_do_not_take():
    from attn_flashmla.bench import supports

    shape = {"head_dim": 576}
    assert "float32" in supports("mla_decode", "default", {**shape, "dtype": "float32"}, "cuda")
    assert supports("mla_decode", "default", {**shape, "dtype": "bfloat16"}, "cuda") is None
    assert "bfloat16" in supports("mla_sparse", "default", {"dtype": "float16"}, "cuda")
    # The forced CuTe variant only where its kernel applies (on other Hopper shapes it would raise).
    assert "Hopper" in supports("mla_decode", "cute", {**shape, "dtype": "bfloat16"}, "cpu")
    assert "page size 64" in supports(
        "mla_decode", "cute", {**shape, "dtype": "bfloat16", "block_size": 16}, "cuda"
    )
    assert supports("mla_decode", "cute", {**shape, "dtype": "bfloat16", "block_size": 64}, "cuda") is None


# --- ablation variants (attn-bench's ablations preset) ----------------------------------------------------

SWITCHES = (
    "ATTN_FLASHMLA_PATH",
    "ATTN_FLASHMLA_TRITON_TMA",
    "ATTN_FLASHMLA_TRITON_GLUON",
    "ATTN_FLASHMLA_CUTE_SEESAW",
    "ATTN_FLASHMLA_CUTE_CLUSTER",
)


def test_ablation_variants_and_their_baselines():
    abl = backend()["ablations"]["mla_decode"]
    assert {name: fn.baseline for name, fn in abl.items()} == {
        "triton_gather": "triton",
        "triton_tiles": "triton",
        "cute_split_s": "cute",
        "cute_single_cta": "cute",
    }
    assert all(callable(fn.prepare) for fn in abl.values())
    from attn_flashmla.bench import supports

    shape = {"head_dim": 576, "dtype": "bfloat16", "block_size": 16}
    assert "page size 64" in supports("mla_decode", "cute_split_s", shape, "cuda")


@pytest.fixture
def seen(monkeypatch):
    """flash_mla_with_kvcache replaced: each call records the switches it saw (set by the user: PATH=x)."""
    calls = []

    def fake(*args, **kwargs):
        calls.append({k: os.environ.get(k) for k in SWITCHES})
        if kwargs.get("softmax_scale") == "raise":
            raise RuntimeError("kernel failed")
        return "out"

    monkeypatch.setattr("attn_flashmla.bench.flash_mla_with_kvcache", fake)
    monkeypatch.setenv("ATTN_FLASHMLA_PATH", "x")
    for key in SWITCHES[1:]:
        monkeypatch.delenv(key, raising=False)
    return calls


def _user_env():
    return {k: os.environ.get(k) for k in SWITCHES}


def test_schedule_switches_are_set_in_prepare_only(seen):
    user = _user_env()
    run = backend()["ablations"]["mla_decode"]["triton_gather"].prepare(1, 2, 3, 4, 512)
    assert seen[-1]["ATTN_FLASHMLA_PATH"] == "triton" and seen[-1]["ATTN_FLASHMLA_TRITON_TMA"] == "0"
    assert _user_env() == user
    run()  # the path and TMA choice live in the schedule now
    assert seen[-1] == user


@pytest.mark.parametrize(("name", "key", "value"), [("cute_split_s", "ATTN_FLASHMLA_CUTE_SEESAW", "0"),
                                                    ("cute_single_cta", "ATTN_FLASHMLA_CUTE_CLUSTER", "1")])  # fmt: skip
def test_cute_switches_are_set_around_every_call(seen, name, key, value):
    user = _user_env()
    run = backend()["ablations"]["mla_decode"][name].prepare(1, 2, 3, 4, 512)
    assert _user_env() == user
    run()  # read by the kernel on every call (its compiled kernels are keyed on them)
    for call in seen:
        assert call["ATTN_FLASHMLA_PATH"] == "cute" and call[key] == value
    assert _user_env() == user


def test_the_environment_comes_back_when_a_call_fails(seen):
    user = _user_env()
    fn = backend()["ablations"]["mla_decode"]["cute_split_s"]
    with pytest.raises(RuntimeError, match="kernel failed"):
        fn(1, 2, 3, 4, 512, softmax_scale="raise")
    assert _user_env() == user
    assert seen[-1]["ATTN_FLASHMLA_CUTE_SEESAW"] == "0"


@pytest.mark.skipif(os.environ.get("TRITON_INTERPRET", "0") in ("", "0"), reason="needs TRITON_INTERPRET=1")
def test_triton_gather_runs_on_cpu():
    inputs = mla_decode_inputs(2, 1, 4, 1, 30, dtype=torch.float16, page_block_size=16, varlen=True)
    args = (inputs.q, inputs.k_cache, inputs.block_table, inputs.cache_seqlens, 512)
    out, _ = backend()["ablations"]["mla_decode"]["triton_gather"].prepare(*args)()
    assert_mla_close("out", out, mla.flash_mla_with_kvcache(*args)[0])


def test_describe_names_the_path_and_config(monkeypatch):
    """What attn-bench records as a timed row's message (the Triton config tuning chose, the CuTe form)."""
    import types

    from attn_flashmla.bench import describe

    triton = types.SimpleNamespace(path="triton", kernel_config={"BLOCK_M": 16, "BLOCK_N": 32, "TMA": 1})
    assert describe(triton) == "triton BLOCK_M=16,BLOCK_N=32,TMA=1"
    monkeypatch.delenv("ATTN_FLASHMLA_CUTE_SEESAW", raising=False)
    assert (
        describe(types.SimpleNamespace(path="cute", kernel_config={"num_warps": 12}))
        == "cute (seesaw), 12 warps"
    )
    monkeypatch.setenv("ATTN_FLASHMLA_CUTE_SEESAW", "0")
    assert (
        describe(types.SimpleNamespace(path="cute", kernel_config={"num_warps": 8}))
        == "cute (first kernel), 8 warps"
    )
    assert describe(types.SimpleNamespace()) == ""  # no schedule made yet
