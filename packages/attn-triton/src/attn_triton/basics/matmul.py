"""Tiled matrix multiply ``C = A @ B`` (fp16/bf16 in, fp32 accumulate).

What it teaches:

* **Tiling.** Each program computes one ``BLOCK_M x BLOCK_N`` tile of C, walking K in ``BLOCK_K`` steps;
  ``tl.dot`` maps each step onto tensor-core MMA instructions (wgmma on Hopper, mma.sync on Ampere) and
  keeps the accumulator in fp32 registers.
* **Grouped ordering.** Programs launch in id order. Row-major order (all of C's first tile-row, then the
  next) streams the whole of B through L2 for every tile-row of A. Grouping ``GROUP_M`` tile-rows and
  walking them column by column keeps a ``GROUP_M``-tall panel of A and a few columns of B hot in L2, which
  cuts DRAM traffic for large matrices.
* **Autotuning per architecture.** Tile shapes, warps and pipeline depth are chosen by timing candidates
  once per problem-size bucket; the candidate list depends on the GPU (Hopper has 227 KiB of shared memory
  per SM and wants 128-wide tiles for wgmma, Ampere has 164 KiB), and configs that cannot fit are pruned
  before anything compiles.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from attn_triton._runtime import check_device, path_for, tuning_budget


@triton.jit
def _matmul_kernel(
    a_ptr,
    b_ptr,
    c_ptr,
    M,
    N,
    K,
    stride_am,
    stride_ak,
    stride_bk,
    stride_bn,
    stride_cm,
    stride_cn,
    M_BUCKET,
    N_BUCKET,
    K_BUCKET,  # read only by the autotuner: one tuning per power-of-two size bucket
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
    GROUP_M: tl.constexpr,
):
    pid = tl.program_id(0)
    num_pid_m = tl.cdiv(M, BLOCK_M)
    num_pid_n = tl.cdiv(N, BLOCK_N)
    # Grouped ordering: consecutive program ids fill a GROUP_M-tall column of tiles before moving right.
    pids_per_group = GROUP_M * num_pid_n
    group = pid // pids_per_group
    first_m = group * GROUP_M
    group_rows = min(num_pid_m - first_m, GROUP_M)  # the last group may be shorter
    pid_m = first_m + (pid % pids_per_group) % group_rows
    pid_n = (pid % pids_per_group) // group_rows

    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_k = tl.arange(0, BLOCK_K)
    a_ptrs = a_ptr + offs_m[:, None].to(tl.int64) * stride_am + offs_k[None, :] * stride_ak
    b_ptrs = b_ptr + offs_k[:, None] * stride_bk + offs_n[None, :].to(tl.int64) * stride_bn

    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for k in range(0, tl.cdiv(K, BLOCK_K)):
        k_left = K - k * BLOCK_K
        # Masked loads pad the ragged edges with zeros, which add nothing to the dot product.
        a = tl.load(a_ptrs, mask=(offs_m[:, None] < M) & (offs_k[None, :] < k_left), other=0.0)
        b = tl.load(b_ptrs, mask=(offs_k[:, None] < k_left) & (offs_n[None, :] < N), other=0.0)
        acc = tl.dot(a, b, acc)
        a_ptrs += BLOCK_K * stride_ak
        b_ptrs += BLOCK_K * stride_bk

    c_ptrs = c_ptr + offs_m[:, None].to(tl.int64) * stride_cm + offs_n[None, :] * stride_cn
    tl.store(c_ptrs, acc.to(c_ptr.dtype.element_ty), mask=(offs_m[:, None] < M) & (offs_n[None, :] < N))


def _cfg(bm, bn, bk, warps, stages, group=8):
    return triton.Config(
        {"BLOCK_M": bm, "BLOCK_N": bn, "BLOCK_K": bk, "GROUP_M": group}, num_warps=warps, num_stages=stages
    )


# Hopper: 128x256 / 256x128 tiles keep two warpgroups busy with wgmma; deep pipelines hide HBM latency.
_SM90_CONFIGS = [
    _cfg(128, 256, 64, 8, 3),
    _cfg(256, 128, 64, 8, 3),
    _cfg(128, 128, 64, 8, 4),
    _cfg(128, 128, 64, 4, 4),
    _cfg(64, 128, 64, 4, 4),
    _cfg(64, 64, 64, 4, 3),
]
# Ampere: smaller shared memory, mma.sync prefers 128x128 or 128x64 tiles.
_SM80_CONFIGS = [
    _cfg(128, 256, 32, 8, 3),
    _cfg(128, 128, 32, 4, 4),
    _cfg(128, 64, 32, 4, 4),
    _cfg(64, 128, 32, 4, 4),
    _cfg(64, 64, 32, 4, 4),
    _cfg(32, 64, 32, 4, 4),
]
_SMEM_BYTES = {"sm90": 227 * 1024, "sm80": 163 * 1024}


def _prune(path: str):
    def prune(configs, named_args, **kwargs):
        M, N = named_args["M"], named_args["N"]
        elem = named_args["a_ptr"].element_size()
        kept = []
        for c in configs:
            bm, bn, bk = c.kwargs["BLOCK_M"], c.kwargs["BLOCK_N"], c.kwargs["BLOCK_K"]
            smem = (bm + bn) * bk * elem * c.num_stages
            if smem > _SMEM_BYTES[path]:
                continue  # would fail to launch (out of shared memory)
            if bm > 2 * max(M, 16) or bn > 2 * max(N, 16):
                continue  # mostly padding for small problems
            kept.append(c)
        return tuning_budget(kept) or [min(configs, key=lambda c: c.kwargs["BLOCK_M"] * c.kwargs["BLOCK_N"])]

    return prune


def _bucket(x: int) -> int:
    return triton.next_power_of_2(max(int(x), 1))


_TUNED = {}


def _tuned(path: str):
    if path not in _TUNED:
        configs = _SM90_CONFIGS if path == "sm90" else _SM80_CONFIGS
        _TUNED[path] = triton.autotune(
            configs,
            key=["M_BUCKET", "N_BUCKET", "K_BUCKET"],
            prune_configs_by={"early_config_prune": _prune(path)},
        )(_matmul_kernel)
    return _TUNED[path]


def matmul(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``a @ b`` for 2-D fp16/bf16 (or fp32) tensors; accumulates in fp32, returns ``a.dtype``."""
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[0]:
        raise ValueError(
            f"matmul: a and b must be 2-D with a.shape[1] == b.shape[0], got a of shape {tuple(a.shape)} "
            f"and b of shape {tuple(b.shape)}"
        )
    if a.dtype != b.dtype or a.dtype not in (torch.float16, torch.bfloat16, torch.float32):
        raise ValueError(
            f"matmul: a and b must share one dtype of float16, bfloat16, float32, got a {a.dtype} and b {b.dtype}"
        )
    check_device("matmul", a=a, b=b)
    M, K = a.shape
    N = b.shape[1]
    c = torch.empty((M, N), dtype=a.dtype, device=a.device)
    if M == 0 or N == 0:
        return c
    if K == 0:
        return c.zero_()
    args = (
        a,
        b,
        c,
        M,
        N,
        K,
        a.stride(0),
        a.stride(1),
        b.stride(0),
        b.stride(1),
        c.stride(0),
        c.stride(1),
        _bucket(M),
        _bucket(N),
        _bucket(K),
    )
    path = path_for(a.device)
    if path == "interpret":
        # The interpreter cannot time candidates: run one small config.
        bm, bn, bk = 32, 32, 32
        grid = (triton.cdiv(M, bm) * triton.cdiv(N, bn),)
        _matmul_kernel[grid](*args, BLOCK_M=bm, BLOCK_N=bn, BLOCK_K=bk, GROUP_M=4)
        return c
    grid = lambda meta: (triton.cdiv(M, meta["BLOCK_M"]) * triton.cdiv(N, meta["BLOCK_N"]),)
    _tuned(path)[grid](*args)
    return c
