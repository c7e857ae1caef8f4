"""Compiling CuTe DSL kernels: with fake tensors (no GPU needed), for a chosen arch, keeping the PTX.

``cute.compile`` traces the ``@cute.jit`` host function, lowers it to MLIR, and runs NVVM + ptxas in
process: none of that touches a GPU, so with ``GPUArch("sm_90a")`` (or env ``CUTE_DSL_ARCH``) a CPU-only
machine builds Hopper kernels. Fake tensors (``cute.runtime.make_fake_tensor`` with ``cute.sym_int()``
extents and strides) stand in for real ones: dynamic shapes become kernel parameters, exactly as the
dynamic layouts of ``from_dlpack(...).mark_layout_dynamic()`` do at run time.

In nvidia-cutlass-dsl 4.8.1 the PTX is kept with the compile options ``cute.KeepPTX`` plus
``cutlass.base_dsl.compiler.DumpDir(dir)`` (the directory must exist); the env spelling
``CUTE_DSL_KEEP=ptx`` + ``CUTE_DSL_DUMP_DIR`` is read once, when ``cutlass.cute`` is imported.
"""

from __future__ import annotations

import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass
class CompileResult:
    compiled: object
    seconds: float
    ptx: str | None  # PTX text, when asked for


def compile_kernel(fn, *args, arch: str | None = None, keep_ptx: bool = False, dump_dir: str | None = None):
    """``cute.compile`` with optional arch and PTX; returns a :class:`CompileResult`."""
    import cutlass.cute as cute
    from cutlass.base_dsl.compiler import DumpDir

    options = []
    if arch is not None:
        options.append(cute.GPUArch(arch))
    tmp = None
    if keep_ptx:
        if dump_dir is None:
            tmp = tempfile.TemporaryDirectory(prefix="attn_cutlass_ptx_")
            dump_dir = tmp.name
        os.makedirs(dump_dir, exist_ok=True)
        options += [cute.KeepPTX, DumpDir(dump_dir)]
    compiler = cute.compile[tuple(options)] if options else cute.compile
    start = time.perf_counter()
    compiled = compiler(fn, *args)
    seconds = time.perf_counter() - start
    ptx = None
    if keep_ptx:
        files = sorted(Path(dump_dir).glob("*.ptx"), key=lambda p: p.stat().st_mtime)
        ptx = files[-1].read_text() if files else None
    if tmp is not None:
        tmp.cleanup()
    return CompileResult(compiled, seconds, ptx)


def _cutlass_dtype(name: str):
    import cutlass

    return {"float16": cutlass.Float16, "bfloat16": cutlass.BFloat16}[name]


def fake_attention_args(dtype: str, head_dim: int, varlen: bool = False):
    """Fake q, k, v, out, lse, cu_seqlens_q, cu_seqlens_k shaped like the interface passes them."""
    import cutlass
    import cutlass.cute as cute
    from cutlass.cute.runtime import make_fake_tensor

    dt = _cutlass_dtype(dtype)
    sym = cute.sym_int
    rank = 3 if varlen else 4

    def qkv():
        shape = (*tuple(sym() for _ in range(rank - 1)), head_dim)
        stride = (*tuple(sym() for _ in range(rank - 1)), 1)
        return make_fake_tensor(dt, shape, stride=stride, assumed_align=16)

    lse_rank = 2 if varlen else 3
    lse = make_fake_tensor(
        cutlass.Float32,
        tuple(sym() for _ in range(lse_rank)),
        stride=(*tuple(sym() for _ in range(lse_rank - 1)), 1),
        assumed_align=4,
    )
    cu = make_fake_tensor(cutlass.Int32, (sym(),), stride=(1,), assumed_align=4)
    return qkv(), qkv(), qkv(), qkv(), lse, cu, cu


def compile_flash_fwd_sm90(dtype="bfloat16", head_dim=128, *, keep_ptx=False, arch="sm_90a", **flags):
    """Compile the sm90 forward against fake tensors (works without a GPU)."""
    from cutlass.cute.runtime import make_fake_stream

    from .kernels.flash_fwd_sm90 import FlashAttentionForwardSm90

    kernel = FlashAttentionForwardSm90(_cutlass_dtype(dtype), head_dim, **flags)
    args = fake_attention_args(dtype, head_dim, varlen=flags.get("varlen", False))
    # scale_log2, softcap_pre, softcap, windows, qhead_per_kvhead, m blocks, tiles, CTAs, hb_chunk, snake
    scalars = (1.0, 0.0, 0.0, 0, 0, 1, 1, 1, 1, 1, 1)
    return compile_kernel(kernel, *args, *scalars, make_fake_stream(), arch=arch, keep_ptx=keep_ptx)


def compile_gemm_sm90(dtype="bfloat16", *, keep_ptx=False, arch="sm_90a", cluster_m=2):
    """Compile the sm90 GEMM against fake (M, K) x (N, K) -> (M, N) tensors."""
    import cutlass
    import cutlass.cute as cute
    from cutlass.cute.runtime import make_fake_stream, make_fake_tensor

    from .kernels.gemm_sm90 import GemmSm90

    dt = _cutlass_dtype(dtype)
    sym = cute.sym_int

    def mat():
        return make_fake_tensor(dt, (sym(), sym()), stride=(sym(), 1), assumed_align=16)

    kernel = GemmSm90(dt, cluster_m=cluster_m)
    return compile_kernel(
        kernel, mat(), mat(), mat(), cutlass.Int32(1), make_fake_stream(), arch=arch, keep_ptx=keep_ptx
    )


def compile_flash_bwd_sm90(dtype="bfloat16", head_dim=128, *, keep_ptx=False, arch="sm_90a", **flags):
    """Compile the sm90 backward against fake tensors (works without a GPU)."""
    import cutlass
    import cutlass.cute as cute
    from cutlass.cute.runtime import make_fake_stream, make_fake_tensor

    from .kernels.flash_bwd_sm90 import FlashAttentionBackwardSm90

    varlen = flags.get("varlen", False)
    kernel = FlashAttentionBackwardSm90(_cutlass_dtype(dtype), head_dim, **flags)
    q, k, v, do, lse, cu_q, cu_k = fake_attention_args(dtype, head_dim, varlen=varlen)
    _, _, _, _, d, _, _ = fake_attention_args(dtype, head_dim, varlen=varlen)
    rank = 3 if varlen else 4
    sym = cute.sym_int
    # "bulk": (b, h, m, tile_m * head_dim), tile by tile; otherwise rows of head_dim
    row = kernel.tile_m * head_dim if flags.get("dq_reduce") == "bulk" else head_dim
    dqacc = make_fake_tensor(
        cutlass.Float32,
        (*tuple(sym() for _ in range(rank - 1)), row),
        stride=(*tuple(sym() for _ in range(rank - 1)), 1),
        assumed_align=16,
    )
    _, dk, dv, _, _, _, _ = fake_attention_args(dtype, head_dim, varlen=varlen)
    scalars = (1.0, 0.0, 0.0, 1.0, 0, 0, 1, 1, 1, 1)
    return compile_kernel(
        kernel,
        q,
        k,
        v,
        do,
        lse,
        d,
        dqacc,
        dk,
        dv,
        cu_q,
        cu_k,
        *scalars,
        make_fake_stream(),
        arch=arch,
        keep_ptx=keep_ptx,
    )


def compile_gemm_sm80(dtype="bfloat16", *, keep_ptx=False, arch="sm_80"):
    """Compile the sm80 GEMM against fake (M, K) x (N, K) -> (M, N) K-contiguous tensors."""
    import cutlass.cute as cute
    from cutlass.cute.runtime import make_fake_stream, make_fake_tensor

    from .kernels.gemm_sm80 import GemmSm80

    dt = _cutlass_dtype(dtype)
    sym = cute.sym_int

    def mat(div):  # K-contiguous operands: row stride a multiple of 8 elements (16-byte cp.async)
        return make_fake_tensor(dt, (sym(), sym()), stride=(sym(divisibility=div), 1), assumed_align=16)

    return compile_kernel(
        GemmSm80(dt), mat(8), mat(8), mat(1), make_fake_stream(), arch=arch, keep_ptx=keep_ptx
    )


def compile_flash_fwd_sm80(dtype="bfloat16", head_dim=128, *, keep_ptx=False, arch="sm_80", **flags):
    """Compile the sm80 forward (warp MMA) against fake tensors (works without a GPU)."""
    from cutlass.cute.runtime import make_fake_stream

    from .kernels.flash_fwd_sm80 import FlashAttentionForwardSm80

    kernel = FlashAttentionForwardSm80(_cutlass_dtype(dtype), head_dim, **flags)
    args = fake_attention_args(dtype, head_dim, varlen=flags.get("varlen", False))
    scalars = (1.0, 0.0, 0.0, 0, 0, 1, 1, 1, 1)
    return compile_kernel(kernel, *args, *scalars, make_fake_stream(), arch=arch, keep_ptx=keep_ptx)


def compile_flash_bwd_preprocess(dtype="bfloat16", head_dim=128, *, keep_ptx=False, arch="sm_90a"):
    """Compile the backward's preprocess (D and LSE in base 2) against fake tensors."""
    from cutlass.cute.runtime import make_fake_stream

    from .kernels.flash_bwd_preprocess import FlashAttentionBackwardPreprocess

    kernel = FlashAttentionBackwardPreprocess(_cutlass_dtype(dtype), head_dim)
    out, dout, _, _, lse, _, _ = fake_attention_args(dtype, head_dim)
    _, _, _, _, d, _, _ = fake_attention_args(dtype, head_dim)
    _, _, _, _, lse2, _, _ = fake_attention_args(dtype, head_dim)
    return compile_kernel(kernel, out, dout, lse, d, lse2, make_fake_stream(), arch=arch, keep_ptx=keep_ptx)
