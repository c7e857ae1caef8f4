"""The CuTe DSL kernel's forms side by side on the H200: each speed case timed under every form, one process.

    export PYTHONPATH=$(cat /tmp/site.pythonpath):$(ls -d $PWD/packages/*/src | paste -sd:)
    python3 packages/attn-flashmla/tools/cute_ab.py                 # every form, the issue's h_q 128 cases
    python3 packages/attn-flashmla/tools/cute_ab.py --forms seesaw --cases 128,1,8192 --once   # for ncu

Forms are environment settings that the kernel reads per call (each compiles once, outside the timing):
``split_s`` (the first kernel, the default until 2026-12-04), the seesaw kernel with single CTAs
(``seesaw_single``), ``seesaw`` (clusters of two CTAs where the row blocks pair up, the lean softmax off) and
``seesaw_lean`` (the same with it: the default since 2026-12-08);
``flash_mla`` is DeepSeek's FlashMLA itself where it is importable (built from source beside this run).
Each form is timed twice: the whole call (``gpu_check.time_call``) and its main kernel alone
(``attn_bench.timing.main_kernel_ms``, what FlashMLA's own figures count). Each row reports every form's
max abs difference of ``out`` from the first form's on the same inputs (a sanity check; correctness against
the reference is ``gpu_check.py``'s and the sm90 tier's). Inputs, FLOP
formula, timing and FlashMLA's figures are gpu_check's (b 128, h_kv 1, varlen lengths ~ normal(s_k, s_k /
2)).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(__file__))
import gpu_check  # the tool next to this one: inputs, formulas, timing

import attn_flashmla
from attn_bench.timing import main_kernel_ms  # what FlashMLA's figures count: its main kernel

FORMS = {
    "split_s": {"ATTN_FLASHMLA_CUTE_SEESAW": "0"},
    "seesaw_single": {"ATTN_FLASHMLA_CUTE_SEESAW": "1", "ATTN_FLASHMLA_CUTE_CLUSTER": "1"},
    "seesaw": {
        "ATTN_FLASHMLA_CUTE_SEESAW": "1", "ATTN_FLASHMLA_CUTE_CLUSTER": "2", "ATTN_FLASHMLA_CUTE_CROSS_FIRST": "0",
        "ATTN_FLASHMLA_CUTE_LEAN": "0",
    },
    "seesaw_lean": {"ATTN_FLASHMLA_CUTE_SEESAW": "1", "ATTN_FLASHMLA_CUTE_CLUSTER": "2", "ATTN_FLASHMLA_CUTE_LEAN": "1"},
    "seesaw_cross_first": {
        "ATTN_FLASHMLA_CUTE_SEESAW": "1", "ATTN_FLASHMLA_CUTE_CLUSTER": "2", "ATTN_FLASHMLA_CUTE_CROSS_FIRST": "1",
    },
}  # fmt: skip
#: DeepSeek's own package as a form, where it is importable (built from source; never a dependency): the
#: same inputs, the same timing, in the same process.
PEERS = {"flash_mla": "flash_mla"}
CASES = [(128, 1, 8192), (128, 1, 32768), (128, 2, 8192), (128, 2, 32768)]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--forms", default=",".join(FORMS), help=f"of {', '.join([*FORMS, *PEERS])}")
    parser.add_argument("--cases", default=";".join(",".join(map(str, c)) for c in CASES))
    parser.add_argument("--once", action="store_true", help="one call per form and case, no timing (ncu)")
    args = parser.parse_args()
    forms = args.forms.split(",")
    cases = [tuple(int(x) for x in c.split(",")) for c in args.cases.split(";")]
    os.environ["ATTN_FLASHMLA_PATH"] = "cute"
    rows = []
    for h_q, s_q, s_k in cases:
        q, cache, table, seqlens, total = gpu_check.bench_inputs(128, s_q, h_q, s_k)
        _, flops, _ = gpu_check.speed_row(128, h_q, s_q, s_k, total)
        row = {"h_q": h_q, "s_q": s_q, "s_k": s_k}
        ref = None
        for form in forms:
            module = importlib.import_module(PEERS[form]) if form in PEERS else attn_flashmla
            with gpu_check.env(**FORMS.get(form, {})):
                call, _ = gpu_check.prepared(module, q, cache, table, seqlens, s_q > 1)
                out = call()[0].float()
                if ref is None:
                    ref = out
                diff = (out - ref).abs().max().item()
                if args.once:
                    torch.cuda.synchronize()
                    row[form] = {"max_abs_diff": diff}
                    continue
                ms = gpu_check.time_call(call)
                kernel_ms, _ = main_kernel_ms(call)
            row[form] = {
                "ms": ms, "TFLOP/s": flops / ms / 1e9, "kernel_ms": kernel_ms, "kernel TFLOP/s": flops / kernel_ms / 1e9,
                "max_abs_diff": diff,
            }  # fmt: skip
        rows.append(row)
        print(json.dumps(row), flush=True)
    if args.once:
        return
    # TFLOP/s of whole calls / of the main kernel alone (what FlashMLA's figures count)
    print(f"| h_q | s_q | s_k | {' | '.join(forms)} | FlashMLA H200 | best kernel / FlashMLA |")
    print("|" + "---|" * (len(forms) + 5))
    for row in rows:
        kernels = [row[f]["kernel TFLOP/s"] for f in forms]
        ref = gpu_check.FLASHMLA_H200.get((row["h_q"], row["s_q"], row["s_k"]), (None, None))[1]
        ratio = f"{max(kernels) / ref:.2f}x" if ref else "-"
        cells = " | ".join(f"{row[f]['TFLOP/s']:.0f} / {row[f]['kernel TFLOP/s']:.0f}" for f in forms)
        print(f"| {row['h_q']} | {row['s_q']} | {row['s_k']} | {cells} | {ref or '-'} | {ratio} |")


if __name__ == "__main__":
    main()
