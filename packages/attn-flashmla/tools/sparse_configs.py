"""Sparse decoding on a GPU: launch configs, or split counts, checked against the reference, then timed.

    PYTHONPATH=$(ls -d packages/*/src | paste -sd:) python3 packages/attn-flashmla/tools/sparse_configs.py
    PYTHONPATH=... python3 packages/attn-flashmla/tools/sparse_configs.py --splits 0,auto,2,4,8

For each candidate (``BLOCK_H``, ``BLOCK_N``, ``num_warps``, ``num_stages``) the FP8 sparse decoding grid of
the conformance suite (``size="full"``) runs against attn-reference with gpu_check's tolerances, then
b 32, s_q 1, h_q 64 and 128, top-k 2048 is timed (median, triton.testing.do_bench) in TFLOP/s
(2 * h_q * s_q * b * topk * (576 + 512)). A candidate that fails to compile (shared memory) is reported,
not fatal. The table comes last; the package's choice lives in ``sparse_fwd._launch_config``.

``--splits`` times split-KV sparse decoding instead, with the package's launch config: each comma-separated
value is run as ``ATTN_FLASHMLA_SPARSE_SPLITS`` (``0`` = no split; ``auto`` = the default, the policy
``sparse_fwd.num_decode_splits``; ``N`` = N splits), through the same grid check and the same timings; the
table shows the split count each timing ran with (``auto``'s choice depends on the SM count).
"""

from __future__ import annotations

import sys
import traceback

import torch
import triton
from gpu_check import decode, env, sparse_decode_inputs, sparse_decode_mismatch  # this folder's GPU check

from attn_flashmla import _runtime, sparse_fwd
from attn_reference import mla
from attn_reference.testing import mla as mla_testing

CANDIDATES = [
    dict(BLOCK_H=64, BLOCK_N=64, num_warps=8, num_stages=1),
    dict(BLOCK_H=64, BLOCK_N=32, num_warps=8, num_stages=2),
    dict(BLOCK_H=64, BLOCK_N=32, num_warps=8, num_stages=1),
    dict(BLOCK_H=32, BLOCK_N=64, num_warps=4, num_stages=2),
    dict(BLOCK_H=32, BLOCK_N=64, num_warps=8, num_stages=1),
]
default_config = sparse_fwd._launch_config


def check_grid(grid_inputs, refs) -> list[str]:
    """The grid cases that fail (mismatch or exception) under the current config / split setting."""
    fails = []
    for (cid, inp), ref in zip(grid_inputs, refs):
        try:
            (out, lse), *_ = decode(inp, None)
            why = sparse_decode_mismatch(out, lse, ref)
        except Exception as e:  # a config that does not fit is a result
            why = f"{type(e).__name__}: {str(e)[:160]}"
        if why:
            fails.append(f"{cid}: {why}")
    return fails


def time_speed(speed) -> list[str]:
    """TFLOP/s of each timed case, or the exception's name."""
    row = []
    for h_q, inp in speed.items():
        try:
            ms = triton.testing.do_bench(lambda inp=inp: decode(inp, None), warmup=50, rep=300)
            flops = 2 * h_q * 1 * 32 * 2048 * (576 + 512)
            row.append(f"{flops / ms / 1e9:7.1f}")
        except Exception as e:
            row.append(type(e).__name__)
    return row


def sweep_configs(grid_inputs, refs, speed) -> list[list[str]]:
    table = []
    for cfg in CANDIDATES:
        label = "H{BLOCK_H} N{BLOCK_N} w{num_warps} s{num_stages}".format(**cfg)
        sparse_fwd._launch_config = lambda h_q, prefill, cfg=cfg: (
            default_config(h_q, prefill)
            if prefill
            else dict(cfg, BLOCK_H=min(cfg["BLOCK_H"], sparse_fwd._block_h(h_q)))
        )
        fails = check_grid(grid_inputs, refs)
        row = [label, f"{len(grid_inputs) - len(fails)}/{len(grid_inputs)}", *time_speed(speed)]
        table.append(row)
        print(label, row[1:], *fails[:3], sep="\n  ", flush=True)
    return table


def sweep_splits(settings: list[str], grid_inputs, refs, speed) -> list[list[str]]:
    device = torch.device("cuda")
    table = []
    for setting in settings:
        with env(**{sparse_fwd.SPLITS_ENV: setting}):
            used = []
            for h_q, inp in speed.items():
                b, s_q = inp.q.shape[:2]
                used.append(sparse_fwd.decode_plan(b, s_q, h_q, inp.indices.shape[-1], device)[2])
            fails = check_grid(grid_inputs, refs)
            speeds = time_speed(speed)
        label = f"splits={setting}"
        row = [label, f"{len(grid_inputs) - len(fails)}/{len(grid_inputs)}"]
        row += [f"{t.strip()} ({n})" for t, n in zip(speeds, used)]
        table.append(row)
        print(label, row[1:], *fails[:3], sep="\n  ", flush=True)
    print(f"\n{_runtime.num_sms(device)} SMs; (n) = the split count each timing ran with")
    return table


def main() -> int:
    splits = None
    if "--splits" in sys.argv:
        splits = sys.argv[sys.argv.index("--splits") + 1].split(",")
    grid = mla_testing._sparse_grid("full")
    grid_inputs = [(case.id, sparse_decode_inputs(case)) for case in grid]
    refs = [mla.flash_mla_with_kvcache(**inp.kwargs()) for _, inp in grid_inputs]
    speed = {
        h_q: mla_testing.mla_sparse_decode_inputs(32, 1, h_q, 8192, 2048, device="cuda") for h_q in (64, 128)
    }
    if splits is None:
        table, first = sweep_configs(grid_inputs, refs, speed), "config"
    else:
        table, first = sweep_splits(splits, grid_inputs, refs, speed), "split setting"
    print(f"\n{torch.cuda.get_device_name()}  sparse decoding b32 s_q1 topk2048 (TFLOP/s)")
    print(f"{first:24} {'checks':>7} {'h_q 64':>12} {'h_q 128':>12}")
    for row in table:
        print(f"{row[0]:24} {row[1]:>7} {row[2]:>12} {row[3]:>12}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except Exception:
        traceback.print_exc()
        sys.exit(1)
