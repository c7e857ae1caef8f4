"""What the conformance suite does not cover: the Hopper (TMA) code path run through the interpreter,
split-KV decoding with several splits, page-sized decode tiles, the v1 profile, both causal launch
orders, torch.compile, the CPU-device rule, and the bench registration."""

from __future__ import annotations

import dataclasses

import pytest
import torch

import attn_triton
from attn_reference import attention_naive
from attn_reference.errors import AttentionArgumentError
from attn_reference.interface import gather_kvcache
from attn_triton import _runtime
from attn_triton._runtime import interpreting
from attn_triton.flash_bwd import flash_bwd, separate_dq
from attn_triton.flash_decode import choose_num_splits, flash_decode
from attn_triton.flash_fwd import flash_fwd

interp = pytest.mark.skipif(not interpreting(), reason="needs TRITON_INTERPRET=1")


def _qkv(b, sq, sk, hq, hk, d, dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(b, s, h, d, generator=g, dtype=dtype) for s, h in ((sq, hq), (sk, hk), (sk, hk))]


@interp
@pytest.mark.parametrize(
    ("d", "window", "dtype"), [(32, (-1, 0), torch.float32), (64, (9, 4), torch.float16)]
)
def test_tma_path_forward_under_interpreter(d, window, dtype):
    q, k, v = _qkv(2, 37, 45, 4, 2, d, dtype)
    out, lse = flash_fwd(
        q, k, v, softmax_scale=d**-0.5, left=window[0], right=window[1], softcap=0.0, force_path="sm90"
    )
    ref, ref_lse = attention_naive(q.float(), k.float(), v.float(), window_size=window, return_lse=True)
    torch.testing.assert_close(out.float(), ref, atol=2e-3, rtol=2e-3)
    torch.testing.assert_close(lse, ref_lse, atol=1e-4, rtol=1e-4)


@interp
def test_atomic_and_deterministic_backward_agree():
    q, k, v = _qkv(1, 33, 50, 2, 1, 32)
    kw = dict(softmax_scale=0.2, left=-1, right=0, softcap=3.0)
    out, lse = flash_fwd(q, k, v, **kw)
    do = torch.randn_like(out)
    a = flash_bwd(do, q, k, v, out, lse, deterministic=False, **kw)
    b = flash_bwd(do, q, k, v, out, lse, deterministic=True, **kw)
    for x, y in zip(a, b):
        torch.testing.assert_close(x, y, atol=1e-5, rtol=1e-5)


@pytest.fixture
def profile():
    """Switch attn_triton's performance knobs for one test, restoring them afterwards."""
    old = _runtime.knobs()
    yield _runtime.set_profile
    _runtime.set_profile(old)


@interp
def test_tma_path_backward_under_interpreter(profile):
    # dK/dV and dQ kernels with TMA loads (the atomic dQ store does not touch TMA; the conformance
    # suite covers it on the pointer path).
    profile(_runtime.Knobs(bwd_dq="separate"))
    q, k, v = _qkv(1, 41, 50, 4, 2, 32)
    kw = dict(softmax_scale=0.25, left=-1, right=0, softcap=0.0)
    out, lse = flash_fwd(q, k, v, force_path="sm90", **kw)
    do = torch.randn(out.shape, generator=torch.Generator().manual_seed(3))
    grads = flash_bwd(do, q, k, v, out, lse, force_path="sm90", **kw)
    leaves = [t.clone().requires_grad_() for t in (q, k, v)]
    ref = attention_naive(*leaves, softmax_scale=0.25, causal=True)
    for g, r in zip(grads, torch.autograd.grad(ref, leaves, do)):
        torch.testing.assert_close(g, r, atol=2e-4, rtol=2e-4)


@interp
@pytest.mark.parametrize("name", ["v1", "v1b", "v1c", "v1d", "v2"])
def test_profile_forward_backward(profile, name):
    """Every performance profile (v1c the default, v2 the newer choices) computes the right thing."""
    profile(name)
    q, k, v = _qkv(1, 21, 21, 2, 1, 32, seed=4)
    q.requires_grad_()
    out = attn_triton.flash_attn_func(q, k, v, causal=True, softcap=5.0)
    (dq,) = torch.autograd.grad(out.sum(), q)
    leaf = q.detach().clone().requires_grad_()
    ref = attention_naive(leaf, k, v, causal=True, softcap=5.0)
    (rdq,) = torch.autograd.grad(ref.sum(), leaf)
    torch.testing.assert_close(out, ref, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(dq, rdq, atol=2e-4, rtol=2e-4)


@interp
@pytest.mark.parametrize("heavy_first", [False, True])
@pytest.mark.parametrize("varlen", [False, True])
def test_causal_launch_orders(profile, heavy_first, varlen):
    """Both causal launch orders (``Knobs.fwd_heavy_first``: per head, the default, or the longest program
    of every head first) against the reference: several query blocks, batch, GQA, bottom-right causal."""
    assert _runtime.PROFILES[_runtime.DEFAULT_PROFILE].fwd_heavy_first is False
    profile(dataclasses.replace(_runtime.knobs(), fwd_heavy_first=heavy_first))
    lens_q, lens_k = [70, 33], [90, 33]  # three and two query blocks of 32 (INTERPRET_BLOCKS)
    q, k, v = _qkv(2, 70, 90, 4, 2, 32, seed=6)
    kw = dict(softmax_scale=0.3, left=-1, right=0, softcap=0.0)
    if varlen:
        cu_q, cu_k = (torch.tensor([0, n[0], sum(n)], dtype=torch.int32) for n in (lens_q, lens_k))
        packed = [
            torch.cat([t[i, :n] for i, n in enumerate(ns)])
            for t, ns in zip((q, k, v), (lens_q, lens_k, lens_k))
        ]
        out, lse = flash_fwd(
            *packed, cu_seqlens_q=cu_q, cu_seqlens_k=cu_k, max_seqlen_q=70, max_seqlen_k=90, **kw
        )
        for i in range(2):
            sq, sk = slice(cu_q[i], cu_q[i + 1]), slice(cu_k[i], cu_k[i + 1])
            ref, ref_lse = attention_naive(
                *(t[None] for t in (packed[0][sq], packed[1][sk], packed[2][sk])),
                softmax_scale=0.3, causal=True, return_lse=True,
            )  # fmt: skip
            torch.testing.assert_close(out[sq][None], ref, atol=1e-4, rtol=1e-4)
            torch.testing.assert_close(lse[:, sq][None], ref_lse, atol=1e-4, rtol=1e-4)
    else:
        out, lse = flash_fwd(q, k, v, **kw)
        ref, ref_lse = attention_naive(q, k, v, softmax_scale=0.3, causal=True, return_lse=True)
        torch.testing.assert_close(out, ref, atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(lse, ref_lse, atol=1e-4, rtol=1e-4)


def test_separate_dq_choice():
    assert separate_dq("sm90", 64, "auto") and not separate_dq("sm90", 128, "auto")
    assert separate_dq("sm90", 128, "auto", unmasked=True) and not separate_dq("sm80", 128, "auto", True)
    assert separate_dq("sm90", 256, "auto") and not separate_dq("sm80", 256, "auto")
    assert not separate_dq("sm80", 64, "auto")
    assert separate_dq("sm80", 256, "separate") and not separate_dq("sm90", 32, "atomic")


def _paged_decode(seed, page, d, num_splits, *, poison_spare, config=None):
    """Causal decoding of two query tokens per sequence (one sequence empty) from K/V pools in shuffled
    pages, plus one spare page. ``poison_spare``: the spare is NaN and the block table's unused entries
    point at it, so a read past a sequence's pages shows; otherwise they point at page 0.

    Returns flash_decode's ``out`` and ``lse``, and ``attention_naive``'s (out, lse) of each sequence.
    """
    b, hq, hk = 3, 4, 2
    lens = [100, 0, 37]
    g = torch.Generator().manual_seed(seed)
    pages = [-(-n // page) for n in lens]
    k_cache = torch.randn(sum(pages) + 1, page, hk, d, generator=g)
    v_cache = torch.randn(sum(pages) + 1, page, hk, d, generator=g)
    if poison_spare:
        k_cache[-1] = float("nan")
        v_cache[-1] = float("nan")
    table = torch.full((b, max(pages)), sum(pages) if poison_spare else 0, dtype=torch.int32)
    perm = torch.randperm(sum(pages), generator=g)
    used = 0
    for i, n in enumerate(pages):
        table[i, :n] = perm[used : used + n].to(torch.int32)
        used += n
    q = torch.randn(b, 2, hq, d, generator=g)
    out, lse = flash_decode(
        q,
        k_cache,
        v_cache,
        torch.tensor(lens, dtype=torch.int32),
        table,
        softmax_scale=0.3,
        left=-1,
        right=0,
        softcap=0.0,
        max_cache_len=max(lens),
        num_splits=num_splits,
        config=config,
    )
    refs = []
    for i, n in enumerate(lens):
        kk, vv = (gather_kvcache(cache, table, i, n)[None] for cache in (k_cache, v_cache))
        refs.append(attention_naive(q[i : i + 1], kk, vv, softmax_scale=0.3, causal=True, return_lse=True))
    return out, lse, refs


@interp
@pytest.mark.parametrize(("page", "block_n", "num_splits", "d"), [(16, 16, 1, 32), (32, 16, 3, 24)])
def test_paged_decode_page_tiles(page, block_n, num_splits, d):
    """Key tiles inside a page (one block-table read per tile), with a poisoned spare page."""
    out, _, refs = _paged_decode(5, page, d, num_splits, poison_spare=True, config={"BLOCK_N": block_n})
    for i, (ref, _) in enumerate(refs):
        torch.testing.assert_close(out[i : i + 1], torch.nan_to_num(ref), atol=1e-4, rtol=1e-4)


@interp
@pytest.mark.parametrize("num_splits", [1, 3])
def test_split_kv_decode(num_splits):
    out, lse, refs = _paged_decode(1, 16, 32, num_splits, poison_spare=False)
    for i, (ref, ref_lse) in enumerate(refs):
        torch.testing.assert_close(out[i : i + 1], torch.nan_to_num(ref), atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(lse[i : i + 1], ref_lse, atol=1e-4, rtol=1e-4)


def test_num_splits_heuristic():
    assert choose_num_splits(programs=512, sms=132, key_blocks=32) == 1  # already a full wave
    assert choose_num_splits(programs=8, sms=132, key_blocks=64) > 4  # few programs, long cache: split
    assert choose_num_splits(programs=8, sms=132, key_blocks=1) == 1


@interp
def test_torch_compile_fullgraph():
    q, k, v = _qkv(1, 17, 17, 2, 2, 32)
    q.requires_grad_()

    def f(q, k, v):
        return attn_triton.flash_attn_func(q, k, v, causal=True).sum()

    compiled = torch.compile(f, fullgraph=True, backend="aot_eager")
    loss = compiled(q, k, v)
    loss.backward()
    ref = attention_naive(q.detach(), k, v, causal=True).sum()
    torch.testing.assert_close(loss, ref, atol=1e-4, rtol=1e-4)
    assert q.grad is not None and torch.isfinite(q.grad).all()


def test_cpu_tensors_need_the_interpreter(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    q, k, v = _qkv(1, 4, 4, 1, 1, 32)
    with pytest.raises(AttentionArgumentError, match="cpu"):
        attn_triton.flash_attn_func(q, k, v)


def test_bench_registration():
    from attn_triton.bench import backend

    desc = backend()
    assert desc["name"] == "triton"
    assert {"attention_fwd", "attention_bwd", "decode_kvcache", "matmul"} <= set(desc["ops"])
    assert desc["supports"]("attention_fwd", "default", {"head_dim": 80}, "cuda")
    assert desc["supports"]("attention_fwd", "default", {"head_dim": 128}, "cuda") is None


def test_tma_allocator_is_installed_on_the_calling_thread():
    # Triton keeps the allocator hook in a context variable and autograd runs the backward on its own
    # thread: each launch path must install it where it runs (a Hopper run failed the backward without it).
    import threading

    from triton.runtime import _allocation

    from attn_triton import _runtime

    seen = []
    _runtime.ensure_allocator("sm90")  # as the forward does, on the caller's thread

    def worker():  # as autograd's backward thread does
        _runtime.ensure_allocator("sm90")
        seen.append(_allocation._allocator.get())

    thread = threading.Thread(target=worker)
    thread.start()
    thread.join()
    assert seen == [_runtime._scratch]
