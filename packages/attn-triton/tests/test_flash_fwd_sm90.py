"""The Gluon Hopper forward (attn_triton.flash_fwd_sm90): what it accepts, what it compiles to on the CPU,
and, on a Hopper GPU, its results against the reference through the public API."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from attn_reference.testing.tolerance import assert_matches_reference
from attn_triton import _runtime
from attn_triton._runtime import gluon_available, interpreting

needs_gluon = pytest.mark.skipif(not gluon_available(), reason="Gluon needs Triton 3.5 or newer")


def _qkv(b, sq, sk, hq, hk, d, dtype=torch.bfloat16, device="cpu", seed=0):
    g = torch.Generator(device=device).manual_seed(seed)
    return [
        torch.randn(b, s, h, d, generator=g, dtype=dtype, device=device)
        for s, h in ((sq, hq), (sk, hk), (sk, hk))
    ]


@needs_gluon
def test_forcing_the_gluon_kernel_where_it_cannot_run_raises():
    from attn_reference.errors import UnsupportedFeatureError
    from attn_triton.flash_fwd import flash_fwd

    q, k, v = _qkv(1, 40, 40, 2, 2, 64, torch.float16)
    with pytest.raises(UnsupportedFeatureError, match="gluon="):
        flash_fwd(q, k, v, softmax_scale=0.125, left=-1, right=-1, softcap=0.0, gluon={})  # the CPU


@needs_gluon
def test_supports_only_what_the_kernel_computes():
    from attn_triton.flash_fwd_sm90 import CANDIDATES, CONFIGS, config_for, supports

    q, k, v = _qkv(2, 113, 203, 4, 2, 128)
    full = dict(left=-1, right=-1, softcap=0.0, varlen=False)
    assert supports(q, k, v, **full)
    assert supports(q, k, v, **{**full, "right": 0})  # causal, seqlen_q <= seqlen_k
    assert not supports(k, q[:, :113], q[:, :113], **{**full, "right": 0})  # causal with rows that see no key
    assert not supports(q, k, v, **{**full, "left": 8, "right": 0})  # sliding window
    assert not supports(q, k, v, **{**full, "softcap": 5.0})
    assert not supports(q, k, v, **{**full, "varlen": True})
    assert not supports(*(t.float() for t in (q, k, v)), **full)
    assert not supports(*(t[..., :96] for t in (q, k, v)), **full)  # head dim 96 (and the last stride)
    assert not supports(q, k[:, :0], v[:, :0], **full)
    wide = _qkv(1, 64, 64, 2, 2, 256)
    assert supports(*wide, **full)
    assert config_for(256) is None  # a candidate head dim: never dispatched to
    assert config_for(256, {}) == CANDIDATES[256] and config_for(128) == CONFIGS[128]
    assert config_for(128, {"pingpong": True}).pingpong and config_for(96, {}) is None


_SM90_COMPILE = """
import json, triton
from triton.backends.compiler import GPUTarget
from triton.experimental.gluon._runtime import GluonASTSource
from attn_reference.testing.ptxas import summarise_compiled
from attn_triton import flash_fwd_sm90 as m

fn, results = m._fwd_kernel, {}
for d, causal, dt in ((128, False, "bf16"), (64, True, "fp16"), (256, True, "bf16")):
    c = {**m.CONFIGS, **m.CANDIDATES}[d]
    consts = dict(HEAD_DIM=d, BLOCK_N=c.block_n, NUM_CONSUMERS=c.consumers, STAGES=c.stages, CAUSAL=causal,
                  PINGPONG=c.pingpong)
    sig = {n: "constexpr" if n in consts else "*" + dt if n in "QKVO" else "*fp32" if n == "LSE"
           else "fp32" if n == "qk_scale2" else "i32" for n in fn.arg_names}
    src = GluonASTSource(fn=fn, signature=sig, constexprs={(fn.arg_names.index(k),): v for k, v in consts.items()})
    kernel = triton.compile(src, target=GPUTarget("cuda", 90, 32), options=dict(num_warps=4))
    results[f"{d}-{causal}"] = summarise_compiled(kernel)
print(json.dumps(results))
"""


@needs_gluon
def test_kernel_compiles_for_sm90_to_the_overlapped_schedule(tmp_path):
    """Compiled for sm_90a on the CPU (the default configs and the head-dim-256 candidate): TMA loads and
    store, twelve warps (two consumer warpgroups and the
    producer's), the K/V ring within 227 KB, a ``wgmma.wait_group 1`` (S_j retired while P_{j-1} V_{j-1}
    still runs: the overlap) and, where ptxas is at hand, no register spills and no wgmma that ptxas serialised. About 10 s."""
    from attn_reference.testing.ptxas import assert_overlapped_hopper_kernel, compile_in_subprocess

    for name, got in compile_in_subprocess(_SM90_COMPILE).items():
        assert got["tma_loads"] >= 3 and got["tma_stores"] >= 1, name
        assert_overlapped_hopper_kernel(name, got, tmp_path)


# --- Hopper ------------------------------------------------------------------------------------------------

gpu_tier = pytest.mark.skipif(interpreting(), reason="GPU tier: run without TRITON_INTERPRET")


def _assert_matches_reference(out, lse, q, k, v, causal):
    """out and lse under the project's tolerance rule, as the conformance suite checks them."""
    assert_matches_reference({"out": out, "lse": lse}, q, k, v, causal=causal)


CASES = [  # (b, sq, sk, hq, hk, d, causal)
    (2, 113, 203, 4, 2, 128, False),
    (2, 113, 203, 4, 2, 128, True),
    (1, 203, 203, 3, 3, 64, True),
    (3, 77, 1000, 8, 1, 64, False),
    (2, 1, 300, 4, 4, 128, True),
    (1, 300, 300, 2, 1, 128, True),
    (1, 1000, 3000, 2, 2, 64, True),
]


@pytest.mark.sm90
@gpu_tier
@needs_gluon
@pytest.mark.parametrize("causal", [False, True])
def test_head_dim_256_candidate_matches_the_reference(causal):
    """The candidate config at head dim 256, forced (the dispatch does not take it yet)."""
    from attn_triton.flash_fwd import flash_fwd

    q, k, v = _qkv(2, 203, 331, 4, 2, 256, torch.bfloat16, device="cuda", seed=5)
    right = 0 if causal else -1
    out, lse = flash_fwd(q, k, v, softmax_scale=256**-0.5, left=-1, right=right, softcap=0.0, gluon={})
    _assert_matches_reference(out, lse, q, k, v, causal)


@pytest.mark.sm90
@gpu_tier
@needs_gluon
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
@pytest.mark.parametrize("case", CASES, ids=str)
def test_gluon_forward_matches_the_reference(monkeypatch, case, dtype):
    import attn_triton
    from attn_triton import flash_fwd_sm90

    monkeypatch.setattr(_runtime, "_KNOBS", [dataclasses.replace(_runtime.knobs(), fwd_gluon=True)])
    calls = []
    launch = flash_fwd_sm90.flash_fwd_sm90
    monkeypatch.setattr(
        flash_fwd_sm90, "flash_fwd_sm90", lambda *a, **kw: calls.append(1) or launch(*a, **kw)
    )
    b, sq, sk, hq, hk, d, causal = case
    q, k, v = _qkv(b, sq, sk, hq, hk, d, dtype, device="cuda", seed=sq)
    out, lse = attn_triton.flash_attn_func(q, k, v, causal=causal, return_lse=True)
    assert calls, "the call did not take the Gluon kernel"
    _assert_matches_reference(out, lse, q, k, v, causal)
