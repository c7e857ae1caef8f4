"""One run on the Hopper machine: check both paths against attn-reference, then time the issue's cases.

    export PYTHONPATH=$(cat /tmp/site.pythonpath):$(ls -d packages/*/src | paste -sd:)
    python3 packages/attn-flashmla/tools/gpu_check.py --quick    # ~3 min: a few cases per path + speed
    python3 packages/attn-flashmla/tools/gpu_check.py            # the full grid; both write
                                                                 # $OUT/flashmla_gpu_check.json
    python3 packages/attn-flashmla/tools/gpu_check.py --quick --tma --no-cute   # the TMA K tiles too

CuTe DSL cases run in a watched child process (``--child``): each case must finish within
``CUTE_CASE_TIMEOUT`` seconds, or it is reported as a hang (with the last stage the child reached: inputs,
compile, run, check), the child is killed, the case is re-run once with the watchdog kernel
(``ATTN_FLASHMLA_CUTE_WATCHDOG=1``: waits time out, print the barrier and exit) to say where, and the
remaining cases go on in a new child. Compile times are printed apart from run times. ``--cute-only``
skips the Triton path; ``--watchdog`` runs the CuTe cases with the watchdog kernel from the start.

1. Correctness, with FlashMLA's tolerance (attn_reference.testing.mla.assert_mla_close): the conformance
   suite's covering subset of b {1,2,6,64} x s_q {1,2,4} x s_k {20,140,4096} x h_q {1..128} x h_kv {1,2,3,8}
   (every valid (h_q, h_kv) pair, varlen, zero lengths, causal, NaN padding), on the Triton path and the
   default path (CuTe DSL where it applies), plus sparse decoding and prefill (Triton).
2. Speed (bf16, b 128, h_kv 1, d 576, dv 512, page 64, cache_seqlens ~ normal(s_k, s_k / 2)): h_q 16 s_q 1
   (GB/s) and h_q 128 s_q 1/2 (TFLOP/s) at s_k 8192 and 32768, with FlashMLA's formulas (FLOPs
   2 * h_q * s_q * sum(seqlens) * (576 + 512); bytes: the cache read once + q + out), timed with
   triton.testing.do_bench (median, L2 flushed), schedule made outside the timed region. The Triton path
   tunes its tile config on the schedule's first call (decode_fwd.candidate_configs); every candidate's
   time is recorded. ``flash_mla`` is timed the same way if importable.
3. ``--tma``: the Triton path's TMA K tiles (``decode_fwd`` ``TMA`` field, the default since the H200
   check of 2026-11-22) against the gather-only kernel (``ATTN_FLASHMLA_TRITON_TMA=0``).
   Correctness: every dense case once more with a forced TMA config (``TMA_CHECK_CONFIGS``, alternating;
   the page sizes 64 and 16 take the TMA kernel, 61 and 1 fall back to the gather path, recorded as
   ``tma_used``). Speed: a ``triton_gather`` row per case, tuned with ``ATTN_FLASHMLA_TRITON_TMA=0``, next
   to the default ``triton`` row (each candidate's gather and TMA times side by side as ``TMA-AB`` lines).
A failure in one case is recorded and the run goes on; the table comes last.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import queue
import random
import subprocess
import sys
import threading
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
CUTE_CASE_TIMEOUT = 60  # seconds per CuTe case (a first compile included)
QUICK = "--quick" in sys.argv
TMA = "--tma" in sys.argv
#: Forced configs (ATTN_FLASHMLA_TRITON_CONFIG, BLOCK_M 0 = the row bucket's) for the --tma correctness
#: pass: 64-token tiles in one program and 16-token tiles with DV_SPLIT 2 (pages of 16 take TMA too).
TMA_CHECK_CONFIGS = ("0,64,8,2,1,1,1", "0,16,4,2,1,2,1")
#: Environment of each timed path: the Triton rows differ only in the TMA switch.
PATH_ENV = {
    "triton": {"ATTN_FLASHMLA_PATH": "triton", "ATTN_FLASHMLA_TRITON_TMA": None},
    "triton_gather": {"ATTN_FLASHMLA_PATH": "triton", "ATTN_FLASHMLA_TRITON_TMA": "0"},
    "cute": {"ATTN_FLASHMLA_PATH": "cute"},
    "flash_mla": {"ATTN_FLASHMLA_PATH": None},
}
SPEED_CASES = [(s_k, h_q, s_q) for s_k in (8192, 32768) for h_q, s_q in ((16, 1), (128, 1), (128, 2))]


def log(*args):
    print(*args, flush=True)


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


def decode(inputs, path, extra_env=None):
    """One call on ``path``; returns ((out, lse), the path that ran, the kernel config it ran)."""
    meta, _ = attn_flashmla.get_mla_metadata()
    with env(ATTN_FLASHMLA_PATH=path, **(extra_env or {})):
        out = inputs.call(attn_flashmla.flash_mla_with_kvcache, meta)
    return out, meta.path, meta.kernel_config


def sparse_decode_inputs(case):
    """A conformance-grid sparse decoding case, made on the GPU."""
    return mla_testing.mla_sparse_decode_inputs(
        case.b, case.s_q, case.h_q, case.s_k, case.topk, head_dim=case.head_dim, device="cuda",
        page_block_size=case.page, zero_lengths=case.zero_lengths, topk_length=case.topk_length,
        attn_sink=case.attn_sink, extra=case.extra, extra_topk_length=case.extra_topk_length,
        all_invalid_rows=case.all_invalid_rows,
    )  # fmt: skip


def sparse_decode_mismatch(out, lse, ref) -> str | None:
    """Why sparse decoding's (out, lse) differs from the reference's ``ref`` beyond tolerance, or None."""
    ref_out, ref_lse = ref
    return mla_testing.mla_mismatch(out, ref_out, abs_tol=1e-3) or mla_testing.mla_mismatch(
        lse, ref_lse, mla_testing.LSE_ABS_TOL, mla_testing.LSE_REL_TOL, mla_testing.LSE_COS_DIFF_TOL
    )


def dense_cases(path):
    """(case, dtype) pairs: the covering grid (quick: a few of it), page sizes cycled on the Triton path."""
    dense = mla_testing._dense_grid("full")
    if QUICK:
        dense = [dense[0], dense[5], dense[-4], dense[-3], dense[-2]]
    pages = (64, 16, 61, 1)
    out = []
    for i, case in enumerate(dense):
        if path == "cute" and case.head_dim != 576:
            continue
        dtype = (torch.bfloat16, torch.float16)[i % 2] if not (QUICK and path == "cute") else torch.bfloat16
        page = 64 if path == "cute" else pages[i % len(pages)]
        out.append((dataclasses.replace(case, page=page), dtype))
    return out


def check_dense_case(case, dtype, path, tma_config=None):
    """Run one dense case on ``path`` (``tma_config``: forced TMA config) against the reference."""
    row = {"kind": "dense", "path": path if tma_config is None else "triton_tma", "case": case.id}
    row["dtype"] = str(dtype)
    extra_env = None if tma_config is None else {"ATTN_FLASHMLA_TRITON_CONFIG": tma_config}
    try:
        inputs = mla_testing.mla_decode_inputs(
            case.b, case.s_q, case.h_q, case.h_kv, case.s_k, head_dim=case.head_dim, dtype=dtype,
            device="cuda", page_block_size=case.page, varlen=case.varlen, zero_lengths=case.zero_lengths,
            causal=case.causal,
        )  # fmt: skip
        log(f"STAGE run {case.id}")
        start = time.perf_counter()
        (out, lse), used, config = decode(inputs, path, extra_env)
        torch.cuda.synchronize()
        row["first_call_s"] = time.perf_counter() - start
        if tma_config is not None:
            from attn_flashmla import decode_fwd

            row["config"] = config
            row["tma_used"] = decode_fwd.uses_tma(inputs.k_cache, config)
        log(f"STAGE check {case.id}")
        ref_out, ref_lse = mla.flash_mla_with_kvcache(**inputs.kwargs())
        why = mla_testing.mla_mismatch(out, ref_out) or mla_testing.mla_mismatch(
            lse, ref_lse, mla_testing.LSE_ABS_TOL, mla_testing.LSE_REL_TOL, mla_testing.LSE_COS_DIFF_TOL
        )
        row.update(ran=used, ok=why is None, why=why)
    except Exception as e:  # record and go on
        row.update(ok=False, why=f"{type(e).__name__}: {e}", trace=traceback.format_exc()[-2000:])
    return row


def check_correctness():
    for i, (case, dtype) in enumerate(dense_cases("triton")):
        row = check_dense_case(case, dtype, "triton")
        RESULTS["correctness"].append(row)
        log(("PASS" if row["ok"] else "FAIL"), "triton", row.get("ran"), row["case"], row.get("why") or "")
        if TMA:
            row = check_dense_case(case, dtype, "triton", TMA_CHECK_CONFIGS[i % len(TMA_CHECK_CONFIGS)])
            RESULTS["correctness"].append(row)
            log(("PASS" if row["ok"] else "FAIL"), "triton_tma", f"tma_used={row.get('tma_used')}",
                row["case"], row.get("why") or "")  # fmt: skip
    sparse = mla_testing._sparse_grid("full")
    for case in sparse[:2] if QUICK else sparse:
        row = {"kind": "sparse_decode", "path": "triton", "case": case.id}
        try:
            inputs = sparse_decode_inputs(case)
            (out, lse), _, _ = decode(inputs, None)
            why = sparse_decode_mismatch(out, lse, mla.flash_mla_with_kvcache(**inputs.kwargs()))
            row.update(ok=why is None, why=why)
        except Exception as e:
            row.update(ok=False, why=f"{type(e).__name__}: {e}", trace=traceback.format_exc()[-2000:])
        RESULTS["correctness"].append(row)
        log(("PASS" if row["ok"] else "FAIL"), "sparse", row["case"], row.get("why") or "")
    prefill = mla_testing._prefill_grid("full")
    for case in prefill[:1] if QUICK else prefill:
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
        log(("PASS" if row["ok"] else "FAIL"), "prefill", row["case"], row.get("why") or "")


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
    call()  # the schedule is made here (and the Triton config tuned), outside the timed region
    return call, meta


def speed_row(b, h_q, s_q, s_k, total):
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
    return row, flops, nbytes


def time_path(name, q, cache, table, seqlens, causal, flops, nbytes, row):
    """Time one path on one speed case into ``row[name]``; returns the output for the cross-check."""
    if name == "flash_mla":
        import flash_mla as module  # DeepSeek's, when built on this machine
    else:
        module = attn_flashmla
    with env(**PATH_ENV[name]):
        start = time.perf_counter()
        call, meta = prepared(module, q, cache, table, seqlens, causal)
        torch.cuda.synchronize()
        first = time.perf_counter() - start
        if name.startswith("triton"):  # the key depends on the TMA switch: read it in the same env
            from attn_flashmla import decode_fwd

            key = decode_fwd.tune_key(q, cache, int(seqlens.sum()), causal and q.shape[1] > 1)
    ms = time_call(call)
    row[name] = {"ms": ms, "TFLOP/s": flops / ms / 1e9, "GB/s": nbytes / ms / 1e6, "first_call_s": first}
    if name.startswith("triton"):
        config = getattr(meta, "kernel_config", None)
        row[name]["config"] = config
        row[name]["tma_used"] = bool(config) and decode_fwd.uses_tma(cache, config)
        row[name]["tuning_ms"] = [(c, t) for c, t in decode_fwd.TUNE_LOG.get(key, [])]
    return call()[0]


def log_tma_pairs(row, label):
    """``TMA-AB`` lines: each candidate's time with gather loads next to its TMA version's."""
    times = {}
    for name in ("triton_gather", "triton"):
        for config, ms in (row.get(name) or {}).get("tuning_ms", []):
            times[tuple((k, v) for k, v in config.items() if k != "TMA"), config.get("TMA", 0)] = ms
    fmt = lambda x: f"{x:.4f} ms" if isinstance(x, float) else str(x)[:80]
    for base in dict.fromkeys(base for base, _ in times):  # TMA-only candidates have no gather twin
        log(
            "TMA-AB",
            label,
            dict(base),
            "gather",
            fmt(times.get((base, 0), "-")),
            "tma",
            fmt(times.get((base, 1))),
        )


def check_speed(paths=("triton_gather", "triton") if TMA else ("triton",)):
    try:
        import flash_mla
    except Exception:
        flash_mla = None
    RESULTS["env"]["flash_mla"] = flash_mla is not None
    if flash_mla is not None:
        paths = (*paths, "flash_mla")
    b = 128
    for s_k, h_q, s_q in SPEED_CASES:
        q, cache, table, seqlens, total = bench_inputs(b, s_q, h_q, s_k)
        causal = s_q > 1
        row, flops, nbytes = speed_row(b, h_q, s_q, s_k, total)
        outs = {}
        for name in paths:
            try:
                outs[name] = time_path(name, q, cache, table, seqlens, causal, flops, nbytes, row)
            except Exception as e:
                row[name] = {"error": f"{type(e).__name__}: {e}", "trace": traceback.format_exc()[-2000:]}
            if name == "triton" and "triton_gather" in outs and name in outs:  # same inputs, same answer?
                diff = (outs[name].float() - outs["triton_gather"].float()).abs().max().item()
                row[name]["max_abs_diff_vs_gather"] = diff
            shown = {k: v for k, v in row[name].items() if k != "tuning_ms"}
            log("SPEED", name, f"h_q {h_q} s_q {s_q} s_k {s_k}", json.dumps(shown, default=str))
        if "triton_gather" in paths:
            log_tma_pairs(row, f"h_q {h_q} s_q {s_q} s_k {s_k}")
        RESULTS["speed"].append(row)
        del q, cache, table, seqlens
        torch.cuda.empty_cache()


# ---------------------------------------------------------------------------------------------------------
# CuTe DSL cases, in a watched child process
# ---------------------------------------------------------------------------------------------------------


def child_main(spec_path):
    """``--child SPEC``: run the CuTe cases listed in SPEC (JSON), one ``RESULT`` line per case."""
    from attn_flashmla import decode_fwd_sm90

    with open(spec_path) as f:
        spec = json.load(f)
    start = time.perf_counter()
    decode_fwd_sm90._cute()
    log(f"IMPORT {time.perf_counter() - start:.1f}")
    compile_kernel = decode_fwd_sm90._compile

    def logged_compile(key, args):  # so that a hang says whether it was compiling or running
        log(f"STAGE compile {key}")
        began = time.perf_counter()
        kernel = compile_kernel(key, args)
        log(f"COMPILE {key} took {time.perf_counter() - began:.1f} s; launching")
        if not decode_fwd_sm90.watchdog_enabled():
            return kernel

        # Watchdog build: how long the launch took to finish or fail (over 2 s: a wait gave up).
        def synced(*call_args):
            began = time.perf_counter()
            kernel(*call_args)
            try:
                torch.cuda.synchronize()
            except Exception as e:
                log(f"LAUNCH failed after {time.perf_counter() - began:.2f} s: {type(e).__name__}: {e}")
                raise
            log(f"LAUNCH finished after {time.perf_counter() - began:.2f} s")

        return synced

    decode_fwd_sm90._compile = logged_compile
    for item in spec:
        log(f"START {item['index']}")
        compiled_before = dict(decode_fwd_sm90.COMPILE_SECONDS)
        if item["kind"] == "dense":
            case = mla_testing.DenseCase(**item["case"])
            row = check_dense_case(case, getattr(torch, item["dtype"]), "cute")
        else:
            b, h_q, s_q, s_k = item["b"], item["h_q"], item["s_q"], item["s_k"]
            q, cache, table, seqlens, total = bench_inputs(b, s_q, h_q, s_k)
            row, flops, nbytes = speed_row(b, h_q, s_q, s_k, total)
            row["kind"] = "speed"
            try:
                out = time_path("cute", q, cache, table, seqlens, s_q > 1, flops, nbytes, row)
                if item.get("compare_triton"):  # agreement with the Triton path on the same inputs
                    ref = time_path("triton", q, cache, table, seqlens, s_q > 1, flops, nbytes, {})
                    row["cute"]["max_abs_diff_vs_triton"] = (out.float() - ref.float()).abs().max().item()
            except Exception as e:
                row["cute"] = {"error": f"{type(e).__name__}: {e}", "trace": traceback.format_exc()[-2000:]}
        new = {str(k): v for k, v in decode_fwd_sm90.COMPILE_SECONDS.items() if k not in compiled_before}
        row["compile_s"] = new
        log("RESULT " + json.dumps({"index": item["index"], "row": row}, default=str))


def _pump(stream, lines: queue.Queue) -> None:
    for line in stream:
        lines.put(line)
    lines.put(None)


def run_watched(spec, extra_env=None, timeout=CUTE_CASE_TIMEOUT):
    """Run ``spec`` in children; a case silent for ``timeout`` s is a hang. Returns {index: row}.

    The first case may take twice as long (the child imports the DSL and compiles). A hung or crashed
    child is killed, its case recorded, and the remaining cases go on in a fresh child.
    """
    results = {}
    pending = list(spec)
    path = os.path.join(os.environ.get("TMPDIR", "/tmp"), f"flashmla_child_{os.getpid()}.json")
    while pending:
        with open(path, "w") as f:
            json.dump(pending, f)
        proc = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), "--child", path],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env={**os.environ, **(extra_env or {})},
        )  # fmt: skip
        lines: queue.Queue = queue.Queue()
        threading.Thread(target=_pump, args=(proc.stdout, lines), daemon=True).start()
        current, stage, tail = None, "import", []
        deadline = time.time() + 2 * timeout
        while True:
            try:
                line = lines.get(timeout=max(deadline - time.time(), 0.01))
            except queue.Empty:
                proc.kill()
                proc.wait()
                idx = current if current is not None else pending[0]["index"]
                results[idx] = {
                    "ok": False, "hang": True,
                    "why": f"hang: nothing within {timeout} s (last stage: {stage}); tail: {''.join(tail[-8:])}",
                }  # fmt: skip
                log(f"HANG case {idx} at stage {stage}")
                break
            if line is None:  # the child exited
                proc.wait()
                break
            tail.append(line)
            line = line.rstrip("\n")
            if line.startswith("START "):
                current = int(line.split()[1])
                deadline = time.time() + timeout
            elif line.startswith("RESULT "):
                got = json.loads(line[len("RESULT ") :])
                results[got["index"]] = got["row"]
                current = None
            else:
                if line.startswith(("STAGE ", "IMPORT", "COMPILE")):
                    stage = line
                if line.strip():
                    log("  cute child:", line)
        left = [item for item in pending if item["index"] not in results]
        if left and len(left) == len(pending):  # no progress: the child died before any result
            idx = current if current is not None else left[0]["index"]
            results[idx] = {"ok": False, "why": f"child died (rc {proc.returncode}): {''.join(tail[-8:])}"}
            left = [item for item in left if item["index"] != idx]
        elif left and current is not None and proc.returncode not in (0, -9):
            results.setdefault(
                current, {"ok": False, "why": f"child died (rc {proc.returncode}): {''.join(tail[-8:])}"}
            )
            left = [item for item in left if item["index"] not in results]
        pending = left
    return results


def check_cute():
    """CuTe correctness (and, unless correctness-only, speed) in watched children."""
    if not torch.cuda.is_available() or torch.cuda.get_device_capability()[0] != 9:
        RESULTS["env"]["cute"] = "skipped: not sm_90"
        return
    spec = []
    if "--speed-only" not in sys.argv:
        for case, dtype in dense_cases("cute"):
            spec.append({"index": len(spec), "kind": "dense", "case": dataclasses.asdict(case),
                         "dtype": str(dtype).split(".")[-1]})  # fmt: skip
    if "--correctness-only" not in sys.argv:
        for s_k, h_q, s_q in SPEED_CASES:
            spec.append({"index": len(spec), "kind": "speed", "b": 128, "h_q": h_q, "s_q": s_q, "s_k": s_k})
    # --watchdog: start with the watchdog build (a known hang is reported where it waits, in one pass)
    results = run_watched(spec, {"ATTN_FLASHMLA_CUTE_WATCHDOG": "1"} if "--watchdog" in sys.argv else None)
    for item in spec:
        row = results.get(item["index"], {"ok": False, "why": "not run (an earlier child died)"})
        if row.get("hang") and "--watchdog" not in sys.argv:
            # Once more with the watchdog kernel: its waits time out, print the barrier and exit.
            log(f"re-running case {item['index']} with ATTN_FLASHMLA_CUTE_WATCHDOG=1")
            again = run_watched([item], {"ATTN_FLASHMLA_CUTE_WATCHDOG": "1"}).get(item["index"], {})
            row["watchdog_rerun"] = {k: v for k, v in again.items() if k != "trace"} | {
                "trace": str(again.get("trace", ""))[-1500:]
            }
        if item["kind"] == "dense":
            row.setdefault("kind", "dense")
            row.setdefault("path", "cute")
            row.setdefault("case", mla_testing.DenseCase(**item["case"]).id)
            RESULTS["correctness"].append(row)
            log(("PASS" if row.get("ok") else "FAIL"), "cute", row["case"], row.get("compile_s") or "",
                row.get("why") or "")  # fmt: skip
        else:
            cute = row.get("cute", {"error": row.get("why")})
            for speed in RESULTS["speed"]:
                if (speed["h_q"], speed["s_q"], speed["s_k"]) == (item["h_q"], item["s_q"], item["s_k"]):
                    speed["cute"] = cute
                    speed["cute_compile_s"] = row.get("compile_s")
            log("SPEED cute", item["h_q"], item["s_q"], item["s_k"], json.dumps(cute, default=str)[:400])


def table():
    lines = []
    bad = [r for r in RESULTS["correctness"] if not r.get("ok")]
    n = len(RESULTS["correctness"])
    lines.append(f"correctness: {n - len(bad)}/{n} passed" + ("" if not bad else "; failures:"))
    compiles = {
        k: v
        for r in RESULTS["correctness"] + RESULTS["speed"]
        for k, v in (r.get("compile_s") or r.get("cute_compile_s") or {}).items()
    }
    lines.append(f"CuTe compile times (s, by (dtype, causal, watchdog)): {compiles or '-'}")
    for r in bad[:20]:
        lines.append(f"  FAIL {r['kind']} {r['path']} {r['case']}: {str(r['why'])[:200]}")
    lines.append("")
    lines.append(
        "| h_q | s_q | s_k | unit | CuTe | Triton (best cfg) | Triton gather-only (best cfg) | flash_mla here "
        "| FlashMLA H200 | CuTe/ref | Triton/ref | gather-only/ref |"
    )
    lines.append("|---|---|---|---|---|---|---|---|---|---|---|---|")
    from attn_flashmla.decode_fwd import CONFIG_FIELDS

    for r in RESULTS["speed"]:
        unit, ref = FLASHMLA_H200[(r["h_q"], r["s_q"], r["s_k"])]

        def fig(name, unit=unit, r=r):
            v = r.get(name)
            return None if not isinstance(v, dict) or unit not in v else v[unit]

        cute, tri, tma, fm = fig("cute"), fig("triton"), fig("triton_gather"), fig("flash_mla")
        fmt = lambda x: "-" if x is None else f"{x:.0f}"
        ratio = lambda x, ref=ref: "-" if x is None else f"{x / ref:.2f}"

        def cfg(name, r=r):
            config = (r.get(name) or {}).get("config") or {}
            return ",".join(str(config.get(k, "-")) for k in CONFIG_FIELDS)

        lines.append(
            f"| {r['h_q']} | {r['s_q']} | {r['s_k']} | {unit} | {fmt(cute)} | {fmt(tri)} ({cfg('triton')})"
            f" | {fmt(tma)} ({cfg('triton_gather')}) | {fmt(fm)} | {ref} | {ratio(cute)} | {ratio(tri)}"
            f" | {ratio(tma)} |"
        )
    return "\n".join(lines)


def main():
    if "--child" in sys.argv:
        child_main(sys.argv[sys.argv.index("--child") + 1])
        return
    if not torch.cuda.is_available():
        sys.exit("gpu_check: needs a CUDA GPU")
    RESULTS["env"].update(
        device=torch.cuda.get_device_name(),
        torch=torch.__version__,
        triton=triton.__version__,
        python=sys.version.split()[0],
        quick=QUICK,
        tma=TMA,
    )
    try:
        import cutlass

        RESULTS["env"]["cutlass_dsl"] = getattr(cutlass, "__version__", "installed")
    except Exception as e:
        RESULTS["env"]["cutlass_dsl"] = f"missing: {e}"
    t0 = time.time()
    triton_path = "--cute-only" not in sys.argv
    if triton_path and "--speed-only" not in sys.argv:
        check_correctness()
    RESULTS["env"]["correctness_s"] = time.time() - t0
    if triton_path and "--correctness-only" not in sys.argv:
        check_speed()
    RESULTS["env"]["triton_s"] = time.time() - t0
    if "--no-cute" not in sys.argv and not str(RESULTS["env"]["cutlass_dsl"]).startswith("missing"):
        check_cute()
    RESULTS["env"]["total_s"] = time.time() - t0
    summary = table()
    out_dir = os.environ.get("OUT")
    if out_dir:
        os.makedirs(out_dir, exist_ok=True)
        with open(os.path.join(out_dir, "flashmla_gpu_check.json"), "w") as f:
            json.dump(RESULTS, f, indent=1, default=str)
    log()
    log(json.dumps(RESULTS["env"], default=str))
    log(summary)


if __name__ == "__main__":
    main()
