"""attn-bench's ablation variants: each computes what the default computes, with one choice taken back."""

from __future__ import annotations

import dataclasses
import importlib

import pytest
import torch

from attn_reference.testing.tolerance import assert_matches_reference
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
        "tma_loads": abl["attention_bwd"]["tma_loads"],
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


#: What each forward ablation changes in the interpreter's launch of the tile-level kernel, against its
#: baseline's launch ("tma" for pointer_loads, the default for the rest).
FORWARD_CHANGES = {
    "tiles": {},  # fwd_gluon=False: the Gluon kernel takes CUDA tensors only, so on the CPU nothing changes
    "pointer_loads": {"USE_TMA": False},
    "unfolded_scale": {"FOLD_SCALE": False},
    **{f"stages_{n}": dict(bench.STAGES_TILE, num_stages=n) for n in (1, 2, 3)},
}


@interp
@pytest.mark.parametrize("causal", [False, True])
def test_forward_variants_match_the_reference(launches, causal):
    """Every forward ablation the CPU can run, against the reference under the tolerance rule, and launched
    with the one choice it takes back (``FORWARD_CHANGES``). ``pointer_loads`` is also compared with the TMA
    path it replaces on Hopper, which ``force_path="sm90"`` runs through the interpreter (the CPU path is
    pointer loads already). Not exercised here: ``tiles`` is the default itself on the CPU; ``stages_*``
    run their forced 128 x 128 tile, but ``num_stages`` only changes what a GPU compiles; the Gluon
    variants are Hopper only (test_flash_fwd_sm90 checks the Gluon kernel's configs there)."""
    g = torch.Generator().manual_seed(1)
    q, k, v = (torch.randn(1, 150, 2, 64, generator=g) for _ in range(3))
    kw = dict(causal=causal, softmax_scale=0.2)
    seen = launches("flash_fwd", "_fwd_kernel")
    before = _runtime.knobs()
    runs = {"default": bench._fwd, "tma": bench._forward_with(force_path="sm90")}
    runs.update(
        (name, fn)
        for name, fn in bench.backend()["ablations"]["attention_fwd"].items()
        if name not in bench.GLUON_VARIANTS
    )
    outs, launched = {}, {}
    for name, fn in runs.items():
        seen.clear()
        outs[name] = fn(q, k, v, **kw)
        (launched[name],) = seen
        assert_matches_reference(dict(out=outs[name]), q, k, v, **kw)
    assert _runtime.knobs() is before
    changes = {**FORWARD_CHANGES, "all_heads_order": {"HEAVY_FIRST": True} if causal else {}}
    assert set(changes) | {"default", "tma"} == set(runs)
    assert launched["tma"]["USE_TMA"] and not launched["default"]["USE_TMA"]
    for name, want in changes.items():
        base = launched["tma" if name == "pointer_loads" else "default"]
        got = {key: val for key, val in launched[name].items() if key != "grid" and base.get(key) != val}
        assert got == want, name
    # the same arithmetic, tiles by pointers or by descriptors
    torch.testing.assert_close(outs["pointer_loads"], outs["tma"], atol=1e-6, rtol=1e-6)


@interp
def test_one_split_decoding_matches_the_default():
    g = torch.Generator().manual_seed(2)
    q = torch.randn(2, 1, 4, 64, generator=g)
    kc, vc = (torch.randn(2, 300, 2, 64, generator=g) for _ in range(2))
    seqlens = torch.tensor([300, 77], dtype=torch.int32)
    want = bench._decode(q, kc, vc, cache_seqlens=seqlens, softmax_scale=0.125)
    got = bench._decode_one_split(q, kc, vc, cache_seqlens=seqlens, softmax_scale=0.125)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    for i, n in enumerate(seqlens.tolist()):  # and the reference's, sequence by sequence
        kv = kc[i : i + 1, :n], vc[i : i + 1, :n]
        assert_matches_reference({"out": got[i : i + 1]}, q[i : i + 1], *kv, softmax_scale=0.125)


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
    for result in grads:
        got = dict(zip(("out", "dq", "dk", "dv"), result))
        assert_matches_reference(got, q, k, v, dout, causal=causal, softmax_scale=0.2)


def test_knobs_come_back_after_an_error():
    before = _runtime.knobs()
    with pytest.raises(RuntimeError), bench._knobs(bwd_dq="atomic"):
        assert _runtime.knobs().bwd_dq == "atomic"
        raise RuntimeError
    assert _runtime.knobs() is before


@interp
@pytest.mark.parametrize("causal", [False, True])
def test_backward_tma_loads_against_the_default_pointer_loads(monkeypatch, launches, causal):
    """``attention_bwd/tma_loads`` (``Knobs.bwd_tma=True`` around the backward) against the default's
    pointer loads, both through the interpreter with the path forced to "sm90" (on the CPU path both would
    be pointer loads), and both against the reference."""
    assert _runtime.knobs().bwd_tma is False  # the default's choice, the variant's baseline
    for module in ("flash_fwd", "flash_bwd"):
        monkeypatch.setattr(f"attn_triton.{module}.path_for", lambda device: "sm90")
    kernels = launches("flash_bwd", "_bwd_dkdv"), launches("flash_bwd", "_bwd_dq")
    g = torch.Generator().manual_seed(3)
    q, k, v = (torch.randn(1, 70, 2, 32, generator=g) for _ in range(3))
    dout = torch.randn(1, 70, 2, 32, generator=g)
    grads, tma = [], []
    for fn in (bench._fwd, bench.backend()["ablations"]["attention_bwd"]["tma_loads"]):
        leaves = [t.clone().requires_grad_(True) for t in (q, k, v)]
        out = fn(*leaves, causal=causal, softmax_scale=0.2)
        grads.append((out.detach(), *torch.autograd.grad(out, leaves, dout)))
        # "auto" on Hopper at head dim 32: dQ in its own kernel, which streams K/V by TMA too
        tma.append([seen.pop()["USE_TMA"] for seen in kernels])
        assert not any(kernels), "one launch of each kernel per backward"
        names = ("out", "dq", "dk", "dv")
        assert_matches_reference(dict(zip(names, grads[-1])), q, k, v, dout, causal=causal, softmax_scale=0.2)
    assert tma == [[False, False], [True, True]]
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    assert _runtime.knobs().bwd_tma is False  # switched back after the variant's backward
