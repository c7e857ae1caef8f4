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
