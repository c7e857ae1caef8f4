"""Split-KV sparse decoding (``ATTN_FLASHMLA_SPARSE_SPLITS``): the split-count policy, and forced splits under
the interpreter against the reference and against the unsplit kernel."""

from __future__ import annotations

import functools
import os

import pytest
import torch

import attn_flashmla as flash_mla
from attn_flashmla import sparse_fwd
from attn_reference import mla
from attn_reference.errors import AttentionArgumentError
from attn_reference.testing.mla import assert_mla_close, assert_mla_lse_close, mla_sparse_decode_inputs

needs_interpreter = pytest.mark.skipif(
    os.environ.get("TRITON_INTERPRET", "0") in ("", "0"), reason="CPU kernels need TRITON_INTERPRET=1"
)

#: Tiles of 8 entries make a 27-29 entry list three or four tiles, so 2 and 3 splits cut it at tile
#: boundaries that fall inside the list, and the last split of 3 can get nothing at all.
TINY_BLOCK_N = 8


def test_policy_fills_one_wave_and_no_more():
    # The measured Hopper case: b 32, s_q 1, one head block at h_q 64, two at h_q 128, 132 SMs.
    assert sparse_fwd.num_decode_splits(32, 132, 2048, 32) == 4
    assert sparse_fwd.num_decode_splits(64, 132, 2048, 32) == 2
    # A grid that already fills the GPU, or would spill into a second partial wave, is left alone.
    assert sparse_fwd.num_decode_splits(132, 132, 2048, 32) == 1
    assert sparse_fwd.num_decode_splits(500, 132, 2048, 32) == 1
    assert sparse_fwd.num_decode_splits(70, 132, 2048, 32) == 1
    assert sparse_fwd.num_decode_splits(0, 132, 2048, 32) == 1
    # Short lists: every split keeps MIN_TILES_PER_SPLIT tiles (64 tiles / 4), or no split at all.
    assert sparse_fwd.num_decode_splits(1, 132, 2048, 32) == 2048 // 32 // sparse_fwd.MIN_TILES_PER_SPLIT
    assert sparse_fwd.num_decode_splits(1, 132, 64, 32) == 1
    assert sparse_fwd.num_decode_splits(1, 4, 64, 8) == 2
    for programs in range(1, 140):
        for topk in (1, 64, 576, 2048, 2048 + 512):
            s = sparse_fwd.num_decode_splits(programs, 132, topk, 32)
            assert 1 <= s <= sparse_fwd.MAX_AUTO_SPLITS
            assert s == 1 or programs * s <= 132
            assert s == 1 or -(-topk // 32) >= s * sparse_fwd.MIN_TILES_PER_SPLIT


def test_env_switch_is_auto_by_default(monkeypatch):
    monkeypatch.delenv(sparse_fwd.SPLITS_ENV, raising=False)
    assert sparse_fwd.decode_splits(32, 132, 2048, 32) == 4
    for value, splits in (("0", 1), ("1", 1), ("3", 3), (" AUTO ", 4)):
        monkeypatch.setenv(sparse_fwd.SPLITS_ENV, value)
        assert sparse_fwd.decode_splits(32, 132, 2048, 32) == splits
    for bad in ("-2", "yes", "2.5"):
        monkeypatch.setenv(sparse_fwd.SPLITS_ENV, bad)
        with pytest.raises(AttentionArgumentError, match=sparse_fwd.SPLITS_ENV):
            sparse_fwd.decode_splits(32, 132, 2048, 32)


def _decode(inputs):
    return inputs.call(flash_mla.flash_mla_with_kvcache)


def _inputs(name: str):
    if name == "extra-topklen-sink-sq2":
        # topk_length 0 for batch row 0 (its extra list still has entries), sinks at +inf, -inf and finite,
        # and one query token whose both lists hold only -1 (out 0, lse +inf).
        inputs = mla_sparse_decode_inputs(
            3, 2, 5, 40, 29, page_block_size=7, topk_length=True, attn_sink=True, extra=(21, 11, 5),
            extra_topk_length=True, seed=3,
        )  # fmt: skip
        assert inputs.topk_length.tolist()[0] == 0 and inputs.extra_topk_length.tolist()[0] > 0
        inputs.indices[2, 1] = -1
        inputs.extra_indices_in_kvcache[2, 1] = -1
        return inputs
    # Rows of -1 only (out 0, lse +inf), and in row (0, 0) the second chunk of tiles (entries 16..26, the
    # second split for both 2 and 3 splits of 8-entry tiles) all -1 while the first chunk is valid.
    inputs = mla_sparse_decode_inputs(
        2, 2, 3, 60, 27, head_dim=512, page_block_size=16, attn_sink=True, all_invalid_rows=True, seed=1
    )
    inputs.indices[0, 0, 16:] = -1
    assert (inputs.indices[0, 0, :16] >= 0).any()
    assert (inputs.indices < 0).all(dim=-1).any(), "the inputs should hold an all-invalid row"
    return inputs


@needs_interpreter
@pytest.mark.parametrize("case", ["extra-topklen-sink-sq2", "d512-invalid-chunk-sink"])
def test_forced_splits_match_reference_and_unsplit(case, monkeypatch):
    config = sparse_fwd._launch_config
    monkeypatch.setattr(
        sparse_fwd, "_launch_config", lambda h_q, prefill: dict(config(h_q, prefill), BLOCK_N=TINY_BLOCK_N)
    )
    inputs = _inputs(case)
    ref_out, ref_lse = mla.flash_mla_with_kvcache(**inputs.kwargs())
    monkeypatch.setenv(sparse_fwd.SPLITS_ENV, "0")
    base_out, base_lse = _decode(inputs)
    assert torch.isposinf(base_lse).any()  # some row saw nothing: the +inf convention is exercised
    for splits in ("2", "3"):
        monkeypatch.setenv(sparse_fwd.SPLITS_ENV, splits)
        out, lse = _decode(inputs)
        assert out.dtype == base_out.dtype and lse.shape == base_lse.shape
        assert_mla_close(f"out, {splits} splits vs reference", out, ref_out, abs_tol=1e-3)
        assert_mla_lse_close(f"lse, {splits} splits vs reference", lse, ref_lse)
        # Against the unsplit kernel: the same +inf/-inf/NaN positions, values within the tolerance.
        assert_mla_close(f"out, {splits} splits vs unsplit", out, base_out)
        assert_mla_lse_close(f"lse, {splits} splits vs unsplit", lse, base_lse)


@needs_interpreter
def test_auto_splits_under_the_interpreter(monkeypatch):
    # INTERPRETER_NUM_SMS 4 and one program: auto picks 2 splits of a 64-entry list of 8-entry tiles.
    config = sparse_fwd._launch_config
    monkeypatch.setattr(
        sparse_fwd, "_launch_config", lambda h_q, prefill: dict(config(h_q, prefill), BLOCK_N=TINY_BLOCK_N)
    )
    monkeypatch.setenv(sparse_fwd.SPLITS_ENV, "auto")
    assert sparse_fwd.decode_splits(1, 4, 64, TINY_BLOCK_N) == 2
    inputs = mla_sparse_decode_inputs(1, 1, 3, 90, 64, page_block_size=16, attn_sink=True, seed=2)
    calls = []
    real = sparse_fwd.combine_splits  # the name sparse decoding calls (imported from attn_flashmla.combine)
    monkeypatch.setattr(sparse_fwd, "combine_splits", lambda *a, **k: calls.append(a[5]) or real(*a, **k))
    out, lse = _decode(inputs)
    assert calls == [2]
    ref_out, ref_lse = mla.flash_mla_with_kvcache(**inputs.kwargs())
    assert_mla_close("out", out, ref_out, abs_tol=1e-3)
    assert_mla_lse_close("lse", lse, ref_lse)


@functools.cache
def _hopper_case():
    inputs = mla_sparse_decode_inputs(
        32, 1, 64, 2304, 2048, device="cuda", topk_length=True, attn_sink=True, extra=(512, 64, 64),
        extra_topk_length=True, all_invalid_rows=True, seed=4,
    )  # fmt: skip
    return inputs, mla.flash_mla_with_kvcache(**inputs.kwargs())


@pytest.mark.sm90
@pytest.mark.parametrize("splits", ["3", "auto"])
def test_splits_on_hopper_match_reference_and_unsplit(splits, monkeypatch):
    """The measured shape (b 32, s_q 1, h_q 64, top-k 2048: auto makes 4 splits on 132 SMs) with the GPU's
    own tiles, plus both lengths, a sink and the extra cache."""
    inputs, (ref_out, ref_lse) = _hopper_case()
    monkeypatch.setenv(sparse_fwd.SPLITS_ENV, "0")
    base_out, base_lse = _decode(inputs)
    monkeypatch.setenv(sparse_fwd.SPLITS_ENV, splits)
    out, lse = _decode(inputs)
    assert_mla_close("out vs reference", out, ref_out, abs_tol=1e-3)
    assert_mla_lse_close("lse vs reference", lse, ref_lse)
    assert_mla_close("out vs unsplit", out, base_out)
    assert_mla_lse_close("lse vs unsplit", lse, base_lse)
