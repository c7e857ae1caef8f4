"""Check and time the causal launch orders of the tensor-core forward (``flash.CAUSAL_ORDERS``) on one GPU.

For each case: both orders must give bit-for-bit the same output and logsumexp, and match attn-reference's
tolerance rule (the naive oracle on the first 2048 rows of two heads, exact for causal rows, to bound its memory); then
the orders are timed with ``triton.testing.do_bench`` (median, after warm-up), alternating, twice. A table goes to stdout and JSON to
``$OUT/causal_order.json`` when ``$OUT`` is set. Run from the repository root:

    PYTHONPATH=packages/attn-reference/src:packages/attn-cuda/src python3 packages/attn-cuda/tools/causal_order.py
"""

from __future__ import annotations

import functools
import json
import os
import sys

import torch
import triton.testing

from attn_cuda import flash
from attn_reference import attention_naive
from attn_reference.testing.inputs import attention_inputs
from attn_reference.testing.tolerance import assert_attention_close

# (batch, seqlen, heads, head_dim): the attn-bench shapes (batch x seqlen = 16384, heads x head_dim = 2048).
CASES = [(1, 16384, 16, 128), (1, 16384, 32, 64), (4, 4096, 16, 128)]


def main() -> int:
    rows, ok = [], True
    for b, s, h, d in CASES:
        q, k, v = attention_inputs(b, s, s, h, h, d, dtype=torch.bfloat16, device="cuda", seed=1)
        scale = d**-0.5
        outs = {o: flash.flash_fwd(q, k, v, scale, True, kernel="mma", order=o) for o in flash.CAUSAL_ORDERS}
        (o0, l0), (o1, l1) = outs.values()
        same = torch.equal(o0, o1) and torch.equal(l0, l1)
        part = [t[:, :2048, :2] for t in (q, k, v)]
        ref = attention_naive(*part, causal=True, softmax_scale=scale)  # fp32 accumulation
        low = attention_naive(*part, causal=True, softmax_scale=scale, accum_dtype=None)
        try:  # causal rows < 2048 see only keys < 2048, so the slice is exact
            assert_attention_close(o1[:, :2048, :2], ref, low, name="out")
            close = True
        except AssertionError as e:
            print(e, file=sys.stderr)
            close = False
        ok &= same and close
        flops = 4 * b * s * s * h * d / 2
        for rep in (1, 2):  # the orders alternate, twice, so a drifting clock shows as a spread
            for order in flash.CAUSAL_ORDERS:
                call = functools.partial(flash.flash_fwd, q, k, v, scale, True, order=order)
                ms = triton.testing.do_bench(call)
                rows.append(dict(case=f"b{b} s{s} h{h} d{d} causal", order=order, rep=rep, ms=ms,
                                 tflops=flops / ms / 1e9, identical=same, matches_reference=close))  # fmt: skip
    print(f"{'case':28} {'order':12} rep {'ms':>8} {'TFLOP/s':>8}  checks")
    for r in rows:
        checks = "ok" if r["identical"] and r["matches_reference"] else "FAILED"
        print(f"{r['case']:28} {r['order']:12} {r['rep']:3} {r['ms']:8.3f} {r['tflops']:8.1f}  {checks}")
    if os.environ.get("OUT"):
        os.makedirs(os.environ["OUT"], exist_ok=True)
        device = torch.cuda.get_device_name()
        with open(os.path.join(os.environ["OUT"], "causal_order.json"), "w") as f:
            json.dump({"device": device, "rows": rows}, f, indent=1)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
