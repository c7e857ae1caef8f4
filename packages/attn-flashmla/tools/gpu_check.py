"""One run on the Hopper machine: check both paths against attn-reference, then time the issue's cases.

    export PYTHONPATH=$(cat /tmp/site.pythonpath):$(ls -d packages/*/src | paste -sd:)
    python3 packages/attn-flashmla/tools/gpu_check.py            # writes $OUT/flashmla_gpu_check.json

1. Correctness, with FlashMLA's tolerance (attn_reference.testing.mla.assert_mla_close): the conformance
   suite's covering subset of b {1,2,6,64} x s_q {1,2,4} x s_k {20,140,4096} x h_q {1..128} x h_kv {1,2,3,8}
   (every valid (h_q, h_kv) pair, varlen, zero lengths, causal, NaN padding), on the Triton path and the
   default path (CuTe DSL where it applies), plus sparse decoding and prefill (Triton).
2. Speed (bf16, b 128, h_kv 1, d 576, dv 512, page 64, cache_seqlens ~ normal(s_k, s_k / 2)): h_q 16 s_q 1
   (GB/s) and h_q 128 s_q 1/2 (TFLOP/s) at s_k 8192 and 32768, with FlashMLA's formulas (FLOPs
   2 * h_q * s_q * sum(seqlens) * (576 + 512); bytes: the cache read once + q + out), timed with
   triton.testing.do_bench (median, L2 flushed), schedule made outside the timed region. The Triton path
   tries a few tile configurations and reports the best. ``flash_mla`` is timed the same way if importable.
A failure in one case is recorded and the run goes on; the table comes last.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import random
import sys
import time
import traceback

import torch
import triton

import attn_flashmla
from attn_reference import mla
from attn_reference.testing import mla as mla_testing

RESULTS: dict = {"correctness": [], "speed": [], "env": {}}
FLASHMLA_H200 = {  # DeepSeek FlashMLA on the same H200 (shared/device/README.md), main kernel only
    (16, 1, 8192): ("GB/s", 3799),
    (16, 1, 32768): ("GB/s", 4177),
    (128, 1, 8192): ("TFLOP/s", 651),
    (128, 1, 32768): ("TFLOP/s", 684),
    (128, 2, 8192): ("TFLOP/s", 721),
    (128, 2, 32768): ("TFLOP/s", 741),
}
TRITON_SWEEP = ("", "0,64,4,2,2", "0,64,4,3,1", "0,32,8,2,1", "0,64,8,2,1", "0,32,4,3,2")


@contextlib.contextmanager
def env(**values):
    old = {k: os.environ.get(k) for k in values}
    os.environ.update({k: v for k, v in values.items() if v is not None})
    for k, v in values.items():
        if v is None:
            os.environ.pop(k, None)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def decode(inputs, path):
    meta, _ = attn_flashmla.get_mla_metadata()
    kw = inputs.kwargs()
    with env(ATTN_FLASHMLA_PATH=path):
        out = attn_flashmla.flash_mla_with_kvcache(
            kw.pop("q"), kw.pop("k_cache"), kw.pop("block_table"), kw.pop("cache_seqlens"), kw.pop("head_dim_v"),
            meta, None, **kw,
        )  # fmt: skip
    return out, meta.path


def check_correctness():
    dense = mla_testing._dense_grid("full")
    pages = (64, 16, 61, 1)
    for path in ("triton", None):
        for i, case in enumerate(dense):
            dtype = (torch.bfloat16, torch.float16)[i % 2]
            page = 64 if path is None else pages[i % len(pages)]
            case = dataclasses.replace(case, page=page)
            row = {"kind": "dense", "path": path or "default", "case": case.id, "dtype": str(dtype)}
            try:
                inputs = mla_testing.mla_decode_inputs(
                    case.b, case.s_q, case.h_q, case.h_kv, case.s_k, head_dim=case.head_dim, dtype=dtype,
                    device="cuda", page_block_size=case.page, varlen=case.varlen, zero_lengths=case.zero_lengths,
                    causal=case.causal,
                )  # fmt: skip
                (out, lse), used = decode(inputs, path)
                ref_out, ref_lse = mla.flash_mla_with_kvcache(**inputs.kwargs())
                why = mla_testing.mla_mismatch(out, ref_out) or mla_testing.mla_mismatch(
                    lse,
                    ref_lse,
                    mla_testing.LSE_ABS_TOL,
                    mla_testing.LSE_REL_TOL,
                    mla_testing.LSE_COS_DIFF_TOL,
                )
                row.update(ran=used, ok=why is None, why=why)
            except Exception as e:  # record and go on
                row.update(ok=False, why=f"{type(e).__name__}: {e}", trace=traceback.format_exc()[-2000:])
            RESULTS["correctness"].append(row)
            print(
                ("PASS" if row["ok"] else "FAIL"),
                row["path"],
                row.get("ran"),
                row["case"],
                row.get("why") or "",
            )
    for case in mla_testing._sparse_grid("full"):
        row = {"kind": "sparse_decode", "path": "triton", "case": case.id}
        try:
            inputs = mla_testing.mla_sparse_decode_inputs(
                case.b, case.s_q, case.h_q, case.s_k, case.topk, head_dim=case.head_dim, device="cuda",
                page_block_size=case.page, zero_lengths=case.zero_lengths, topk_length=case.topk_length,
                attn_sink=case.attn_sink, extra=case.extra, extra_topk_length=case.extra_topk_length,
                all_invalid_rows=case.all_invalid_rows,
            )  # fmt: skip
            (out, lse), _ = decode(inputs, None)
            ref_out, ref_lse = mla.flash_mla_with_kvcache(**inputs.kwargs())
            why = mla_testing.mla_mismatch(out, ref_out, abs_tol=1e-3) or mla_testing.mla_mismatch(
                lse, ref_lse, mla_testing.LSE_ABS_TOL, mla_testing.LSE_REL_TOL, mla_testing.LSE_COS_DIFF_TOL
            )
            row.update(ok=why is None, why=why)
        except Exception as e:
            row.update(ok=False, why=f"{type(e).__name__}: {e}", trace=traceback.format_exc()[-2000:])
        RESULTS["correctness"].append(row)
        print(("PASS" if row["ok"] else "FAIL"), "sparse", row["case"], row.get("why") or "")
    for case in mla_testing._prefill_grid("full"):
        row = {"kind": "sparse_prefill", "path": "triton", "case": case.id}
        try:
            inputs = mla_testing.mla_sparse_inputs(
                case.s_q, case.s_kv, case.topk, case.h_q, head_dim=case.head_dim, device="cuda",
                attn_sink=case.attn_sink, topk_length=case.topk_length, all_invalid_rows=case.all_invalid_rows,
            )  # fmt: skip
            out, max_logits, lse = attn_flashmla.flash_mla_sparse_fwd(**inputs.kwargs())
            ref_out, ref_max, ref_lse = mla.flash_mla_sparse_fwd(**inputs.kwargs())
            why = (
                mla_testing.mla_mismatch(out, ref_out, 8e-4, 3.01 / 128, 7e-6)
                or mla_testing.mla_mismatch(max_logits, ref_max, 1e-6, 2.01 / 65536, 1e-7)
                or mla_testing.mla_mismatch(lse, ref_lse, 1e-6, 2.01 / 65536, 1e-7)
            )
            row.update(ok=why is None, why=why)
        except Exception as e:
            row.update(ok=False, why=f"{type(e).__name__}: {e}", trace=traceback.format_exc()[-2000:])
        RESULTS["correctness"].append(row)
        print(("PASS" if row["ok"] else "FAIL"), "prefill", row["case"], row.get("why") or "")


def bench_inputs(b, s_q, h_q, s_k, seed=0):
    """Random bf16 inputs made on the GPU (the CPU generator would take minutes at 4M tokens)."""
    rng = random.Random(seed)
    lens = [max(int(rng.normalvariate(s_k, s_k / 2)), s_q) for _ in range(b)]
    max_blocks = -(-max(lens) // 64)
    gen = torch.Generator(device="cuda").manual_seed(seed)
    num_blocks = sum(-(-n // 64) for n in lens)
    cache = torch.randn(num_blocks, 64, 1, 576, device="cuda", dtype=torch.bfloat16, generator=gen) / 10
    table = torch.zeros(b, max_blocks, dtype=torch.int32, device="cuda")
    perm = torch.randperm(num_blocks, device="cuda", generator=gen).to(torch.int32)
    start = 0
    for i, n in enumerate(lens):
        nb = -(-n // 64)
        table[i, :nb] = perm[start : start + nb]
        start += nb
    q = torch.randn(b, s_q, h_q, 576, device="cuda", dtype=torch.bfloat16, generator=gen) / 10
    seqlens = torch.tensor(lens, dtype=torch.int32, device="cuda")
    return q, cache, table, seqlens, sum(lens)


def time_call(fn):
    fn()
    torch.cuda.synchronize()
    return triton.testing.do_bench(fn, warmup=25, rep=100, return_mode="median")  # ms, L2 flushed


def prepared(module, q, cache, table, seqlens, causal):
    meta, _ = module.get_mla_metadata(seqlens, q.shape[1] * q.shape[2], 1, q.shape[2], False, None)
    call = lambda: module.flash_mla_with_kvcache(q, cache, table, seqlens, 512, meta, None, causal=causal)
    call()  # the schedule is made here, outside the timed region
    return call


def check_speed():
    try:
        import flash_mla  # DeepSeek's, when built on this machine
    except Exception:
        flash_mla = None
    RESULTS["env"]["flash_mla"] = flash_mla is not None
    b = 128
    for s_k in (8192, 32768):
        for h_q, s_q in ((16, 1), (128, 1), (128, 2)):
            q, cache, table, seqlens, total = bench_inputs(b, s_q, h_q, s_k)
            causal = s_q > 1
            flops = 2 * h_q * s_q * total * (576 + 512)
            nbytes = (total * 576 + b * s_q * h_q * 576 + b * s_q * h_q * 512) * 2
            row = {
                "b": b,
                "h_q": h_q,
                "s_q": s_q,
                "s_k": s_k,
                "total_seqlens": total,
                "flops": flops,
                "bytes": nbytes,
            }
            ref = None
            for name in ("cute", "triton", "flash_mla"):
                try:
                    if name == "flash_mla":
                        if flash_mla is None:
                            continue
                        ms = time_call(prepared(flash_mla, q, cache, table, seqlens, causal))
                        out = flash_mla.flash_mla_with_kvcache(
                            q,
                            cache,
                            table,
                            seqlens,
                            512,
                            flash_mla.get_mla_metadata()[0],
                            None,
                            causal=causal,
                        )[0]
                    elif name == "triton":
                        best = None
                        for cfg in TRITON_SWEEP:
                            with env(ATTN_FLASHMLA_PATH="triton", ATTN_FLASHMLA_TRITON_CONFIG=cfg or None):
                                try:
                                    call = prepared(attn_flashmla, q, cache, table, seqlens, causal)
                                except Exception as e:  # out of shared memory for this config, ...
                                    row.setdefault("triton_config_errors", {})[cfg] = (
                                        f"{type(e).__name__}: {e}"[:300]
                                    )
                                    continue
                            t = time_call(call)
                            row.setdefault("triton_sweep_ms", {})[cfg or "default"] = t
                            if best is None or t < best[0]:
                                best = (t, cfg or "default", call)
                        ms, row["triton_best_config"], call = best
                        out = call()[0]
                    else:
                        with env(ATTN_FLASHMLA_PATH="cute"):
                            call = prepared(attn_flashmla, q, cache, table, seqlens, causal)
                        ms = time_call(call)
                        out = call()[0]
                    if ref is None:
                        ref = out.float()
                    agree = (out.float() - ref).abs().max().item()
                    row[name] = {
                        "ms": ms,
                        "TFLOP/s": flops / ms / 1e9,
                        "GB/s": nbytes / ms / 1e6,
                        "max_abs_diff_vs_first_path": agree,
                    }
                except Exception as e:
                    row[name] = {"error": f"{type(e).__name__}: {e}", "trace": traceback.format_exc()[-2000:]}
                print(name, h_q, s_q, s_k, row.get(name))
            RESULTS["speed"].append(row)
            del q, cache, table, seqlens
            torch.cuda.empty_cache()


def table():
    lines = []
    bad = [r for r in RESULTS["correctness"] if not r["ok"]]
    n = len(RESULTS["correctness"])
    lines.append(f"correctness: {n - len(bad)}/{n} passed" + ("" if not bad else "; failures:"))
    for r in bad[:20]:
        lines.append(f"  FAIL {r['kind']} {r['path']} {r['case']}: {str(r['why'])[:200]}")
    lines.append("")
    lines.append(
        "| h_q | s_q | s_k | unit | CuTe | Triton (best cfg) | flash_mla here | FlashMLA H200 | CuTe/ref | Triton/ref |"
    )
    lines.append("|---|---|---|---|---|---|---|---|---|---|")
    for r in RESULTS["speed"]:
        unit, ref = FLASHMLA_H200[(r["h_q"], r["s_q"], r["s_k"])]

        def fig(name, unit=unit, r=r):
            v = r.get(name)
            return None if not isinstance(v, dict) or unit not in v else v[unit]

        cute, tri, fm = fig("cute"), fig("triton"), fig("flash_mla")
        fmt = lambda x: "-" if x is None else f"{x:.0f}"
        ratio = lambda x, ref=ref: "-" if x is None else f"{x / ref:.2f}"
        lines.append(
            f"| {r['h_q']} | {r['s_q']} | {r['s_k']} | {unit} | {fmt(cute)} | {fmt(tri)} ({r.get('triton_best_config', '-')})"
            f" | {fmt(fm)} | {ref} | {ratio(cute)} | {ratio(tri)} |"
        )
    return "\n".join(lines)


def main():
    if not torch.cuda.is_available():
        sys.exit("gpu_check: needs a CUDA GPU")
    RESULTS["env"].update(
        device=torch.cuda.get_device_name(),
        torch=torch.__version__,
        triton=triton.__version__,
        python=sys.version.split()[0],
    )
    try:
        import cutlass

        RESULTS["env"]["cutlass_dsl"] = getattr(cutlass, "__version__", "installed")
    except Exception as e:
        RESULTS["env"]["cutlass_dsl"] = f"missing: {e}"
    t0 = time.time()
    if "--speed-only" not in sys.argv:
        check_correctness()
    RESULTS["env"]["correctness_s"] = time.time() - t0
    if "--correctness-only" not in sys.argv:
        check_speed()
    RESULTS["env"]["total_s"] = time.time() - t0
    summary = table()
    out_dir = os.environ.get("OUT")
    if out_dir:
        with open(os.path.join(out_dir, "flashmla_gpu_check.json"), "w") as f:
            json.dump(RESULTS, f, indent=1, default=str)
    print()
    print(json.dumps(RESULTS["env"], default=str))
    print(summary)


if __name__ == "__main__":
    main()
