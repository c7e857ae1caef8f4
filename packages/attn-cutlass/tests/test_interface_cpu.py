"""CPU tier: the API validates before it touches a GPU, and importing it compiles nothing."""

import subprocess
import sys

import pytest
import torch

import attn_cutlass
from attn_reference.errors import AttentionArgumentError, UnsupportedFeatureError


def _qkv(d=64, dtype=torch.bfloat16):
    return [torch.randn(1, 8, 2, d, dtype=dtype) for _ in range(3)]


def test_import_does_not_load_the_dsl():
    code = "import sys, attn_cutlass; assert 'cutlass' not in sys.modules, 'cutlass imported at import'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_unsupported_head_dim_raises_before_device_check():
    with pytest.raises(UnsupportedFeatureError):
        attn_cutlass.flash_attn_func(*_qkv(d=80))


@pytest.mark.parametrize("scale", [0.0, -0.1])
def test_non_positive_scale_is_refused_without_softcap(scale):
    with pytest.raises(UnsupportedFeatureError, match="softmax_scale must be > 0"):
        attn_cutlass.flash_attn_func(*_qkv(), softmax_scale=scale)
    with pytest.raises(AttentionArgumentError, match="CUDA"):  # with softcap it is allowed: on to the device
        attn_cutlass.flash_attn_func(*_qkv(), softmax_scale=scale, softcap=2.0)


@pytest.mark.parametrize("varlen", [False, True], ids=["fixed", "varlen"])
def test_deterministic_is_refused_before_the_device_check(varlen):
    # CPU tensors: a refusal that came after the device check would be the "CUDA" AttentionArgumentError
    if varlen:
        q, k, v = (torch.randn(12, 2, 64, dtype=torch.bfloat16) for _ in range(3))
        cu = torch.tensor([0, 5, 12], dtype=torch.int32)
        call = lambda **kw: attn_cutlass.flash_attn_varlen_func(q, k, v, cu, cu, 7, 7, **kw)
    else:
        call = lambda **kw: attn_cutlass.flash_attn_func(*_qkv(), **kw)
    with pytest.raises(UnsupportedFeatureError, match=r"deterministic=True.*atomics"):
        call(deterministic=True)
    with pytest.raises(AttentionArgumentError, match="CUDA"):  # False is the default and goes on
        call(deterministic=False)


def test_float64_is_refused():
    with pytest.raises(AttentionArgumentError):
        attn_cutlass.flash_attn_func(*_qkv(dtype=torch.float64))


def test_cpu_tensors_are_refused():
    with pytest.raises(AttentionArgumentError, match="CUDA"):
        attn_cutlass.flash_attn_func(*_qkv())


def test_custom_op_and_fake_impl_are_registered():
    op = torch.ops.attn_cutlass.flash_fwd
    q = torch.empty(2, 5, 4, 64, device="meta", dtype=torch.bfloat16)
    out, lse = op(q, q, q, None, None, 5, 0.125, False, -1, -1, 0.0)
    assert out.shape == q.shape and lse.shape == (2, 4, 5) and lse.dtype == torch.float32


def test_requires_grad_tensors_export_to_cute():
    # DLPack refuses tensors that require grad ("BufferError: Can't export tensors that require
    # gradient"): the interface must hand the DSL a detached alias of the same memory.
    from attn_cutlass.interface import _to_cute

    t = torch.randn(2, 8, 2, 64, requires_grad=True)
    view = _to_cute(t)
    assert tuple(view.shape) == tuple(t.shape) and tuple(view.stride) == t.stride()
    # the kernels write outputs through these views: a copy would leave the caller's tensor untouched.
    # (The DSL's runtime pointer has no public integer accessor: its toint() raises NotImplementedError.)
    assert view.iterator._pointer == t.data_ptr()


def _naive_forward(q, k, v, cu_q, cu_k, max_seqlen_q, scale, causal, left, right, softcap):
    from attn_reference.naive import attention_naive

    out, lse = attention_naive(
        q.float(), k.float(), v.float(), softmax_scale=scale, causal=causal, return_lse=True
    )
    return out.to(q.dtype), lse


def test_autograd_wiring_on_requires_grad_inputs(monkeypatch):
    """The interface path end to end on the CPU: the kernels are replaced by the reference (the launch is
    all that is left out), the inputs require grad, and the gradients come back through _backward."""
    from attn_cutlass import interface
    from attn_reference.naive import attention_naive

    calls = {}

    def fake_backward(dout, q, k, v, out, lse, cu_q, cu_k, max_seqlen_k, scale, causal, left, right, sc):
        calls["args"] = (max_seqlen_k, scale, causal, left, right, sc)
        with torch.enable_grad():  # autograd runs backward() with grad mode off
            ins = [t.detach().float().requires_grad_() for t in (q, k, v)]
            ref = attention_naive(*ins, softmax_scale=scale, causal=causal)
            return tuple(g.to(q.dtype) for g in torch.autograd.grad(ref, ins, dout.float()))

    monkeypatch.setattr(interface, "_check_cuda", lambda q, fn: None)
    monkeypatch.setattr(interface, "_forward", _naive_forward)
    monkeypatch.setattr(interface, "_backward", fake_backward)
    q, k, v = (torch.randn(1, 8, 2, 64, dtype=torch.float32).requires_grad_() for _ in range(3))
    q16, k16, v16 = (t.detach().to(torch.bfloat16).requires_grad_() for t in (q, k, v))
    out = attn_cutlass.flash_attn_func(q16, k16, v16, causal=True)
    assert out.requires_grad and out.dtype == torch.bfloat16
    out.float().sum().backward()
    assert calls["args"] == (8, 0.125, True, -1, 0, 0.0)
    ref = attention_naive(q, k, v, causal=True)
    ref.sum().backward()
    for got, want in ((q16.grad, q.grad), (k16.grad, k.grad), (v16.grad, v.grad)):
        torch.testing.assert_close(got.float(), want, atol=5e-2, rtol=5e-2)


def test_backward_head_dim_256_is_refused(monkeypatch):
    from attn_cutlass import interface

    monkeypatch.setattr(interface, "_arch_of", lambda device: "sm90")
    q = torch.randn(1, 8, 2, 256, dtype=torch.bfloat16)
    with pytest.raises(UnsupportedFeatureError, match="head dims"):
        interface._backward(q, q, q, q, q, None, None, None, 8, 0.1, False, -1, -1, 0.0)


def test_backward_needs_hopper(monkeypatch):
    from attn_cutlass import interface

    monkeypatch.setattr(interface, "_arch_of", lambda device: "sm80")
    q = torch.randn(1, 8, 2, 64, dtype=torch.bfloat16)
    with pytest.raises(UnsupportedFeatureError, match="sm90"):
        interface._backward(q, q, q, q, q, None, None, None, 8, 0.1, False, -1, -1, 0.0)


def test_sm80_forward_refuses_head_dim_256(monkeypatch):
    from attn_cutlass import interface

    monkeypatch.setattr(interface, "_arch_of", lambda device: "sm80")
    q = torch.randn(1, 8, 2, 256, dtype=torch.bfloat16)
    with pytest.raises(UnsupportedFeatureError, match="sm80 forward"):
        interface._forward(q, q, q, None, None, 8, 0.1, False, -1, -1, 0.0)


def test_force_arch_env_picks_the_sm80_path(monkeypatch):
    from attn_cutlass import interface

    monkeypatch.setattr(interface.capability, "cuda_capability", lambda device: (9, 0))
    assert interface._arch_of(torch.device("cuda:0")) == "sm90"
    monkeypatch.setenv("ATTN_CUTLASS_FORCE_ARCH", "sm80")
    assert interface._arch_of(torch.device("cuda:0")) == "sm80"
    monkeypatch.setattr(interface.capability, "cuda_capability", lambda device: (7, 5))
    with pytest.raises(UnsupportedFeatureError):
        interface._arch_of(torch.device("cuda:0"))


def test_sm80_kernels_are_the_default_below_and_above_hopper(monkeypatch):
    # They passed the conformance suite on the H200 (forced); Hopper itself keeps its own kernels.
    from attn_cutlass import interface

    capability = interface.capability
    monkeypatch.delenv("ATTN_CUTLASS_FORCE_ARCH", raising=False)
    for cap in ((8, 0), (8, 6), (8, 9), (10, 0)):
        monkeypatch.setattr(capability, "cuda_capability", lambda device=None, cap=cap: cap)
        assert interface._arch_of(torch.device("cuda:0")) == "sm80", cap
    monkeypatch.setattr(capability, "cuda_capability", lambda device=None: (9, 0))
    assert interface._arch_of(torch.device("cuda:0")) == "sm90"


def test_bwd_dq_reduce_switch(monkeypatch):
    from attn_cutlass.interface import bwd_dq_reduce

    monkeypatch.delenv("ATTN_CUTLASS_BWD_DQ", raising=False)
    assert bwd_dq_reduce(64) == "tma"  # hd64's default (measured faster than bulk there, 2026-12-07)
    assert bwd_dq_reduce(128) == "bulk"  # hd128's (1.22x tma's backward on an H100, 2026-12-07)
    monkeypatch.setenv("ATTN_CUTLASS_BWD_DQ", "atomic")
    assert bwd_dq_reduce(64) == "atomic"
    monkeypatch.setenv("ATTN_CUTLASS_BWD_DQ", "bulk")
    assert bwd_dq_reduce(64) == "bulk"
    monkeypatch.setenv("ATTN_CUTLASS_BWD_DQ", "tma")
    assert bwd_dq_reduce(128) == "tma"
    monkeypatch.setenv("ATTN_CUTLASS_BWD_DQ", "vector")
    with pytest.raises(ValueError, match="ATTN_CUTLASS_BWD_DQ"):
        bwd_dq_reduce(64)


@pytest.mark.parametrize("head_dim", [64, 128])
def test_bulk_dq_accumulator_unpermutes_to_rows(head_dim):
    """dq_accum_copy_rows against the kernel's store order written out value by value: consumer thread
    t = 32 w + 4 a + c of warpgroup g puts value v = i + 2 r + 4 j (wgmma's row 16 w + 8 r + a, column
    hd/2 g + 8 j + 2 c + i) at 512 j + 4 t + i + 2 r of its half tile (flash_bwd_sm90.py)."""
    from attn_cutlass.kernels.flash_bwd_sm90 import dq_accum_copy_rows, dq_accum_shape

    batch, heads, seqlen = 2, 3, 113
    shape = dq_accum_shape(batch, heads, seqlen, head_dim)
    m = shape[2]
    rows = torch.randn(batch, m * 64, heads, head_dim)
    g, t, v = torch.meshgrid(torch.arange(2), torch.arange(128), torch.arange(head_dim // 4), indexing="ij")
    w, a, c = t // 32, (t % 32) // 4, t % 4
    i, r, j = v % 2, (v // 2) % 2, v // 4
    row = 16 * w + 8 * r + a
    col = head_dim // 2 * g + 8 * j + 2 * c + i
    pos = 32 * head_dim * g + 512 * j + 4 * t + i + 2 * r
    assert sorted(pos.flatten().tolist()) == list(range(64 * head_dim))  # a permutation of the tile
    tiles = rows.view(batch, m, 64, heads, head_dim).permute(0, 3, 1, 2, 4)  # (b, h, m, row, col)
    acc = torch.zeros(shape)
    acc[..., pos.flatten()] = tiles[..., row.flatten(), col.flatten()]
    out = dq_accum_copy_rows(acc, torch.empty(batch, m * 64, heads, head_dim, dtype=torch.bfloat16), 0.5)
    assert torch.equal(out, (rows * 0.5).to(torch.bfloat16))


def test_bwd_prefetch_switch(monkeypatch):
    from attn_cutlass.interface import bwd_prefetch_stats

    monkeypatch.delenv("ATTN_CUTLASS_BWD_PREFETCH", raising=False)
    assert bwd_prefetch_stats() is False
    monkeypatch.setenv("ATTN_CUTLASS_BWD_PREFETCH", "1")
    assert bwd_prefetch_stats() is True
    monkeypatch.setenv("ATTN_CUTLASS_BWD_PREFETCH", "yes")
    with pytest.raises(ValueError, match="ATTN_CUTLASS_BWD_PREFETCH"):
        bwd_prefetch_stats()


def test_bwd_schedule_switch(monkeypatch):
    from attn_cutlass.interface import bwd_schedule

    monkeypatch.delenv("ATTN_CUTLASS_BWD_SCHEDULE", raising=False)
    assert bwd_schedule() == "overlap"  # the default since its GPU run of 2026-12-06
    monkeypatch.setenv("ATTN_CUTLASS_BWD_SCHEDULE", "serial")
    assert bwd_schedule() == "serial"
    monkeypatch.setenv("ATTN_CUTLASS_BWD_SCHEDULE", "pingpong")
    with pytest.raises(ValueError, match="ATTN_CUTLASS_BWD_SCHEDULE"):
        bwd_schedule()


def test_fwd_unroll_switch(monkeypatch):
    from attn_cutlass.interface import fwd_unroll

    monkeypatch.delenv("ATTN_CUTLASS_FWD_UNROLL", raising=False)
    # The default unrolls bf16 where it was measured faster (head dim 128) and nowhere else.
    assert [fwd_unroll(torch.bfloat16, d) for d in (64, 128, 256)] == [1, 2, 1]
    assert fwd_unroll(torch.float16, 128) == 1  # fp16 keeps the rolled loop
    monkeypatch.setenv("ATTN_CUTLASS_FWD_UNROLL", "2")
    assert [fwd_unroll(torch.bfloat16, d) for d in (64, 128, 256)] == [2, 2, 2]
    assert fwd_unroll(torch.float16, 64) == 1
    monkeypatch.setenv("ATTN_CUTLASS_FWD_UNROLL", "1")
    assert fwd_unroll(torch.bfloat16, 128) == 1
    monkeypatch.setenv("ATTN_CUTLASS_FWD_UNROLL", "4")
    with pytest.raises(ValueError, match="ATTN_CUTLASS_FWD_UNROLL"):
        fwd_unroll(torch.bfloat16, 128)


def test_fwd_store_switch(monkeypatch):
    from attn_cutlass.interface import fwd_tma_store

    monkeypatch.delenv("ATTN_CUTLASS_FWD_STORE", raising=False)
    # TMA by default wherever the build has it: every fixed-length build (hd256 through one tile the two
    # warpgroups take turns at); varlen keeps the register store
    assert fwd_tma_store(False)
    assert not fwd_tma_store(True)
    monkeypatch.setenv("ATTN_CUTLASS_FWD_STORE", "registers")
    assert not fwd_tma_store(False) and not fwd_tma_store(True)
    monkeypatch.setenv("ATTN_CUTLASS_FWD_STORE", "tma")
    assert fwd_tma_store(False) and not fwd_tma_store(True)
    monkeypatch.setenv("ATTN_CUTLASS_FWD_STORE", "smem")
    with pytest.raises(ValueError, match="ATTN_CUTLASS_FWD_STORE"):
        fwd_tma_store(False)


def test_hd64_consumers_switch(monkeypatch):
    from attn_cutlass.interface import fwd_consumer_wgs
    from attn_cutlass.kernels.flash_fwd_sm90 import tile_config

    monkeypatch.delenv("ATTN_CUTLASS_HD64_CONSUMERS", raising=False)
    assert [fwd_consumer_wgs(d) for d in (64, 128, 256)] == [3, 2, 2]  # only head dim 64 has the build
    assert tile_config(64, 3) == (3 * 64, 128, 2)
    monkeypatch.setenv("ATTN_CUTLASS_HD64_CONSUMERS", "2")
    assert [fwd_consumer_wgs(d) for d in (64, 128, 256)] == [2, 2, 2]
    monkeypatch.setenv("ATTN_CUTLASS_HD64_CONSUMERS", "4")
    with pytest.raises(ValueError, match="ATTN_CUTLASS_HD64_CONSUMERS"):
        fwd_consumer_wgs(64)


def test_compile_cache_builds_each_key_once_and_kernels_take_the_mask_flags(monkeypatch):
    """``interface._compiled`` (what every launch goes through): one ``cute.compile`` per key, from the
    kernel object ``make_kernel`` builds with ``_mask_flags``, also when threads ask at the same time."""
    import threading

    import cutlass.cute as cute
    from cutlass import BFloat16

    from attn_cutlass import interface
    from attn_cutlass.kernels.flash_bwd_sm90 import FlashAttentionBackwardSm90
    from attn_cutlass.kernels.flash_fwd_sm80 import FlashAttentionForwardSm80
    from attn_cutlass.kernels.flash_fwd_sm90 import FlashAttentionForwardSm90

    compiled = []
    monkeypatch.setattr(
        cute, "compile", lambda kernel, *args: compiled.append((kernel, args)) or len(compiled)
    )
    monkeypatch.setattr(interface, "_cache", {})
    flags = interface._mask_flags(True, -1, 0, 30.0, False)
    assert flags == dict(
        causal=True, has_left_window=False, has_right_window=True, has_softcap=True, varlen=False
    )
    kernels = [
        FlashAttentionForwardSm90(BFloat16, 128, **flags),
        FlashAttentionForwardSm80(BFloat16, 64, **flags),
        FlashAttentionBackwardSm90(BFloat16, 128, **flags, dq_reduce="tma"),
    ]
    assert all(k.has_right and k.has_softcap and not k.has_left for k in kernels)
    results = []
    threads = [
        threading.Thread(target=lambda: results.append(interface._compiled(("k",), lambda: kernels[0], 1, 2)))
        for _ in range(8)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [1] * 8 and compiled == [(kernels[0], (1, 2))]
    assert interface._compiled(("other",), lambda: kernels[1], 3) == 2


def _mat(m, n, dtype=torch.bfloat16):
    return torch.randn(m, n).to(dtype)


@pytest.mark.parametrize(
    "a, b, match",
    [
        (_mat(4, 8)[None], _mat(8, 3), r"a must be a 2-D tensor, got shape \(1, 4, 8\)"),
        (_mat(4, 8), _mat(8, 3)[0], r"b must be a 2-D tensor, got shape \(3,\)"),
        (_mat(4, 8), _mat(7, 3), r"same K, got a shape \(4, 8\).*b shape \(7, 3\)"),
        (_mat(4, 8, torch.float32), _mat(8, 3, torch.float32), r"a must be float16 or bfloat16.*float32"),
        (_mat(4, 8), _mat(8, 3, torch.float16), r"b must have a's dtype \(torch.bfloat16\).*float16"),
        (_mat(4, 8), _mat(8, 3), r"a must be a CUDA tensor, got .*device cpu"),
    ],
)
def test_matmul_refuses_bad_arguments_naming_them(a, b, match):
    with pytest.raises(AttentionArgumentError, match=match):
        attn_cutlass.matmul(a, b)


@pytest.mark.parametrize("mnk", [(0, 5, 3), (4, 0, 3), (0, 0, 0), (4, 5, 0)])
def test_sm90_matmul_answers_empty_shapes_without_a_launch(mnk):
    """No kernel for these (a grid of no tiles, or a k-loop of none): on the CPU, so nothing can launch."""
    from attn_cutlass.gemm import _matmul_sm90

    m, n, k = mnk
    c = _matmul_sm90(_mat(m, k), _mat(k, n))
    assert c.shape == (m, n) and c.dtype == torch.bfloat16
    assert torch.equal(c, torch.zeros(m, n, dtype=torch.bfloat16))


def _tma_legal(x):
    return x.data_ptr() % 16 == 0 and any(
        x.stride(d) == 1 and x.stride(1 - d) % 8 == 0 and x.stride(1 - d) >= x.shape[d] for d in (0, 1)
    )


@pytest.mark.parametrize("b_major", ["row", "col"])
@pytest.mark.parametrize(
    "m, n, k", [(33, 65, 7), (1, 1, 1), (5, 3, 8), (300, 520, 200), (16, 24, 13), (1, 40, 9)]
)
def test_sm90_matmul_operands_are_tma_legal_and_keep_the_product(m, n, k, b_major):
    """The host side of the sm90 GEMM: K zero-padded to 8 and copies wherever a row stride or the base is
    not 16-byte aligned, so every TMA descriptor is legal, and the padded product is a @ b."""
    from attn_cutlass.gemm import _sm90_operands

    a, b = torch.randn(m, k, dtype=torch.float64), torch.randn(k, n, dtype=torch.float64)
    a16, b16 = a.to(torch.bfloat16), b.to(torch.bfloat16)
    if b_major == "col":
        b16 = b16.t().contiguous().t()
    ap, bt = _sm90_operands(a16, b16)
    kp = -(-k // 8) * 8
    assert ap.shape == (m, kp) and bt.shape == (n, kp)
    assert ap.stride(1) == 1 and _tma_legal(ap) and _tma_legal(bt)
    assert (ap[:, k:] == 0).all() and (bt[:, k:] == 0).all()
    torch.testing.assert_close(ap.double() @ bt.double().t(), a16.double() @ b16.double())


def test_sm90_matmul_operands_copy_misaligned_and_broadcast_views():
    from attn_cutlass.gemm import _sm90_operands

    flat = torch.randn(1 + 24 * 16, dtype=torch.bfloat16)
    a = flat[1:].view(24, 16)  # contiguous and K a multiple of 8, but its base 2 bytes off 16
    b = torch.randn(1, 8, dtype=torch.bfloat16).expand(16, 8)  # stride 0 along K: no TMA stride
    assert a.is_contiguous() and a.data_ptr() % 16 and b.stride() == (0, 1)
    ap, bt = _sm90_operands(a, b)
    assert _tma_legal(ap) and torch.equal(ap, a)
    assert _tma_legal(bt) and torch.equal(bt, b.t())


def test_tma_operands_are_copied_where_a_descriptor_cannot_describe_them():
    """A misaligned base (``.contiguous()`` would keep it), a stride that is not a multiple of 16 bytes and
    a broadcast (stride 0) dimension each get a fresh, aligned copy with the same values; a tensor TMA can
    describe as it is (a (b, h, s, d) transpose) is passed through."""
    from attn_cutlass.interface import _ensure_tma_strides

    buf = torch.randn(2 * 5 * 4 * 64 + 1, dtype=torch.bfloat16)
    misaligned = buf[1:].view(2, 5, 4, 64)
    assert misaligned.is_contiguous() and misaligned.data_ptr() % 16
    odd = torch.randn(2, 5, 4, 65, dtype=torch.bfloat16)[..., :64]  # row stride 65 elements
    broadcast = torch.randn(1, 5, 4, 64, dtype=torch.bfloat16).expand(2, 5, 4, 64)
    for t in (misaligned, odd, broadcast):
        fixed = _ensure_tma_strides(t)
        assert fixed.data_ptr() != t.data_ptr() and fixed.data_ptr() % 16 == 0
        assert all(s > 0 and s % 8 == 0 for s in fixed.stride()[:-1]) and torch.equal(fixed, t)
    fine = torch.randn(2, 4, 5, 64, dtype=torch.bfloat16).transpose(1, 2)
    assert _ensure_tma_strides(fine) is fine
