"""What the conformance suite does not cover: the Hopper (TMA) code path run through the interpreter (dense
and varlen), split-KV decoding with several splits, page-sized decode tiles, the performance profiles,
both causal launch orders, torch.compile, the CPU-device rule, and the bench registration."""

from __future__ import annotations

import dataclasses
import re

import pytest
import torch

import attn_triton
from attn_reference.errors import AttentionArgumentError
from attn_reference.interface import gather_kvcache
from attn_reference.testing.inputs import kvcache_inputs, varlen_inputs
from attn_reference.testing.tolerance import assert_matches_reference
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
def test_tma_path_forward_under_interpreter(launches, d, window, dtype):
    seen = launches("flash_fwd", "_fwd_kernel")
    q, k, v = _qkv(2, 37, 45, 4, 2, d, dtype)
    out, lse = flash_fwd(
        q, k, v, softmax_scale=d**-0.5, left=window[0], right=window[1], softcap=0.0, force_path="sm90"
    )
    assert [launch["USE_TMA"] for launch in seen] == [True]
    assert_matches_reference(dict(out=out, lse=lse), q, k, v, window_size=window)


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
    # agreeing is not enough: both must be the reference's gradients
    for grads in (a, b):
        got = dict(zip(("dq", "dk", "dv"), grads))
        assert_matches_reference(got, q, k, v, do, softmax_scale=0.2, causal=True, softcap=3.0)


@interp
def test_tma_path_backward_under_interpreter(profile, launches):
    # dK/dV and dQ kernels with TMA loads (the atomic dQ store does not touch TMA; the conformance
    # suite covers it on the pointer path, the varlen test below beside TMA loads).
    profile(_runtime.Knobs(bwd_dq="separate"))
    bwd = launches("flash_bwd", "_bwd_dkdv"), launches("flash_bwd", "_bwd_dq")
    q, k, v = _qkv(1, 41, 50, 4, 2, 32)
    kw = dict(softmax_scale=0.25, left=-1, right=0, softcap=0.0)
    out, lse = flash_fwd(q, k, v, force_path="sm90", **kw)
    do = torch.randn(out.shape, generator=torch.Generator().manual_seed(3))
    dq, dk, dv = flash_bwd(do, q, k, v, out, lse, force_path="sm90", **kw)
    assert [launch["USE_TMA"] for seen in bwd for launch in seen] == [True, True]
    assert_matches_reference(dict(dq=dq, dk=dk, dv=dv), q, k, v, do, softmax_scale=0.25, causal=True)


def _nan_packed(x: torch.Tensor, extra_rows: int = 5) -> torch.Tensor:
    """Packed ``x`` (total, heads, d) as a view into a NaN buffer with more rows and one more head, so that
    a read past the last sequence's end or into a neighbouring head shows up as NaN."""
    total, heads, d = x.shape
    buf = torch.full((total + extra_rows, heads + 1, d), float("nan"), dtype=x.dtype)
    buf[:total, :heads] = x
    return buf[:total, :heads]


@interp
@pytest.mark.parametrize(
    ("window", "softcap", "bwd_dq"),
    [((-1, 0), 0.0, "auto"), ((9, 4), 3.0, "atomic")],
    ids=["causal", "window_softcap"],
)
def test_tma_path_varlen_under_interpreter(profile, launches, window, softcap, bwd_dq):
    """Packed sequences through the TMA path: every descriptor covers one (sequence, head) slice, so tiles
    past a sequence's end must read zeros, not the next sequence. NaN-padded inputs, a sequence without
    queries, rows without keys; forward and backward, dQ by the separate kernel ("auto" on Hopper at head
    dim 32) and by atomics from the dK/dV kernel."""
    profile(dataclasses.replace(_runtime.knobs(), bwd_tma=True, bwd_dq=bwd_dq))
    kernels = [launches(*m) for m in (("flash_fwd", "_fwd_kernel"), ("flash_bwd", "_bwd_dkdv"))]
    dq_kernel = launches("flash_bwd", "_bwd_dq")
    x = varlen_inputs([37, 0, 65, 20], [50, 12, 65, 7], 4, 2, 32, dtype=torch.float32, seed=7)
    q, k, v = (_nan_packed(t) for t in (x.q, x.k, x.v))
    kw = dict(softmax_scale=0.3, left=window[0], right=window[1], softcap=softcap)
    lens = dict(
        cu_seqlens_q=x.cu_seqlens_q,
        cu_seqlens_k=x.cu_seqlens_k,
        max_seqlen_q=x.max_seqlen_q,
        max_seqlen_k=x.max_seqlen_k,
    )
    out, lse = flash_fwd(q, k, v, force_path="sm90", **kw, **lens)
    dout = torch.randn(out.shape, generator=torch.Generator().manual_seed(8))
    dq, dk, dv = flash_bwd(dout, q, k, v, out, lse, force_path="sm90", **kw, **lens)
    assert [launch["USE_TMA"] for seen in kernels for launch in seen] == [True, True]
    assert [launch["USE_TMA"] for launch in dq_kernel] == ([True] if bwd_dq == "auto" else [])
    assert_matches_reference(
        dict(out=out, lse=lse, dq=dq, dk=dk, dv=dv),
        q,
        k,
        v,
        dout,
        cu_seqlens=(x.cu_seqlens_q, x.cu_seqlens_k),
        softmax_scale=0.3,
        window_size=window,
        softcap=softcap,
    )


def _force_sm90(monkeypatch):
    """Send the public API's calls down the Hopper path (TMA loads, Hopper's dQ choice), run by the
    interpreter: from the device alone, CPU tensors always take the "interpret" path."""
    for module in ("flash_fwd", "flash_bwd"):
        monkeypatch.setattr(f"attn_triton.{module}.path_for", lambda device: "sm90")


@interp
@pytest.mark.parametrize("softcap", [0.0, 5.0])
@pytest.mark.parametrize("name", ["v1", "v1b", "v1c", "v1d", "v2"])
def test_profile_forward_backward(profile, monkeypatch, launches, name, softcap):
    """Every performance profile (v1d the default, v2 the newer choices) computes the right thing, and the
    knobs that change what the interpreter runs reach the kernels: ``fwd_fold_scale`` (without softcap:
    softcap forces unfolded scores), ``fwd_heavy_first``, ``bwd_tma``, ``bwd_lse2`` and ``bwd_dq``. The
    path is forced to "sm90" so that ``bwd_tma`` and ``bwd_dq="auto"`` (v1b's change) take effect; 113
    causal rows are four query blocks of 32, the last three with an unmasked middle span of keys, the hot
    loop's own code (21 rows were one masked block).

    Not exercised here: ``fwd_gluon`` (the Gluon kernel takes CUDA tensors only, so v1d runs v1c's kernels
    on the CPU; test_flash_fwd_sm90 covers it on Hopper), the autotune lists ``fwd_configs`` /
    ``bwd_configs`` / ``decode_configs`` (the interpreter runs fixed tiles), and ``decode_page_tile``
    (test_paged_decode_page_tiles)."""
    profile(name)
    kn = _runtime.knobs()
    _force_sm90(monkeypatch)
    fwd, dkdv, dq_kernel = (
        launches(*m)
        for m in (("flash_fwd", "_fwd_kernel"), ("flash_bwd", "_bwd_dkdv"), ("flash_bwd", "_bwd_dq"))
    )
    q, k, v = (t.requires_grad_() for t in _qkv(1, 113, 113, 2, 1, 32, seed=4))
    dout = torch.randn(q.shape, generator=torch.Generator().manual_seed(5))
    out, lse = attn_triton.flash_attn_func(q, k, v, causal=True, softcap=softcap, return_lse=True)
    dq, dk, dv = torch.autograd.grad(out, (q, k, v), dout)
    assert_matches_reference(
        dict(out=out, lse=lse, dq=dq, dk=dk, dv=dv), q, k, v, dout, causal=True, softcap=softcap
    )
    ((f,), (b,)) = fwd, dkdv
    assert f["USE_TMA"] and f["FOLD_SCALE"] == (kn.fwd_fold_scale and softcap == 0)
    assert f["HEAVY_FIRST"] == kn.fwd_heavy_first
    assert b["USE_TMA"] == kn.bwd_tma and b["LSE_LOG2"] == kn.bwd_lse2
    separate = kn.bwd_dq != "atomic"  # "auto": the separate kernel on Hopper at head dim 32
    assert b["ATOMIC_DQ"] is not separate and len(dq_kernel) == separate


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
        got = dict(out=out, lse=lse)
        assert_matches_reference(got, *packed, cu_seqlens=(cu_q, cu_k), softmax_scale=0.3, causal=True)
    else:
        out, lse = flash_fwd(q, k, v, **kw)
        assert_matches_reference(dict(out=out, lse=lse), q, k, v, softmax_scale=0.3, causal=True)


def test_separate_dq_choice():
    assert separate_dq("sm90", 64, "auto") and not separate_dq("sm90", 128, "auto")
    assert separate_dq("sm90", 128, "auto", unmasked=True) and not separate_dq("sm80", 128, "auto", True)
    assert separate_dq("sm90", 256, "auto") and not separate_dq("sm80", 256, "auto")
    assert not separate_dq("sm80", 64, "auto")
    assert separate_dq("sm80", 256, "separate") and not separate_dq("sm90", 32, "atomic")


def _paged_decode(seed, page, d, num_splits, *, poison_spare, config=None):
    """Causal decoding of two query tokens per sequence (one sequence empty) from K/V pools in shuffled
    pages, plus one spare page, checked against attention_naive under the tolerance rule, out and lse. ``poison_spare``: the spare is NaN and the block
    table's unused entries point at it, so a read past a sequence's pages shows; otherwise they point at
    page 0. Lengths over 256: a split is a whole number of 128-key chunks (flash_decode), so with shorter
    caches any num_splits collapses to one and the combine kernel never runs.
    """
    b, hq, hk = 3, 4, 2
    lens = [300, 0, 137]
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
    for i, n in enumerate(lens):
        kk, vv = (gather_kvcache(cache, table, i, n)[None] for cache in (k_cache, v_cache))
        got = dict(out=out[i : i + 1], lse=lse[i : i + 1])
        assert_matches_reference(got, q[i : i + 1], kk, vv, softmax_scale=0.3, causal=True)


def _decode_launches(launches):
    return launches("flash_decode", "_decode_kernel"), launches("flash_decode", "_combine_kernel")


@interp
@pytest.mark.parametrize(("page", "block_n", "num_splits", "d"), [(16, 16, 1, 32), (32, 16, 3, 24)])
def test_paged_decode_page_tiles(profile, launches, page, block_n, num_splits, d):
    """Key tiles inside a page (``Knobs.decode_page_tile``: one block-table read per tile; off in the
    default profile, so turned on here), with a poisoned spare page, one split and three."""
    profile(dataclasses.replace(_runtime.knobs(), decode_page_tile=True))
    decode, combine = _decode_launches(launches)
    _paged_decode(5, page, d, num_splits, poison_spare=True, config={"BLOCK_N": block_n})
    (launch,) = decode
    # the kernel takes the page-tile loads when PAGE_SIZE > 0 and BLOCK_N divides it
    assert launch["PAGE_SIZE"] == page and page % launch["BLOCK_N"] == 0
    assert launch["grid"][0] == num_splits and len(combine) == (num_splits > 1)


@interp
@pytest.mark.parametrize(("num_splits", "splits"), [(1, 1), (3, 3), (0, 2)])
def test_split_kv_decode(profile, launches, num_splits, splits):
    """Split-KV decoding on the general paged path (one table read per key row), merged by the combine
    kernel: one split, three asked for, and 0, the occupancy heuristic's choice (two here: 6 programs
    against a nominal 132 SMs, 300 keys). The empty sequence and the 137-key one, whose third split is
    empty, check the combine's handling of splits with no keys."""
    profile(dataclasses.replace(_runtime.knobs(), decode_page_tile=False))
    decode, combine = _decode_launches(launches)
    _paged_decode(1, 16, 32, num_splits, poison_spare=False)
    (launch,) = decode
    assert launch["PAGE_SIZE"] == 0 and launch["SPLIT"] == (splits > 1) and launch["grid"][0] == splits
    assert len(combine) == (splits > 1)


def test_num_splits_heuristic():
    assert choose_num_splits(programs=512, sms=132, key_blocks=32) == 1  # already a full wave
    assert choose_num_splits(programs=8, sms=132, key_blocks=64) > 4  # few programs, long cache: split
    assert choose_num_splits(programs=8, sms=132, key_blocks=1) == 1


@pytest.mark.parametrize("num_splits", [-1, 1.5, True, "2"])
def test_bad_num_splits_raises(num_splits):
    x = kvcache_inputs(1, [20], 2, 1, 32, dtype=torch.float32)
    allowed = re.escape(f"num_splits must be an int >= 0 (0: chosen by occupancy), got {num_splits!r}")
    with pytest.raises(AttentionArgumentError, match=f"flash_attn_with_kvcache: {allowed}"):
        attn_triton.flash_attn_with_kvcache(
            x.q, x.k_cache, x.v_cache, cache_seqlens=x.cache_seqlens, num_splits=num_splits
        )


@interp
def test_torch_compile_fullgraph():
    """flash_attn_func traced whole (the custom ops' fake implementations), forward and backward."""
    q, k, v = (t.requires_grad_() for t in _qkv(1, 33, 40, 4, 2, 32, seed=9))
    dout = torch.randn(q.shape, generator=torch.Generator().manual_seed(10))

    def f(q, k, v):
        return attn_triton.flash_attn_func(q, k, v, causal=True, return_lse=True)

    out, lse = torch.compile(f, fullgraph=True, backend="aot_eager")(q, k, v)
    dq, dk, dv = torch.autograd.grad(out, (q, k, v), dout)
    assert_matches_reference(dict(out=out, lse=lse, dq=dq, dk=dk, dv=dv), q, k, v, dout, causal=True)


@interp
def test_torch_compile_varlen_and_kvcache_break_the_graph():
    """The varlen and kvcache entry points validate cu_seqlens / cache_seqlens on the host
    (attn_reference.validation), which is data-dependent control flow: fullgraph=True refuses them, as the
    README and interface.py say. Compiled with graph breaks they compute the right thing, gradients
    included. (If the validation becomes traceable, the pytest.raises below fails: update those docs.)"""
    x = varlen_inputs([17, 0, 30], [25, 9, 30], 4, 2, 32, dtype=torch.float32, seed=11, requires_grad=True)
    dout = torch.randn(x.q.shape, generator=torch.Generator().manual_seed(12))

    def varlen(*args):
        return attn_triton.flash_attn_varlen_func(*args, causal=True, return_lse=True)

    kv = kvcache_inputs(2, [40, 23], 4, 2, 32, page_size=16, dtype=torch.float32, seed=13)

    def decode(q, k_cache, v_cache, lens, table):
        return attn_triton.flash_attn_with_kvcache(
            q, k_cache, v_cache, cache_seqlens=lens, block_table=table, causal=True, return_lse=True
        )

    kv_args = (kv.q, kv.k_cache, kv.v_cache, kv.cache_seqlens, kv.block_table)
    for fn, args in ((varlen, x.args()), (decode, kv_args)):
        torch._dynamo.reset()
        with pytest.raises(torch._dynamo.exc.Unsupported):
            torch.compile(fn, fullgraph=True, backend="aot_eager")(*args)
    torch._dynamo.reset()
    out, lse = torch.compile(varlen, backend="aot_eager")(*x.args())
    dq, dk, dv = torch.autograd.grad(out, (x.q, x.k, x.v), dout)
    got = dict(out=out, lse=lse, dq=dq, dk=dk, dv=dv)
    assert_matches_reference(
        got, x.q, x.k, x.v, dout, cu_seqlens=(x.cu_seqlens_q, x.cu_seqlens_k), causal=True
    )
    out, lse = torch.compile(decode, backend="aot_eager")(*kv_args)
    for i in range(2):
        got = dict(out=out[i : i + 1], lse=lse[i : i + 1])
        assert_matches_reference(got, kv.q[i : i + 1], kv.k[i][None], kv.v[i][None], causal=True)


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
