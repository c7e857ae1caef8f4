"""sm90 tier: the conformance suite, the scalar kernels and the basics against torch, and compute-sanitizer.

Skipped without a Hopper GPU. ``tools/sanitize.py`` is the small script compute-sanitizer runs.
"""

import contextlib
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import attn_cuda
from attn_cuda import basics, catalog, flash, runtime
from attn_cuda.basics.matmul import MMA_LAYOUTS, MMA_ORDERS, MMA_TILES
from attn_reference.testing.conformance import AttentionConformance, Backend, Features
from attn_reference.testing.inputs import attention_inputs
from attn_reference.testing.tolerance import (
    assert_attention_close,
    assert_matches_reference,
    attention_references,
)

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
    """The suite on the defaults: on the H100/H200 the wgmma forward (:class:`TestCudaMmaConformance` runs
    the mma one) and the tiled backward."""

    backend = CUDA_BACKEND
    device = "cuda"
    dtypes = (torch.float16, torch.bfloat16)
    size = "full"


class TestCudaBackwardBaseConformance(TestCudaConformance):
    """The suite with the ``base`` backward (``ATTN_CUDA_BWD_VARIANT``, set for each whole test so the
    backward runs under it; the default is ``tiled``); its backward tests are what this class adds."""

    @pytest.fixture(autouse=True)
    def _base(self, monkeypatch):
        monkeypatch.setenv("ATTN_CUDA_BWD_VARIANT", "base")


class TestCudaBackwardWide8qConformance(TestCudaConformance):
    """The suite with the ``wide8q`` backward (twice the default's queries a step: 32 at hd128, 64 at
    hd64), the tiling whose ldmatrix addresses are recomputed each step; its backward tests are new."""

    @pytest.fixture(autouse=True)
    def _wide8q(self, monkeypatch):
        monkeypatch.setenv("ATTN_CUDA_BWD_VARIANT", "wide8q")


class TestCudaBackwardWide8vConformance(TestCudaConformance):
    """The suite with the ``wide8v`` backward (the default's tiles, dQ added two floats per atomic with
    float2 atomicAdd on sm_90); its backward tests are new."""

    @pytest.fixture(autouse=True)
    def _wide8v(self, monkeypatch):
        monkeypatch.setenv("ATTN_CUDA_BWD_VARIANT", "wide8v")


class TestCudaBackwardWide8Conformance(TestCudaConformance):
    """The suite with the ``wide8`` backward (the default until ``wide8qv`` passed this suite as an opt-in
    on the H200, 2026-12-04: its tiles at hd128, scalar dQ atomics)."""

    @pytest.fixture(autouse=True)
    def _wide8(self, monkeypatch):
        monkeypatch.setenv("ATTN_CUDA_BWD_VARIANT", "wide8")


class TestCudaBackwardWide8qvConformance(TestCudaConformance):
    """The suite with the ``wide8qv`` backward (the default until ``tiled`` passed this suite as an opt-in
    on the H200, 2026-12-04: per-warp tiles, P^T and dS^T in registers, float2 dQ atomics)."""

    @pytest.fixture(autouse=True)
    def _wide8qv(self, monkeypatch):
        monkeypatch.setenv("ATTN_CUDA_BWD_VARIANT", "wide8qv")


class TestCudaAlwaysRescaleConformance(TestCudaConformance):
    """The suite with the output rescaled at every key tile (``ATTN_CUDA_RESCALE=always``; the default,
    ``lazy``, skips it while the row maxima stay within a slack). Its ``test_rising_row_maxima`` is the
    case the two modes differ on."""

    @pytest.fixture(autouse=True)
    def _always(self, monkeypatch):
        monkeypatch.setenv("ATTN_CUDA_FWD_KERNEL", "mma")  # the rescale modes are the mma kernel's
        monkeypatch.setenv("ATTN_CUDA_RESCALE", "always")


class TestCudaMmaConformance(TestCudaConformance):
    """The conformance suite with the mma.sync forward behind flash_attn_func (``ATTN_CUDA_FWD_KERNEL=mma``):
    the default forward everywhere but sm_90a, where :class:`TestCudaConformance` runs the wgmma one."""

    @pytest.fixture(autouse=True)
    def _mma(self, monkeypatch):
        monkeypatch.setenv("ATTN_CUDA_FWD_KERNEL", "mma")


def _reference(q, k, v, causal, softmax_scale=None):
    """((out, lse) fp32-accumulated, (out, lse) in the inputs' precision): what the tolerance rule takes."""
    return attention_references(q, k, v, causal=causal, softmax_scale=softmax_scale)


def _check_backward(q, k, v, causal, label):
    """flash_attn_func's forward and backward on (q, k, v) against the reference, every gradient."""
    q, k, v = (t.detach().requires_grad_() for t in (q, k, v))
    out = attn_cuda.flash_attn_func(q, k, v, causal=causal)
    dout = torch.randn_like(out)
    out.backward(dout)
    for name, grad in (("dq", q.grad), ("dk", k.grad), ("dv", v.grad)):
        assert grad.device == q.device, f"{name} on {grad.device} ({label})"
    got = {"out": out.detach(), "dq": q.grad, "dk": k.grad, "dv": v.grad}
    assert_matches_reference(got, q, k, v, dout, causal=causal, label=label)


# The default backward and the one sm86/sm89 fall back to (the other variants run the suite's classes).
@pytest.mark.parametrize("variant", [flash.DEFAULT_BWD_VARIANT, flash.FALLBACK_BWD_VARIANT])
@pytest.mark.parametrize("causal", [False, True], ids=["full", "causal"])
@pytest.mark.parametrize("head_dim", [64, 128])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["fp16", "bf16"])
def test_backward_in_every_dtype_and_head_dim_matches_the_reference(
    monkeypatch, dtype, head_dim, causal, variant
):
    """The backward in both dtypes and head dims (the suite's backward tests run at head dim 64, and its
    head-dim test in fp16 only): ragged lengths on both sides, GQA and MQA, every gradient."""
    monkeypatch.setenv("ATTN_CUDA_BWD_VARIANT", variant)
    for b, sq, sk, hq, hk in ((2, 203, 113, 4, 2), (1, 300, 517, 3, 1), (2, 129, 129, 2, 2)):
        q, k, v = attention_inputs(b, sq, sk, hq, hk, head_dim, dtype=dtype, device="cuda", seed=sq)
        _check_backward(q, k, v, causal, f"{variant}, sq {sq}, sk {sk}, hq {hq}, hk {hk}")


@pytest.mark.parametrize("kernel", ["mma", "wgmma"])
@pytest.mark.parametrize("scale", [-0.2, 0.0])
def test_a_scale_that_is_not_positive_matches_the_reference(kernel, scale):
    """The wide mma forward folds the scale into its running maximum and hands a non-positive scale to
    the ``base`` tiling; whichever kernel runs, the result must be the reference's."""
    if kernel == "wgmma" and flash.device_arch(torch.device("cuda")) != "sm_90a":
        pytest.skip("the wgmma forward runs on sm_90a only")
    q, k, v = attention_inputs(2, 203, 113, 4, 2, 128, dtype=torch.bfloat16, device="cuda", seed=11)
    out, lse = flash.flash_fwd(q, k, v, scale, True, kernel=kernel)
    (ref, ref_lse), (low, low_lse) = _reference(q, k, v, True, softmax_scale=scale)
    assert_attention_close(out, ref, low, name=f"out ({kernel}, scale {scale})")
    assert_attention_close(lse, ref_lse, low_lse, name=f"lse ({kernel}, scale {scale})")


@pytest.mark.skipif(not torch.cuda.is_available() or torch.cuda.device_count() < 2, reason="needs two GPUs")
def test_tensors_on_another_gpu_than_the_current_one():
    """Forward and backward on cuda:1 while cuda:0 is current: the launches follow the tensors."""
    q, k, v = attention_inputs(2, 77, 131, 4, 2, 128, dtype=torch.bfloat16, device="cuda:1", seed=5,
                               requires_grad=True)  # fmt: skip
    with torch.cuda.device(0):
        out = attn_cuda.flash_attn_func(q, k, v, causal=True)
        out.sum().backward()
    torch.cuda.synchronize(1)
    assert out.device == torch.device("cuda", 1)
    with torch.cuda.device(0):  # the checks too, with the other GPU current
        _check_backward(q, k, v, True, "cuda:1 while cuda:0 is current")


@pytest.mark.parametrize("version", ["v1", "v2"])
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("head_dim", [64, 128])
def test_scalar_kernels_match_the_reference(version, causal, head_dim):
    q, k, v = attention_inputs(2, 77, 131, 4, 2, head_dim, dtype=torch.bfloat16, device="cuda", seed=3)
    out, lse = attn_cuda.flash_attn_scalar_func(q, k, v, causal=causal, version=version, return_lse=True)
    (ref, ref_lse), (low, low_lse) = _reference(q, k, v, causal)
    assert_attention_close(out, ref, low, name="out")
    assert_attention_close(lse, ref_lse, low_lse, name="lse")


@pytest.mark.parametrize("variant", sorted(flash.FWD_VARIANTS))
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("head_dim", [64, 128])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_every_forward_variant_matches_the_reference(variant, dtype, head_dim, causal):
    """Each tiling of the tensor-core forward (the default one also runs the conformance suite)."""
    for b, sq, sk, hq, hk in ((2, 203, 113, 4, 2), (1, 300, 517, 2, 1), (1, 1, 77, 2, 2)):
        q, k, v = attention_inputs(b, sq, sk, hq, hk, head_dim, dtype=dtype, device="cuda", seed=5)
        out, lse = flash.flash_fwd(q, k, v, head_dim**-0.5, causal, kernel="mma", variant=variant)
        (ref, ref_lse), (low, low_lse) = _reference(q, k, v, causal)
        assert_attention_close(out, ref, low, name=f"out ({variant}, sq {sq}, sk {sk})")
        assert_attention_close(lse, ref_lse, low_lse, name=f"lse ({variant}, sq {sq}, sk {sk})")


@pytest.mark.parametrize("pingpong", [True, False], ids=["pingpong", "serial"])
@pytest.mark.parametrize("causal", [False, True], ids=["full", "causal"])
@pytest.mark.parametrize("head_dim", [64, 128])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["fp16", "bf16"])
def test_wgmma_forward_matches_the_reference(dtype, head_dim, causal, pingpong):
    """The opt-in sm_90a forward (TMA + wgmma): ragged edges on both sides, GQA and MQA, more queries than
    keys (causal rows that see nothing), one decoding row, several key blocks, and strided views whose
    padding holds NaN (the tensor maps must end at the sequence lengths)."""
    cases = ((2, 203, 113, 4, 2, 0), (1, 300, 517, 2, 1, 0), (1, 1, 77, 2, 2, 0), (2, 129, 383, 3, 3, 7))
    for b, sq, sk, hq, hk, pad in cases:
        q, k, v = attention_inputs(
            b, sq, sk, hq, hk, head_dim, dtype=dtype, device="cuda", seed=sq, nan_padding=pad
        )
        out, lse = flash.flash_fwd(q, k, v, head_dim**-0.5, causal, kernel="wgmma", pingpong=pingpong)
        (ref, ref_lse), (low, low_lse) = _reference(q, k, v, causal)
        assert_attention_close(out, ref, low, name=f"out (wgmma, sq {sq}, sk {sk})")
        assert_attention_close(lse, ref_lse, low_lse, name=f"lse (wgmma, sq {sq}, sk {sk})")


@pytest.mark.parametrize("variant", sorted(flash.FWD_VARIANTS))
@pytest.mark.parametrize(
    "shape", [(2, 4096, 4096, 16, 4, 128), (3, 1000, 1300, 5, 5, 64), (1, 203, 113, 4, 2, 128)]
)
def test_causal_orders_give_identical_outputs(shape, variant):
    """A block computes the same rows whatever order the blocks start in: the orders agree bit for bit."""
    b, sq, sk, hq, hk, d = shape
    q, k, v = attention_inputs(b, sq, sk, hq, hk, d, dtype=torch.bfloat16, device="cuda", seed=9)
    results = {
        o: flash.flash_fwd(q, k, v, d**-0.5, True, kernel="mma", variant=variant, order=o)
        for o in flash.CAUSAL_ORDERS
    }
    out, lse = results["heads_first"]  # the default
    out_ph, lse_ph = results["per_head"]
    assert torch.equal(out, out_ph) and torch.equal(lse, lse_ph)
    (ref, ref_lse), (low, low_lse) = _reference(q, k, v, True)
    assert_attention_close(out, ref, low, name=f"out ({variant}, heads_first)")
    assert_attention_close(lse, ref_lse, low_lse, name=f"lse ({variant}, heads_first)")


def _check_mma_matmul(dtype, **options):
    """The tensor-core matmul with ``options`` against a float64 product on two ragged shapes.

    1100 x 600: 9 x 5 blocks of 128 x 128 (9 x 3 of 128 x 256), so the grouped order's last group holds
    one block row. 333 x 264 x 200: every edge is ragged for both tiles (77 rows and 8 columns of the last
    blocks, a last K tile of 8), on a grid of 3 x 3 or 3 x 2 blocks.
    """
    tol = {torch.float16: 2e-2, torch.bfloat16: 6e-2}[dtype]
    for m, k, n in ((1100, 264, 600), (333, 200, 264)):
        a = (torch.randn(m, k, device="cuda") / k**0.25).to(dtype)
        b = (torch.randn(k, n, device="cuda") / k**0.25).to(dtype)
        ref = (a.double() @ b.double()).to(dtype)
        out = basics.matmul(a, b, variant="mma", **options)
        torch.testing.assert_close(
            out, ref, atol=tol, rtol=tol, msg=lambda e, m=m, k=k, n=n: f"{options} {m}x{k}x{n}: {e}"
        )


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["fp16", "bf16"])
@pytest.mark.parametrize("order", sorted(MMA_ORDERS))
@pytest.mark.parametrize("tile", sorted(MMA_TILES))
def test_matmul_mma_tiles_and_block_orders(tile, order, dtype):
    _check_mma_matmul(dtype, order=order, tile=tile)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["fp16", "bf16"])
@pytest.mark.parametrize("layout", sorted(MMA_LAYOUTS))
@pytest.mark.parametrize("tile", sorted(MMA_TILES))
def test_matmul_mma_shared_memory_layouts(tile, layout, dtype):
    # The swizzled, padded and plain tiles must give the same product.
    _check_mma_matmul(dtype, tile=tile, layout=layout)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_vector_add(dtype):
    x, y = (torch.randn(1_000_003, device="cuda").to(dtype) for _ in range(2))
    torch.testing.assert_close(basics.vector_add(x, y), x + y)
    # the uncoalesced counter-example: a ragged last run (1_000_003 = 15625 runs of 64, and 3 left)
    torch.testing.assert_close(basics.vector_add(x, y, access="chunked"), x + y)
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


def test_dynamic_shared_memory_above_48k_is_allowed(monkeypatch):
    """The mma forward at hd128 needs more than the default 48 KB of dynamic shared memory: it launches
    (which it could not without the attribute) and computes the reference's result."""
    cfg = attn_cuda.flash.FWD_CONFIGS[128]
    assert cfg.smem_bytes() > runtime.DEFAULT_SMEM_LIMIT
    monkeypatch.setenv("ATTN_CUDA_FWD_KERNEL", "mma")  # the kernel whose config is checked above
    q, k, v = attention_inputs(1, 64, 64, 1, 1, 128, dtype=torch.float16, device="cuda")
    out = attn_cuda.flash_attn_func(q, k, v)
    (ref, _), (low, _) = _reference(q, k, v, False)
    assert_attention_close(out, ref, low, name="out")


SANITIZE = Path(__file__).resolve().parents[1] / "tools" / "sanitize.py"
#: Substrings that identify this package's kernels in the sanitizer's reports (mangled or demangled names).
OUR_KERNELS = (
    "flash_fwd",
    "flash_bwd",
    "matmul_",
    "reduce_v",
    "vector_add",
    "row_softmax",
    "busy_transform",
    "hello",
)


def _subprocess_env() -> dict[str, str]:
    """The test process's environment, with a PYTHONPATH that reproduces its sys.path (so the sanitized
    interpreter imports exactly the same attn_cuda / attn_reference), and torch's caching allocator off so
    every tensor is its own allocation and memcheck sees reads past its end."""
    entries = os.environ.get("PYTHONPATH", "").split(os.pathsep) + sys.path
    path = list(dict.fromkeys(e for e in entries if e and os.path.isdir(e)))
    return dict(os.environ, PYTHONPATH=os.pathsep.join(path), PYTORCH_NO_CUDA_MEMORY_CACHING="1")


def _sanitizer_reports(output: str) -> list[str]:
    """The sanitizer's error / hazard reports, one string per report (its message and indented lines)."""
    reports: list[list[str]] = []
    for line in output.splitlines():
        if not line.startswith("========="):
            continue
        body = line[len("=========") :]
        if body.startswith("     ") and reports:  # continuation: "at ... in kernel", "by thread ..."
            reports[-1].append(body.strip())
        elif body.strip() and not body.strip().startswith(
            ("COMPUTE-SANITIZER", "ERROR SUMMARY", "RACECHECK SUMMARY", "LEAK SUMMARY", "Target application")
        ):
            reports.append([body.strip()])
    return ["\n".join(r) for r in reports]


def _is_ours(report: str) -> bool:
    return any(k in report for k in OUR_KERNELS)


@contextlib.contextmanager
def _exclusive(name: str):
    """One sanitizer run at a time across processes (pytest-xdist workers share the GPU)."""
    import fcntl
    import tempfile

    with open(Path(tempfile.gettempdir()) / f"{name}.lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _serial(fn):
    """Keep the sanitizer tests on one xdist worker (with --dist loadgroup) and give them a long timeout;
    the markers are only applied when their plugins are installed (--strict-markers)."""
    if importlib.util.find_spec("xdist") is not None:
        fn = pytest.mark.xdist_group("compute-sanitizer")(fn)
    if importlib.util.find_spec("pytest_timeout") is not None:
        fn = pytest.mark.timeout(SANITIZER_TIMEOUT + 600)(fn)
    return fn


SANITIZER_TIMEOUT = 1800


@_serial
@pytest.mark.parametrize("tool", ["memcheck", "racecheck"])
def test_compute_sanitizer_is_clean(tool, record_property):
    """memcheck / racecheck over tools/sanitize.py: small launches of every kernel in the catalog.

    Reports that name one of our kernels fail the test; reports about other code (torch's own kernels,
    API errors of the libraries) are listed in the message of a failure and otherwise ignored. Leak
    checking is off: this package allocates no device memory of its own (torch owns every buffer).
    """
    exe = runtime.find_tool("compute-sanitizer")
    if exe is None:
        pytest.skip("compute-sanitizer not found")
    help_text = subprocess.run([exe, "--help"], capture_output=True, text=True, check=False).stdout
    cmd = [exe, f"--tool={tool}", "--error-exitcode=3", "--target-processes=all", "--print-limit=100"]
    if "--report-api-errors" in help_text:
        cmd.append("--report-api-errors=no")  # API errors are the libraries' business, not a kernel's
    if tool == "racecheck" and "--racecheck-report" in help_text:
        cmd.append("--racecheck-report=all")
    cmd += [sys.executable, str(SANITIZE)]
    shown = " ".join(cmd)
    with _exclusive("attn_cuda_compute_sanitizer"):
        try:
            res = subprocess.run(
                cmd,
                capture_output=True,
                text=True,
                env=_subprocess_env(),
                timeout=SANITIZER_TIMEOUT,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            out = (
                (exc.stdout or b"").decode(errors="replace")
                if isinstance(exc.stdout, bytes)
                else exc.stdout or ""
            )
            pytest.fail(
                f"compute-sanitizer {tool} timed out after {SANITIZER_TIMEOUT} s\n$ {shown}\n{out[-6000:]}"
            )
    output = res.stdout + "\n" + res.stderr
    tail = output[-6000:]
    context = f"compute-sanitizer {tool} (exit {res.returncode})\n$ {shown}\n--- output tail ---\n{tail}"

    launched_lines = [ln for ln in res.stdout.splitlines() if ln.startswith("ATTN_CUDA_LAUNCHED ")]
    assert launched_lines, f"the sanitized workload did not finish\n{context}"
    launched = set(json.loads(launched_lines[-1].split(" ", 1)[1]))
    record_property(f"{tool}_kernels_checked", sorted(launched))
    print(f"compute-sanitizer {tool} checked {len(launched)} kernels:\n  " + "\n  ".join(sorted(launched)))
    expected = {n for names in catalog.kernels().values() for n in names}
    if runtime.device_arch() == "sm_90a":
        expected |= {n for names in catalog.hopper_kernels().values() for n in names}
    missing = expected - launched
    assert not missing, f"kernels the sanitizer workload never launched: {sorted(missing)}\n{context}"

    reports = _sanitizer_reports(output)
    ours = [r for r in reports if _is_ours(r)]
    others = [r for r in reports if not _is_ours(r)]
    summary = f"{len(ours)} report(s) in our kernels, {len(others)} elsewhere"
    assert not ours, f"{summary}:\n\n" + "\n\n".join(ours[:20]) + f"\n\n{context}"
    summary_line = "ERROR SUMMARY:" if tool == "memcheck" else ("RACECHECK SUMMARY:", "ERROR SUMMARY:")
    assert any(s in output for s in ((summary_line,) if isinstance(summary_line, str) else summary_line)), (
        f"no summary line from the sanitizer\n{context}"
    )
    if res.returncode not in (0, 3) or (res.returncode == 3 and not others):
        pytest.fail(f"unexpected exit status {res.returncode} ({summary})\n{context}")
    if others:
        print(f"{summary} (not failing):\n" + "\n\n".join(others[:10]))
