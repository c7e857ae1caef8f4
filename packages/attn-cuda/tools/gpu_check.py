"""attn-cuda on the GPU machine, in one run: compile, check against torch / attn-reference, time, report.

    PYTHONPATH=$(ls -d packages/*/src | paste -sd:) python3 packages/attn-cuda/tools/gpu_check.py

1. compiles every kernel for the device's exact architecture (in parallel processes, into the disk cache)
   and prints ptxas's registers / shared memory / spills of the tensor-core kernels;
2. checks every kernel: flash forward (+lse) and backward against the attn-reference oracle with the
   shared tolerance rule (fp16/bf16, head dims 64/128, causal, GQA, ragged sizes), the scalar FA-1/FA-2
   kernels, and the basics against torch;
3. times (triton.testing.do_bench, median after warm-up, random data) the tensor-core forward and
   forward+backward at hd128 / seqlen 16384 (bf16, batch x seqlen = 16384, heads x hd = 2048) against
   torch's flash SDPA (FA2) in the same run, the matmul steps against torch.matmul (fp16 8192^3), the
   reductions against a measured copy ceiling, and stream overlap against one stream;
4. prints a short table last and writes everything as JSON under $OUT when set.

Options: ``--quick`` (fewer check shapes, shorter timings, no slow basics timings), ``--compare
OLD.json`` (adds the earlier run's milliseconds and the speedup per case; case names are stable across
versions, new ones such as ``fwd ... attn-cuda [wide]`` time every forward variant, ``matmul ... [plain]``
each block order of the default tile, ``matmul ... [128x256 grouped]`` each order of the other block
tiles), ``--skip STAGE`` (compile, attention checks, basics checks, attention timings, basics timings).
"""

from __future__ import annotations

import concurrent.futures as cf
import json
import multiprocessing
import os
import sys
import time
import traceback
from unittest import mock

import torch

RESULTS: dict = {"checks": [], "timings": [], "resources": {}, "env": {}}
#: --quick: attention checks on two shapes, shorter timing runs, basics timings stop after the tensor-core
#: matmul (no tiled/naive matmul, reduction or stream-overlap timings).
QUICK = False


def log(msg: str) -> None:
    print(msg, flush=True)


# -- 1. compile --------------------------------------------------------------------------------------------


def _compile_one(job):
    filename, arch = job
    from attn_cuda import catalog
    from attn_cuda import runtime as rt

    t0 = time.perf_counter()
    mod = rt.compile_source(
        rt.kernel_source(filename),
        name=filename,
        arch=arch,
        name_expressions=catalog.name_expressions(filename),
    )
    return filename, time.perf_counter() - t0, mod.resource_usage()


def compile_everything(arch: str) -> None:
    from attn_cuda import catalog

    t0 = time.perf_counter()
    jobs = [(f, arch) for f in catalog.kernels()]
    with cf.ProcessPoolExecutor(
        max_workers=min(8, len(jobs)), mp_context=multiprocessing.get_context("spawn")
    ) as pool:
        for filename, secs, usage in pool.map(_compile_one, jobs):
            log(f"  compiled {filename:18s} {secs:6.1f} s")
            RESULTS["resources"].update(usage)
    log(f"compiled {len(jobs)} files for {arch} in {time.perf_counter() - t0:.1f} s")
    log(f"{'kernel':58s} {'regs':>5s} {'smem':>6s} {'spill st/ld':>12s}")
    for name, u in sorted(RESULTS["resources"].items()):
        if "mma" in name or u["spill_stores"]:
            log(
                f"{name:58s} {u['registers']:5d} {u['smem']:6d} {u['spill_stores']:5d}/{u['spill_loads']:<5d}"
            )


# -- 2. checks ---------------------------------------------------------------------------------------------


def check(name: str, fn) -> bool:
    try:
        fn()
        RESULTS["checks"].append({"name": name, "ok": True})
        log(f"  ok    {name}")
        return True
    except Exception as exc:  # report and go on: one run should show every failure
        RESULTS["checks"].append({"name": name, "ok": False, "error": f"{type(exc).__name__}: {exc}"[:2000]})
        log(f"  FAIL  {name}: {type(exc).__name__}: {str(exc)[:600]}")
        traceback.print_exc(limit=3)
        return False


def attention_checks() -> None:
    import attn_cuda
    from attn_reference import attention_naive
    from attn_reference.testing.inputs import attention_inputs
    from attn_reference.testing.tolerance import assert_attention_close

    shapes = [
        (2, 113, 203, 4, 4),
        (2, 203, 113, 8, 2),
        (1, 1024, 1024, 6, 1),
        (3, 1, 77, 2, 2),
        (1, 257, 257, 2, 1),
    ]
    if QUICK:
        shapes = [shapes[0], shapes[1]]
    for dtype in (torch.float16, torch.bfloat16):
        for d in (64, 128):
            for causal in (False, True):
                for variant in sorted(attn_cuda.flash.FWD_VARIANTS):

                    def fwd_variant(variant=variant, d=d, dtype=dtype, causal=causal):
                        for b, sq, sk, hq, hk in ((2, 203, 113, 4, 2), (1, 300, 517, 2, 1)):
                            q, k, v = attention_inputs(
                                b, sq, sk, hq, hk, d, dtype=dtype, device="cuda", seed=4
                            )
                            out, lse = attn_cuda.flash.flash_fwd(
                                q, k, v, d**-0.5, causal, kernel="mma", variant=variant
                            )
                            ro, rl = attention_naive(q, k, v, causal=causal, return_lse=True)
                            lo, ll = attention_naive(
                                q, k, v, causal=causal, return_lse=True, accum_dtype=None
                            )
                            assert_attention_close(out, ro, lo, name="out")
                            assert_attention_close(lse, rl, ll, name="lse")

                    check(
                        f"flash mma fwd variant {variant} {str(dtype)[6:]} d{d} {'causal' if causal else 'full'}",
                        fwd_variant,
                    )
                for b, sq, sk, hq, hk in shapes:
                    tag = f"{str(dtype)[6:]} d{d} {'causal' if causal else 'full'} b{b} sq{sq} sk{sk} h{hq}/{hk}"

                    def fwd_bwd(b=b, sq=sq, sk=sk, hq=hq, hk=hk, d=d, dtype=dtype, causal=causal):
                        q, k, v = attention_inputs(
                            b, sq, sk, hq, hk, d, dtype=dtype, device="cuda", seed=1, requires_grad=True
                        )
                        out, lse = attn_cuda.flash_attn_func(q, k, v, causal=causal, return_lse=True)
                        dout = torch.randn_like(out)
                        grads = torch.autograd.grad(out, (q, k, v), dout)
                        refs = []
                        for accum in (torch.float32, None):
                            ins = [t.detach().clone().requires_grad_(True) for t in (q, k, v)]
                            o, l = attention_naive(*ins, causal=causal, accum_dtype=accum, return_lse=True)
                            refs.append((o, l, torch.autograd.grad(o, ins, dout)))
                        (ro, rl, rg), (lo, ll, lg) = refs
                        assert_attention_close(out, ro, lo, name="out")
                        assert_attention_close(lse, rl, ll, name="lse")
                        for n, g, r, lw in zip(("dq", "dk", "dv"), grads, rg, lg):
                            assert_attention_close(g, r, lw, name=n)

                    check(f"flash mma fwd+bwd {tag}", fwd_bwd)
            for version in ("v1", "v2"):

                def scalar(version=version, dtype=dtype):
                    q, k, v = attention_inputs(2, 77, 131, 4, 2, 128, dtype=dtype, device="cuda", seed=2)
                    for causal in (False, True):
                        out, lse = attn_cuda.flash_attn_scalar_func(
                            q, k, v, causal=causal, version=version, return_lse=True
                        )
                        ro, rl = attention_naive(q, k, v, causal=causal, return_lse=True)
                        lo, ll = attention_naive(q, k, v, causal=causal, return_lse=True, accum_dtype=None)
                        assert_attention_close(out, ro, lo, name="out")
                        assert_attention_close(lse, rl, ll, name="lse")

                check(f"flash scalar {version} {str(dtype)[6:]} d128 full+causal", scalar)


def basics_checks() -> None:
    from attn_cuda import basics
    from attn_cuda.basics.overlap import reference_transform

    def vadd():
        for dt in (torch.float32, torch.float16, torch.bfloat16):
            x, y = (torch.randn(1_000_003, device="cuda").to(dt) for _ in range(2))
            torch.testing.assert_close(basics.vector_add(x, y), x + y)
        a = torch.randn(1 << 20, device="cuda")
        torch.testing.assert_close(basics.vector_add(a, a, vectorized=True), a + a)

    def softmax():
        for shape in ((7, 1), (33, 1000), (5, 20000)):
            x = torch.randn(shape, device="cuda") * 4
            torch.testing.assert_close(basics.softmax(x), torch.softmax(x, -1), atol=1e-6, rtol=1e-5)

    def matmul(variant, **kw):
        def run():
            for dt in (torch.float16, torch.bfloat16, torch.float32):
                if variant == "mma" and dt == torch.float32:
                    continue
                # mma: ragged on every edge of both block tiles (rows, columns and the last K tile)
                shapes = ((200, 136, 264), (333, 200, 264)) if variant == "mma" else ((130, 77, 93),)
                for m, k, n in shapes:
                    a = (torch.randn(m, k, device="cuda") / k**0.25).to(dt)
                    b = (torch.randn(k, n, device="cuda") / k**0.25).to(dt)
                    tol = {torch.float32: 1e-4, torch.float16: 2e-2, torch.bfloat16: 6e-2}[dt]
                    torch.testing.assert_close(
                        basics.matmul(a, b, variant=variant, **kw),
                        (a.double() @ b.double()).to(dt),
                        atol=tol,
                        rtol=tol,
                    )

        return run

    def reduction(variant):
        def run():
            for n in (1, 1000, 1 << 20, (1 << 22) + 3):
                x = torch.rand(n, device="cuda")
                torch.testing.assert_close(
                    basics.reduce_sum(x, variant), x.double().sum().float(), rtol=1e-5, atol=1e-3
                )

        return run

    def overlap():
        x = torch.randn(1 << 20).pin_memory()
        for streams in (1, 4):
            y = torch.empty_like(x).pin_memory()
            basics.overlap_pipeline(x, y, streams=streams, chunks=8, iters=16)
            torch.cuda.synchronize()
            torch.testing.assert_close(y, reference_transform(x.cuda(), 16).cpu(), atol=1e-3, rtol=1e-3)

    check("basics hello", lambda: basics.hello(1, 2, 7))
    check("basics vector_add", vadd)
    check("basics softmax", softmax)
    for v in basics.MATMUL_VARIANTS:
        check(f"basics matmul {v}", matmul(v))
    from attn_cuda.basics.matmul import MMA_DEFAULT_LAYOUT, MMA_LAYOUTS, MMA_ORDERS, MMA_TILES

    for tile in MMA_TILES:
        for order in MMA_ORDERS:
            check(f"basics matmul mma [{tile} {order}]", matmul("mma", tile=tile, order=order))
        for layout in sorted(set(MMA_LAYOUTS) - {MMA_DEFAULT_LAYOUT}):
            check(f"basics matmul mma [{tile} {layout} smem]", matmul("mma", tile=tile, layout=layout))
    for v in basics.REDUCTION_VARIANTS:
        check(f"basics reduction {v}", reduction(v))
    check("basics stream overlap", overlap)


# -- 3. timings --------------------------------------------------------------------------------------------


def bench(fn, warmup=25, rep=100) -> float:
    """Median milliseconds (triton.testing.do_bench: CUDA events, L2 flushed between calls)."""
    if QUICK:
        warmup, rep = 10, 40
    try:
        from triton.testing import do_bench

        return float(do_bench(fn, warmup=warmup, rep=rep, return_mode="median"))
    except ImportError:  # pragma: no cover - triton is on the GPU machine
        for _ in range(5):
            fn()
        times = []
        for _ in range(20):
            s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            s.record()
            fn()
            e.record()
            e.synchronize()
            times.append(s.elapsed_time(e))
        return sorted(times)[len(times) // 2]


def timed(
    label: str,
    fn,
    *,
    flops: float | None = None,
    bytes_: float | None = None,
    group: str = "",
    ref: str | None = None,
):
    try:
        ms = bench(fn)
    except Exception as exc:
        log(f"  FAIL timing {label}: {type(exc).__name__}: {str(exc)[:300]}")
        RESULTS["timings"].append({"label": label, "group": group, "error": str(exc)[:500]})
        return None
    row = {"label": label, "group": group, "ms": ms, "ref": ref}
    if flops:
        row["tflops"] = flops / ms / 1e9
    if bytes_:
        row["gbps"] = bytes_ / ms / 1e6
    RESULTS["timings"].append(row)
    extra = f"{row['tflops']:8.1f} TFLOP/s" if flops else f"{row.get('gbps', 0):8.0f} GB/s"
    log(f"  {label:52s} {ms:9.3f} ms {extra}")
    return row


def attention_timings() -> None:
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.nn.functional import scaled_dot_product_attention as sdpa

    import attn_cuda
    from attn_cuda import runtime as rt

    hopper = rt.device_arch() == "sm_90a"
    for d, seqlen in ((128, 16384), (64, 16384)):
        heads, batch = 2048 // d, 16384 // seqlen
        for causal in (False, True):
            if d == 64 and causal:
                continue
            shape = (batch, seqlen, heads, d)
            q, k, v = (torch.randn(shape, device="cuda", dtype=torch.bfloat16) for _ in range(3))
            flops = 4 * batch * seqlen * seqlen * heads * d / (2 if causal else 1)
            tag = f"hd{d} s{seqlen} {'causal' if causal else 'full'}"
            qt, kt, vt = (t.transpose(1, 2) for t in (q, k, v))  # SDPA wants (b, h, s, d)

            def torch_fwd(qt=qt, kt=kt, vt=vt, causal=causal):
                with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
                    return sdpa(qt, kt, vt, is_causal=causal)

            timed(
                f"fwd {tag} attn-cuda",
                lambda q=q, k=k, v=v, causal=causal: attn_cuda.flash_attn_func(q, k, v, causal=causal),
                flops=flops,
                group=f"fwd {tag}",
                ref=f"fwd {tag} torch-flash",
            )
            timed(f"fwd {tag} torch-flash", torch_fwd, flops=flops, group=f"fwd {tag}")
            for variant in sorted(attn_cuda.flash.FWD_VARIANTS):  # every tiling, the default included
                timed(
                    f"fwd {tag} attn-cuda [{variant}]",
                    lambda q=q, k=k, v=v, causal=causal, variant=variant, d=d: attn_cuda.flash.flash_fwd(
                        q, k, v, d**-0.5, causal, kernel="mma", variant=variant
                    ),
                    flops=flops,
                    group=f"fwd {tag}",
                    ref=f"fwd {tag} torch-flash",
                )
            for pingpong in (
                (True, False) if hopper else ()
            ):  # the TMA + wgmma forward (the default on sm_90a)
                timed(
                    f"fwd {tag} attn-cuda [wgmma{'' if pingpong else ' no ping-pong'}]",
                    lambda q=q, k=k, v=v, causal=causal, d=d, pp=pingpong: attn_cuda.flash.flash_fwd(
                        q, k, v, d**-0.5, causal, kernel="wgmma", pingpong=pp
                    ),
                    flops=flops,
                    group=f"fwd {tag}",
                    ref=f"fwd {tag} torch-flash",
                )
            if d != 128:
                continue
            qg, kg, vg = (t.clone().requires_grad_(True) for t in (q, k, v))
            dout = torch.randn_like(q)

            def ours_fb(causal=causal, qg=qg, kg=kg, vg=vg, dout=dout):
                out = attn_cuda.flash_attn_func(qg, kg, vg, causal=causal)
                out.backward(dout)

            qtg, ktg, vtg = (t.transpose(1, 2).detach().clone().requires_grad_(True) for t in (q, k, v))
            dout_t = dout.transpose(1, 2)

            def torch_fb(causal=causal, qtg=qtg, ktg=ktg, vtg=vtg, dout_t=dout_t):
                with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
                    out = sdpa(qtg, ktg, vtg, is_causal=causal)
                out.backward(dout_t)

            timed(
                f"fwd+bwd {tag} attn-cuda",
                ours_fb,
                flops=3.5 * flops,
                group=f"fwd+bwd {tag}",
                ref=f"fwd+bwd {tag} torch-flash",
            )
            timed(f"fwd+bwd {tag} torch-flash", torch_fb, flops=3.5 * flops, group=f"fwd+bwd {tag}")
            for bwd_variant in sorted(
                set(attn_cuda.flash.BWD_VARIANTS) - {attn_cuda.flash.DEFAULT_BWD_VARIANT}
            ):
                # The backward op reads its variant from the environment at call time.
                with mock.patch.dict(os.environ, {"ATTN_CUDA_BWD_VARIANT": bwd_variant}):
                    timed(
                        f"fwd+bwd {tag} attn-cuda [bwd {bwd_variant}]",
                        ours_fb,
                        flops=3.5 * flops,
                        group=f"fwd+bwd {tag}",
                        ref=f"fwd+bwd {tag} torch-flash",
                    )


def basics_timings() -> None:
    from attn_cuda import basics

    n = 8192
    a, b = (torch.randn(n, n, device="cuda", dtype=torch.float16) / n**0.25 for _ in range(2))
    flops = 2 * n**3
    timed("matmul fp16 8192^3 torch.matmul", lambda: torch.matmul(a, b), flops=flops, group="matmul")
    timed(
        "matmul fp16 8192^3 mma (tensor cores)",
        lambda: basics.matmul(a, b, variant="mma"),
        flops=flops,
        group="matmul",
        ref="matmul fp16 8192^3 torch.matmul",
    )
    from attn_cuda.basics.matmul import MMA_DEFAULT_LAYOUT, MMA_LAYOUTS, MMA_ORDERS, MMA_TILES

    # Every tile x block order; the first tile (128x128, the default until 2026-11-22) keeps its earlier
    # case names ("[grouped]", "[plain]") so --compare still matches them with older runs.
    for tile in MMA_TILES:
        for order in MMA_ORDERS:
            timed(
                f"matmul fp16 8192^3 mma [{order}]"
                if tile == "128x128"
                else f"matmul fp16 8192^3 mma [{tile} {order}]",
                lambda order=order, tile=tile: basics.matmul(a, b, variant="mma", order=order, tile=tile),
                flops=flops,
                group="matmul",
                ref="matmul fp16 8192^3 torch.matmul",
            )
    # Swizzle versus padding versus neither: the default tile and order, only the shared-memory layout changes.
    for layout in sorted(set(MMA_LAYOUTS) - {MMA_DEFAULT_LAYOUT}):
        timed(
            f"matmul fp16 8192^3 mma [{layout} smem]",
            lambda layout=layout: basics.matmul(a, b, variant="mma", layout=layout),
            flops=flops,
            group="matmul",
            ref="matmul fp16 8192^3 torch.matmul",
        )
    if QUICK:
        return
    m = 4096
    a4, b4 = a[:m, :m].contiguous(), b[:m, :m].contiguous()
    for v in ("regblock", "tiled"):
        timed(
            f"matmul fp16 4096^3 {v}",
            lambda v=v: basics.matmul(a4, b4, variant=v),
            flops=2 * m**3,
            group="matmul",
        )
    a2, b2 = a[:2048, :2048].contiguous(), b[:2048, :2048].contiguous()
    timed(
        "matmul fp16 2048^3 naive",
        lambda: basics.matmul(a2, b2, variant="naive"),
        flops=2 * 2048**3,
        group="matmul",
    )

    numel = 1 << 28  # 1 GiB of float32
    x = torch.rand(numel, device="cuda")
    y = torch.empty_like(x)
    copy = timed(
        "copy 1 GiB (read + write) ceiling", lambda: y.copy_(x), bytes_=2 * 4 * numel, group="reduction"
    )
    for v in basics.REDUCTION_VARIANTS:
        timed(
            f"reduction {v} (reads 1 GiB)",
            lambda v=v: basics.reduce_sum(x, v),
            bytes_=4 * numel,
            group="reduction",
            ref="copy 1 GiB (read + write) ceiling" if copy else None,
        )
    timed(
        "reduction torch.sum",
        lambda: x.sum(),
        bytes_=4 * numel,
        group="reduction",
        ref="copy 1 GiB (read + write) ceiling",
    )
    va, vb = x[: 1 << 26], y[: 1 << 26]
    timed(
        "vector_add fp32 2^26",
        lambda: basics.vector_add(va, vb),
        bytes_=3 * 4 * (1 << 26),
        group="vector_add",
    )
    timed(
        "vector_add fp32 2^26 torch.add",
        lambda: torch.add(va, vb),
        bytes_=3 * 4 * (1 << 26),
        group="vector_add",
    )

    # Stream overlap: the same work on one stream and on four.
    n = 1 << 26
    h_in = torch.randn(n).pin_memory()
    h_out = torch.empty_like(h_in).pin_memory()
    iters = 48
    results = {}
    for streams in (1, 2, 4, 8):
        row = timed(
            f"stream overlap {streams} stream(s), 16 chunks",
            lambda s=streams: basics.overlap_pipeline(h_in, h_out, streams=s, chunks=16, iters=iters),
            bytes_=2 * 4 * n,
            group="overlap",
        )
        if row:
            results[streams] = row["ms"]
    if 1 in results:
        RESULTS["overlap_speedup"] = {s: results[1] / ms for s, ms in results.items()}
        log(
            f"  overlap speedup vs 1 stream: { {s: round(v, 2) for s, v in RESULTS['overlap_speedup'].items()} }"
        )


# -- 4. report ---------------------------------------------------------------------------------------------


def summary(previous: dict | None = None) -> None:
    """The table of every timing; with ``previous`` (an earlier run's JSON) a column of its milliseconds and
    the speedup since, matched by case name (case names are kept stable across versions for this)."""
    rows = {r["label"]: r for r in RESULTS["timings"] if "ms" in r}
    before = {r["label"]: r["ms"] for r in (previous or {}).get("timings", []) if "ms" in r}
    ok = sum(c["ok"] for c in RESULTS["checks"])
    log("\n==== attn-cuda on " + RESULTS["env"].get("device", "?") + " ====")
    log(
        f"checks: {ok}/{len(RESULTS['checks'])} passed"
        + "".join(f"\n  FAILED: {c['name']}" for c in RESULTS["checks"] if not c["ok"])
    )
    log(
        f"{'case':52s} {'ms':>9s} {'TFLOP/s|GB/s':>13s} {'vs ref':>8s}"
        + (f" {'prev ms':>9s} {'speedup':>8s}" if before else "")
    )
    for label, r in rows.items():
        rate = r.get("tflops") or r.get("gbps") or 0
        ratio = ""
        ref = rows.get(r.get("ref") or "")
        if ref:
            ratio = f"{ref['ms'] / r['ms']:.2f}x"
            if "reduction" in label and "gbps" in r:
                ratio = f"{r['gbps'] / ref['gbps']:.0%}"
        prev = ""
        if before:
            prev = (
                f" {before[label]:9.3f} {before[label] / r['ms']:7.2f}x" if label in before else f" {'-':>9s}"
            )
        log(f"{label:52s} {r['ms']:9.3f} {rate:13.1f} {ratio:>8s}{prev}")
    if "overlap_speedup" in RESULTS:
        log(
            "stream overlap speedup: "
            + ", ".join(f"{s} streams {v:.2f}x" for s, v in RESULTS["overlap_speedup"].items())
        )


def main(argv: list[str] | None = None) -> int:
    import argparse

    global QUICK
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="fewer check shapes, shorter timings")
    parser.add_argument("--compare", metavar="JSON", help="an earlier run's attn_cuda_gpu_check.json")
    parser.add_argument("--skip", action="append", default=[], help="stage to skip (repeatable)")
    opts = parser.parse_args(argv)
    QUICK = opts.quick
    previous = None
    if opts.compare:
        with open(opts.compare) as f:
            previous = json.load(f)
    if not torch.cuda.is_available():
        log("no CUDA device")
        return 2
    from attn_cuda import runtime as rt

    arch = rt.device_arch()
    RESULTS["env"] = {
        "quick": QUICK,
        "device": torch.cuda.get_device_name(),
        "arch": arch,
        "torch": torch.__version__,
        "nvrtc": ".".join(map(str, rt.nvrtc_version())),
        "python": sys.version.split()[0],
    }
    log(f"env: {RESULTS['env']}")
    t0 = time.perf_counter()
    stages = [
        ("compile", lambda: compile_everything(arch)),
        ("attention checks", attention_checks),
        ("basics checks", basics_checks),
        ("attention timings", attention_timings),
        ("basics timings", basics_timings),
    ]
    for name, fn in stages:
        if name in opts.skip:
            continue
        log(f"\n== {name} ({time.perf_counter() - t0:.0f} s) ==")
        try:
            fn()
        except Exception as exc:
            log(f"stage {name} failed: {type(exc).__name__}: {exc}")
            traceback.print_exc()
            RESULTS.setdefault("stage_errors", {})[name] = f"{type(exc).__name__}: {exc}"
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
    RESULTS["seconds"] = time.perf_counter() - t0
    out = os.environ.get("OUT")
    if out:
        os.makedirs(out, exist_ok=True)
        with open(os.path.join(out, "attn_cuda_gpu_check.json"), "w") as f:
            json.dump(RESULTS, f, indent=1, default=str)
    summary(previous)
    return 0 if all(c["ok"] for c in RESULTS["checks"]) and not RESULTS.get("stage_errors") else 1


if __name__ == "__main__":
    sys.exit(main())
