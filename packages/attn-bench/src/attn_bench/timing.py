"""Timers: medians on the GPU (triton's do_bench, CUDA graphs on request) and on the CPU (perf_counter).

do_bench flushes L2 between calls and returns the median of CUDA-event times after warm-up. An op slower
than a second per call (the PyTorch oracles at large sizes) gets a short event loop instead, so one row
cannot eat the run's time.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch

SLOW_CALL_S = 1.0
#: Zeroed between slow-path calls: larger than any Hopper L2 (50-60 MB).
FLUSH_BYTES = 256 << 20


def _reset_grads(grad_to_none):
    for t in grad_to_none or ():
        t.grad = None


def time_gpu(
    fn: Callable[[], object],
    grad_to_none: list[torch.Tensor] | None = None,
    *,
    warmup_ms: int = 25,
    rep_ms: int = 100,
    cuda_graph: bool = False,
    first_call_s: float | None = None,
) -> tuple[float, str]:
    """Median ms of ``fn`` and the name of the timer used."""
    try:
        import triton.testing
    except ImportError:  # attn-bench does not require triton; its own event loop does the same job
        return _time_events(fn, grad_to_none, reps=50), "cuda-events (triton absent: 1 warm-up, 50 reps)"

    if first_call_s is not None and first_call_s > SLOW_CALL_S:
        # The first call may have compiled or autotuned: judge by a second one.
        _reset_grads(grad_to_none)
        t0 = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        if time.perf_counter() - t0 > SLOW_CALL_S:
            return _time_events(fn, grad_to_none, reps=3), "cuda-events (slow op: 1 warm-up, 3 reps)"
    if cuda_graph:
        try:
            ms = triton.testing.do_bench_cudagraph(
                fn, rep=rep_ms, grad_to_none=grad_to_none, return_mode="median"
            )
            return float(ms), "do_bench_cudagraph"
        except Exception:  # ops that sync or allocate on the host cannot be captured
            torch.cuda.synchronize()
    ms = triton.testing.do_bench(
        fn, warmup=warmup_ms, rep=rep_ms, grad_to_none=grad_to_none, return_mode="median"
    )
    return float(ms), "do_bench"


def main_kernel_ms(fn: Callable[[], object], reps: int = 20) -> tuple[float, str] | None:
    """The call's main kernel (the one with the most device time) and its median ms per call, from the
    profiler's kernel records over ``reps`` calls after a warm-up; ``None`` when no CUDA kernel ran.

    Kernel time, not call time: no launch gaps and none of the call's other kernels. It is what FlashMLA's
    own published figures count (its main kernel only), so MLA rows report both.
    """
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile

    if not torch.cuda.is_available():  # the profiler has no CUDA activity to record
        return None
    fn()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(reps):
            fn()
        torch.cuda.synchronize()
    by_name: dict[str, list[float]] = {}
    for event in prof.events():
        if event.device_type == DeviceType.CUDA:
            by_name.setdefault(event.name, []).append(event.time_range.elapsed_us() / 1e3)
    if not by_name:
        return None
    name = max(by_name, key=lambda n: sum(by_name[n]))
    return statistics.median(by_name[name]), name


def _time_events(fn, grad_to_none, reps: int) -> float:
    flush = torch.empty(FLUSH_BYTES, dtype=torch.int8, device="cuda")
    _reset_grads(grad_to_none)
    fn()
    times = []
    for _ in range(reps):
        _reset_grads(grad_to_none)
        flush.zero_()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def time_cpu(
    fn: Callable[[], object],
    grad_to_none: list[torch.Tensor] | None = None,
    *,
    min_reps: int = 3,
    max_reps: int = 50,
    budget_s: float = 0.2,
    best: bool = False,
) -> tuple[float, str]:
    """Median ms over repeated calls within a small time budget (CPU mode is a demonstration); ``best``
    gives the fastest call instead, for ceilings on a shared CPU where the median measures the neighbours."""
    _reset_grads(grad_to_none)
    fn()  # warm-up
    times: list[float] = []
    deadline = time.perf_counter() + budget_s
    while len(times) < min_reps or (len(times) < max_reps and time.perf_counter() < deadline):
        _reset_grads(grad_to_none)
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    if best:
        return min(times), f"perf_counter best of {len(times)}"
    return statistics.median(times), f"perf_counter median of {len(times)}"
