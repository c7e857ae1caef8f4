"""Launch every kernel once on tiny inputs: the workload compute-sanitizer (memcheck, racecheck) checks.

Run under the sanitizer by tests/test_gpu.py::test_compute_sanitizer_is_clean, or by hand:
``compute-sanitizer --tool racecheck python packages/attn-cuda/tools/sanitize.py``.
Sizes are odd so every ragged edge (rows past the end, the last key tile, causal diagonals) is hit.
"""

from __future__ import annotations

import torch

import attn_cuda
from attn_cuda import basics


def main() -> None:
    torch.manual_seed(0)
    dev = "cuda"
    x = torch.randn(1003, device=dev)
    basics.vector_add(x, x)
    basics.vector_add(x[:1000], x[:1000], vectorized=True)
    basics.softmax(torch.randn(3, 300, device=dev))
    for variant in basics.REDUCTION_VARIANTS:
        basics.reduce_sum(torch.rand(5000, device=dev), variant)
    for variant in basics.MATMUL_VARIANTS:
        a = torch.randn(72, 40, device=dev, dtype=torch.float16)
        b = torch.randn(40, 136, device=dev, dtype=torch.float16)
        basics.matmul(a, b, variant=variant)
    pin = torch.randn(4096).pin_memory()
    basics.overlap_pipeline(pin, torch.empty_like(pin).pin_memory(), streams=2, chunks=4, iters=2)
    for dtype in (torch.float16, torch.bfloat16):
        for d in (64, 128):
            for causal in (False, True):
                for sq, sk, hq, hk in ((70, 45, 2, 1), (45, 70, 4, 2)):
                    q = torch.randn(1, sq, hq, d, device=dev, dtype=dtype, requires_grad=True)
                    k = torch.randn(1, sk, hk, d, device=dev, dtype=dtype, requires_grad=True)
                    v = torch.randn(1, sk, hk, d, device=dev, dtype=dtype, requires_grad=True)
                    out = attn_cuda.flash_attn_func(q, k, v, causal=causal)
                    out.sum().backward()
                    for version in ("v1", "v2"):
                        attn_cuda.flash_attn_scalar_func(
                            q.detach(), k.detach(), v.detach(), causal=causal, version=version
                        )
    torch.cuda.synchronize()
    print("sanitize workload done")


if __name__ == "__main__":
    main()
