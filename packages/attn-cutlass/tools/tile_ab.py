"""The sm90 forward under several tilings side by side on the H200: checked, then timed beside FA4, one process.

    export PYTHONPATH=$(cat /tmp/site.pythonpath):$(ls -d $PWD/packages/*/src | paste -sd:)
    python3 packages/attn-cutlass/tools/tile_ab.py                        # the defaults and the hd64 candidates
    python3 packages/attn-cutlass/tools/tile_ab.py 128:128x144x2 64:192x96x3  # any tilings

A tiling is ``head_dim:tile_m x tile_n x kv_stages``; tile_m is 64 rows per consumer warpgroup, so 192
selects the three-warpgroup build (``ATTN_CUTLASS_HD64_CONSUMERS=3``, head dim 64 only). The tool swaps
``kernels.flash_fwd_sm90.tile_config`` for each tiling and empties the compile cache in between: a
measuring device, not an API. Every tiling is checked against attn-reference (fp16 and bf16, causal or not,
ragged sizes, GQA) before it is timed; a tiling that fails is reported and not timed. Timing: bf16, batch 1,
seqlen 16384, heads x head dim = 2048, medians of CUDA events (gpu_check.bench_ms); FA4 in the same process
where ``flash_attn.cute`` imports. FLOPs: 4 * s^2 * h * d, halved when causal. The last thing printed is a
table; with ``$OUT`` set, the rows also go to ``$OUT/attn_cutlass_tile_ab.json``.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
import traceback

import torch

sys.path.insert(0, os.path.dirname(__file__))
import gpu_check  # the tool next to this one: timing

import attn_cutlass
import attn_cutlass.interface as interface
import attn_cutlass.kernels.flash_fwd_sm90 as fwd
from attn_reference import attention_naive
from attn_reference.testing.inputs import attention_inputs
from attn_reference.testing.tolerance import assert_attention_close

# the defaults (hd64: three warpgroups, 192 x 128), two warpgroups at hd64, FA3's hd128 width (spills
# 2.2 KB here: never timed)
DEFAULT_TILINGS = ["128:128x128x2", "64:192x128x2", "64:128x128x3", "256:128x64x2", "128:128x176x2"]
# (batch, seqlen_q, seqlen_k, heads_q, heads_k): ragged edges, GQA, a single decoding row
CHECK_SHAPES = [(2, 203, 113, 4, 2), (2, 113, 203, 4, 4), (2, 1, 333, 2, 1)]


def parse(tiling: str) -> tuple[int, int, int, int]:
    head_dim, _, rest = tiling.partition(":")
    tile_m, tile_n, stages = (int(x) for x in rest.split("x"))
    if tile_m not in (128, 192):
        raise SystemExit(f"{tiling}: tile_m must be 128 (two consumer warpgroups) or 192 (three)")
    return int(head_dim), tile_m, tile_n, stages


def use(head_dim: int, tile_m: int, tile_n: int, stages: int, original):
    """Make the forward build ``head_dim`` with this tiling (others as before)."""
    os.environ["ATTN_CUTLASS_HD64_CONSUMERS"] = str(tile_m // 64)

    def tile_config(hd, consumer_wgs=2):
        return (tile_m, tile_n, stages) if hd == head_dim else original(hd, consumer_wgs)

    fwd.tile_config = tile_config
    interface._cache.clear()


def check(head_dim: int) -> int:
    checks = 0
    for dtype in (torch.float16, torch.bfloat16):
        for causal in (False, True):
            for b, sq, sk, hq, hk in CHECK_SHAPES:
                q, k, v = attention_inputs(b, sq, sk, hq, hk, head_dim, dtype=dtype, device="cuda", seed=sq)
                out = attn_cutlass.flash_attn_func(q, k, v, causal=causal)
                ref = attention_naive(
                    q.double(), k.double(), v.double(), causal=causal, accum_dtype=torch.float64
                )
                low = attention_naive(q, k, v, causal=causal, accum_dtype=None)
                name = f"hd{head_dim} {dtype} causal={causal} {b}x{sq}x{sk} h{hq}/{hk}"
                assert_attention_close(out, ref, low, name=name)
                checks += 1
    return checks


def time_ms(fn, q, k, v, causal: bool) -> float:
    return gpu_check.bench_ms(functools.partial(fn, q, k, v, causal=causal), 10, 50)


def tflops(ms: float, seqlen: int, heads: int, head_dim: int, causal: bool) -> float:
    return 4 * seqlen * seqlen * heads * head_dim * (0.5 if causal else 1.0) / ms / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("tilings", nargs="*", default=DEFAULT_TILINGS)
    parser.add_argument("--seqlen", type=int, default=16384)
    args = parser.parse_args()
    try:
        from flash_attn.cute import flash_attn_func as fa4
    except ImportError as exc:
        fa4 = None
        print(f"FA4 not importable ({exc}): no peer column")
    original, saved_env = fwd.tile_config, os.environ.get("ATTN_CUTLASS_HD64_CONSUMERS")
    rows, failures, fa4_ms = [], [], {}
    try:
        for tiling in args.tilings:
            head_dim, tile_m, tile_n, stages = parse(tiling)
            use(head_dim, tile_m, tile_n, stages, original)
            try:
                checks = check(head_dim)
            except Exception as exc:  # report and go on: the other tilings still run
                failures.append(f"{tiling}: {type(exc).__name__}: {str(exc)[:400]}")
                print(traceback.format_exc()[-2000:], flush=True)
                continue
            s, h = args.seqlen, 2048 // head_dim
            q, k, v = attention_inputs(1, s, s, h, h, head_dim, dtype=torch.bfloat16, device="cuda", seed=1)
            for causal in (False, True):
                ms = time_ms(attn_cutlass.flash_attn_func, q, k, v, causal)
                if fa4 is not None and (head_dim, causal) not in fa4_ms:
                    fa4_ms[head_dim, causal] = time_ms(fa4, q, k, v, causal)
                peer = fa4_ms.get((head_dim, causal))
                row = {
                    "tiling": tiling,
                    "causal": causal,
                    "checks": checks,
                    "tflops": round(tflops(ms, s, h, head_dim, causal), 1),
                    "fa4_tflops": round(tflops(peer, s, h, head_dim, causal), 1) if peer else None,
                }
                rows.append(row)
                print(row, flush=True)
    finally:
        fwd.tile_config = original
        interface._cache.clear()
        if saved_env is None:
            os.environ.pop("ATTN_CUTLASS_HD64_CONSUMERS", None)
        else:
            os.environ["ATTN_CUTLASS_HD64_CONSUMERS"] = saved_env
    print("| tiling | causal | checks | TFLOP/s | FA4 | ratio |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        ratio = f"{r['tflops'] / r['fa4_tflops']:.3f}x" if r["fa4_tflops"] else "-"
        print(
            f"| {r['tiling']} | {r['causal']} | {r['checks']} | {r['tflops']} | {r['fa4_tflops']} | {ratio} |"
        )
    print("failures:", failures or "none")
    if os.environ.get("OUT"):
        with open(os.path.join(os.environ["OUT"], "attn_cutlass_tile_ab.json"), "w") as f:
            json.dump({"rows": rows, "failures": failures}, f, indent=1)


if __name__ == "__main__":
    main()
