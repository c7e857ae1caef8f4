"""attn-bench's ablation variant ``attention_bwd/atomic_dq``: the default call, its backward's dQ by atomics."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from attn_triton import _runtime, bench, interface
from attn_triton._runtime import interpreting

interp = pytest.mark.skipif(not interpreting(), reason="needs TRITON_INTERPRET=1")


def test_ablation_table():
    desc = bench.backend()
    assert desc["ablations"] == {"attention_bwd": {"atomic_dq": bench._atomic_dq}}
    assert set(desc["ops"]["attention_bwd"]) == {"default", "deterministic"}


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
