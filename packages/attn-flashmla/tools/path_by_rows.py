"""Where should the Hopper default switch from Triton to the CuTe kernel? Both paths, by query rows per KV head.

    export PYTHONPATH=$(cat /tmp/site.pythonpath):$(ls -d packages/*/src | paste -sd:)
    python3 packages/attn-flashmla/tools/path_by_rows.py

Dense decoding, b 128, h_kv 1, s_k 8192 (FlashMLA's varlen draw), page 64, bf16, causal. For each (h_q, s_q)
each path gets its own schedule (made by a first call outside the timing) and is timed with
``triton.testing.do_bench``; the two outputs are compared as a sanity check. ``_runtime.CUTE_MIN_ROWS`` is
the switch this informs.
"""

import os
from unittest import mock

import torch
import triton

import attn_flashmla as flash_mla

B, S_K, PAGE, D, DV = 128, 8192, 64, 576, 512


def time_case(h_q: int, s_q: int) -> tuple[dict, float]:
    """Milliseconds per path and the largest difference between the two outputs."""
    lens = torch.normal(S_K, S_K / 2, (B,)).int().clamp(1, 2 * S_K).to(torch.int32).cuda()
    blocks = -(-int(lens.max()) // PAGE)
    table = torch.arange(B * blocks, dtype=torch.int32, device="cuda").view(B, blocks)
    cache = torch.randn(B * blocks, PAGE, 1, D, dtype=torch.bfloat16, device="cuda")
    q = torch.randn(B, s_q, h_q, D, dtype=torch.bfloat16, device="cuda")
    ms, outs = {}, {}
    for path in ("cute", "triton"):
        sched, _ = flash_mla.get_mla_metadata()

        def call(sched=sched):
            return flash_mla.flash_mla_with_kvcache(q, cache, table, lens, DV, sched, causal=True)

        with mock.patch.dict(os.environ, {"ATTN_FLASHMLA_PATH": path}):  # read when the schedule is made
            outs[path] = call()[0]
        ms[path] = triton.testing.do_bench(call, warmup=50, rep=300)
    return ms, (outs["cute"].float() - outs["triton"].float()).abs().max().item()


def main() -> None:
    torch.manual_seed(0)
    print(f"{'h_q':>4}{'s_q':>4}{'rows':>6}{'cute ms':>10}{'triton ms':>11}{'cute speed-up':>15}")
    for h_q, s_q in ((16, 1), (32, 1), (16, 2), (64, 1), (32, 2), (128, 1)):
        ms, diff = time_case(h_q, s_q)
        print(
            f"{h_q:>4}{s_q:>4}{s_q * h_q:>6}{ms['cute']:>10.3f}{ms['triton']:>11.3f}"
            f"{ms['triton'] / ms['cute']:>14.2f}x  max |cute - triton| {diff:.1e}"
        )
        torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
