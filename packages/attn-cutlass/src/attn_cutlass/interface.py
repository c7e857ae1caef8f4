"""flash-attn's API on top of the CuTe DSL kernels: validate, pick the kernel, launch.

* Validation is attn_reference.validation's, so messages match every other backend's.
* The architecture is asked at call time (attn_reference.capability), never at import: Hopper runs
  kernels/flash_fwd_sm90.py, other GPUs >= sm80 kernels/flash_fwd_sm80.py (``ATTN_CUTLASS_FORCE_ARCH=sm80``
  forces the latter on Hopper).
* Kernels compile once per *compile-time* configuration (dtype, head dim, mask kind, softcap on/off,
  varlen): sequence lengths, strides, batch, heads, scale and window sizes are runtime arguments of the
  compiled function, so a new shape never recompiles.
* The op is a ``torch.library.custom_op`` with a fake implementation (torch.compile traces through it);
  autograd goes through a ``torch.autograd.Function`` whose backward runs kernels/flash_bwd_sm90.py
  (head dims 64 and 128; others raise UnsupportedFeatureError when the gradient is asked for).
"""

from __future__ import annotations

import functools
import math
import os
import threading

import torch

from attn_reference import capability
from attn_reference.errors import UnsupportedFeatureError
from attn_reference.validation import (
    check_options,
    check_qkv,
    check_varlen_qkv,
)

from ._tma import fresh_copy, tma_ready

DTYPES = (torch.float16, torch.bfloat16)
HEAD_DIMS = (64, 128, 256)
SM80_HEAD_DIMS = (64, 128)  # the sm80 forward (kernels/flash_fwd_sm80.py)
BWD_HEAD_DIMS = (64, 128)  # the sm90 backward; others raise UnsupportedFeatureError in backward

_cache: dict[tuple, object] = {}
_cache_lock = threading.Lock()


def compile_cache_info() -> dict[tuple, object]:
    """The compiled kernels by configuration (read-only view for tests and tools)."""
    return dict(_cache)


@functools.cache
def _num_sms(index: int) -> int:
    return torch.cuda.get_device_properties(index).multi_processor_count


@functools.cache
def _dummy_cu_seqlens(index: int) -> torch.Tensor:
    return torch.zeros(2, dtype=torch.int32, device=f"cuda:{index}")


def sm80_forced() -> bool:
    """``ATTN_CUTLASS_FORCE_ARCH=sm80``: take the sm80 kernels on Hopper too (how the H200 tests them; they
    are the default on every other GPU >= sm80)."""
    return os.environ.get("ATTN_CUTLASS_FORCE_ARCH") == "sm80"


def _env_choice(name: str, allowed: tuple[str, ...], default: str) -> str:
    """``$name`` (read per call; unset or empty: ``default``), refused with the allowed values if unknown."""
    value = os.environ.get(name, "").strip() or default
    if value not in allowed:
        raise ValueError(f"{name} must be one of {allowed}, got {value!r}")
    return value


def bwd_dq_reduce(head_dim: int) -> str:
    """``ATTN_CUTLASS_BWD_DQ``: how the sm90 backward adds dQ. Unset: ``bulk`` at head dim 128, ``tma``
    otherwise (varlen always takes ``atomic``). ``bulk`` (FA3/FA4's scheme) stores the fp32 accumulator
    tile by tile in the MMA's order and adds it by one contiguous reduce-add per warpgroup and block;
    ``tma`` adds each tile by TMA reduce-adds into a row-major accumulator; ``atomic`` by fp32 ``red`` per
    thread. All three passed the sm90 backward suite on an H100 (2026-12-07). Same run, 16k tokens,
    backward alone: hd128 ``bulk`` 515 TFLOP/s against ``tma`` 422 (1.22x) and ``atomic`` 280; hd64
    ``bulk`` 347 against ``tma`` 374 (0.93x), hence the split by head dim."""
    from .kernels.flash_bwd_sm90 import BWD_DQ_REDUCES

    return _env_choice("ATTN_CUTLASS_BWD_DQ", BWD_DQ_REDUCES, "bulk" if head_dim == 128 else "tma")


def bwd_schedule() -> str:
    """``ATTN_CUTLASS_BWD_SCHEDULE``: the sm90 backward's order of work a query block, ``overlap`` (the
    default, FA3/FA4's order: P^T beside dP^T, dS^T beside dV, dQ's epilogue beside dK, dS^T through
    stmatrix into two buffers, one barrier) or ``serial`` (every GEMM waited for before the next phase,
    three barriers of both warpgroups). Both passed the sm90 backward suite on the H200 (2026-12-06);
    hd128 16k backward 438 TFLOP/s with ``overlap`` against 388 with ``serial`` (1.13x, same run)."""
    from .kernels.flash_bwd_sm90 import BWD_SCHEDULES

    return _env_choice("ATTN_CUTLASS_BWD_SCHEDULE", BWD_SCHEDULES, "overlap")


def bwd_prefetch_stats() -> bool:
    """``ATTN_CUTLASS_BWD_PREFETCH``: ``1`` has the sm90 backward's overlap schedule prefetch the next query
    block's LSE and D into L1 during the current one; ``0`` (the default) leaves them to their loads a
    phase before use. Measured on an H100 (2026-12-07, 16k tokens, backward alone): no gain at hd128
    (bulk dQ: 513 TFLOP/s with it, 508 without), a loss at hd64 (374 with it, 390 without)."""
    return _env_choice("ATTN_CUTLASS_BWD_PREFETCH", ("0", "1"), "0") == "1"


def _arch_of(device: torch.device) -> str:
    """ "sm90" on Hopper; "sm80" (forward: the warp-MMA kernel; backward: refused) on every other sm80+
    GPU, and on Hopper with ``ATTN_CUTLASS_FORCE_ARCH=sm80``."""
    cap = capability.cuda_capability(device)
    if cap == (9, 0) and not sm80_forced():
        return "sm90"
    if cap is not None and cap >= (8, 0):
        return "sm80"
    raise UnsupportedFeatureError(f"attn-cutlass needs an sm80+ GPU; {device} has capability {cap}")


def _to_cute(t: torch.Tensor, align: int = 16):
    """A CuTe view of ``t``'s memory. DLPack refuses tensors that require grad: export the detached alias
    (same storage; the kernels never take part in autograd, _FlashAttnFunc does that)."""
    from cutlass.cute.runtime import from_dlpack

    return from_dlpack(t.detach(), assumed_align=align).mark_layout_dynamic(leading_dim=t.dim() - 1)


def _cute_dtype(dtype: torch.dtype):
    from cutlass import BFloat16, Float16

    return {torch.float16: Float16, torch.bfloat16: BFloat16}[dtype]


def _ensure_tma_strides(t: torch.Tensor) -> torch.Tensor:
    """``t``, or a fresh copy where a TMA descriptor could not describe it (a misaligned base, a stride not
    a multiple of 16 bytes, a broadcast stride 0)."""
    return t if tma_ready(t) else fresh_copy(t)


# The causal schedule walks (head, batch) pairs in sections whose K/V fit this much L2 (H100/H200: 50 MB,
# in two partitions; keep to half).
_L2_SECTION_BYTES = 24 << 20


def _hb_chunk(seqlen_k: int, head_dim: int, qhead_per_kvhead: int) -> int:
    """(head, batch) pairs per section of the causal schedule (see kernels.flash_fwd_sm90.tile_coords)."""
    kv_bytes = max(1, seqlen_k) * head_dim * 2 * 2  # K and V, 16-bit
    return max(1, _L2_SECTION_BYTES // kv_bytes) * qhead_per_kvhead


#: How the sm90 forward deals causal tiles to its persistent CTAs (``ATTN_CUTLASS_CAUSAL_SCHEDULE``, read
#: per call). ``lpt`` (the default): one section for the whole problem, longest tiles first across every
#: head, every odd round dealt in reverse. ``sections``: (head, batch) pairs in sections whose K/V fit about
#: 24 MB of L2, longest first inside each, dealt in plain rounds. Counted in key blocks per CTA
#: (``tests/test_schedule.py``), ``sections`` leaves the busiest CTA with 1.2x the mean at hd128 16k and
#: 1.8x at hd256 16k, ``lpt`` within 1 %; L2 reuse across heads, which ``sections`` keeps, proved worth less
#: than the balance: on the H200 (2026-12-03, bf16, 16k, same run) ``lpt`` ran 597 against 556 TFLOP/s at
#: hd128 causal (1.07x) and 638 against 440 at hd256 causal (1.45x).
CAUSAL_SCHEDULES = ("sections", "lpt")
DEFAULT_CAUSAL_SCHEDULE = "lpt"


def causal_schedule(
    seqlen_k: int, head_dim: int, qhead_per_kvhead: int, num_hb: int, schedule: str | None = None
) -> tuple[int, int]:
    """``(hb_chunk, snake)`` of the causal tile order for ``num_hb`` (head, batch) pairs: ``schedule`` if
    given, else ``$ATTN_CUTLASS_CAUSAL_SCHEDULE``, else the default."""
    value = schedule or _env_choice("ATTN_CUTLASS_CAUSAL_SCHEDULE", CAUSAL_SCHEDULES, DEFAULT_CAUSAL_SCHEDULE)
    if value not in CAUSAL_SCHEDULES:
        raise ValueError(f"schedule must be one of {CAUSAL_SCHEDULES}, got {value!r}")
    if value == "lpt":
        return max(1, num_hb), 1
    return _hb_chunk(seqlen_k, head_dim, qhead_per_kvhead), 0


def fwd_pingpong() -> bool:
    """``ATTN_CUTLASS_PINGPONG`` (read per call): ``1`` (the default) makes the sm90 forward's two consumer
    warpgroups take turns at the tensor cores through named barriers (FA3's ping-pong); ``0`` drops the
    barriers, so both issue their GEMMs whenever they are ready (the ablation's "before")."""
    return _env_choice("ATTN_CUTLASS_PINGPONG", ("0", "1"), "1") == "1"


#: How the sm90 forward rescales its running output (``ATTN_CUTLASS_RESCALE``, read per call): ``lazy``
#: (the default): a row keeps its max while a block's stays within ``softmax.RESCALE_SLACK`` (8, log2
#: units) of it, and warps whose rows all kept theirs skip the O rescale; ``always``: at every key block,
#: as FlashAttention-2/3. Measured on the H200 (2026-12-03, bf16, 16k, attn-bench ablations, same run):
#: hd128 672.8 against 634.2 TFLOP/s (1.06x), hd256 causal 681.7 against 626.3 (1.09x), hd128 causal
#: 1.01x, hd64 0.99x.
RESCALE_MODES = ("lazy", "always")
DEFAULT_RESCALE = "lazy"


def fwd_rescale() -> str:
    """The sm90 forward's rescale mode: ``$ATTN_CUTLASS_RESCALE``, else :data:`DEFAULT_RESCALE`."""
    return _env_choice("ATTN_CUTLASS_RESCALE", RESCALE_MODES, DEFAULT_RESCALE)


def fwd_consumer_wgs(head_dim: int) -> int:
    """Consumer warpgroups of the sm90 forward: 3 at head dim 64 (the default; ``ATTN_CUTLASS_HD64_CONSUMERS=2``,
    read per call, asks for two), else 2.

    Three warpgroups of 64 rows (192 x 128 tiles, 160 registers a thread) take turns at the tensor cores, so
    two of them can issue GEMMs while the third does its softmax: at hd64 a block's GEMMs are half as long as
    at hd128 while its softmax is as long, and two warpgroups leave the tensor cores waiting. FA3's and FA4's
    choice there. Measured on the H200 (2026-12-06, bf16, 16k, attn-bench ablations, same run): 512 against
    458 TFLOP/s (1.12x); beside FA4 (tools/tile_ab.py, same process) 488 against 416 non-causal and 460
    against 372 causal, after its conformance class had passed (86 passed, 21 skipped).
    """
    three = _env_choice("ATTN_CUTLASS_HD64_CONSUMERS", ("2", "3"), "3") == "3"
    return 3 if three and head_dim == 64 else 2


#: Head dims whose bf16 sm90 forward unrolls its unmasked key-block loop by two by default. Measured on
#: the H100 (2026-12-06, bf16, 16k, attn-bench ablations, same run): hd128 652 against 631 TFLOP/s (1.03x),
#: hd128 causal 635 against 583 (1.09x); hd64 0.99x and hd256 causal 0.97x, so those stay rolled.
UNROLL2_HEAD_DIMS = (128,)


def fwd_unroll(dtype: torch.dtype, head_dim: int) -> int:
    """The sm90 forward's unroll of its unmasked key-block loop: 1 or 2, so that ptxas can start a block's
    exponentials while the previous block's P V is in flight (see ``FlashAttentionForwardSm90``).

    ``ATTN_CUTLASS_FWD_UNROLL`` (read per call): ``auto`` (the default) unrolls bf16 at the head dims in
    :data:`UNROLL2_HEAD_DIMS`; ``1`` and ``2`` force either for every head dim. bf16 only: fp16 keeps the
    rolled loop, whose unrolled build ptxas fences (C7519); the results are the same either way."""
    wanted = _env_choice("ATTN_CUTLASS_FWD_UNROLL", ("auto", "1", "2"), "auto")
    if dtype != torch.bfloat16:
        return 1
    if wanted == "auto":
        return 2 if head_dim in UNROLL2_HEAD_DIMS else 1
    return int(wanted)


#: How the sm90 forward writes O (``ATTN_CUTLASS_FWD_STORE``, read per call): ``tma`` (the default): each
#: consumer warpgroup puts its 64 rows in shared memory by stmatrix and stores them with one TMA copy
#: (fixed-length builds; varlen keeps the register store); ``registers``: every thread stores its
#: accumulator values to global memory itself. Measured on the H100 (2026-12-06, bf16, 16k, attn-bench
#: ablations, same run): hd128 690 against 634 TFLOP/s (1.09x), hd128 causal 647 against 600 (1.08x), hd64
#: 470 against 459 (1.02x), after the forward suite had passed under it; hd256, whose two warpgroups take
#: turns at one shared O tile, on the H200 (same day): causal 715 against 687 (1.04x).
STORE_MODES = ("tma", "registers")
DEFAULT_STORE = "tma"


def fwd_tma_store(varlen: bool) -> bool:
    """Whether the sm90 forward stores O by TMA: ``$ATTN_CUTLASS_FWD_STORE`` (else :data:`DEFAULT_STORE`)
    is ``tma`` and the build supports it (not varlen). At head dim 256 the two consumer warpgroups take turns
    at one shared O tile (shared memory has room for one). The results are the same either way."""
    return _env_choice("ATTN_CUTLASS_FWD_STORE", STORE_MODES, DEFAULT_STORE) == "tma" and not varlen


def fwd_sm90_options(dtype: torch.dtype, head_dim: int, varlen: bool) -> dict:
    """The sm90 forward's build options beyond the mask flags, as a call picks them now (each from its
    variable, read per call): what ``_forward`` builds and keys its cache on, and what the CPU tier's
    compile tests build, so that they check the kernels calls run."""
    return dict(
        pingpong=fwd_pingpong(),
        lazy_rescale=fwd_rescale() == "lazy",
        consumer_wgs=fwd_consumer_wgs(head_dim),
        unroll=fwd_unroll(dtype, head_dim),
        tma_store=fwd_tma_store(varlen),
    )


def bwd_sm90_options(head_dim: int, varlen: bool) -> dict:
    """The sm90 backward's build options beyond the mask flags, as a call picks them now (see
    :func:`fwd_sm90_options`). Varlen always adds dQ by atomics: a TMA or bulk box would overrun into the
    next sequence."""
    return dict(
        dq_reduce="atomic" if varlen else bwd_dq_reduce(head_dim),
        schedule=bwd_schedule(),
        stats_ahead=bwd_prefetch_stats(),
    )


def _mask_flags(causal: bool, left: int, right: int, softcap: float, varlen: bool) -> dict:
    """The compile-time flags every attention kernel takes (its compile cache keys on the same ones)."""
    return dict(
        causal=causal,
        has_left_window=left >= 0,
        has_right_window=right >= 0,
        has_softcap=softcap > 0,
        varlen=varlen,
    )


def _compiled(key: tuple, make_kernel, *args):
    """The kernel compiled for ``key`` (the compile-time parameters), built by ``make_kernel()`` and
    ``cute.compile``-d against ``args`` on first use: once per key, also when threads ask at once."""
    fn = _cache.get(key)
    if fn is None:
        import cutlass.cute as cute

        with _cache_lock:
            fn = _cache.get(key)
            if fn is None:
                fn = _cache[key] = cute.compile(make_kernel(), *args)
    return fn


def _forward(q, k, v, cu_q, cu_k, max_seqlen_q, scale, causal, left, right, softcap):
    """Launch the forward; q/k/v are (b, s, h, d) or packed (total, h, d) with cu_seqlens."""
    import cuda.bindings.driver as cuda

    varlen = cu_q is not None
    arch = _arch_of(q.device)
    head_dim = q.shape[-1]
    if arch != "sm90" and head_dim not in SM80_HEAD_DIMS:
        raise UnsupportedFeatureError(
            f"attn-cutlass: the sm80 forward supports head dims {SM80_HEAD_DIMS}, got {head_dim}"
        )
    heads = q.shape[-2]
    out = torch.empty(q.shape, dtype=q.dtype, device=q.device)
    if varlen:
        batch = cu_q.numel() - 1
        lse = torch.empty((heads, q.shape[0]), dtype=torch.float32, device=q.device)
        seqlen_q = max_seqlen_q
    else:
        batch = q.shape[0]
        lse = torch.empty((batch, heads, q.shape[1]), dtype=torch.float32, device=q.device)
        seqlen_q = q.shape[1]
    if q.numel() == 0 or seqlen_q == 0:
        return out, lse.fill_(float("inf"))
    if k.shape[-3] == 0:  # no keys at all: every row sees nothing
        return out.zero_(), lse.fill_(float("inf"))
    q, k, v = (_ensure_tma_strides(t) for t in (q, k, v))
    if arch != "sm90":
        return _forward_sm80(
            q, k, v, out, lse, cu_q, cu_k, seqlen_q, batch, scale, causal, left, right, softcap
        )

    from .kernels.flash_fwd_sm90 import FlashAttentionForwardSm90, softmax_scale_args, tile_config

    dt = _cute_dtype(q.dtype)
    flags = _mask_flags(causal, left, right, softcap, varlen)
    options = fwd_sm90_options(q.dtype, head_dim, varlen)
    key = ("fwd_sm90", q.dtype, head_dim, *flags.values(), *options.values())
    tile_m = tile_config(head_dim, options["consumer_wgs"])[0]
    num_m_blocks = max(1, math.ceil(seqlen_q / tile_m))
    num_tiles = num_m_blocks * heads * batch
    index = q.device.index if q.device.index is not None else torch.cuda.current_device()
    num_ctas = max(1, min(num_tiles, _num_sms(index)))
    scale_log2, softcap_pre, softcap_val = softmax_scale_args(scale, softcap)
    dummy = _dummy_cu_seqlens(index)
    tensors = [
        _to_cute(q),
        _to_cute(k),
        _to_cute(v),
        _to_cute(out),
        _to_cute(lse, 4),
        _to_cute(cu_q if varlen else dummy, 4),
        _to_cute(cu_k if varlen else dummy, 4),
    ]
    qhead_per_kvhead = q.shape[-2] // k.shape[-2]
    scalars = (
        scale_log2,
        softcap_pre,
        softcap_val,
        max(left, 0),
        max(right, 0),
        qhead_per_kvhead,
        num_m_blocks,
        num_tiles,
        num_ctas,
        *causal_schedule(
            k.shape[-3] if not varlen else max_seqlen_q, head_dim, qhead_per_kvhead, heads * batch
        ),
    )
    stream = cuda.CUstream(torch.cuda.current_stream(q.device).cuda_stream)

    def make_kernel():
        return FlashAttentionForwardSm90(dt, head_dim, **flags, **options)

    _compiled(key, make_kernel, *tensors, *scalars, stream)(*tensors, *scalars, stream)
    return out, lse


def _forward_sm80(q, k, v, out, lse, cu_q, cu_k, seqlen_q, batch, scale, causal, left, right, softcap):
    """The FlashAttention-2 forward with warp MMA (kernels/flash_fwd_sm80.py): one CTA per 64 queries."""
    import cuda.bindings.driver as cuda

    from .kernels.flash_fwd_sm80 import FlashAttentionForwardSm80
    from .kernels.flash_fwd_sm90 import softmax_scale_args

    varlen = cu_q is not None
    head_dim, heads = q.shape[-1], q.shape[-2]
    index = q.device.index if q.device.index is not None else torch.cuda.current_device()
    dummy = _dummy_cu_seqlens(index)
    tensors = [
        _to_cute(q),
        _to_cute(k),
        _to_cute(v),
        _to_cute(out),
        _to_cute(lse, 4),
        _to_cute(cu_q if varlen else dummy, 4),
        _to_cute(cu_k if varlen else dummy, 4),
    ]
    scale_log2, softcap_pre, softcap_val = softmax_scale_args(scale, softcap)
    scalars = (
        scale_log2,
        softcap_pre,
        softcap_val,
        max(left, 0),
        max(right, 0),
        heads // k.shape[-2],
        max(1, math.ceil(seqlen_q / FlashAttentionForwardSm80.tile_m)),
        heads,
        batch,
    )
    stream = cuda.CUstream(torch.cuda.current_stream(q.device).cuda_stream)
    flags = _mask_flags(causal, left, right, softcap, varlen)
    key = ("fwd_sm80", q.dtype, head_dim, *flags.values())

    def make_kernel():
        dt = _cute_dtype(q.dtype)
        return FlashAttentionForwardSm80(dt, head_dim, **flags)

    _compiled(key, make_kernel, *tensors, *scalars, stream)(*tensors, *scalars, stream)
    return out, lse


# --------------------------------------------------------------------------------- torch.library op
@torch.library.custom_op("attn_cutlass::flash_fwd", mutates_args=())
def _flash_fwd_op(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    cu_seqlens_q: torch.Tensor | None,
    cu_seqlens_k: torch.Tensor | None,
    max_seqlen_q: int,
    softmax_scale: float,
    causal: bool,
    window_left: int,
    window_right: int,
    softcap: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    with capability.device_guard(q):  # the kernel launches on the current device: make q's current
        return _forward(
            q,
            k,
            v,
            cu_seqlens_q,
            cu_seqlens_k,
            max_seqlen_q,
            softmax_scale,
            causal,
            window_left,
            window_right,
            softcap,
        )


@_flash_fwd_op.register_fake
def _(
    q,
    k,
    v,
    cu_seqlens_q,
    cu_seqlens_k,
    max_seqlen_q,
    softmax_scale,
    causal,
    window_left,
    window_right,
    softcap,
):
    out = torch.empty_like(q)
    if cu_seqlens_q is not None:
        lse = q.new_empty((q.shape[1], q.shape[0]), dtype=torch.float32)
    else:
        lse = q.new_empty((q.shape[0], q.shape[2], q.shape[1]), dtype=torch.float32)
    return out, lse


def backward_statistics(out, dout, lse, varlen: bool, tile_m: int = 64):
    """``(D, LSE * log2(e))`` per query for the backward, by kernels/flash_bwd_preprocess.py.

    ``D = rowsum(dO * O)`` (fp32). Both are ``(b, h, s_pad)`` (varlen: ``(h, total + tile_m)``, by
    packed row), padded to whole query tiles with ``D = 0`` and ``LSE = +inf``: the backward's last
    query block reads them past the end without a bounds test.
    """
    import cuda.bindings.driver as cuda

    from .kernels.flash_bwd_preprocess import FlashAttentionBackwardPreprocess

    out, dout = (_ensure_tma_strides(t) for t in (out, dout))  # rows 16-byte aligned: 128-bit loads
    if varlen:
        out, dout, lse = out.unsqueeze(0), dout.unsqueeze(0), lse.unsqueeze(0)
        pad = out.shape[1] + tile_m
    else:
        pad = -(-out.shape[1] // tile_m) * tile_m
    stats = torch.empty((2, out.shape[0], out.shape[2], pad), dtype=torch.float32, device=out.device)
    args = [_to_cute(t) for t in (out, dout)] + [_to_cute(t, 4) for t in (lse, stats[0], stats[1])]
    stream = cuda.CUstream(torch.cuda.current_stream(out.device).cuda_stream)
    head_dim = out.shape[-1]
    key = ("bwd_preprocess", out.dtype, head_dim, tile_m)
    dt = _cute_dtype(out.dtype)
    _compiled(key, lambda: FlashAttentionBackwardPreprocess(dt, head_dim, tile_m), *args, stream)(
        *args, stream
    )
    return (stats[0, 0], stats[1, 0]) if varlen else (stats[0], stats[1])


def _backward(dout, q, k, v, out, lse, cu_q, cu_k, max_seqlen_k, scale, causal, left, right, softcap):
    """dq, dk, dv by the sm90 backward kernel (see kernels/flash_bwd_sm90.py)."""
    import cuda.bindings.driver as cuda

    from .kernels.flash_bwd_sm90 import BWD_HEAD_DIMS, dq_accum_copy_rows, dq_accum_shape

    varlen = cu_q is not None
    arch = _arch_of(q.device)
    head_dim = q.shape[-1]
    if arch != "sm90":
        raise UnsupportedFeatureError("attn-cutlass: the backward exists for sm90 (Hopper) only")
    if head_dim not in BWD_HEAD_DIMS:
        raise UnsupportedFeatureError(
            f"attn-cutlass: the sm90 backward supports head dims {BWD_HEAD_DIMS}, got {head_dim}"
        )
    hq, hk = q.shape[-2], k.shape[-2]
    group = hq // hk
    if q.numel() == 0 or k.shape[-3] == 0:
        return torch.zeros_like(q), torch.zeros_like(k), torch.zeros_like(v)
    dout = dout.contiguous()  # autograd may hand a stride-0 expanded gradient (TMA needs real strides)
    q, k, v = (_ensure_tma_strides(t) for t in (q, k, v))
    tile_m = 64
    dev = q.device
    d_buf, lse_buf = backward_statistics(out, dout, lse, varlen, tile_m)
    pad = d_buf.shape[-1]
    options = bwd_sm90_options(head_dim, varlen)
    dq_reduce = options["dq_reduce"]
    if varlen:
        dq_acc = torch.zeros((pad, hq, head_dim), dtype=torch.float32, device=dev)
        batch = cu_q.numel() - 1
        seqlen_k_grid = max_seqlen_k
    else:
        batch = q.shape[0]
        if dq_reduce == "bulk":
            dq_acc = torch.zeros(
                dq_accum_shape(batch, hq, pad, head_dim, tile_m), dtype=torch.float32, device=dev
            )
        else:
            dq_acc = torch.zeros((batch, pad, hq, head_dim), dtype=torch.float32, device=dev)
        seqlen_k_grid = k.shape[1]
    # every row of dK and dV is written, zeros for keys no query sees
    dk_full = torch.empty((*k.shape[:-2], hq, head_dim), dtype=q.dtype, device=dev)
    dv_full = torch.empty_like(dk_full)

    from .kernels.flash_bwd_sm90 import FlashAttentionBackwardSm90
    from .kernels.flash_fwd_sm90 import softmax_scale_args

    dt = _cute_dtype(q.dtype)
    index = dev.index if dev.index is not None else torch.cuda.current_device()
    dummy = _dummy_cu_seqlens(index)
    scale_log2, softcap_pre, softcap_val = softmax_scale_args(scale, softcap)
    tensors = [
        _to_cute(q),
        _to_cute(k),
        _to_cute(v),
        _to_cute(dout),
        _to_cute(lse_buf, 4),
        _to_cute(d_buf, 4),
        _to_cute(dq_acc),
        _to_cute(dk_full),
        _to_cute(dv_full),
        _to_cute(cu_q if varlen else dummy, 4),
        _to_cute(cu_k if varlen else dummy, 4),
    ]
    num_n_blocks = max(1, -(-seqlen_k_grid // 128))
    scalars = (
        scale_log2,
        softcap_pre,
        softcap_val,
        scale,
        max(left, 0),
        max(right, 0),
        group,
        num_n_blocks,
        hq,
        batch,
    )
    stream = cuda.CUstream(torch.cuda.current_stream(dev).cuda_stream)
    flags = _mask_flags(causal, left, right, softcap, varlen)
    key = ("bwd_sm90", q.dtype, head_dim, *flags.values(), *options.values())

    def make_kernel():
        return FlashAttentionBackwardSm90(dt, head_dim, **flags, **options)

    _compiled(key, make_kernel, *tensors, *scalars, stream)(*tensors, *scalars, stream)
    # dQ arrives scaled by the kernel ("bulk": scaled by the un-permuting pass)
    if varlen:
        dq = dq_acc[: q.shape[0]].to(q.dtype)
    elif dq_reduce == "bulk":
        dq = dq_accum_copy_rows(dq_acc, q.new_empty((batch, pad, hq, head_dim)), scale)
        dq = dq[:, : q.shape[1]].contiguous()
    else:
        dq = dq_acc[:, : q.shape[1]].to(q.dtype)
    if group > 1:  # GQA/MQA: each KV head's gradient is the sum over its query heads
        dk_full = dk_full.float().unflatten(-2, (hk, group)).sum(-2)
        dv_full = dv_full.float().unflatten(-2, (hk, group)).sum(-2)
    return dq, dk_full.to(k.dtype), dv_full.to(v.dtype)


class _FlashAttnFunc(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, v, cu_q, cu_k, max_seqlen_q, max_seqlen_k, scale, causal, left, right, softcap):
        out, lse = _flash_fwd_op(q, k, v, cu_q, cu_k, max_seqlen_q, scale, causal, left, right, softcap)
        ctx.mark_non_differentiable(lse)
        ctx.save_for_backward(q, k, v, out, lse, cu_q, cu_k)
        ctx.args = (max_seqlen_k, scale, causal, left, right, softcap)
        return out, lse

    @staticmethod
    def backward(ctx, dout, dlse):
        q, k, v, out, lse, cu_q, cu_k = ctx.saved_tensors
        with capability.device_guard(q):
            dq, dk, dv = _backward(dout, q, k, v, out, lse, cu_q, cu_k, *ctx.args)
        return dq, dk, dv, None, None, None, None, None, None, None, None, None


def _check_cuda(q, fn):
    if q.device.type != "cuda":
        # Same error type as validation's device check: the kernels are GPU-only.
        from attn_reference.errors import AttentionArgumentError

        raise AttentionArgumentError(f"{fn}: attn-cutlass runs on CUDA tensors only, got q on {q.device}")


def _check_scale(scale: float, softcap: float) -> None:
    # The kernels keep the running row max of the unscaled scores and scale it afterwards, which is right
    # only for a positive scale (with softcap the scale goes inside tanh and the softmax's is log2 e).
    if softcap == 0.0 and scale <= 0.0:
        raise UnsupportedFeatureError(
            f"softmax_scale must be > 0 for attn-cutlass's kernels without softcap, got {scale!r}"
        )


def _check_deterministic(deterministic: bool, fn: str) -> None:
    # flash-attn's flag asks for a bitwise reproducible backward. The sm90 backward sums dQ over the key
    # blocks' CTAs by fp32 atomics or TMA/bulk reduce-adds in L2, in whatever order the CTAs finish, so
    # it cannot promise that; refusing beats silently ignoring the flag.
    if deterministic:
        raise UnsupportedFeatureError(
            f"{fn}: deterministic=True is not supported by attn-cutlass: its backward adds dQ by fp32 "
            "atomics / reduce-adds in an order that varies from run to run; pass deterministic=False"
        )


def flash_attn_func(
    q,
    k,
    v,
    softmax_scale=None,
    causal=False,
    window_size=(-1, -1),
    softcap=0.0,
    return_lse=False,
    deterministic=False,
):
    """flash-attn's ``flash_attn_func``: q (b, s_q, h, d), k/v (b, s_k, h_k, d) -> out (and lse (b, h, s_q)).

    ``deterministic=True`` raises UnsupportedFeatureError: the backward's dQ sum is not reproducible."""
    shape = check_qkv(q, k, v, dtypes=DTYPES, head_dims=HEAD_DIMS, head_dim_v_must_match=True)
    (left, right), softcap, scale = check_options(softmax_scale, causal, window_size, softcap, shape.head_dim)
    _check_scale(scale, softcap)
    _check_deterministic(deterministic, "flash_attn_func")
    _check_cuda(q, "flash_attn_func")
    # A right window of 0 is causal; keep the flag so the kernel's schedule knows.
    is_causal = causal or (right == 0 and left < 0)
    out, lse = _FlashAttnFunc.apply(
        q, k, v, None, None, shape.seqlen_q, shape.seqlen_k, scale, is_causal, left, right, softcap
    )
    return (out, lse) if return_lse else out


def flash_attn_varlen_func(
    q,
    k,
    v,
    cu_seqlens_q,
    cu_seqlens_k,
    max_seqlen_q,
    max_seqlen_k,
    softmax_scale=None,
    causal=False,
    window_size=(-1, -1),
    softcap=0.0,
    return_lse=False,
    deterministic=False,
):
    """flash-attn's varlen API: packed (total, h, d) with int32 cu_seqlens; lse is (h, total_q).

    ``deterministic=True`` raises UnsupportedFeatureError, as in :func:`flash_attn_func`."""
    shape, _, _ = check_varlen_qkv(
        q,
        k,
        v,
        cu_seqlens_q,
        cu_seqlens_k,
        max_seqlen_q,
        max_seqlen_k,
        dtypes=DTYPES,
        head_dims=HEAD_DIMS,
        head_dim_v_must_match=True,
    )
    (left, right), softcap, scale = check_options(softmax_scale, causal, window_size, softcap, shape.head_dim)
    _check_scale(scale, softcap)
    _check_deterministic(deterministic, "flash_attn_varlen_func")
    _check_cuda(q, "flash_attn_varlen_func")
    is_causal = causal or (right == 0 and left < 0)
    out, lse = _FlashAttnFunc.apply(
        q,
        k,
        v,
        cu_seqlens_q,
        cu_seqlens_k,
        int(max_seqlen_q),
        int(max_seqlen_k),
        scale,
        is_causal,
        left,
        right,
        softcap,
    )
    return (out, lse) if return_lse else out
