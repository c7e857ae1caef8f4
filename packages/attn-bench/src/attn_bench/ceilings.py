"""The machine's ceilings, measured in the same run as the rows they scale.

Compute: a dense matmul (bf16 8192^3 on the GPU, fp32 1024^3 on the CPU). Memory: a device-to-device copy,
counting bytes read plus written. Percentages of ceiling in the results are against these numbers, not
datasheet figures.
"""

from __future__ import annotations

import torch

from attn_bench import timing


def measure(mode: str, quick: bool = False) -> dict:
    """``{"matmul_tflops", "copy_gbps", ...}`` with the shapes and timer that produced them."""
    if mode == "gpu":
        n, dtype, copy_bytes = (4096 if quick else 8192), torch.bfloat16, (256 << 20 if quick else 1 << 30)
        timer = lambda fn: timing.time_gpu(fn)
        device = "cuda"
    else:
        n, dtype, copy_bytes = 512 if quick else 1024, torch.float32, 64 << 20
        timer = lambda fn: timing.time_cpu(fn, budget_s=0.5, best=True)
        device = "cpu"
    g = torch.Generator(device=device).manual_seed(0)
    a = torch.randn(n, n, device=device, generator=g).to(dtype)
    b = torch.randn(n, n, device=device, generator=g).to(dtype)
    mm_ms, mm_timer = timer(lambda: torch.matmul(a, b))
    a = b = None  # free before the copy buffers
    src = torch.randint(0, 127, (copy_bytes,), dtype=torch.int8, device=device, generator=g)
    dst = torch.empty_like(src)
    copy_ms, _ = timer(lambda: dst.copy_(src))
    src = dst = None
    return {
        "matmul_tflops": 2 * n**3 / (mm_ms * 1e-3) / 1e12,
        "copy_gbps": 2 * copy_bytes / (copy_ms * 1e-3) / 1e9,
        "matmul_shape": [n, n, n],
        "matmul_dtype": str(dtype).removeprefix("torch."),
        "copy_bytes": copy_bytes,
        "timer": mm_timer,
    }
