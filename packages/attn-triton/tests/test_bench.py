"""attn-bench's ablation variants: each computes what the default computes, with one choice taken back."""

from __future__ import annotations

import dataclasses
import importlib

import pytest
import torch

from attn_triton import _runtime, bench, interface
from attn_triton._runtime import interpreting

flash_fwd_module = importlib.import_module("attn_triton.flash_fwd")

interp = pytest.mark.skipif(not interpreting(), reason="needs TRITON_INTERPRET=1")


def test_ablation_table():
    desc = bench.backend()
    abl = desc["ablations"]
    assert set(abl) == {"attention_fwd", "attention_bwd", "decode_kvcache"}
    assert set(abl["attention_fwd"]) == {
        "tiles", "pingpong", "gluon_stages_3", "gluon_hd256",
        "pointer_loads", "all_heads_order", "unfolded_scale", "stages_3", "stages_2", "stages_1"
    }  # fmt: skip
    assert abl["attention_bwd"] == {
        "atomic_dq": bench._atomic_dq,
        "pointer_loads": abl["attention_bwd"]["pointer_loads"],
    }
    assert abl["decode_kvcache"] == {"one_split": bench._decode_one_split}
    # the deeper pipelines are measured against the 3-stage forced tile, which against the tile-level
    # kernel's default, which against the default (the Gluon kernel on Hopper)
    fwd = abl["attention_fwd"]
    assert [getattr(fwd[f"stages_{n}"], "baseline", None) for n in (1, 2, 3)] == [
        "stages_3",
        "stages_3",
        "tiles",
    ]
    assert fwd["tiles"].baseline == "default"
    for name in ("pointer_loads", "all_heads_order", "unfolded_scale"):
        assert fwd[name].baseline == "tiles", name
    for name in bench.GLUON_VARIANTS:
        assert getattr(fwd[name], "baseline", "default") == "default", name
    assert set(desc["ops"]["attention_bwd"]) == {"default", "deterministic"}


def test_variants_decline_what_they_do_not_change():
    causal = dict(batch=1, seqlen_q=16384, seqlen_k=16384, heads_q=8, heads_k=8, head_dim=256, causal=True)
    assert bench.supports("attention_fwd", "all_heads_order", causal, "cuda") is None
    assert "causal" in bench.supports("attention_fwd", "all_heads_order", {**causal, "causal": False}, "cuda")
    assert "shared memory" in bench.supports("attention_fwd", "stages_1", causal, "cuda")
    assert bench.supports("attention_fwd", "stages_1", {**causal, "head_dim": 128}, "cuda") is None
    tiny = {**causal, "head_dim": 64, "seqlen_q": 40, "seqlen_k": 40}
    for name in bench.GLUON_VARIANTS:
        assert "Gluon" in bench.supports("attention_fwd", name, tiny, "cpu")
        at_256 = bench.supports("attention_fwd", name, causal, "cuda")
        at_128 = bench.supports("attention_fwd", name, {**causal, "head_dim": 128}, "cuda")
        if name == "gluon_hd256":
            assert at_256 is None and "Gluon" in at_128
        else:
            assert "Gluon" in at_256 and at_128 is None


@interp
def test_launch_order_variant_is_the_other_choice(monkeypatch):
    """The default launches causal programs per head; the ablation launches with v2's all-heads-first order."""
    default = _runtime.PROFILES[_runtime.DEFAULT_PROFILE]
    assert default.fwd_heavy_first is False and _runtime.PROFILES["v2"].fwd_heavy_first is True
    seen = []

    def spy():
        seen.append(_runtime.knobs().fwd_heavy_first)
        return _runtime.knobs()

    monkeypatch.setattr(flash_fwd_module, "knobs", spy)
    q = torch.randn(1, 40, 1, 32, generator=torch.Generator().manual_seed(3))
    bench._fwd(q, q, q, causal=True, softmax_scale=0.2)
    bench.backend()["ablations"]["attention_fwd"]["all_heads_order"](q, q, q, causal=True, softmax_scale=0.2)
    assert seen == [False, True]


@interp
@pytest.mark.parametrize("causal", [False, True])
def test_forward_variants_match_the_default(causal):
    g = torch.Generator().manual_seed(1)
    q, k, v = (torch.randn(1, 150, 2, 64, generator=g) for _ in range(3))
    before = _runtime.knobs()
    want = bench._fwd(q, k, v, causal=causal, softmax_scale=0.2)
    for name, fn in bench.backend()["ablations"]["attention_fwd"].items():
        if name in bench.GLUON_VARIANTS:
            continue  # Hopper only (test_flash_fwd_sm90 checks the Gluon kernel's configs there)
        got = fn(q, k, v, causal=causal, softmax_scale=0.2)
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5, msg=lambda m, n=name: f"{n}: {m}")
    assert _runtime.knobs() is before


@interp
def test_one_split_decoding_matches_the_default():
    g = torch.Generator().manual_seed(2)
    q = torch.randn(2, 1, 4, 64, generator=g)
    kc, vc = (torch.randn(2, 300, 2, 64, generator=g) for _ in range(2))
    seqlens = torch.tensor([300, 77], dtype=torch.int32)
    want = bench._decode(q, kc, vc, cache_seqlens=seqlens, softmax_scale=0.125)
    got = bench._decode_one_split(q, kc, vc, cache_seqlens=seqlens, softmax_scale=0.125)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


@pytest.fixture
def separate_knobs(monkeypatch):
    """Knobs that take the separate dQ kernel, and the dQ mode each backward call saw."""
    old = _runtime.set_profile(dataclasses.replace(_runtime.knobs(), bwd_dq="separate"))
    seen = []
    real = interface.flash_bwd

    def recording(*args, **kwargs):
        seen.append(_runtime.knobs().bwd_dq)
        return real(*args, **kwargs)

    monkeypatch.setattr(interface, "flash_bwd", recording)
    yield seen
    _runtime.set_profile(old)


@interp
@pytest.mark.parametrize("causal", [False, True])
def test_atomic_dq_matches_the_default_and_restores_the_knobs(separate_knobs, causal):
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(1, 40, 2, 32, generator=g) for _ in range(3))
    dout = torch.randn(1, 40, 2, 32, generator=g)
    grads = []
    for fn in (bench._fwd, bench._atomic_dq):
        leaves = [t.clone().requires_grad_(True) for t in (q, k, v)]
        out = fn(*leaves, causal=causal, softmax_scale=0.2)
        out.backward(dout)
        grads.append((out.detach(), *(t.grad for t in leaves)))
    assert separate_knobs == ["separate", "atomic"]
    assert _runtime.knobs().bwd_dq == "separate"
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_knobs_come_back_after_an_error():
    before = _runtime.knobs()
    with pytest.raises(RuntimeError), bench._knobs(bwd_dq="atomic"):
        assert _runtime.knobs().bwd_dq == "atomic"
        raise RuntimeError
    assert _runtime.knobs() is before


@interp
@pytest.mark.parametrize("causal", [False, True])
def test_backward_pointer_loads_match_the_default(causal):
    g = torch.Generator().manual_seed(3)
    q, k, v = (torch.randn(1, 70, 2, 32, generator=g) for _ in range(3))
    dout = torch.randn(1, 70, 2, 32, generator=g)
    grads = []
    for fn in (bench._fwd, bench.backend()["ablations"]["attention_bwd"]["pointer_loads"]):
        leaves = [t.clone().requires_grad_(True) for t in (q, k, v)]
        out = fn(*leaves, causal=causal, softmax_scale=0.2)
        out.backward(dout)
        grads.append((out.detach(), *(t.grad for t in leaves)))
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    assert _runtime.knobs().bwd_tma == _runtime.PROFILES[_runtime.DEFAULT_PROFILE].bwd_tma
