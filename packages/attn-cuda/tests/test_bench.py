"""CPU tier: attn-bench's ablation variants pass their choice on as explicit arguments (kernels faked)."""

import os

import pytest
import torch

from attn_cuda import bench, flash, runtime
from attn_cuda.basics.matmul import MMA_DEFAULT_LAYOUT, MMA_LAYOUTS, MMA_ORDERS, MMA_TILES
from attn_reference import attention_naive


def test_ablation_tables_hold_every_other_choice():
    abl = bench.backend()["ablations"]
    assert set(abl["attention_fwd"]) == set(flash.FWD_VARIANTS) - {flash.DEFAULT_FWD_VARIANT} | {
        "mma_kernel",
        "causal_per_head",
        f"{flash.other_rescale()}_rescale",
    }
    # the mma kernel's choices are measured against the mma kernel (on sm_90a the op's default is wgmma's)
    fwd = abl["attention_fwd"]
    assert not hasattr(fwd["mma_kernel"], "baseline")
    assert {getattr(fn, "baseline", None) for name, fn in fwd.items() if name != "mma_kernel"} == {
        "mma_kernel"
    }
    assert set(abl["attention_bwd"]) == {f"bwd_{v}" for v in flash.BWD_VARIANTS} - {
        f"bwd_{flash.DEFAULT_BWD_VARIANT}"
    }
    # tiles x orders less the default pair, and each other layout
    assert len(abl["matmul"]) == len(MMA_TILES) * len(MMA_ORDERS) - 1 + len(MMA_LAYOUTS) - 1
    assert {"mma_128x128_grouped", "mma_128x256_plain", "mma_padded_smem", "mma_plain_smem"} <= set(
        abl["matmul"]
    )
    ops = bench.backend()["ops"]
    # "mma", listed first, stays each op's default (attn-bench compares the ablation variants with it)
    assert {next(iter(ops[op])) for op in ("attention_fwd", "attention_bwd", "matmul")} == {"mma"}


@pytest.fixture
def fake_kernels(monkeypatch):
    """flash_fwd / flash_bwd replaced by the naive reference on CPU tensors, recording the variant asked."""
    calls = []

    def fwd(q, k, v, scale, causal, *, kernel="mma", variant=None, order=None, rescale=None):
        calls.append(("fwd", variant, order) + ((rescale,) if rescale else ()))
        out, lse = attention_naive(q, k, v, softmax_scale=scale, causal=causal, return_lse=True)
        return out.to(q.dtype), lse.float()

    def bwd(dout, q, k, v, out, lse, scale, causal, *, variant=None):
        calls.append(("bwd", variant))
        return torch.zeros_like(q), torch.zeros_like(k), torch.zeros_like(v)

    monkeypatch.setattr(flash, "flash_fwd", fwd)
    monkeypatch.setattr(flash, "flash_bwd", bwd)
    return calls


def test_forward_variants_pass_their_tiling(fake_kernels):
    q, k, v = (torch.randn(1, 8, 2, 64) for _ in range(3))
    before = {k: v for k, v in os.environ.items() if k.startswith("ATTN_")}
    for name, fn in bench.backend()["ablations"]["attention_fwd"].items():
        fn(q, k, v, causal=True, softmax_scale=None)
        want = ("fwd", name, None)
        if name == "mma_kernel":
            want = ("fwd", None, None)
        elif name == "causal_per_head":
            want = ("fwd", None, "per_head")
        elif name.endswith("_rescale"):
            want = ("fwd", None, None, name.removesuffix("_rescale"))
        assert fake_kernels.pop() == want
    assert {k: v for k, v in os.environ.items() if k.startswith("ATTN_")} == before


def test_backward_variants_run_the_default_forward_and_their_backward(fake_kernels):
    q, k, v = (torch.randn(1, 8, 2, 64, requires_grad=True) for _ in range(3))
    for name, fn in bench.backend()["ablations"]["attention_bwd"].items():
        out = fn(q, k, v, causal=False, softmax_scale=0.125)
        out.backward(torch.ones_like(out))
        assert fake_kernels[-2:] == [("fwd", None, None), ("bwd", name.removeprefix("bwd_"))]
        assert q.grad is not None and not q.grad.any()


def test_matmul_ablations_refuse_tiles_the_gpu_cannot_hold(monkeypatch):
    import importlib

    mm = importlib.import_module("attn_cuda.basics.matmul")
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    shape = dict(m=8192, n=8192, k=8192)
    monkeypatch.setattr(runtime, "max_dynamic_smem", lambda index: 227 * 1024)  # Hopper
    assert all(bench.supports("matmul", n, shape, "cuda") is None for n in bench.matmul_ablations())
    monkeypatch.setattr(runtime, "max_dynamic_smem", lambda index: 99 * 1024)  # sm_86 / sm_89
    assert "shared memory" in bench.supports("matmul", "mma_128x256_plain", shape, "cuda")
    # a layout keeps the device's default tile, the one that fits there
    assert mm.MMA_TILES[mm.default_tile(0)].smem_for(MMA_DEFAULT_LAYOUT) <= 99 * 1024
    assert bench.supports("matmul", "mma_plain_smem", shape, "cuda") is None


def test_causal_per_head_declines_non_causal_shapes():
    shape = dict(batch=1, seqlen_q=16384, seqlen_k=16384, heads_q=16, heads_k=16, head_dim=128)
    assert bench.supports("attention_fwd", "causal_per_head", {**shape, "causal": True}, "cuda") is None
    assert "non-causal" in bench.supports(
        "attention_fwd", "causal_per_head", {**shape, "causal": False}, "cuda"
    )


def test_vector_add_ablations_pass_their_choice(monkeypatch):
    from attn_cuda import basics

    seen = []
    monkeypatch.setattr(basics, "vector_add", lambda x, y, **kw: seen.append(kw) or x + y)
    abl = bench.backend()["ablations"]["vector_add"]
    x = torch.ones(8)
    for fn in abl.values():
        assert torch.equal(fn(x, x), x + x)
    assert seen == [dict(vectorized=False), dict(access="chunked")]
