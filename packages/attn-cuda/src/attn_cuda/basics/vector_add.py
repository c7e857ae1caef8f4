"""Step 1: elementwise add, scalar or with float4 loads."""

from __future__ import annotations

import torch

from ..runtime import i64, launch
from ._common import CTYPES, check_cuda, module

THREADS = 256


def _grid(n: int) -> int:
    # Enough blocks to fill the GPU several times over; the grid-stride loop covers the rest.
    sms = torch.cuda.get_device_properties(torch.cuda.current_device()).multi_processor_count
    return max(1, min((n + THREADS - 1) // THREADS, 32 * sms))


#: Elements per thread of the uncoalesced teaching kernel (``access="chunked"``).
CHUNK = 64


def vector_add(
    x: torch.Tensor, y: torch.Tensor, *, vectorized: bool | None = None, access: str = "coalesced"
) -> torch.Tensor:
    """``x + y`` (same shape and dtype). float32 inputs with 16-byte alignment use float4 loads unless
    ``vectorized=False``. ``access="chunked"`` runs the counter-example instead: each thread adds its own
    run of :data:`CHUNK` consecutive elements, so a warp's loads are not coalesced (same result)."""
    check_cuda("vector_add", x=x, y=y)
    if x.shape != y.shape or x.dtype != y.dtype:
        raise ValueError(
            f"vector_add: x and y must match, got {tuple(x.shape)} {x.dtype} and {tuple(y.shape)} {y.dtype}"
        )
    if access not in ("coalesced", "chunked"):
        raise ValueError(f"vector_add: access must be 'coalesced' or 'chunked', got {access!r}")
    x, y = x.contiguous(), y.contiguous()
    out = torch.empty_like(x)
    n = x.numel()
    if n == 0:
        return out
    if access == "chunked":
        if vectorized:
            raise ValueError(
                "vector_add: access='chunked' is the scalar counter-example; vectorized=True is not"
            )
        name = f"vector_add_chunked<{CTYPES[x.dtype]}>"
        blocks = -(-n // (CHUNK * THREADS))
        launch(module("vector_add.cu", name), name, blocks, THREADS, [x, y, out, i64(n), i64(CHUNK)])
        return out
    can_vec = x.dtype == torch.float32 and n % 4 == 0 and all(t.data_ptr() % 16 == 0 for t in (x, y, out))
    if vectorized is None:
        vectorized = can_vec
    if vectorized and not can_vec:
        raise ValueError(
            "vector_add: vectorized=True needs float32, numel % 4 == 0 and 16-byte aligned tensors"
        )
    if vectorized:
        launch(module("vector_add.cu"), "vector_add_f32x4", _grid(n // 4), THREADS, [x, y, out, i64(n // 4)])
    else:
        name = f"vector_add<{CTYPES[x.dtype]}>"
        launch(module("vector_add.cu", name), name, _grid(n), THREADS, [x, y, out, i64(n)])
    return out
