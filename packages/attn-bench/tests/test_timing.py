"""The timing contract, on the CPU with fake clocks and events: a row's ms is the median of the timed calls
after a warm-up call (which never counts), gradients reset before every call, and on the GPU the timer
triton's ``do_bench`` (asked for its median, after its warm-up) unless the op is slow or CUDA graphs were
asked for."""

from __future__ import annotations

import sys
import types

import pytest
import torch

from attn_bench import timing


class _Clock:
    """A fake time source: the op under test advances it by its scripted durations (in seconds)."""

    def __init__(self, durations):
        self.now = 0.0
        self.durations = list(durations)
        self.calls = 0

    def perf_counter(self):
        return self.now

    def op(self, grads=()):
        def fn():
            assert all(t.grad is None for t in grads), "gradients must be reset before every call"
            for t in grads:
                t.grad = torch.ones_like(t)
            self.now += self.durations[self.calls]
            self.calls += 1

        return fn


class _Flush:
    def __init__(self, log):
        self.log = log

    def zero_(self):
        self.log.append("flush")


def _fake_cuda(monkeypatch, clock: _Clock, log: list) -> None:
    """``timing``'s torch with CUDA events that read ``clock`` (in ms) and a flush buffer that logs."""

    class Event:
        def __init__(self, enable_timing=False):
            assert enable_timing
            self.t = None

        def record(self):
            self.t = clock.now * 1e3

        def elapsed_time(self, end):
            return end.t - self.t

    cuda = types.SimpleNamespace(Event=Event, synchronize=lambda: log.append("sync"))
    fake = types.SimpleNamespace(cuda=cuda, int8=torch.int8, empty=lambda *a, **k: _Flush(log))
    monkeypatch.setattr(timing, "torch", fake)
    monkeypatch.setattr(timing, "time", types.SimpleNamespace(perf_counter=clock.perf_counter))


def test_time_cpu_is_the_median_after_one_warm_up_call(monkeypatch):
    # The warm-up (10 s) would move the median of six calls to 4.0 ms: it must not be among them.
    clock = _Clock([10.0, 0.005, 0.001, 0.003, 0.002, 0.004])
    monkeypatch.setattr(timing, "time", types.SimpleNamespace(perf_counter=clock.perf_counter))
    x = torch.zeros(2, requires_grad=True)
    ms, timer = timing.time_cpu(clock.op([x]), [x], min_reps=3, max_reps=5, budget_s=100.0)
    assert clock.calls == 6
    assert ms == pytest.approx(3.0) and timer == "perf_counter median of 5"


def test_time_cpu_best_and_its_budget(monkeypatch):
    clock = _Clock([10.0, 0.005, 0.001, 0.003, 0.002, 0.004])
    monkeypatch.setattr(timing, "time", types.SimpleNamespace(perf_counter=clock.perf_counter))
    ms, timer = timing.time_cpu(clock.op(), min_reps=3, max_reps=5, budget_s=100.0, best=True)
    assert ms == pytest.approx(1.0) and timer == "perf_counter best of 5"
    # A spent budget stops at min_reps: 4.5 ms, the three calls after the warm-up.
    clock = _Clock([0.1, 0.005, 0.004, 0.003, 0.002])
    monkeypatch.setattr(timing, "time", types.SimpleNamespace(perf_counter=clock.perf_counter))
    ms, timer = timing.time_cpu(clock.op(), min_reps=3, max_reps=50, budget_s=0.001)
    assert clock.calls == 4 and ms == pytest.approx(4.0) and timer == "perf_counter median of 3"


def test_cuda_event_loop_warms_up_flushes_and_takes_the_median(monkeypatch):
    clock, log = _Clock([5.0, 0.004, 0.001, 0.009]), []
    _fake_cuda(monkeypatch, clock, log)
    x = torch.zeros(2, requires_grad=True)
    fn = clock.op([x])

    def logged():
        log.append("call")
        fn()

    ms = timing._time_events(logged, [x], reps=3)
    assert ms == pytest.approx(4.0)  # median of 4, 1 and 9 ms; the 5 s warm-up is not timed
    # The warm-up first, unflushed; then L2 flushed before each timed call.
    assert log == ["call"] + ["flush", "call", "sync"] * 3


@pytest.fixture
def fake_triton(monkeypatch):
    """``triton.testing`` with do_bench / do_bench_cudagraph recording how they are asked."""
    calls = []

    def do_bench(fn, warmup=25, rep=100, grad_to_none=None, quantiles=None, return_mode="mean"):
        calls.append(("do_bench", dict(warmup=warmup, rep=rep, grad_to_none=grad_to_none, mode=return_mode)))
        return 1.5

    def do_bench_cudagraph(fn, rep=20, grad_to_none=None, quantiles=None, return_mode="mean"):
        calls.append(("do_bench_cudagraph", dict(rep=rep, grad_to_none=grad_to_none, mode=return_mode)))
        if getattr(fn, "uncapturable", False):
            raise RuntimeError("operation not permitted when stream is capturing")
        return 0.5

    package, module = types.ModuleType("triton"), types.ModuleType("triton.testing")
    module.do_bench, module.do_bench_cudagraph = do_bench, do_bench_cudagraph
    package.testing = module
    monkeypatch.setitem(sys.modules, "triton", package)
    monkeypatch.setitem(sys.modules, "triton.testing", module)
    return calls


def test_time_gpu_asks_do_bench_for_its_median_after_warm_up(fake_triton, monkeypatch):
    clock, log = _Clock([]), []
    _fake_cuda(monkeypatch, clock, log)
    grads = [torch.zeros(1)]
    assert timing.time_gpu(lambda: None, grads) == (1.5, "do_bench")
    assert fake_triton == [("do_bench", dict(warmup=25, rep=100, grad_to_none=grads, mode="median"))]
    # A fast op whose first call was slow (a compile) is judged by a second call, then do_bench.
    clock.durations = [0.01]
    fake_triton.clear()
    assert timing.time_gpu(clock.op(), first_call_s=30.0) == (1.5, "do_bench")
    assert clock.calls == 1 and [name for name, _ in fake_triton] == ["do_bench"]


def test_time_gpu_cuda_graphs_median_or_do_bench_when_not_capturable(fake_triton, monkeypatch):
    _fake_cuda(monkeypatch, _Clock([]), [])
    assert timing.time_gpu(lambda: None, cuda_graph=True) == (0.5, "do_bench_cudagraph")
    assert fake_triton[-1] == ("do_bench_cudagraph", dict(rep=100, grad_to_none=None, mode="median"))

    def uncapturable():
        pass

    uncapturable.uncapturable = True
    fake_triton.clear()
    assert timing.time_gpu(uncapturable, cuda_graph=True) == (1.5, "do_bench")
    assert [name for name, _ in fake_triton] == ["do_bench_cudagraph", "do_bench"]
    assert fake_triton[-1][1]["mode"] == "median"


def test_time_gpu_slow_op_gets_the_short_event_loop(fake_triton, monkeypatch):
    # First call 3 s, second (the judge) 2 s: slow for do_bench's estimate loop; 1 warm-up and 3 timed calls.
    clock, log = _Clock([2.0, 2.5, 1.2, 1.4, 1.3]), []
    _fake_cuda(monkeypatch, clock, log)
    ms, timer = timing.time_gpu(clock.op(), first_call_s=3.0)
    assert timer == "cuda-events (slow op: 1 warm-up, 3 reps)" and not fake_triton
    assert clock.calls == 5 and ms == pytest.approx(1300.0)  # median of 1.2, 1.4, 1.3 s, in ms


def test_time_gpu_without_triton_uses_the_event_loop(monkeypatch):
    monkeypatch.setitem(sys.modules, "triton", None)  # `import triton.testing` fails as if triton were absent
    clock, log = _Clock([1.0] + [0.002] * 49 + [0.001]), []
    _fake_cuda(monkeypatch, clock, log)
    ms, timer = timing.time_gpu(clock.op())
    assert timer == "cuda-events (triton absent: 1 warm-up, 50 reps)"
    assert clock.calls == 51 and ms == pytest.approx(2.0)
