"""CPU tier: attn-bench's ablation variants (kernels faked): the same call, another switch, environment kept."""

import os

import pytest
import torch

from attn_cutlass import bench, gemm, interface


def test_ablation_tables():
    desc = bench.backend()
    assert desc["ablations"] == {
        "attention_fwd": {
            "causal_sections": bench._causal_sections,
            "no_pingpong": bench._no_pingpong,
            "always_rescale": bench._always_rescale,
            "two_consumers": bench._two_consumers,
            "unroll2": bench._unroll2,
            "rolled": bench._rolled,
            "register_store": bench._register_store,
        },
        "attention_bwd": {
            "dq_atomic": bench._dq_atomic,
            "dq_tma": bench._dq_tma,
            "dq_bulk": bench._dq_bulk,
            "prefetch": bench._bwd_prefetch,
            "serial": bench._bwd_serial,
        },
        "matmul": {
            "one_cta_per_tile": bench._matmul_one_cta_per_tile,
            "no_multicast": bench._matmul_no_multicast,
        },
    }


@pytest.fixture
def fake_kernels(monkeypatch):
    """``_forward`` / ``_backward`` recorded instead of launched; the backward notes the dQ switch it saw."""
    calls = []

    def forward(q, k, v, *args):
        calls.append(("fwd", args))
        b, s, h, _ = q.shape
        return q * 1.0, torch.zeros(b, h, s)

    def backward(dout, q, k, v, *args):
        calls.append(("bwd", interface.bwd_dq_reduce(q.shape[-1]), interface.bwd_schedule()))
        return torch.zeros_like(q), torch.zeros_like(k), torch.zeros_like(v)

    monkeypatch.setattr(interface, "_forward", forward)
    monkeypatch.setattr(interface, "_backward", backward)
    monkeypatch.setattr(interface, "_check_cuda", lambda q, fn: None)
    return calls


@pytest.mark.parametrize("user", [None, "tma"])
@pytest.mark.parametrize("causal", [False, True])
def test_dq_atomic_runs_the_default_forward_and_restores_the_environment(
    fake_kernels, monkeypatch, user, causal
):
    if user is None:
        monkeypatch.delenv("ATTN_CUTLASS_BWD_DQ", raising=False)
    else:
        monkeypatch.setenv("ATTN_CUTLASS_BWD_DQ", user)
    grads = []
    for fn in (bench._fwd, bench._dq_atomic):
        q, k, v = (torch.randn(1, 8, 2, 64, dtype=torch.bfloat16, requires_grad=True) for _ in range(3))
        out = fn(q, k, v, causal=causal, softmax_scale=None)
        out.backward(torch.ones_like(out))
        grads.append(q.grad)
    (_, fwd_default), (_, *bwd_default), (_, fwd_atomic), (_, *bwd_atomic) = fake_kernels
    assert fwd_atomic == fwd_default  # what flash_attn_func passes, the same compiled forward
    assert (bwd_default, bwd_atomic) == (["tma", "overlap"], ["atomic", "overlap"])
    assert os.environ.get("ATTN_CUTLASS_BWD_DQ") == user
    assert all(g is not None for g in grads)


@pytest.mark.parametrize("causal", [False, True])
def test_bwd_serial_runs_the_default_forward_and_restores_the_environment(fake_kernels, monkeypatch, causal):
    monkeypatch.delenv("ATTN_CUTLASS_BWD_SCHEDULE", raising=False)
    monkeypatch.delenv("ATTN_CUTLASS_BWD_DQ", raising=False)
    for fn in (bench._fwd, bench._bwd_serial):
        q, k, v = (torch.randn(1, 8, 2, 64, dtype=torch.bfloat16, requires_grad=True) for _ in range(3))
        fn(q, k, v, causal=causal, softmax_scale=None).sum().backward()
    (_, fwd_default), (_, *bwd_default), (_, fwd_serial), (_, *bwd_serial) = fake_kernels
    assert fwd_serial == fwd_default
    assert (bwd_default, bwd_serial) == (["tma", "overlap"], ["tma", "serial"])
    assert "ATTN_CUTLASS_BWD_SCHEDULE" not in os.environ


def test_dq_atomic_restores_the_environment_when_the_backward_fails(fake_kernels, monkeypatch):
    monkeypatch.delenv("ATTN_CUTLASS_BWD_DQ", raising=False)

    def broken(*args):
        raise RuntimeError("kernel failed")

    monkeypatch.setattr(interface, "_backward", broken)
    q, k, v = (torch.randn(1, 8, 2, 64, dtype=torch.bfloat16, requires_grad=True) for _ in range(3))
    out = bench._dq_atomic(q, k, v, causal=False, softmax_scale=None)
    with pytest.raises(RuntimeError, match="kernel failed"):
        out.backward(torch.ones_like(out))
    assert "ATTN_CUTLASS_BWD_DQ" not in os.environ


def test_no_multicast_asks_for_single_ctas(monkeypatch):
    seen = {}
    monkeypatch.setattr(
        gemm, "_matmul_sm90", lambda a, b, cluster_m=None: seen.setdefault("cluster", cluster_m)
    )
    bench._matmul_no_multicast(torch.empty(1024, 64), torch.empty(64, 512))
    assert seen["cluster"] == 1


def test_one_cta_per_tile_launches_the_tile_count(monkeypatch):
    seen = {}
    monkeypatch.setattr(gemm, "_matmul_sm90", lambda a, b, num_ctas=None: seen.setdefault("ctas", num_ctas))
    bench._matmul_one_cta_per_tile(torch.empty(1000, 64), torch.empty(64, 600))
    assert seen["ctas"] == 8 * 3  # ceil(1000 / 128) x ceil(600 / 256)


@pytest.mark.parametrize("user", [None, "lpt"])
def test_causal_sections_sets_the_schedule_around_the_forward_only(monkeypatch, user):
    if user is None:
        monkeypatch.delenv("ATTN_CUTLASS_CAUSAL_SCHEDULE", raising=False)
    else:
        monkeypatch.setenv("ATTN_CUTLASS_CAUSAL_SCHEDULE", user)
    seen = []

    def forward(q, k, v, *args):
        seen.append(interface.causal_schedule(16384, 128, 1, 16))
        b, s, h, _ = q.shape
        return q * 1.0, torch.zeros(b, h, s)

    monkeypatch.setattr(interface, "_forward", forward)
    monkeypatch.setattr(interface, "_check_cuda", lambda q, fn: None)
    q, k, v = (torch.randn(1, 8, 2, 64, dtype=torch.bfloat16) for _ in range(3))
    bench._fwd(q, k, v, causal=True)
    bench._causal_sections(q, k, v, causal=True)
    assert seen == [(16, 1), (3, 0)]
    assert os.environ.get("ATTN_CUTLASS_CAUSAL_SCHEDULE") == user


def test_causal_sections_declines_non_causal_shapes(monkeypatch):
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *a: (9, 0))
    shape = dict(batch=1, seqlen_q=16384, seqlen_k=16384, heads_q=8, heads_k=8, head_dim=256)
    assert bench._supports("attention_fwd", "causal_sections", {**shape, "causal": True}, "cuda") is None
    assert "non-causal" in bench._supports(
        "attention_fwd", "causal_sections", {**shape, "causal": False}, "cuda"
    )


def test_register_store_runs_at_every_head_dim(monkeypatch):
    """Every fixed-length head dim stores O by TMA by default, so each has a "before" row."""
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *a: (9, 0))
    shape = dict(batch=1, seqlen_q=16384, seqlen_k=16384, heads_q=16, heads_k=16, causal=False)
    for head_dim in (64, 128, 256):
        assert (
            bench._supports("attention_fwd", "register_store", {**shape, "head_dim": head_dim}, "cuda")
            is None
        )


def test_two_consumers_declines_other_head_dims(monkeypatch):
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *a: (9, 0))
    shape = dict(batch=1, seqlen_q=16384, seqlen_k=16384, heads_q=32, heads_k=32, causal=False)
    assert bench._supports("attention_fwd", "two_consumers", {**shape, "head_dim": 64}, "cuda") is None
    assert "head dim 64 only" in bench._supports(
        "attention_fwd", "two_consumers", {**shape, "head_dim": 128}, "cuda"
    )


@pytest.mark.parametrize(
    "variable, read, read_args, variant, before, after",
    [
        ("ATTN_CUTLASS_PINGPONG", "fwd_pingpong", (), "_no_pingpong", True, False),
        ("ATTN_CUTLASS_RESCALE", "fwd_rescale", (), "_always_rescale", "lazy", "always"),
        ("ATTN_CUTLASS_HD64_CONSUMERS", "fwd_consumer_wgs", (64,), "_two_consumers", 3, 2),
        ("ATTN_CUTLASS_FWD_UNROLL", "fwd_unroll", (torch.bfloat16, 64), "_unroll2", 1, 2),
        ("ATTN_CUTLASS_FWD_UNROLL", "fwd_unroll", (torch.bfloat16, 128), "_rolled", 2, 1),
        ("ATTN_CUTLASS_FWD_STORE", "fwd_tma_store", (False,), "_register_store", True, False),
    ],
)
def test_forward_switches_are_set_around_the_forward_only(
    monkeypatch, variable, read, read_args, variant, before, after
):
    """The ablation variant sets its variable for its own call only; a bad value is refused by name."""
    monkeypatch.delenv(variable, raising=False)
    seen = []

    def forward(q, k, v, *args):
        seen.append(getattr(interface, read)(*read_args))
        b, s, h, _ = q.shape
        return q * 1.0, torch.zeros(b, h, s)

    monkeypatch.setattr(interface, "_forward", forward)
    monkeypatch.setattr(interface, "_check_cuda", lambda q, fn: None)
    q, k, v = (torch.randn(1, 8, 2, 64, dtype=torch.bfloat16) for _ in range(3))
    bench._fwd(q, k, v)
    getattr(bench, variant)(q, k, v)
    assert seen == [before, after] and variable not in os.environ
    monkeypatch.setenv(variable, "maybe")
    with pytest.raises(ValueError, match=variable):
        getattr(interface, read)(*read_args)
