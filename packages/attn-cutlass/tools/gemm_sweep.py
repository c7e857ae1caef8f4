"""Time GemmSm90 configurations side by side with torch.matmul (bf16, 8192^3 by default), on a Hopper GPU.

    python packages/attn-cutlass/tools/gemm_sweep.py [--n 8192] [--rounds 3]

Each configuration is compiled once, checked against torch.matmul, then timed in interleaved rounds
(medians of CUDA-event timings after warm-up), so clock drift hits every row alike. Prints one table.
"""

from __future__ import annotations

import argparse
import statistics

import torch

CONFIGS = {  # name: GemmSm90 keyword arguments
    "pair, group 32 (default)": dict(cluster_m=2, group_m=32),
    "pair, group 16": dict(cluster_m=2, group_m=16),
    "pair, group 8": dict(cluster_m=2, group_m=8),
    "pair, group 4": dict(cluster_m=2, group_m=4),
    "pair, group 64": dict(cluster_m=2, group_m=64),
    "single, group 32": dict(cluster_m=1, group_m=32),
    "single, group 16": dict(cluster_m=1, group_m=16),
    "256x128 tile, pair, group 16": dict(cluster_m=2, group_m=16, tile_mnk=(256, 128, 64)),
}


def _build(a, bt, c, sms, **kw):
    import cuda.bindings.driver as cuda
    import cutlass
    import cutlass.cute as cute
    from cutlass.cute.runtime import from_dlpack

    from attn_cutlass.gemm import TILE_M, TILE_N
    from attn_cutlass.kernels.gemm_sm90 import GemmSm90

    args = [
        from_dlpack(a, assumed_align=16).mark_layout_dynamic(leading_dim=1),
        from_dlpack(bt, assumed_align=16).mark_layout_dynamic(leading_dim=0),
        from_dlpack(c, assumed_align=16)
        .mark_layout_dynamic(leading_dim=1)
        .mark_compact_shape_dynamic(mode=1, stride_order=(0, 1), divisibility=8),
    ]
    cm = kw["cluster_m"]
    ctas = cutlass.Int32(sms // cm * cm)
    stream = cuda.CUstream(torch.cuda.current_stream().cuda_stream)
    kw = {"tile_mnk": (TILE_M, TILE_N, 64), **kw}
    fn = cute.compile(GemmSm90(cutlass.BFloat16, **kw), *args, ctas, stream)
    return lambda: fn(*args, ctas, stream)


def _median_ms(fn, reps=10, batch=10):
    """Median over ``reps`` of the mean time of ``batch`` back-to-back launches: the host's call overhead
    (larger for a CuTe DSL call than for torch's) then overlaps the GPU work, as in a real model."""
    for _ in range(3):
        fn()
    times = []
    for _ in range(reps):
        s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        s.record()
        for _ in range(batch):
            fn()
        e.record()
        e.synchronize()
        times.append(s.elapsed_time(e) / batch)
    return statistics.median(times)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--n", type=int, default=8192)
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args()
    n = args.n
    g = torch.Generator(device="cuda").manual_seed(0)
    a = torch.randn(n, n, device="cuda", dtype=torch.bfloat16, generator=g)
    b = torch.randn(n, n, device="cuda", dtype=torch.bfloat16, generator=g)  # row-major: bt N-contiguous
    ref = a @ b
    sms = torch.cuda.get_device_properties(0).multi_processor_count
    runs = {"torch.matmul": lambda: torch.matmul(a, b)}
    for name, kw in CONFIGS.items():
        c = torch.empty(n, n, device="cuda", dtype=torch.bfloat16)
        run = _build(a, b.t(), c, sms, **kw)
        run()
        torch.cuda.synchronize()
        err = (c.float() - ref.float()).abs().max().item()
        assert err < 2e-2 * n**0.5, f"{name}: max error {err}"
        runs[name] = run
    times = {k: [] for k in runs}
    for _ in range(args.rounds):
        for k, fn in runs.items():
            times[k].append(_median_ms(fn))
    flops = 2 * n**3
    base = statistics.median(times["torch.matmul"])
    print(f"{'config':<28}{'ms':>8}{'TFLOP/s':>10}{'x torch':>9}")
    for k, ts in times.items():
        t = statistics.median(ts)
        print(f"{k:<28}{t:>8.3f}{flops / t / 1e9:>10.1f}{base / t:>9.3f}")


if __name__ == "__main__":
    main()
