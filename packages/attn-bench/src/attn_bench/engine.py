"""The run: for every suite, case and implementation, check against attn-reference, then time.

UI-agnostic: progress goes to a callback; the CLI draws it with rich. Failures of one row (an exception,
out of memory, a failed check, a row timeout) are recorded in that row and never stop the run; only a
time budget or a lost CUDA context stops it, and the rows left are recorded as ``skipped``. The document can
be written after every row and a run can resume from an earlier document.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import gc
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import torch

from attn_bench import __version__, ceilings, discovery, env, peers, timing
from attn_bench.backend import Backend
from attn_bench.checks import CheckResult, compare, compare_mla
from attn_bench.schema import SCHEMA_VERSION
from attn_bench.suites import SUITES, Case, Suite

DEFAULT_SUITES = (
    "attention-fwd",
    "attention-bwd",
    "decode-kvcache",
    "mla-decode",
    "mla-sparse",
    "basics",
    "memory",
)


@dataclasses.dataclass
class Options:
    mode: str = "cpu"  # "gpu" or "cpu"
    suites: tuple[str, ...] = DEFAULT_SUITES
    backends: list[str] | None = None  # None: all discovered
    peers: list[str] | None = None  # None: all importable; []: none
    quick: bool = False
    check: bool = True
    cuda_graphs: bool = False
    seed: int = 0
    preset: str | None = None  # a name in attn_bench.presets.PRESETS: filters the cases (and picks variants)
    split: tuple[int, int] | None = None  # (part, parts): run the part-th of parts, 1-based
    where: dict[str, str] | None = None  # shape key -> value: keep only the cases whose shape matches
    time_budget: float | None = None  # seconds for the whole run (None: no budget)
    row_timeout: float | None = None  # seconds for one row, compile included (None: no limit)


def resolve_mode(device: str) -> str:
    if device == "auto":
        return "gpu" if torch.cuda.is_available() else "cpu"
    if device in ("cuda", "gpu"):
        if not torch.cuda.is_available():
            raise RuntimeError("--device cuda asked for, but torch sees no CUDA device")
        return "gpu"
    if device == "cpu":
        return "cpu"
    raise ValueError(f"device must be auto, cuda or cpu, got {device!r}")


@contextlib.contextmanager
def triton_interpreter(enabled: bool) -> Iterator[None]:
    """CPU mode: Triton kernels decorated while this is active run in the interpreter."""
    old = os.environ.get("TRITON_INTERPRET")
    if enabled:
        os.environ["TRITON_INTERPRET"] = "1"
    try:
        yield
    finally:
        if enabled:
            if old is None:
                os.environ.pop("TRITON_INTERPRET", None)
            else:
                os.environ["TRITON_INTERPRET"] = old


@dataclasses.dataclass
class Inventory:
    """Everything found: backends and peers, each usable or with the reason it is not."""

    backends: list[discovery.Discovered]
    peers: list[peers.Peer]

    def usable(self, mode: str) -> list[Backend]:
        device = "cuda" if mode == "gpu" else "cpu"
        out = [d.backend for d in self.backends if d.ok and d.backend.runs_on(device)]
        out += [p.backend for p in self.peers if p.ok]
        return out

    def entries(self, mode: str) -> list[dict[str, Any]]:
        """For the results file and ``attn-bench list``: name, kind, version, ops, and why not."""
        device = "cuda" if mode == "gpu" else "cpu"
        rows = []
        for d in self.backends:
            b = d.backend
            reason = d.error
            if b is not None and not b.runs_on(device):
                reason = f"does not run on {device} (devices: {', '.join(b.devices)})"
            rows.append(
                dict(
                    name=d.name,
                    kind="backend",
                    version=b.version if b else None,
                    available=reason is None,
                    reason=reason,
                    entry_point=d.value,
                    ops=sorted(b.impls) if b else [],
                    devices=list(b.devices) if b else [],
                    interpreter=bool(b and b.interpreter),
                )
            )
        for p in self.peers:
            b = p.backend
            rows.append(
                dict(
                    name=p.name,
                    kind="peer",
                    version=b.version if b else None,
                    available=p.ok,
                    reason=p.error,
                    entry_point=None,
                    ops=sorted(b.impls) if b else [],
                    devices=["cuda"],
                    interpreter=False,
                )
            )
        return rows


def inventory(mode: str, backends: list[str] | None = None, peer_names: list[str] | None = None) -> Inventory:
    with triton_interpreter(mode == "cpu"):
        found = discovery.discover(backends)
    return Inventory(found, peers.discover(mode, peer_names))


def plan(suite: Suite, cases: list[Case], impls: list[Backend], mode: str, ablations: bool = False):
    """(case, backend, variant) triples to run: every implementation offering the case's op, its regular
    variants. ``ablations``: only the implementations with ablation variants of the op, every variant (the
    default beside what it is measured against)."""
    out = []
    for case in cases:
        for b in impls:
            if ablations and not b.ablations.get(case.op):
                continue
            for variant in b.variants(case.op, ablations):
                out.append((case, b, variant))
    return out


def _empty_cache(mode: str) -> None:
    gc.collect()
    if mode == "gpu":
        torch.cuda.empty_cache()


def _is_oom(exc: BaseException) -> bool:
    return isinstance(exc, torch.OutOfMemoryError) or "out of memory" in str(exc).lower()


def _status_of(exc: BaseException) -> str:
    if _is_oom(exc):
        return "oom"
    if isinstance(exc, NotImplementedError):  # includes attn_reference's UnsupportedFeatureError
        return "unsupported"
    if "no available kernel" in str(exc).lower():  # SDPA: this backend cannot take these inputs
        return "unsupported"
    return "error"


def _sync(mode: str) -> None:
    if mode == "gpu":
        torch.cuda.synchronize()


class _ReferenceCache:
    """One reference pair per case: shared by every implementation checked against it."""

    def __init__(self):
        self.key: str | None = None
        self.value: tuple[Any, Any] | Exception | None = None

    def get(self, suite: Suite, case: Case, inp: dict[str, Any], key: str):
        if self.key != key:
            # Set together once computed: a row interrupted in here leaves nothing half-made behind.
            self.key, self.value = None, None
            gc.collect()
            try:
                high = suite.reference(case, inp, lowp=False)
                low = suite.reference(case, inp, lowp=True) if suite.rule == "attention" else None
                value: tuple[Any, Any] | Exception = (high, low)
            except Exception as exc:  # a missing oracle leaves rows unchecked, not dead
                value = exc
            except RowInterrupted as exc:
                if exc.reason == "timeout":  # the case's other rows must not pay for it again
                    self.key = key
                    self.value = RuntimeError("the reference outlived the row timeout; rows left unchecked")
                raise
            self.key, self.value = key, value
        return self.value


def _check_key(case: Case) -> str:
    # fwd+bwd and bwd rows of one shape share their gradients' reference.
    return f"{case.suite}:{case.name.removesuffix(' fwd+bwd').removesuffix(' bwd')}"


def run_case(
    suite: Suite,
    case: Case,
    backend: Backend,
    variant: str,
    inp: dict[str, Any],
    refs: _ReferenceCache,
    opts: Options,
) -> dict[str, Any]:
    """One row: prepare once, check that callable, then time the same one (or measure memory).

    A failed check is ``check_failed`` and never timed. A row whose check could not run (the reference
    raised or outlived the row timeout, or ``--no-check``) is timed, with check status ``unchecked`` and
    the reason in its check's ``detail``, which the report shows beside its figures.
    """
    device = "cuda" if opts.mode == "gpu" else "cpu"
    fn = backend.impls[case.op][variant]
    row = _row_base(case, backend, variant)
    # The dtype travels with the shape so a backend can refuse what its kernels do not take.
    reason = backend.why_not(case.op, variant, {**case.shape, "dtype": case.dtype}, device)
    if reason:
        row.update(status="unsupported", message=reason)
        return row
    if suite.measure == "memory":
        return _measure_memory(suite, case, fn, inp, row, opts)

    first_call_s = None
    try:
        # Every row has its own runner (no check is shared between rows): what is timed below is what
        # was checked, prepared once.
        runner = suite.runner(fn, case, inp)
        if opts.check:
            t0 = time.perf_counter()
            out = suite.outputs(runner, case, inp)
            _sync(opts.mode)
            first_call_s = time.perf_counter() - t0
    except Exception as exc:
        _clear_grads(inp)
        row.update(status=_status_of(exc), message=f"{type(exc).__name__}: {exc}"[:300])
        return row
    if opts.check:
        ref = refs.get(suite, case, inp, _check_key(case))
        if isinstance(ref, Exception):
            result = CheckResult("unchecked", detail=f"reference failed: {type(ref).__name__}: {ref}"[:300])
        else:
            result = (
                compare(out, ref[0], ref[1], suite.names)
                if suite.rule == "attention"
                else compare_mla(out, ref[0], suite.names)
            )
        del out
    else:
        result = CheckResult("unchecked", detail="--no-check")
    row["check"] = dataclasses.asdict(result)
    if result.status == "fail":
        _clear_grads(inp)
        row.update(status="check_failed", message=result.detail)
        return row

    try:
        if opts.mode == "gpu":
            ms, timer = timing.time_gpu(
                runner.fn, runner.grad_to_none, cuda_graph=opts.cuda_graphs, first_call_s=first_call_s
            )
        else:
            ms, timer = timing.time_cpu(runner.fn, runner.grad_to_none)
    except Exception as exc:
        row.update(status=_status_of(exc), message=f"{type(exc).__name__}: {exc}"[:300])
        return row
    finally:
        _clear_grads(inp)
    row.update(status="ok", ms=ms, timer=timer)
    if suite.kernel_time and opts.mode == "gpu":
        try:
            kernel = timing.main_kernel_ms(runner.fn)
        except Exception:  # the profiler is a second opinion: the row stands without it
            kernel = None
        if kernel is not None:
            row.update(kernel_ms=kernel[0], kernel=kernel[1][:200])
    description = getattr(runner.fn, "description", None)  # what a prepared op chose (backend.py)
    if description:
        row["message"] = str(description)[:300]
    return row


def _clear_grads(inp: dict[str, Any]) -> None:
    # The case's inputs are shared by its rows: one row's gradients must not reach the next.
    for t in ("q", "k", "v"):
        if isinstance(inp, dict) and isinstance(inp.get(t), torch.Tensor):
            inp[t].grad = None


def _measure_memory(suite, case, fn, inp, row, opts):
    if opts.mode != "gpu":
        row.update(status="skipped", message="peak memory needs CUDA (torch.cuda.max_memory_allocated)")
        return row
    try:
        runner = suite.runner(fn, case, inp)
        # A first call compiles and autotunes (Triton's benchmarking allocates a 256 MB L2-flush buffer):
        # that is not the op's footprint, so the peak is read on the second call.
        runner.fn()
        torch.cuda.synchronize()
        _empty_cache(opts.mode)
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        out = runner.fn()
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated() - base
        del out
    except Exception as exc:
        row.update(status=_status_of(exc), message=f"{type(exc).__name__}: {exc}"[:300])
        return row
    row.update(status="ok", peak_memory_bytes=int(peak), timer="torch.cuda.max_memory_allocated")
    return row


def _row_base(case: Case, backend: Backend, variant: str) -> dict[str, Any]:
    base = backend.baseline(case.op, variant)
    return dict(
        suite=case.suite,
        case=case.name,
        impl=backend.label(variant),
        backend=backend.name,
        variant=variant,
        kind=backend.kind,
        op=case.op,
        shape=dict(case.shape),
        dtype=case.dtype,
        flops=case.flops,
        bytes=case.bytes,
        x=case.x,
        series=case.series,
        status="pending",
        check=None,
        ms=None,
        tflops=None,
        gbps=None,
        pct_of_ceiling=None,
        bound=None,
        ratio_to_best_peer=None,
        best_peer=None,
        # Another variant of the same backend's op: the row it is compared with (usually the op's default).
        baseline=None if base is None else backend.label(base),
        ratio_to_baseline=None,
        peak_memory_bytes=None,
        timer=None,
        message="",
    )


def derive(rows: list[dict[str, Any]], ceil: dict[str, Any]) -> None:
    """Throughput, percent of the roofline (the nearer of compute and memory ceilings), ratio to peers,
    and a variant's ratio to its baseline (another variant of its backend) on the same case."""
    peak_flops = ceil["matmul_tflops"] * 1e12
    peak_bw = ceil["copy_gbps"] * 1e9
    for r in rows:
        if r["status"] != "ok" or not r["ms"]:
            continue
        s = r["ms"] * 1e-3
        r["tflops"] = r["flops"] / s / 1e12
        r["gbps"] = r["bytes"] / s / 1e9
        compute, memory = r["flops"] / s / peak_flops, r["bytes"] / s / peak_bw
        r["bound"] = "compute" if compute >= memory else "memory"
        r["pct_of_ceiling"] = 100 * max(compute, memory)
    best: dict[tuple[str, str], dict[str, Any]] = {}
    for r in rows:
        if r["kind"] == "peer" and r["status"] == "ok" and r["ms"]:
            key = (r["suite"], r["case"])
            if key not in best or r["ms"] < best[key]["ms"]:
                best[key] = r
    for r in rows:
        b = best.get((r["suite"], r["case"]))
        if b is not None and r["status"] == "ok" and r["ms"]:
            r["best_peer"] = b["impl"]
            r["ratio_to_best_peer"] = b["ms"] / r["ms"]
    timed = {row_key(r): r for r in rows if r["status"] == "ok" and r["ms"]}
    for r in rows:
        base = timed.get((r["suite"], r["case"], r.get("baseline")))
        if base is not None and r["status"] == "ok" and r["ms"]:
            r["ratio_to_baseline"] = base["ms"] / r["ms"]


class RowInterrupted(BaseException):
    """Raised by the row alarm: a BaseException, so a backend's ``except Exception`` cannot swallow it."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason  # "timeout" (the row's own limit) or "budget" (the run's)


@contextlib.contextmanager
def _alarm(seconds: float | None, reason: str) -> Iterator[None]:
    """Interrupt the body after ``seconds`` with :class:`RowInterrupted` (SIGALRM; main thread, Unix).

    The signal is handled when control is back in Python: a Triton autotune loop or a CuTe DSL compile
    step is interrupted, a hung kernel is not (the incremental JSON and ``--resume`` cover that case).
    """
    usable = (
        seconds is not None
        and seconds > 0
        and hasattr(signal, "setitimer")
        and threading.current_thread() is threading.main_thread()
    )
    if not usable:
        yield
        return

    def handler(signum, frame):
        raise RowInterrupted(reason)

    old = signal.signal(signal.SIGALRM, handler)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


#: Seconds kept free at the end of a time budget (final derive, tables, JSON).
BUDGET_RESERVE_S = 5.0
_STICKY_CUDA = ("illegal memory access", "device-side assert", "unspecified launch failure", "cuda error")


def _cuda_broken(mode: str) -> str | None:
    """After an error on the GPU: a sticky CUDA error poisons every later row; say so instead."""
    if mode != "gpu":
        return None
    try:
        torch.cuda.synchronize()
        torch.ones(1, device="cuda").add_(1).item()
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"[:300]
    return None


def row_key(row: dict[str, Any]) -> tuple[str, str, str]:
    """A row's identity in a results file (what ``--resume`` matches on)."""
    return (row["suite"], row["case"], row["impl"])


def matches(case: Case, where: dict[str, str]) -> bool:
    """Whether every ``key=value`` of ``where`` holds for the case's shape (values compared as text, so
    ``causal=True`` and ``seqlen_k=16384`` both work); a key the shape lacks does not match."""
    return all(key in case.shape and str(case.shape[key]) == value for key, value in where.items())


def select(opts: Options) -> list[tuple[Suite, list[Case]]]:
    """The suites' cases this run covers: the preset's filter, ``--where``, then this run's part of
    ``--split``."""
    from attn_bench import presets

    picked = []
    for name in opts.suites:
        suite = SUITES[name]
        cases = suite.cases(opts.mode, opts.quick)
        if opts.preset:
            cases = [c for c in cases if presets.PRESETS[opts.preset].keeps(c)]
        if opts.where:
            cases = [c for c in cases if matches(c, opts.where)]
        picked.append((suite, cases))
    if opts.split:
        part, parts = opts.split
        mine = {id(c) for c in presets.split_cases([c for _, cs in picked for c in cs], parts)[part - 1]}
        picked = [(s, [c for c in cs if id(c) in mine]) for s, cs in picked]
    return picked


def run(
    opts: Options,
    progress: Callable[[str, int, int], None] | None = None,
    inv: Inventory | None = None,
    *,
    resume: dict[str, Any] | None = None,
    write: Callable[[dict[str, Any]], Any] | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> dict[str, Any]:
    """Run the suites and return the results document (see :mod:`attn_bench.schema`).

    ``resume``: a previous results document; its rows are kept (except ``skipped`` ones this run plans
    again) and not run again. ``write``: called with the document after every row (incremental results).
    ``opts.time_budget``: no row starts within :data:`BUDGET_RESERVE_S` of the budget, a running row is
    interrupted at the budget; the rows not run are ``skipped`` with message ``time budget``.
    ``opts.row_timeout``: a row running longer (compile included) is recorded as ``error`` and the run goes on.
    """
    started = clock()
    deadline = started + opts.time_budget if opts.time_budget else None
    if inv is None:
        inv = inventory(opts.mode, opts.backends, opts.peers)
    impls = inv.usable(opts.mode)
    notes: list[str] = list(resume.get("notes", [])) if resume else []

    def note(text: str) -> None:
        if text not in notes:
            notes.append(text)

    if opts.mode == "cpu":
        note(
            "CPU mode: tiny fp32 shapes on the CPU (reference and Triton interpreter); these figures "
            "demonstrate the pipeline and say nothing about GPU performance."
        )
    if resume is not None and resume.get("mode") != opts.mode:
        raise ValueError(f"--resume file is a {resume.get('mode')}-mode file, this run is {opts.mode} mode")
    from attn_bench import presets

    ablations = bool(opts.preset) and presets.PRESETS[opts.preset].ablations
    with triton_interpreter(opts.mode == "cpu"):
        ceil = ceilings.measure(opts.mode, opts.quick)
        work = []
        for suite, cases in select(opts):
            if suite.measure == "memory" and opts.mode != "gpu":
                note("memory suite skipped: peak memory needs CUDA (torch.cuda.max_memory_allocated)")
                continue
            work.append((suite, plan(suite, cases, impls, opts.mode, ablations)))
        planned = {(c.suite, c.name, b.label(v)) for _, triples in work for c, b, v in triples}
        rows: list[dict[str, Any]] = []
        if resume is not None:
            # Kept: every earlier row except the skipped ones this run plans again.
            rows = [r for r in resume["rows"] if not (r["status"] == "skipped" and row_key(r) in planned)]
        have = {row_key(r) for r in rows}
        work = [
            (s, [t for t in ts if (t[0].suite, t[0].name, t[1].label(t[2])) not in have]) for s, ts in work
        ]
        suites = list(resume["suites"]) if resume else []
        suites += [s.name for s, _ in work if s.name not in suites]
        doc_ceil = resume["ceilings"] if resume else ceil
        machine = {"host": env.host(), "device": env.gpu(opts.mode), "versions": env.versions()}
        this_run = {
            "started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "device": machine["device"].get("name"),
            "split": f"{opts.split[0]}/{opts.split[1]}" if opts.split else None,
            "preset": opts.preset,
            "where": opts.where,
            "time_budget_s": opts.time_budget,
            "ceilings": ceil,
            "rows_planned": sum(len(t) for _, t in work),
            "rows_run": 0,
            "stopped": None,
        }
        runs = list(resume.get("runs", [])) if resume else []
        runs.append(this_run)
        if resume and resume.get("device", {}).get("name") != this_run["device"]:
            note(
                f"rows come from runs on different devices ({resume['device'].get('name')} and "
                f"{this_run['device']}); see runs"
            )

        def document() -> dict[str, Any]:
            derive(rows, doc_ceil)
            this_run["elapsed_s"] = round(clock() - started, 1)
            return _document(opts, inv, doc_ceil, suites, rows, notes, runs, resume, machine)

        total = this_run["rows_planned"]
        done = 0
        stop: str | None = None  # why no further row starts: "time budget" or a lost CUDA context
        for suite, triples in work:
            refs = _ReferenceCache()
            current: Case | None = None
            inp: dict[str, Any] | Exception = {}
            for case, backend, variant in triples:
                if stop is None and deadline is not None and clock() >= deadline - BUDGET_RESERVE_S:
                    stop = "time budget"
                    this_run["stopped"] = stop
                if stop is not None:
                    row = _row_base(case, backend, variant)
                    row.update(status="skipped", message=stop)
                    rows.append(row)
                    done += 1
                    continue
                if progress:
                    progress(f"{suite.name} {case.name} {backend.label(variant)}", done, total)
                row = _guarded_row(suite, case, backend, variant, refs, opts, deadline, clock, current, inp)
                if row.pop("_new_inputs", False):
                    current, inp = case, row.pop("_inputs")
                else:
                    row.pop("_inputs", None)
                if row["status"] == "skipped" and row["message"] == "time budget":
                    stop = "time budget"
                    this_run["stopped"] = stop
                elif row["status"] in ("error", "oom"):
                    lost = _cuda_broken(opts.mode)
                    if lost:
                        stop = f"not run: CUDA context lost ({lost}); rerun with --resume"
                        this_run["stopped"] = stop
                        note(f"run stopped after {row['impl']} on {case.name}: CUDA context lost")
                rows.append(row)
                this_run["rows_run"] += row["status"] != "skipped"
                done += 1
                if write:
                    write(document())
            inp, refs = {}, None
            _empty_cache(opts.mode)
        if progress:
            progress("done", done, total)
    doc = document()
    if write:
        write(doc)
    return doc


def merge(docs: list[dict[str, Any]]) -> dict[str, Any]:
    """One results document from several runs' documents (parts run on other GPUs or machines).

    A row present in several documents is taken from the last one that ran it (a ``skipped`` row yields
    to a row that ran). The first document gives the ceilings used for percent of ceiling; every run's
    own ceilings stay under ``runs``. Documents of different modes cannot be merged.
    """
    if not docs:
        raise ValueError("merge needs at least one results document")
    modes = {d["mode"] for d in docs}
    if len(modes) > 1:
        raise ValueError(f"cannot merge documents of different modes: {sorted(modes)}")
    out = {
        k: v for k, v in docs[0].items() if k not in ("rows", "suites", "notes", "runs", "implementations")
    }
    by_key: dict[tuple[str, str, str], dict[str, Any]] = {}
    suites: list[str] = []
    notes: list[str] = []
    runs: list[dict[str, Any]] = []
    impls: dict[str, dict[str, Any]] = {}
    for d in docs:
        for r in d["rows"]:
            k = row_key(r)
            if k not in by_key or r["status"] != "skipped" or by_key[k]["status"] == "skipped":
                by_key[k] = dict(r)
        suites += [s for s in d["suites"] if s not in suites]
        notes += [n for n in d.get("notes", []) if n not in notes]
        runs += d.get("runs", [])
        for e in d["implementations"]:
            if e["name"] not in impls or (e["available"] and not impls[e["name"]]["available"]):
                impls[e["name"]] = e
    names = {d["device"].get("name") for d in docs}
    if len(names) > 1:
        text = f"rows come from runs on different devices ({', '.join(sorted(map(str, names)))}); see runs"
        if text not in notes:
            notes.append(text)
    order = {s: i for i, s in enumerate(suites)}
    # Suite, then series and x (e.g. head dim and causality, then seqlen); a case's rows keep their order.
    rows = sorted(by_key.values(), key=lambda r: (order.get(r["suite"], len(order)), r["series"], r["x"]))
    derive(rows, out["ceilings"])
    out.update(suites=suites, implementations=list(impls.values()), rows=rows, notes=notes, runs=runs)
    return out


def _guarded_row(suite, case, backend, variant, refs, opts, deadline, clock, current, inp):
    """One row under the per-row guard: its inputs (shared by the case's rows), check and timing.

    Any exception becomes an ``error`` row; the row's time limit (``opts.row_timeout``, and what is left
    of the budget) interrupts it: an ``error`` for its own limit, ``skipped: time budget`` for the run's.
    """
    limit, reason = opts.row_timeout, "timeout"
    if deadline is not None:
        left = deadline - clock()
        if limit is None or left < limit:
            limit, reason = max(left, 0.01), "budget"
    extra: dict[str, Any] = {}
    try:
        with _alarm(limit, reason):
            if case is not current:
                inp = {}
                _empty_cache(opts.mode)
                try:
                    inp = suite.inputs(case, "cuda" if opts.mode == "gpu" else "cpu", opts.seed)
                except Exception as exc:  # e.g. out of memory: every row of the case says so
                    inp = exc
                extra = {"_new_inputs": True, "_inputs": inp}
            if isinstance(inp, Exception):
                row = _row_base(case, backend, variant)
                row.update(status=_status_of(inp), message=f"inputs: {type(inp).__name__}: {inp}"[:300])
            else:
                row = run_case(suite, case, backend, variant, inp, refs, opts)
    except RowInterrupted as exc:
        row = _row_base(case, backend, variant)
        if exc.reason == "budget":
            row.update(status="skipped", message="time budget")
        else:
            row.update(status="error", message=f"row timeout: over {opts.row_timeout:g} s (compile included)")
        _clear_grads(inp)
    except Exception as exc:  # a bug in an adapter or a suite: this row only
        row = _row_base(case, backend, variant)
        row.update(status=_status_of(exc), message=f"{type(exc).__name__}: {exc}"[:300])
    row.update(extra)
    return row


def _document(opts, inv, ceil, suites, rows, notes, runs, resume, machine) -> dict[str, Any]:
    options = {
        "suites": list(opts.suites),
        "quick": opts.quick,
        "check": opts.check,
        "cuda_graphs": opts.cuda_graphs,
        "seed": opts.seed,
        "preset": opts.preset,
        "split": f"{opts.split[0]}/{opts.split[1]}" if opts.split else None,
        "where": opts.where,
        "time_budget_s": opts.time_budget,
        "row_timeout_s": opts.row_timeout,
    }
    return {
        "schema_version": SCHEMA_VERSION,
        "created": resume["created"]
        if resume
        else datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "mode": opts.mode,
        "attn_bench_version": __version__,
        **machine,
        "ceilings": ceil,
        "options": options,
        "suites": suites,
        "implementations": inv.entries(opts.mode),
        "rows": rows,
        "notes": notes,
        "runs": runs,
    }
