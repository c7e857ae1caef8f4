"""One-call GPU check and benchmark of attn-triton on a Hopper machine (H200/H100).

    PYTHONPATH=$(ls -d packages/*/src | paste -sd:) python3 packages/attn-triton/tools/h200_check.py

Sections (``--sections``, comma separated; default all): ``check`` (correctness at realistic sizes against
an fp32 reference, fp16 and bf16, next to torch SDPA's own error), ``fwd``/``bwd`` (TFLOP/s, bf16,
batch x seqlen = 16384, heads x head_dim = 2048, side by side with torch SDPA flash, cuDNN and
FlashAttention-4 when importable), ``decode`` (paged KV cache, GB/s of KV read vs measured copy bandwidth),
``sweep`` (hand-picked forward configs incl. warp specialisation and the pointer path on Hopper),
``basics``. Prints a short table last; writes JSON to ``$OUT/attn_triton_h200.json`` when ``$OUT`` is set.

``--profiles`` (space separated, default ``"v2 v1"``) times attn-triton once per performance profile, side
by side in the same run: ``v1`` is the first GPU run's code and configs (the default), ``v2`` the newer one, and
``NAME+field=value+...`` overrides single knobs of :class:`attn_triton._runtime.Knobs` (for example
``v2+fwd_heavy_first=0``) to isolate one change. The first profile is the headline ``triton`` column.
``--quick``: the headline shapes only (hd128 16k, causal and not; hd64 16k), shorter timing, a reduced
check; fwd+bwd+decode for two profiles in about five minutes. The autotuner's pick per key is recorded.
"""

from __future__ import annotations

import argparse
import glob
import json
import math
import os
import sys
import time
import traceback

_ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
for _src in sorted(glob.glob(os.path.join(_ROOT, "packages", "*", "src"))):
    if _src not in sys.path:
        sys.path.insert(0, _src)
os.environ.setdefault("TRITON_CACHE_DIR", "/tmp/attn-triton-cache")  # survives back-to-back runs

import torch  # noqa: E402
import triton  # noqa: E402
from torch.nn.attention import SDPBackend, sdpa_kernel  # noqa: E402

import attn_triton  # noqa: E402
from attn_reference import attention_naive  # noqa: E402
from attn_triton import _runtime  # noqa: E402
from attn_triton.flash_fwd import flash_fwd  # noqa: E402

RESULTS: dict = {
    "meta": {},
    "check": [],
    "fwd": [],
    "bwd": [],
    "decode": [],
    "sweep": [],
    "basics": [],
    "autotune": {},
}
SUMMARY: list[str] = []
PROFILES: list[str] = ["v2", "v1"]
QUICK = [False]
REP = [200]


def parse_profile(spec: str) -> _runtime.Knobs:
    """``v2`` or ``v2+field=value+...`` -> Knobs."""
    import dataclasses

    base, *overrides = spec.split("+")
    kn = _runtime.PROFILES[base]
    for ov in overrides:
        field, value = ov.split("=", 1)
        current = getattr(kn, field)
        if isinstance(current, bool):
            value = value.lower() in ("1", "true", "yes", "on")
        kn = dataclasses.replace(kn, **{field: value})
    return kn


def triton_column(profile: str) -> str:
    return "triton" if profile == PROFILES[0] else f"triton[{profile}]"


def log(*a):
    print(*a, flush=True)


def bench(fn, rep=None):
    return triton.testing.do_bench(fn, warmup=25, rep=rep or REP[0], return_mode="median")  # ms


def try_import_fa4():
    try:
        from flash_attn.cute import flash_attn_func as fa4  # type: ignore

        return fa4
    except Exception as e:
        RESULTS["meta"]["fa4"] = f"not importable: {type(e).__name__}: {e}"[:200]
        return None


def _first(x):
    return x[0] if isinstance(x, (tuple, list)) else x


# ---------------------------------------------------------------------------------------------------------
def rel_err(a, ref):
    return ((a.float() - ref).abs().max() / ref.abs().max().clamp_min(1e-6)).item()


def check_section():
    log("== check: attn-triton vs fp32 reference (error must be <= 2x SDPA's + 2e-3 of the max) ==")
    torch.manual_seed(0)
    cases = [
        # b, sq, sk, hq, hk, d, causal, window, softcap
        (2, 1024, 1024, 8, 8, 128, False, (-1, -1), 0.0),
        (2, 1024, 1024, 8, 8, 128, True, (-1, -1), 0.0),
        (2, 777, 1500, 8, 2, 64, True, (-1, -1), 0.0),
        (1, 1500, 777, 6, 1, 96, True, (-1, -1), 0.0),
        (2, 1031, 1031, 4, 4, 256, False, (128, 64), 0.0),
        (2, 1031, 1031, 4, 2, 192, False, (-1, -1), 30.0),
        (2, 513, 513, 4, 4, 32, True, (100, -1), 0.0),
    ]
    if QUICK[0]:
        cases = [cases[1], cases[2], cases[4]]
    for dtype in (torch.float16, torch.bfloat16):
        for b, sq, sk, hq, hk, d, causal, window, softcap in cases:
            name = f"{str(dtype)[6:]} b{b} sq{sq} sk{sk} h{hq}/{hk} d{d} causal={causal} win={window} cap={softcap}"
            try:
                q = torch.randn(b, sq, hq, d, device="cuda", dtype=dtype, requires_grad=True)
                k = torch.randn(b, sk, hk, d, device="cuda", dtype=dtype, requires_grad=True)
                v = torch.randn(b, sk, hk, d, device="cuda", dtype=dtype, requires_grad=True)
                do = torch.randn(b, sq, hq, d, device="cuda", dtype=dtype)
                kw = dict(causal=causal, window_size=window, softcap=softcap)
                out, lse = attn_triton.flash_attn_func(q, k, v, return_lse=True, **kw)
                g = torch.autograd.grad(out, (q, k, v), do)
                gd = torch.autograd.grad(
                    attn_triton.flash_attn_func(q, k, v, deterministic=True, **kw), (q, k, v), do
                )
                f32 = [t.detach().float().requires_grad_() for t in (q, k, v)]
                ref, ref_lse = attention_naive(*f32, return_lse=True, **kw)
                rg = torch.autograd.grad(ref, f32, do.float())
                low = [t.detach().requires_grad_() for t in (q, k, v)]
                lo = attention_naive(*low, accum_dtype=None, **kw)
                lg = torch.autograd.grad(lo, low, do)
                row = {"case": name, "ok": True}
                for nm, a, r, lw in [
                    ("out", out, ref, lo),
                    *zip(("dq", "dk", "dv"), g, rg, lg),
                    *zip(("dq_det", "dk_det", "dv_det"), gd, rg, lg),
                ]:
                    e, e_low = rel_err(a, r), rel_err(lw, r)
                    ok = e <= 2 * e_low + 2e-3 and math.isfinite(e)
                    row[nm] = (round(e, 5), round(e_low, 5))
                    row["ok"] &= ok
                fin = torch.isfinite(ref_lse)
                row["lse"] = (lse[fin] - ref_lse[fin]).abs().max().item()
                row["ok"] &= row["lse"] < 1e-2 and bool((torch.isinf(lse) == ~fin).all())
            except Exception as e:
                row = {"case": name, "ok": False, "error": f"{type(e).__name__}: {e}"[:400]}
                traceback.print_exc()
            RESULTS["check"].append(row)
            log(("PASS " if row["ok"] else "FAIL ") + json.dumps(row))
    # varlen and decode correctness
    for dtype in (torch.float16, torch.bfloat16):
        try:
            lens_q, lens_k = [300, 1, 1025, 0, 77], [500, 9, 1025, 33, 800]
            hq, hk, d = 8, 2, 128
            cu_q = torch.tensor(
                [0, *torch.tensor(lens_q).cumsum(0).tolist()], dtype=torch.int32, device="cuda"
            )
            cu_k = torch.tensor(
                [0, *torch.tensor(lens_k).cumsum(0).tolist()], dtype=torch.int32, device="cuda"
            )
            q = torch.randn(sum(lens_q), hq, d, device="cuda", dtype=dtype, requires_grad=True)
            k = torch.randn(sum(lens_k), hk, d, device="cuda", dtype=dtype, requires_grad=True)
            v = torch.randn(sum(lens_k), hk, d, device="cuda", dtype=dtype, requires_grad=True)
            out = attn_triton.flash_attn_varlen_func(
                q, k, v, cu_q, cu_k, max(lens_q), max(lens_k), causal=True
            )
            do = torch.randn_like(out)
            g = torch.autograd.grad(out, (q, k, v), do)
            worst = 0.0
            cq, ck = cu_q.tolist(), cu_k.tolist()
            for i in range(len(lens_q)):
                sq_, sk_ = slice(cq[i], cq[i + 1]), slice(ck[i], ck[i + 1])
                f32 = [
                    t[s].detach().float().unsqueeze(0).requires_grad_()
                    for t, s in ((q, sq_), (k, sk_), (v, sk_))
                ]
                if f32[0].shape[1] == 0:
                    continue
                r = attention_naive(*f32, causal=True)
                rg = torch.autograd.grad(r, f32, do[sq_].float().unsqueeze(0))
                worst = max(
                    worst,
                    rel_err(out[sq_].unsqueeze(0), r),
                    *(rel_err(a[s].unsqueeze(0), b_) for a, s, b_ in zip(g, (sq_, sk_, sk_), rg)),
                )
            row = {"case": f"varlen {str(dtype)[6:]} causal gqa", "ok": worst < 2e-2, "max_rel_err": worst}
        except Exception as e:
            row = {"case": f"varlen {dtype}", "ok": False, "error": f"{type(e).__name__}: {e}"[:400]}
            traceback.print_exc()
        RESULTS["check"].append(row)
        log(("PASS " if row["ok"] else "FAIL ") + json.dumps(row))
        for splits in (0, 3) if QUICK[0] else (0, 1, 3):
            try:
                b, hq, hk, d, page = 5, 32, 8, 128, 64
                lens = [4099, 1, 0, 8192, 3000]
                pages = [-(-n // page) for n in lens]
                perm = torch.randperm(sum(pages) + 2, device="cuda")
                k_cache = torch.randn(sum(pages) + 2, page, hk, d, device="cuda", dtype=dtype)
                v_cache = torch.randn_like(k_cache)
                table = torch.zeros(b, max(pages), dtype=torch.int32, device="cuda")
                used = 0
                for i, n in enumerate(pages):
                    table[i, :n] = perm[used : used + n].to(torch.int32)
                    used += n
                seqlens = torch.tensor(lens, dtype=torch.int32, device="cuda")
                q = torch.randn(b, 2, hq, d, device="cuda", dtype=dtype)
                out = attn_triton.flash_attn_with_kvcache(
                    q,
                    k_cache,
                    v_cache,
                    cache_seqlens=seqlens,
                    block_table=table,
                    causal=True,
                    num_splits=splits,
                )
                worst = 0.0
                for i, n in enumerate(lens):
                    if n == 0:
                        worst = max(worst, out[i].abs().max().item())
                        continue
                    kk = k_cache[table[i, : pages[i]].long()].reshape(-1, hk, d)[:n].float().unsqueeze(0)
                    vv = v_cache[table[i, : pages[i]].long()].reshape(-1, hk, d)[:n].float().unsqueeze(0)
                    r = attention_naive(q[i : i + 1].float(), kk, vv, causal=True)
                    r = torch.nan_to_num(r)
                    worst = max(worst, rel_err(out[i : i + 1], r))
                row = {
                    "case": f"decode paged {str(dtype)[6:]} splits={splits}",
                    "ok": worst < 2e-2,
                    "max_rel_err": worst,
                }
            except Exception as e:
                row = {
                    "case": f"decode {dtype} splits={splits}",
                    "ok": False,
                    "error": f"{type(e).__name__}: {e}"[:400],
                }
                traceback.print_exc()
            RESULTS["check"].append(row)
            log(("PASS " if row["ok"] else "FAIL ") + json.dumps(row))
    n_ok = sum(r["ok"] for r in RESULTS["check"])
    SUMMARY.append(f"check: {n_ok}/{len(RESULTS['check'])} cases pass")


# ---------------------------------------------------------------------------------------------------------
QUICK_CASES = {
    "fwd": [(128, False, 16384), (128, True, 16384), (64, False, 16384)],
    "bwd": [(128, False, 16384), (64, False, 16384)],
}
BENCH_CASES = [
    (128, False, 16384),
    (128, False, 4096),
    (128, True, 16384),
    (128, True, 4096),
    (64, False, 16384),
    (64, True, 16384),
]


def _impls(fa4):
    def sdpa(backend):
        def run(q, k, v, causal):
            with sdpa_kernel([backend]):
                return torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=causal)

        return run

    def tri(profile, **kw):
        knobs = parse_profile(profile)

        def run(q, k, v, causal):
            old = _runtime.set_profile(knobs)
            try:
                return attn_triton.flash_attn_func(q, k, v, causal=causal, **kw)
            finally:
                _runtime.set_profile(old)

        return run

    impls = {triton_column(p): ("bshd", tri(p)) for p in PROFILES}
    impls |= {
        "triton-det": ("bshd", tri(PROFILES[0], deterministic=True)),
        "sdpa-flash": ("bhsd", sdpa(SDPBackend.FLASH_ATTENTION)),
        "sdpa-cudnn": ("bhsd", sdpa(SDPBackend.CUDNN_ATTENTION)),
    }
    if fa4 is not None:
        impls["fa4"] = ("bshd", lambda q, k, v, causal: _first(fa4(q, k, v, causal=causal)))
    return impls


def attention_bench(section):
    fa4 = try_import_fa4()
    impls = _impls(fa4)
    log(f"== {section}: bf16, batch*seqlen=16384, heads*hd=2048 ==")
    cases = QUICK_CASES.get(section, BENCH_CASES) if QUICK[0] else BENCH_CASES
    for d, causal, s in cases:
        b, h = 16384 // s, 2048 // d
        flops = 4 * b * s * s * h * d / (2 if causal else 1) * (3.5 if section == "bwd" else 1.0)
        row = {"head_dim": d, "causal": causal, "seqlen": s, "batch": b, "heads": h}
        torch.manual_seed(0)
        base = [torch.randn(b, s, h, d, device="cuda", dtype=torch.bfloat16) for _ in range(4)]
        for name, (layout, fn) in impls.items():
            if name == "triton-det" and (section == "fwd" or QUICK[0]):
                continue
            try:
                ts = [t.transpose(1, 2).contiguous() if layout == "bhsd" else t for t in base]
                q, k, v = (t.detach().requires_grad_(section == "bwd") for t in ts[:3])
                do = ts[3]
                if section == "fwd":
                    call = lambda: fn(q, k, v, causal)  # noqa: B023
                else:

                    def call():
                        out = fn(q, k, v, causal)  # noqa: B023
                        torch.autograd.grad(out, (q, k, v), do)  # noqa: B023

                call()
                ms = bench(call)
                row[name] = round(flops / ms / 1e9, 1)  # TFLOP/s
            except Exception as e:
                row[name] = None
                row[name + "_error"] = f"{type(e).__name__}: {e}"[:300]
            torch.cuda.empty_cache()
        for peer in ("fa4", "sdpa-flash", "sdpa-cudnn", *(triton_column(p) for p in PROFILES[1:])):
            if row.get("triton") and row.get(peer):
                row[f"ratio_vs_{peer}"] = round(row["triton"] / row[peer], 3)
        RESULTS[section].append(row)
        log(json.dumps(row))
        del base


def decode_bench():
    log("== decode: b64, 1 query token, hq32/hk8, d128, cache 8192, page 64, bf16 ==")
    b, hq, hk, d, n, page = 64, 32, 8, 128, 8192, 64
    torch.manual_seed(0)
    pages = n // page
    k_cache = torch.randn(b * pages, page, hk, d, device="cuda", dtype=torch.bfloat16)
    v_cache = torch.randn_like(k_cache)
    table = torch.randperm(b * pages, device="cuda").to(torch.int32).reshape(b, pages)
    seqlens = torch.full((b,), n, dtype=torch.int32, device="cuda")
    q = torch.randn(b, 1, hq, d, device="cuda", dtype=torch.bfloat16)
    kv_bytes = 2 * b * n * hk * d * 2
    src = torch.empty(kv_bytes // 2, dtype=torch.bfloat16, device="cuda").normal_()
    dst = torch.empty_like(src)
    copy_ms = bench(lambda: dst.copy_(src))
    copy_gbs = 2 * kv_bytes / copy_ms / 1e6  # read + write
    row = {"copy_GBps": round(copy_gbs, 1), "kv_bytes": kv_bytes}
    kc = k_cache.view(b, pages * page, hk, d)  # the same pool read as one contiguous cache per sequence
    vc = v_cache.view(b, pages * page, hk, d)
    for profile in PROFILES:
        tag = "" if profile == PROFILES[0] else f"[{profile}]"
        old = _runtime.set_profile(parse_profile(profile))
        try:
            for splits in (0, 2) if QUICK[0] and not tag else (0,) if tag else (0, 1, 2, 4):
                try:
                    fn = lambda splits=splits: attn_triton.flash_attn_with_kvcache(
                        q, k_cache, v_cache, cache_seqlens=seqlens, block_table=table, num_splits=splits
                    )
                    fn()
                    ms = bench(fn)
                    gbs = kv_bytes / ms / 1e6
                    row[f"splits{splits}{tag}_GBps"] = round(gbs, 1)
                    row[f"splits{splits}{tag}_frac_of_copy"] = round(gbs / copy_gbs, 3)
                except Exception as e:
                    row[f"splits{splits}{tag}_error"] = f"{type(e).__name__}: {e}"[:300]
            # Contiguous (non-paged) cache for comparison.
            try:
                fn = lambda: attn_triton.flash_attn_with_kvcache(q, kc, vc, cache_seqlens=seqlens)
                fn()
                row[f"contiguous{tag}_GBps"] = round(kv_bytes / bench(fn) / 1e6, 1)
            except Exception as e:
                row[f"contiguous{tag}_error"] = f"{type(e).__name__}: {e}"[:300]
        finally:
            _runtime.set_profile(old)
    RESULTS["decode"].append(row)
    log(json.dumps(row))


def sweep_bench():
    """Hand-picked forward configs on hd128 non-causal 16k (incl. warp specialisation and no TMA)."""
    log("== sweep: forward configs, hd128, seqlen 16384, bf16 ==")
    b, s, h, d = 1, 16384, 16, 128
    flops = 4 * b * s * s * h * d
    q, k, v = (torch.randn(b, s, h, d, device="cuda", dtype=torch.bfloat16) for _ in range(3))
    kw = dict(softmax_scale=d**-0.5, left=-1, right=-1, softcap=0.0)
    configs = []
    for bm, bn, w, st, ws in [
        (128, 128, 8, 2, False),
        (128, 128, 8, 3, False),
        (128, 64, 8, 3, False),
        (128, 64, 4, 3, False),
        (128, 64, 8, 4, False),
        (128, 128, 8, 2, True),
        (128, 128, 8, 3, True),
        (128, 64, 8, 3, True),
        (256, 128, 8, 2, False),
        (256, 64, 8, 3, False),
    ]:
        configs.append(("sm90", dict(BLOCK_M=bm, BLOCK_N=bn, WARP_SPEC=ws, num_warps=w, num_stages=st)))
    configs.append(("sm80", None))  # pointer path, autotuned with the Ampere list
    for path, cfg in configs:
        name = f"{path} {cfg}" if cfg else "pointer path (sm80 configs, autotuned)"
        try:
            fn = lambda: flash_fwd(q, k, v, force_path=path, config=cfg, **kw)  # noqa: B023
            fn()
            tf = flops / bench(fn) / 1e9
            RESULTS["sweep"].append({"config": name, "tflops": round(tf, 1)})
        except Exception as e:
            RESULTS["sweep"].append({"config": name, "error": f"{type(e).__name__}: {e}"[:300]})
        log(json.dumps(RESULTS["sweep"][-1]))


def basics_bench():
    from attn_triton.basics import matmul, softmax, vector_add

    log("== basics ==")
    n = 1 << 28
    x = torch.randn(n, device="cuda")
    y = torch.randn(n, device="cuda")
    dst = torch.empty_like(x)
    copy = 2 * n * 4 / bench(lambda: dst.copy_(x)) / 1e6
    add = 3 * n * 4 / bench(lambda: vector_add(x, y)) / 1e6
    xs = torch.randn(32768, 4096, device="cuda", dtype=torch.bfloat16)
    sm = 2 * xs.numel() * 2 / bench(lambda: softmax(xs)) / 1e6
    smt = 2 * xs.numel() * 2 / bench(lambda: torch.softmax(xs, -1)) / 1e6
    a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    bm = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    ok = (
        rel_err(matmul(a[:1000, :1000], bm[:1000, :777]), a[:1000, :1000].float() @ bm[:1000, :777].float())
        < 1e-2
    )
    mm = 2 * 8192**3 / bench(lambda: matmul(a, bm)) / 1e9
    mmt = 2 * 8192**3 / bench(lambda: a @ bm) / 1e9
    row = {
        "copy_GBps": round(copy, 1),
        "vector_add_GBps": round(add, 1),
        "softmax_GBps": round(sm, 1),
        "torch_softmax_GBps": round(smt, 1),
        "matmul_TFLOPs": round(mm, 1),
        "torch_matmul_TFLOPs": round(mmt, 1),
        "matmul_correct": ok,
    }
    RESULTS["basics"].append(row)
    log(json.dumps(row))


# ---------------------------------------------------------------------------------------------------------
def table():
    lines = ["", "=" * 100, "attn-triton on " + RESULTS["meta"].get("device", "?")]
    lines += SUMMARY
    fa4_ref = {
        (128, False, 16384): (682, 640),
        (128, False, 4096): (654, 614),
        (128, True, 16384): (636, 625),
        (128, True, 4096): (575, 542),
        (64, False, 16384): (533, 532),
        (64, True, 16384): (513, 526),
    }
    for section in ("fwd", "bwd"):
        if not RESULTS[section]:
            continue
        lines.append(
            f"{section} TFLOP/s (FA4 column: this run if importable, else README's H200 figure in [])"
        )
        others = [triton_column(p) for p in PROFILES[1:]]
        lines.append(
            "hd causal seqlen | triton  triton-det  sdpa-flash  cudnn  fa4 | vs fa4  vs flash"
            + "".join(f" | {o}  vs it" for o in others)
        )
        for r in RESULTS[section]:
            key = (r["head_dim"], r["causal"], r["seqlen"])
            fa4 = r.get("fa4") or f"[{fa4_ref[key][0 if section == 'fwd' else 1]}]"
            fa4_val = r.get("fa4") or fa4_ref[key][0 if section == "fwd" else 1]
            vs = round(r["triton"] / fa4_val, 3) if r.get("triton") else None
            lines.append(
                f"{r['head_dim']:3} {r['causal']!s:5} {r['seqlen']:6} | {r.get('triton')}  "
                f"{r.get('triton-det', '-')}  {r.get('sdpa-flash')}  {r.get('sdpa-cudnn')}  {fa4} | "
                f"{vs}  {r.get('ratio_vs_sdpa-flash')}"
                + "".join(f" | {r.get(o)}  {r.get('ratio_vs_' + o)}" for o in others)
            )
    for r in RESULTS["decode"]:
        lines.append(
            f"decode: copy {r['copy_GBps']} GB/s; "
            + ", ".join(
                f"{k}={v}"
                for k, v in r.items()
                if k.startswith(("splits", "contiguous")) and "error" not in k
            )
        )
    for r in RESULTS["sweep"]:
        lines.append(f"sweep: {r.get('tflops', r.get('error'))}  {r['config']}")
    for r in RESULTS["basics"]:
        lines.append("basics: " + json.dumps(r))
    lines.append(f"profiles: {PROFILES} (first = 'triton' column)")
    for kernel, picks in RESULTS.get("autotune", {}).items():
        for key, cfg in picks.items():
            lines.append(f"autotune {kernel} {key}: {cfg}")
    bad = [r["case"] for r in RESULTS["check"] if not r["ok"]]
    if bad:
        lines.append("FAILED checks: " + "; ".join(bad))
    return "\n".join(lines)


def autotune_picks():
    """The config the autotuner chose for every key it saw, per kernel and profile."""
    from attn_triton import flash_bwd, flash_decode, flash_fwd

    picks = {}
    for mod in (flash_fwd, flash_bwd, flash_decode):
        for name, tuner in getattr(mod, "_TUNED", {}).items():
            for key, cfg in getattr(tuner, "cache", {}).items():
                picks.setdefault(f"{mod.__name__.rsplit('.', 1)[-1]} {name}", {})[str(key)] = str(cfg)
    return picks


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sections", default=None, help="default: all; with --quick: check,fwd,bwd,decode")
    ap.add_argument("--quick", action="store_true", help="headline shapes only, shorter timing (~5 min)")
    ap.add_argument("--profiles", default="v2 v1", help='space separated, e.g. "v2 v1 v2+fwd_heavy_first=0"')
    args = ap.parse_args()
    assert torch.cuda.is_available(), "needs a CUDA GPU"
    QUICK[0] = args.quick
    REP[0] = 60 if args.quick else 200
    PROFILES[:] = args.profiles.split()
    for p in PROFILES:
        parse_profile(p)  # fail early on a typo
    if args.sections is None:
        args.sections = "check,fwd,bwd,decode" if args.quick else "check,fwd,bwd,decode,sweep,basics"
    _runtime.set_profile(parse_profile(PROFILES[0]))
    RESULTS["meta"].update(
        device=torch.cuda.get_device_name(),
        capability=torch.cuda.get_device_capability(),
        torch=torch.__version__,
        triton=triton.__version__,
        profiles=PROFILES,
        quick=args.quick,
    )
    t0 = time.time()
    for section in args.sections.split(","):
        t = time.time()
        try:
            {
                "check": check_section,
                "fwd": lambda: attention_bench("fwd"),
                "bwd": lambda: attention_bench("bwd"),
                "decode": decode_bench,
                "sweep": sweep_bench,
                "basics": basics_bench,
            }[section]()
        except Exception:
            traceback.print_exc()
        RESULTS["meta"][f"{section}_seconds"] = round(time.time() - t, 1)
        log(f"-- {section} took {time.time() - t:.0f}s (total {time.time() - t0:.0f}s)")
    RESULTS["autotune"] = autotune_picks()
    out = os.environ.get("OUT")
    if out:
        with open(os.path.join(out, "attn_triton_h200.json"), "w") as f:
            json.dump(RESULTS, f, indent=1, default=str)
    print(table())


if __name__ == "__main__":
    main()
