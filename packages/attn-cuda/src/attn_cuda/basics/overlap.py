"""Stream overlap: host->device copy, compute, device->host copy in chunks over several streams."""

from __future__ import annotations

import torch

from ..runtime import i32, i64, launch
from ._common import module

THREADS = 256


def _transform(x: torch.Tensor, y: torch.Tensor, iters: int, stream) -> None:
    sms = torch.cuda.get_device_properties(x.device).multi_processor_count
    blocks = max(1, min((x.numel() + THREADS - 1) // THREADS, 8 * sms))
    launch(
        module("overlap.cu"),
        "busy_transform",
        blocks,
        THREADS,
        [x, y, i64(x.numel()), i32(iters)],
        stream=stream,
    )


def overlap_pipeline(
    host_in: torch.Tensor, host_out: torch.Tensor, *, streams: int = 4, chunks: int = 16, iters: int = 64
):
    """Process pinned ``host_in`` into pinned ``host_out`` (float32, same size) chunk by chunk.

    Chunk i goes to stream i % streams: upload (non-blocking copy), ``busy_transform``, download. With
    ``streams=1`` every phase waits for the previous one; with more, copies overlap kernels. Returns the
    device buffers (kept alive until the caller synchronises).
    """
    if not (host_in.is_pinned() and host_out.is_pinned()):
        raise ValueError("overlap_pipeline: host tensors must be pinned (page-locked) for async copies")
    if host_in.dtype != torch.float32 or host_in.shape != host_out.shape:
        raise ValueError("overlap_pipeline: host_in and host_out must be float32 of one shape")
    n = host_in.numel()
    d_in = torch.empty(n, dtype=torch.float32, device="cuda")
    d_out = torch.empty_like(d_in)
    pool = [torch.cuda.Stream() for _ in range(streams)]
    current = torch.cuda.current_stream()
    for s in pool:
        s.wait_stream(current)  # the buffers above were allocated on the current stream
    size = (n + chunks - 1) // chunks
    flat_in, flat_out = host_in.reshape(-1), host_out.reshape(-1)
    for c in range(chunks):
        lo, hi = c * size, min(n, (c + 1) * size)
        if lo >= hi:
            break
        s = pool[c % streams]
        with torch.cuda.stream(s):
            d_in[lo:hi].copy_(flat_in[lo:hi], non_blocking=True)
            _transform(d_in[lo:hi], d_out[lo:hi], iters, s)
            flat_out[lo:hi].copy_(d_out[lo:hi], non_blocking=True)
    for s in pool:
        current.wait_stream(s)
        d_in.record_stream(s)  # the caching allocator must not hand these out again while s uses them
        d_out.record_stream(s)
    return d_in, d_out


def reference_transform(x: torch.Tensor, iters: int = 64) -> torch.Tensor:
    """What ``busy_transform`` computes, in torch (for tests; sin vs __sinf differ by ~1e-6 per step)."""
    v = x.clone()
    for _ in range(iters):
        v = torch.sin(v) * 0.5 + v * 0.75 + 0.1
    return v
