"""FlashMLA's API surface: metadata, reuse rules, errors, torch.compile, nothing decided at import."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

import attn_flashmla as flash_mla
from attn_reference import mla
from attn_reference.errors import AttentionArgumentError
from attn_reference.testing.mla import assert_mla_close, assert_mla_lse_close, mla_decode_inputs

INTERPRET = os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")
needs_interpreter = pytest.mark.skipif(not INTERPRET, reason="CPU kernels need TRITON_INTERPRET=1")


def _call(inputs, meta, **changes):
    return inputs.call(flash_mla.flash_mla_with_kvcache, meta, **changes)


def test_public_names_match_flash_mla():
    for name in ("get_mla_metadata", "flash_mla_with_kvcache", "flash_mla_sparse_fwd", "FlashMLASchedMeta"):
        assert hasattr(flash_mla, name)


# FlashMLA's signatures (flash_mla/flash_mla_interface.py): names, order and defaults; _REQUIRED has none.
_REQUIRED = object()
FLASH_MLA_SIGNATURES = {
    "flash_mla_with_kvcache": [
        ("q", _REQUIRED),
        ("k_cache", _REQUIRED),
        ("block_table", _REQUIRED),
        ("cache_seqlens", _REQUIRED),
        ("head_dim_v", _REQUIRED),
        # FlashMLA requires it; None (a one-off schedule) is this package's documented extension.
        ("tile_scheduler_metadata", None),
        ("num_splits", None),
        ("softmax_scale", None),
        ("causal", False),
        ("is_fp8_kvcache", False),
        ("indices", None),
        ("attn_sink", None),
        ("extra_k_cache", None),
        ("extra_indices_in_kvcache", None),
        ("topk_length", None),
        ("extra_topk_length", None),
    ],
    "flash_mla_sparse_fwd": [
        ("q", _REQUIRED),
        ("kv", _REQUIRED),
        ("indices", _REQUIRED),
        ("sm_scale", _REQUIRED),
        ("d_v", 512),
        ("attn_sink", None),
        ("topk_length", None),
    ],
}


@pytest.mark.parametrize("name", sorted(FLASH_MLA_SIGNATURES))
def test_signatures_match_flash_mla(name):
    import inspect

    params = inspect.signature(getattr(flash_mla, name)).parameters.values()
    got = [(p.name, _REQUIRED if p.default is inspect.Parameter.empty else p.default) for p in params]
    assert got == FLASH_MLA_SIGNATURES[name]
    assert all(p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD for p in params)


def test_get_mla_metadata_accepts_old_and_new_signatures():
    seqlens = torch.tensor([10, 20], dtype=torch.int32)
    for meta, extra in (
        flash_mla.get_mla_metadata(),
        flash_mla.get_mla_metadata(seqlens, 16, 1),
        flash_mla.get_mla_metadata(seqlens, 16, 1, num_heads_q=16, is_fp8_kvcache=False, topk=None),
    ):
        assert isinstance(meta, flash_mla.FlashMLASchedMeta) and extra is None
        assert not meta.have_initialized


def test_import_touches_no_gpu_and_compiles_nothing():
    """With the GPU visible (on a GPU tier): importing the package loads no CuTe DSL (whose kernels are
    compiled on first use) and does not initialise CUDA, which a kernel compile or launch would."""
    code = (
        "import sys, torch, attn_flashmla; assert 'cutlass' not in sys.modules, 'cutlass imported'; "
        "assert not torch.cuda.is_initialized(), 'CUDA initialised'; print('ok')"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert result.returncode == 0 and "ok" in result.stdout, result.stderr


@needs_interpreter
def test_schedule_is_made_once_and_reuse_with_other_shapes_is_refused():
    inputs = mla_decode_inputs(
        3, 2, 4, 1, 40, dtype=torch.float16, page_block_size=16, varlen=True, causal=True
    )
    meta, _ = flash_mla.get_mla_metadata()
    out, lse = _call(inputs, meta)
    assert meta.have_initialized and meta.tile_scheduler_metadata is not None
    parts = meta.tile_scheduler_metadata
    out2, lse2 = _call(inputs, meta)
    assert meta.tile_scheduler_metadata is parts  # not recomputed
    assert torch.equal(out, out2) and torch.equal(lse, lse2)
    ref_out, ref_lse = mla.flash_mla_with_kvcache(**inputs.kwargs())
    assert_mla_close("out", out, ref_out)
    assert_mla_lse_close("lse", lse, ref_lse)
    with pytest.raises(AttentionArgumentError, match=r"other shapes.*causal True -> False"):
        _call(inputs, meta, causal=False)
    other = mla_decode_inputs(3, 1, 4, 1, 40, dtype=torch.float16, page_block_size=16)
    with pytest.raises(AttentionArgumentError, match=r"s_q 2 -> 1"):
        _call(other, meta)


def test_num_splits_must_be_none_and_metadata_must_be_ours():
    inputs = mla_decode_inputs(1, 1, 2, 1, 20, dtype=torch.float16)
    with pytest.raises(AttentionArgumentError, match="num_splits"):
        inputs.call(flash_mla.flash_mla_with_kvcache, flash_mla.get_mla_metadata()[0], torch.ones(2))
    with pytest.raises(AttentionArgumentError, match="FlashMLASchedMeta"):
        inputs.call(flash_mla.flash_mla_with_kvcache, object())


def test_validation_comes_from_the_reference():
    inputs = mla_decode_inputs(1, 1, 2, 1, 20, dtype=torch.float16)
    with pytest.raises(AttentionArgumentError, match="head_dim_v"):
        _call(inputs, flash_mla.get_mla_metadata()[0], head_dim_v=576)


def test_cpu_tensors_without_interpreter_are_refused(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    inputs = mla_decode_inputs(1, 1, 2, 1, 20, dtype=torch.float16)
    with pytest.raises(AttentionArgumentError, match="TRITON_INTERPRET"):
        _call(inputs, flash_mla.get_mla_metadata()[0])


@needs_interpreter
def test_torch_compile_fullgraph_traces_through_the_custom_ops():
    torch._dynamo.reset()
    inputs = mla_decode_inputs(2, 1, 4, 1, 30, dtype=torch.float16, page_block_size=16, varlen=True)
    meta, _ = flash_mla.get_mla_metadata()
    eager_out, eager_lse = _call(inputs, meta)  # the first call makes the schedule (reads lengths on host)

    @torch.compile(fullgraph=True, backend="eager")
    def decode(q, k_cache, block_table, cache_seqlens):
        return flash_mla.flash_mla_with_kvcache(
            q, k_cache, block_table, cache_seqlens, 512, meta, causal=False
        )

    out, lse = decode(inputs.q, inputs.k_cache, inputs.block_table, inputs.cache_seqlens)
    assert torch.equal(out, eager_out) and torch.equal(lse, eager_lse)


def test_fake_implementations_give_the_shapes():
    from torch._subclasses.fake_tensor import FakeTensorMode

    with FakeTensorMode():
        q = torch.empty(2, 3, 8, 576, dtype=torch.bfloat16)
        out, lse = torch.ops.attn_flashmla.dense_decode(
            q, torch.empty(4, 64, 1, 576, dtype=torch.bfloat16), torch.empty(2, 2, dtype=torch.int32),
            torch.empty(2, dtype=torch.int32), torch.empty(4, 5, dtype=torch.int32),
            torch.empty(3, dtype=torch.int32), 0.1, True, "triton", 64, 64, 8, 2, 1, 0, 0, 4, 2,
        )  # fmt: skip
        assert out.shape == (2, 3, 8, 512) and lse.shape == (2, 8, 3) and lse.dtype == torch.float32
        qs = torch.empty(5, 16, 576, dtype=torch.bfloat16)
        o, m, l = torch.ops.attn_flashmla.sparse_prefill(
            qs, torch.empty(9, 1, 576, dtype=torch.bfloat16), torch.empty(5, 1, 8, dtype=torch.int32), 0.1,
            None, None,
        )  # fmt: skip
        assert o.shape == (5, 16, 512) and m.shape == (5, 16) and l.shape == (5, 16)
