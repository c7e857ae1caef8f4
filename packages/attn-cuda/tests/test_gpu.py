"""sm90 tier: the conformance suite, the scalar kernels and the basics against torch, and compute-sanitizer.

Skipped without a Hopper GPU. ``tools/sanitize.py`` is the small script compute-sanitizer runs.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import attn_cuda
from attn_cuda import basics, runtime
from attn_reference import attention_naive
from attn_reference.testing.conformance import AttentionConformance, Backend, Features
from attn_reference.testing.inputs import attention_inputs
from attn_reference.testing.tolerance import assert_attention_close

pytestmark = pytest.mark.sm90

CUDA_BACKEND = Backend(
    name="attn-cuda",
    flash_attn_func=attn_cuda.flash_attn_func,
    features=Features(
        dtypes=(torch.float16, torch.bfloat16),
        head_dims=(64, 128),
        causal=True,
        gqa=True,
        lse=True,
        backward=True,
    ),
)


class TestCudaConformance(AttentionConformance):
    backend = CUDA_BACKEND
    device = "cuda"
    dtypes = (torch.float16, torch.bfloat16)
    size = "full"


def _reference(q, k, v, causal):
    hi = attention_naive(q, k, v, causal=causal, return_lse=True)  # fp32 accumulation
    lo = attention_naive(q, k, v, causal=causal, return_lse=True, accum_dtype=None)  # the inputs' precision
    return hi, lo


@pytest.mark.parametrize("version", ["v1", "v2"])
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("head_dim", [64, 128])
def test_scalar_kernels_match_the_reference(version, causal, head_dim):
    q, k, v = attention_inputs(2, 77, 131, 4, 2, head_dim, dtype=torch.bfloat16, device="cuda", seed=3)
    out, lse = attn_cuda.flash_attn_scalar_func(q, k, v, causal=causal, version=version, return_lse=True)
    (ref, ref_lse), (low, low_lse) = _reference(q, k, v, causal)
    assert_attention_close(out, ref, low, name="out")
    assert_attention_close(lse, ref_lse, low_lse, name="lse")


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_vector_add(dtype):
    x, y = (torch.randn(1_000_003, device="cuda").to(dtype) for _ in range(2))
    torch.testing.assert_close(basics.vector_add(x, y), x + y)
    a, b = torch.randn(4096, device="cuda"), torch.randn(4096, device="cuda")
    torch.testing.assert_close(basics.vector_add(a, b, vectorized=True), a + b)


@pytest.mark.parametrize("shape", [(7, 1), (33, 1000), (5, 20000)])
def test_softmax(shape):
    x = torch.randn(shape, device="cuda") * 4
    torch.testing.assert_close(basics.softmax(x), torch.softmax(x, -1), atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("variant", basics.MATMUL_VARIANTS)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
def test_matmul(variant, dtype):
    if variant == "mma" and dtype == torch.float32:
        pytest.skip("tensor cores take 16-bit inputs here")
    m, k, n = (200, 136, 264) if variant == "mma" else (130, 77, 93)
    a = (torch.randn(m, k, device="cuda") / k**0.25).to(dtype)
    b = (torch.randn(k, n, device="cuda") / k**0.25).to(dtype)
    ref = (a.double() @ b.double()).to(dtype)
    tol = {torch.float32: 1e-4, torch.float16: 2e-2, torch.bfloat16: 6e-2}[dtype]
    torch.testing.assert_close(basics.matmul(a, b, variant=variant), ref, atol=tol, rtol=tol)


@pytest.mark.parametrize("variant", basics.REDUCTION_VARIANTS)
@pytest.mark.parametrize("n", [1, 1000, 1 << 20, (1 << 22) + 3])
def test_reduction(variant, n):
    x = torch.rand(n, device="cuda")
    torch.testing.assert_close(basics.reduce_sum(x, variant), x.double().sum().float(), rtol=1e-5, atol=1e-3)


@pytest.mark.parametrize("streams", [1, 4])
def test_stream_overlap_is_correct(streams):
    from attn_cuda.basics.overlap import reference_transform

    x = torch.randn(1 << 20).pin_memory()
    y = torch.empty_like(x).pin_memory()
    basics.overlap_pipeline(x, y, streams=streams, chunks=8, iters=16)
    torch.cuda.synchronize()
    torch.testing.assert_close(y, reference_transform(x.cuda(), 16).cpu(), atol=1e-3, rtol=1e-3)


def test_hello_prints(capfd):
    basics.hello(blocks=1, threads=2, tag=42)
    assert "tag 42" in capfd.readouterr().out


def test_dynamic_shared_memory_above_48k_is_allowed():
    cfg = attn_cuda.flash.FWD_CONFIGS[128]
    assert cfg.smem_bytes() > runtime.DEFAULT_SMEM_LIMIT
    q, k, v = attention_inputs(1, 64, 64, 1, 1, 128, dtype=torch.float16, device="cuda")
    attn_cuda.flash_attn_func(q, k, v)  # would fail to launch without the attribute


SANITIZE = Path(__file__).resolve().parents[1] / "tools" / "sanitize.py"


@pytest.mark.parametrize("tool", ["memcheck", "racecheck"])
def test_compute_sanitizer_is_clean(tool):
    exe = runtime.find_tool("compute-sanitizer")
    if exe is None:
        pytest.skip("compute-sanitizer not found")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    res = subprocess.run(
        [
            exe,
            f"--tool={tool}",
            "--error-exitcode=3",
            "--target-processes=all",
            sys.executable,
            str(SANITIZE),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
        check=False,
    )
    tail = (res.stdout + res.stderr)[-4000:]
    assert res.returncode == 0, f"compute-sanitizer {tool} reported errors:\n{tail}"
    assert "ERROR SUMMARY: 0 errors" in res.stdout + res.stderr or "RACECHECK SUMMARY: 0 hazards" in tail, (
        tail
    )
