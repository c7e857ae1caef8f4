"""One-shot GPU check for attn-cutlass: compile, verify, time, side by side with FA4 and cuDNN SDPA.

Run on the Hopper machine from the repository root (PYTHONPATH: the CuTe DSL site dir + packages/*/src):

    python packages/attn-cutlass/tools/gpu_check.py            # everything, ~3 minutes
    python packages/attn-cutlass/tools/gpu_check.py --quick    # correctness + hd128 16k fwd, fwd+bwd

Every step is guarded: a failure is printed with its traceback and recorded, and the script goes on.
The last thing printed is a short table; with ``$OUT`` set, full results go to ``$OUT/attn_cutlass_gpu.json``.
FLOPs: forward 4*b*s*s*h*d (halved when causal), forward+backward 3.5x forward; GEMM 2*M*N*K.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import traceback
from pathlib import Path

import torch

RESULTS: dict = {"compile": {}, "correctness": {}, "timing": [], "errors": []}


def guarded(name):
    def deco(fn):
        def run(*a, **kw):
            try:
                return fn(*a, **kw)
            except Exception as exc:
                tb = traceback.format_exc()
                print(f"[FAIL] {name}: {type(exc).__name__}: {exc}\n{tb}", flush=True)
                RESULTS["errors"].append(
                    {"step": name, "error": f"{type(exc).__name__}: {exc}", "tb": tb[-3000:]}
                )
                return None

        return run

    return deco


def bench_ms(fn, warmup=5, rep=20) -> float:
    """Median of CUDA-event timings after warm-up."""
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(rep):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end))
    times.sort()
    return times[len(times) // 2]


# ------------------------------------------------------------------------------------------- compile
@guarded("compile")
def compile_step():
    from attn_cutlass.compile import compile_flash_bwd_sm90, compile_flash_fwd_sm90, compile_gemm_sm90

    # One fake-tensor build shows the bare compile time; the interface compiles the rest on first call
    # (reported per timing row as *_first_call_s).
    t = compile_flash_fwd_sm90("bfloat16", 128, keep_ptx=True)
    RESULTS["compile"]["fwd_sm90_hd128"] = round(t.seconds, 2)
    print(f"compile fwd sm90 hd128: {t.seconds:.1f} s", flush=True)
    t = compile_flash_bwd_sm90("bfloat16", 128, keep_ptx=True)
    RESULTS["compile"]["bwd_sm90_hd128"] = round(t.seconds, 2)
    print(f"compile bwd sm90 hd128: {t.seconds:.1f} s", flush=True)
    t = compile_gemm_sm90("bfloat16", keep_ptx=True)
    RESULTS["compile"]["gemm_sm90"] = round(t.seconds, 2)
    print(f"compile gemm sm90: {t.seconds:.1f} s", flush=True)


# --------------------------------------------------------------------------------------- correctness
def _max_err(a, b):
    a, b = a.float(), b.float()
    diff = torch.where(a == b, torch.zeros_like(a), (a - b).abs())  # equal infinities (empty rows) agree
    return diff.nan_to_num(nan=float("inf")).max().item()


@guarded("correctness_fwd")
def correctness_fwd():
    import attn_cutlass
    from attn_reference.naive import attention_naive

    g = torch.Generator(device="cuda").manual_seed(0)
    cases = [
        dict(b=2, sq=300, sk=300, hq=4, hk=4, d=128, causal=False),
        dict(b=2, sq=300, sk=517, hq=4, hk=4, d=128, causal=True),
        dict(b=2, sq=517, sk=300, hq=4, hk=4, d=64, causal=True),
        dict(b=1, sq=200, sk=333, hq=8, hk=2, d=256, causal=False),
        dict(b=1, sq=257, sk=257, hq=4, hk=1, d=128, causal=False, window=(31, 7), softcap=5.0),
    ]
    for i, c in enumerate(cases):
        for dtype in (torch.bfloat16, torch.float16) if i < 2 else (torch.bfloat16,):
            name = "fwd " + " ".join(f"{k}={v}" for k, v in c.items()) + f" {dtype}"
            q = torch.randn(c["b"], c["sq"], c["hq"], c["d"], device="cuda", dtype=dtype, generator=g)
            k = torch.randn(c["b"], c["sk"], c["hk"], c["d"], device="cuda", dtype=dtype, generator=g)
            v = torch.randn(c["b"], c["sk"], c["hk"], c["d"], device="cuda", dtype=dtype, generator=g)
            kw = dict(
                causal=c["causal"], window_size=c.get("window", (-1, -1)), softcap=c.get("softcap", 0.0)
            )
            try:
                out, lse = attn_cutlass.flash_attn_func(q, k, v, return_lse=True, **kw)
                torch.cuda.synchronize()
                ref, ref_lse = attention_naive(q.float(), k.float(), v.float(), return_lse=True, **kw)
                err, lerr = _max_err(out, ref), _max_err(lse, ref_lse)
                ok = err < 2e-2 and lerr < 1e-2 and not torch.isnan(out).any().item()
            except Exception as exc:
                err = lerr = float("nan")
                ok = False
                print(f"[FAIL] {name}: {exc}\n{traceback.format_exc()}", flush=True)
            RESULTS["correctness"][name] = {"ok": ok, "max_err_out": err, "max_err_lse": lerr}
            print(f"[{'ok' if ok else 'BAD'}] {name}: out err {err:.3g}, lse err {lerr:.3g}", flush=True)


@guarded("correctness_bwd")
def correctness_bwd():
    """dq, dk, dv against the fp32 reference: relative Frobenius error per gradient."""
    import attn_cutlass
    from attn_reference.naive import attention_naive

    g = torch.Generator(device="cuda").manual_seed(1)
    cases = [
        dict(b=2, sq=300, sk=300, hq=4, hk=4, d=128, causal=False),
        dict(b=2, sq=300, sk=517, hq=4, hk=4, d=128, causal=True),
        dict(b=2, sq=517, sk=300, hq=4, hk=2, d=64, causal=True),
        dict(b=1, sq=257, sk=257, hq=4, hk=1, d=128, causal=False, window=(31, 7), softcap=5.0),
        dict(b=1, sq=2048, sk=2048, hq=4, hk=4, d=128, causal=True),
    ]
    for i, c in enumerate(cases):
        for dtype in (torch.bfloat16, torch.float16) if i == 0 else (torch.bfloat16,):
            name = "bwd " + " ".join(f"{k}={v}" for k, v in c.items()) + f" {dtype}"
            q = torch.randn(c["b"], c["sq"], c["hq"], c["d"], device="cuda", dtype=dtype, generator=g)
            k = torch.randn(c["b"], c["sk"], c["hk"], c["d"], device="cuda", dtype=dtype, generator=g)
            v = torch.randn(c["b"], c["sk"], c["hk"], c["d"], device="cuda", dtype=dtype, generator=g)
            dout = torch.randn(q.shape, device="cuda", dtype=dtype, generator=g)
            kw = dict(
                causal=c["causal"], window_size=c.get("window", (-1, -1)), softcap=c.get("softcap", 0.0)
            )
            try:
                ins = [t.clone().requires_grad_() for t in (q, k, v)]
                out = attn_cutlass.flash_attn_func(*ins, **kw)
                grads = torch.autograd.grad(out, ins, dout)
                torch.cuda.synchronize()
                ref_in = [t.float().requires_grad_() for t in (q, k, v)]
                ref = attention_naive(*ref_in, **kw)
                ref_grads = torch.autograd.grad(ref, ref_in, dout.float())
                errs = {
                    n: ((a.float() - r).norm() / r.norm().clamp_min(1e-6)).item()
                    for n, a, r in zip(("dq", "dk", "dv"), grads, ref_grads)
                }
                ok = all(e < 2e-2 for e in errs.values())
            except Exception as exc:
                errs = {"error": f"{type(exc).__name__}: {exc}"}
                ok = False
                print(f"[FAIL] {name}: {exc}\n{traceback.format_exc()}", flush=True)
            RESULTS["correctness"][name] = {"ok": ok, **errs}
            print(f"[{'ok' if ok else 'BAD'}] {name}: {errs}", flush=True)


@guarded("correctness_gemm")
def correctness_gemm():
    import attn_cutlass

    for m, n, k in ((1000, 777, 520), (4096, 4096, 4096)):
        for b_col in (False, True):
            a = torch.randn(m, k, device="cuda", dtype=torch.bfloat16)
            b = torch.randn(k, n, device="cuda", dtype=torch.bfloat16)
            if b_col:
                b = b.t().contiguous().t()
            out = attn_cutlass.matmul(a, b)
            ref = a.float() @ b.float()
            rel = ((out.float() - ref).norm() / ref.norm()).item()
            ok = rel < 1e-2
            name = f"gemm {m}x{n}x{k} b_col={b_col}"
            RESULTS["correctness"][name] = {"ok": ok, "rel_err": rel}
            print(f"[{'ok' if ok else 'BAD'}] {name}: rel err {rel:.3g}", flush=True)


# ------------------------------------------------------------------------------------------- timing
def _peers():
    peers = {}
    try:
        from flash_attn.cute import flash_attn_func as fa4

        peers["fa4"] = lambda q, k, v, causal: fa4(q, k, v, causal=causal)
    except Exception as exc:
        print(f"FA4 not importable: {exc}", flush=True)
    try:
        from torch.nn.attention import SDPBackend, sdpa_kernel

        def cudnn(q, k, v, causal):
            with sdpa_kernel(SDPBackend.CUDNN_ATTENTION):
                return torch.nn.functional.scaled_dot_product_attention(
                    q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), is_causal=causal
                ).transpose(1, 2)

        peers["cudnn"] = cudnn
    except Exception as exc:
        print(f"cuDNN SDPA unavailable: {exc}", flush=True)
    return peers


def _first(x):
    return x[0] if isinstance(x, (tuple, list)) else x


@guarded("timing_attention")
def timing_attention(include_bwd=True, quick=False):
    import attn_cutlass

    impls = {"cutlass": lambda q, k, v, causal: attn_cutlass.flash_attn_func(q, k, v, causal=causal)}
    impls.update(_peers())
    configs = [(128, 16384, False), (128, 16384, True)]
    if not quick:
        configs += [(128, 4096, False), (128, 4096, True)]
        configs += [(64, 16384, False), (64, 16384, True), (256, 16384, False), (256, 16384, True)]
    for d, s, causal in configs:
        b, h = 16384 // s, 2048 // d
        q, k, v = (torch.randn(b, s, h, d, device="cuda", dtype=torch.bfloat16) for _ in range(3))
        flops = 4 * b * s * s * h * d / (2 if causal else 1)
        row = {"head_dim": d, "seqlen": s, "causal": causal, "batch": b, "heads": h}
        for name, fn in impls.items():
            try:
                t0 = time.perf_counter()
                _first(fn(q, k, v, causal))
                torch.cuda.synchronize()
                first = time.perf_counter() - t0
                ms = bench_ms(lambda fn=fn, q=q, k=k, v=v, causal=causal: fn(q, k, v, causal))
                row[f"{name}_fwd_tflops"] = round(flops / ms / 1e9, 1)
                row[f"{name}_first_call_s"] = round(first, 2)
            except Exception as exc:
                row[f"{name}_fwd_error"] = f"{type(exc).__name__}: {str(exc)[:200]}"
            if include_bwd:
                try:
                    qg, kg, vg = (t.detach().requires_grad_() for t in (q, k, v))
                    dout = torch.randn_like(q)

                    def fwd_bwd(fn=fn, qg=qg, kg=kg, vg=vg, dout=dout, causal=causal):
                        out = _first(fn(qg, kg, vg, causal))
                        torch.autograd.grad(out, (qg, kg, vg), dout)

                    ms = bench_ms(fwd_bwd, warmup=2, rep=5)
                    row[f"{name}_fwdbwd_tflops"] = round(3.5 * flops / ms / 1e9, 1)
                except Exception as exc:
                    row[f"{name}_fwdbwd_error"] = f"{type(exc).__name__}: {str(exc)[:200]}"
        RESULTS["timing"].append(row)
        print(json.dumps(row), flush=True)
        del q, k, v
        torch.cuda.empty_cache()


@guarded("timing_gemm")
def timing_gemm():
    import attn_cutlass
    from attn_cutlass.gemm import _matmul_sm90

    n = 8192
    a = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    flops = 2 * n**3
    row = {"op": "gemm", "mnk": n}
    t0 = time.perf_counter()
    attn_cutlass.matmul(a, b)
    torch.cuda.synchronize()
    row["cutlass_first_call_s"] = round(time.perf_counter() - t0, 2)
    row["cutlass_tflops"] = round(flops / bench_ms(lambda: attn_cutlass.matmul(a, b)) / 1e9, 1)
    row["torch_tflops"] = round(flops / bench_ms(lambda: torch.matmul(a, b)) / 1e9, 1)
    # Persistence before/after: the same kernel with one CTA per output tile (each CTA's tile loop runs
    # once, the hardware schedules the waves) instead of one CTA per SM walking the tiles.
    tiles = (n // 128) * (n // 256)
    row["cutlass_one_tile_per_cta_tflops"] = round(
        flops / bench_ms(lambda: _matmul_sm90(a, b, num_ctas=tiles)) / 1e9, 1
    )
    RESULTS["timing"].append(row)
    print(json.dumps(row), flush=True)


def table():
    print("\n=== attn-cutlass on", torch.cuda.get_device_name(), "===")
    print("compile seconds:", RESULTS["compile"])
    bad = [k for k, v in RESULTS["correctness"].items() if not v["ok"]]
    print(
        f"correctness: {len(RESULTS['correctness']) - len(bad)}/{len(RESULTS['correctness'])} ok", bad or ""
    )
    print(f"{'case':<28}{'cutlass':>9}{'fa4':>9}{'cudnn':>9}{'ratio/fa4':>11}  (fwd TFLOP/s; fwd+bwd below)")
    for r in RESULTS["timing"]:
        if r.get("op") == "gemm":
            c, t = r.get("cutlass_tflops"), r.get("torch_tflops")
            ratio = f"{c / t:.2f}" if c and t else "-"
            print(f"{'gemm 8192^3 bf16':<28}{c!s:>9}{'':>9}{t!s:>9}{ratio:>11}  (vs torch.matmul)")
            print(
                f"{'  one tile per CTA':<28}{r.get('cutlass_one_tile_per_cta_tflops')!s:>9}  (not persistent)"
            )
            continue
        name = f"hd{r['head_dim']} s{r['seqlen']} {'causal' if r['causal'] else 'full'}"
        for kind in ("fwd", "fwdbwd"):
            c, f, d = (r.get(f"{p}_{kind}_tflops") for p in ("cutlass", "fa4", "cudnn"))
            ratio = f"{c / f:.2f}" if c and f else "-"
            print(f"{name + ' ' + kind:<28}{c!s:>9}{f!s:>9}{d!s:>9}{ratio:>11}")
    if RESULTS["errors"]:
        print("errors in steps:", [e["step"] for e in RESULTS["errors"]])


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument(
        "--quick", action="store_true", help="compile, correctness, hd128 16k timings only (~1.5 min)"
    )
    parser.add_argument("--no-bwd", action="store_true", help="skip forward+backward timings")
    parser.add_argument("--gemm-only", action="store_true", help="GEMM correctness and timings only")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        sys.exit("gpu_check needs a GPU")
    RESULTS["device"] = torch.cuda.get_device_name()
    RESULTS["torch"] = torch.__version__
    start = time.perf_counter()
    if args.gemm_only:
        correctness_gemm()
        timing_gemm()
    else:
        compile_step()
        correctness_fwd()
        correctness_bwd()
        correctness_gemm()
        if not args.quick:
            timing_gemm()
        timing_attention(include_bwd=not args.no_bwd, quick=args.quick)
    RESULTS["wall_s"] = round(time.perf_counter() - start, 1)
    out = os.environ.get("OUT")
    if out:
        Path(out).mkdir(parents=True, exist_ok=True)
        (Path(out) / "attn_cutlass_gpu.json").write_text(json.dumps(RESULTS, indent=1, default=str))
    table()
    print(f"total {RESULTS['wall_s']} s")


if __name__ == "__main__":
    main()
