"""Where a kernel runs, decided at call time (never at import).

* ``"cute"``: the CuTe DSL Hopper kernel (TMA + wgmma), the default for dense decoding on sm_90 when
  ``nvidia-cutlass-dsl`` is importable and the shapes fit it (page size 64, head dim 576).
* ``"triton"``: the portable Triton kernels (sm_80 and newer), and everything the CuTe path does not cover.
* ``"interpret"``: ``TRITON_INTERPRET=1`` on CPU tensors. Triton runs the same kernels with numpy, slowly,
  so the CPU test tier exercises every kernel line. The interpreter's bf16 ``dot`` is not exact, so the
  kernels upcast their operands to fp32 there (``UPCAST``), which changes no code path but the dtype.

``ATTN_FLASHMLA_PATH=triton|cute`` forces a path (the GPU check and the benchmark use it to time both).
"""

from __future__ import annotations

import functools
import importlib.util
import os

import torch

from attn_reference.errors import AttentionArgumentError, UnsupportedFeatureError
from attn_reference.triton_compat import interpreting as _interpreting
from attn_reference.triton_compat import patch_interpreter_for_numpy2

#: SM count assumed under the interpreter: small, so that tiny CPU tests still split sequences.
INTERPRETER_NUM_SMS = 4


def interpreting() -> bool:
    """True when Triton runs kernels in its CPU interpreter (``TRITON_INTERPRET=1``)."""
    on = _interpreting()
    if on and not torch.compiler.is_compiling():  # the patch is applied by the eager call before
        patch_interpreter_for_numpy2()
    return on


def check_device(fn: str, t: torch.Tensor) -> None:
    """Kernels run on CUDA tensors, or on CPU tensors under the interpreter only."""
    if t.device.type == "cuda":
        return
    if t.device.type == "cpu" and interpreting():
        return
    raise AttentionArgumentError(
        f"{fn}: tensors are on {t.device}; attn-flashmla runs on CUDA devices (or on CPU only under "
        "TRITON_INTERPRET=1)"
    )


def num_sms(device: torch.device) -> int:
    if device.type != "cuda":
        return INTERPRETER_NUM_SMS
    return _sm_count(device.index if device.index is not None else torch.cuda.current_device())


@functools.cache
def _sm_count(index: int) -> int:  # asked on every sparse decoding call: keep the driver query out of it
    return torch.cuda.get_device_properties(index).multi_processor_count


@functools.cache
def cute_dsl_available() -> bool:
    """Whether the CuTe DSL (``nvidia-cutlass-dsl``, the ``sm90`` extra) is installed."""
    return importlib.util.find_spec("cutlass") is not None


#: Rows (s_q * h_q / h_kv) from which the CuTe kernel is the default on Hopper. On the H200 (2026-11-22,
#: attn-bench, b 128, one run) the two-warpgroup CuTe kernel ran h_q 128 at 352-383 TFLOP/s against
#: Triton's 276-301 (1.27x); with 16 rows (h_q 16, s_q 1), padded to its 64-row wgmma tile, it read 1814
#: GB/s at s_k 8k against Triton's 3755, and 32 rows (s_q 2) were mixed (1820 vs 2491 at 8k, 3099 vs 2644
#: at 32k). Triton's 16-row tiles keep the decoding of few heads.
CUTE_MIN_ROWS = 64


def dense_path(
    q: torch.Tensor, page_block_size: int, h_kv: int = 1, softmax_scale: float | None = None
) -> str:
    """``"cute"``, ``"triton"`` or ``"interpret"`` for a dense decoding call on ``q``'s device.

    On Hopper with the CuTe DSL installed: the CuTe kernel where it applies (page 64, head dim 576, a
    positive ``softmax_scale``) and there are at least :data:`CUTE_MIN_ROWS` query rows per KV head, else
    Triton. ``ATTN_FLASHMLA_PATH`` (``cute`` or ``triton``) forces one; forcing ``cute`` where it cannot
    run raises.
    """
    forced = os.environ.get("ATTN_FLASHMLA_PATH", "").strip().lower()
    if forced not in ("", "cute", "triton"):
        raise AttentionArgumentError(f"ATTN_FLASHMLA_PATH must be 'cute' or 'triton', got {forced!r}")
    if q.device.type != "cuda" or interpreting():
        return "interpret"
    from attn_reference.capability import cuda_capability, is_hopper

    cap = cuda_capability(q.device)
    if cap is None or cap < (8, 0):
        raise UnsupportedFeatureError(f"attn-flashmla needs compute capability >= 8.0, got {cap}")
    from attn_flashmla.decode_fwd_sm90 import cute_supports

    fits = (
        is_hopper(q.device)
        and cute_dsl_available()
        and cute_supports(q, page_block_size, softmax_scale) is None
    )
    if forced == "cute":
        if not fits:
            why = cute_supports(q, page_block_size, softmax_scale) if is_hopper(q.device) else "needs sm_90"
            if not cute_dsl_available():
                why = "nvidia-cutlass-dsl is not installed (the sm90 extra)"
            raise UnsupportedFeatureError(
                f"ATTN_FLASHMLA_PATH=cute: the CuTe path cannot run this call: {why}"
            )
        return "cute"
    rows = q.shape[1] * q.shape[2] // max(h_kv, 1)
    if forced == "" and fits and rows >= CUTE_MIN_ROWS:
        return "cute"
    return "triton"
