"""Launch every kernel of the package once on tiny inputs: the workload compute-sanitizer checks.

Run under the sanitizer by tests/test_gpu.py::test_compute_sanitizer_is_clean, or by hand:

    compute-sanitizer --tool racecheck python packages/attn-cuda/tools/sanitize.py

Every launch is small (a handful of blocks) so memcheck and racecheck, which slow kernels down by orders
of magnitude, finish in seconds. Sizes are odd so every ragged edge (rows past the end, the last key
tile, causal diagonals) is hit. All compiling happens before the first launch (NVRTC is a CPU job, but
there is no reason to run it under the sanitizer's interception). The last line printed is
``ATTN_CUDA_LAUNCHED <json list>``: every kernel (name expression) launched, which the test compares
with the catalog (on sm_90a with the Hopper kernels too).
"""

from __future__ import annotations

import json
import sys

import torch

import attn_cuda
from attn_cuda import basics, catalog, flash, runtime
from attn_cuda.basics.matmul import MMA_DEFAULT_LAYOUT, MMA_LAYOUTS, MMA_ORDERS, MMA_TILES

DTYPES = (torch.float32, torch.float16, torch.bfloat16)


def precompile() -> None:
    arch = runtime.device_arch()
    files = list(catalog.kernels()) + (list(catalog.hopper_kernels()) if arch == "sm_90a" else [])
    for filename in files:
        runtime.compile_source(
            runtime.kernel_source(filename),
            name=filename,
            arch=arch,
            name_expressions=catalog.name_expressions(filename),
        )


def basics_workload(dev: str) -> None:
    basics.hello(blocks=1, threads=2, tag=0)
    for dtype in DTYPES:
        x = torch.randn(1003, device=dev).to(dtype)
        basics.vector_add(x, x)
        basics.vector_add(x, x, access="chunked")
        basics.softmax(torch.randn(3, 300, device=dev).to(dtype))
    x = torch.randn(1000, device=dev)
    basics.vector_add(x, x, vectorized=True)
    for variant in basics.REDUCTION_VARIANTS:
        basics.reduce_sum(torch.rand(5000, device=dev), variant)
    for variant in basics.MATMUL_VARIANTS:
        for dtype in DTYPES:
            if variant == "mma" and dtype == torch.float32:
                continue
            a = torch.randn(72, 40, device=dev).to(dtype)
            b = torch.randn(40, 136, device=dev).to(dtype)
            options = (
                [{"order": o, "tile": t} for t in MMA_TILES for o in MMA_ORDERS]
                + [
                    {"tile": t, "layout": lay}
                    for t in MMA_TILES
                    for lay in MMA_LAYOUTS
                    if lay != MMA_DEFAULT_LAYOUT
                ]
                if variant == "mma"
                else [{}]
            )
            for kw in options:
                basics.matmul(a, b, variant=variant, **kw)
    # A 3 x 3 grid of 128 x 128 blocks (3 x 2 of 128 x 256): the grouped block order's remainder group and
    # a partial last K tile (K = 200) are exercised too.
    a = torch.randn(300, 200, device=dev, dtype=torch.float16)
    b = torch.randn(200, 264, device=dev, dtype=torch.float16)
    for tile in MMA_TILES:
        basics.matmul(a, b, variant="mma", tile=tile)
    pin = torch.randn(4096).pin_memory()
    basics.overlap_pipeline(pin, torch.empty_like(pin).pin_memory(), streams=2, chunks=4, iters=2)


def attention_workload(dev: str) -> None:
    for dtype in (torch.float16, torch.bfloat16):
        for d in flash.HEAD_DIMS:
            for causal in (False, True):
                for sq, sk, hq, hk in ((70, 45, 2, 1), (45, 140, 4, 2)):
                    q = torch.randn(1, sq, hq, d, device=dev, dtype=dtype, requires_grad=True)
                    k = torch.randn(1, sk, hk, d, device=dev, dtype=dtype, requires_grad=True)
                    v = torch.randn(1, sk, hk, d, device=dev, dtype=dtype, requires_grad=True)
                    out = attn_cuda.flash_attn_func(q, k, v, causal=causal)
                    out.sum().backward()
                    for variant in flash.FWD_VARIANTS:
                        flash.flash_fwd(
                            q.detach(), k.detach(), v.detach(), d**-0.5, causal, kernel="mma", variant=variant
                        )
                    if runtime.device_arch() == "sm_90a":  # the wgmma forward, with and without ping-pong
                        for pingpong in (True, False):
                            flash.flash_fwd(
                                q.detach(), k.detach(), v.detach(), d**-0.5, causal, kernel="wgmma",
                                pingpong=pingpong,
                            )  # fmt: skip
                    o, lse = flash.flash_fwd(q.detach(), k.detach(), v.detach(), d**-0.5, causal)
                    for variant in flash.BWD_VARIANTS:
                        flash.flash_bwd(
                            torch.ones_like(o), q.detach(), k.detach(), v.detach(), o, lse, d**-0.5, causal,
                            variant=variant,
                        )  # fmt: skip
                    for version in ("v1", "v2"):
                        attn_cuda.flash_attn_scalar_func(
                            q.detach(), k.detach(), v.detach(), causal=causal, version=version
                        )


def main() -> int:
    torch.manual_seed(0)
    dev = "cuda"
    precompile()
    with runtime.record_launches() as launched:
        basics_workload(dev)
        attention_workload(dev)
        torch.cuda.synchronize()
    names = sorted(set(launched))
    print(f"sanitize workload done: {len(launched)} launches of {len(names)} kernels")
    print("ATTN_CUDA_LAUNCHED " + json.dumps(names), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
