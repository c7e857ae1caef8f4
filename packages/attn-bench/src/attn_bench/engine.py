"""The run: for every suite, case and implementation, check against attn-reference, then time.

UI-agnostic: progress goes to a callback; the CLI draws it with rich. Failures of one row (an exception,
out of memory, a failed check) are recorded in that row and never stop the run.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import gc
import os
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


def plan(suite: Suite, cases: list[Case], impls: list[Backend], mode: str):
    """(case, backend, variant) triples to run: every implementation offering the case's op."""
    out = []
    for case in cases:
        for b in impls:
            for variant in b.variants(case.op):
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
            self.key, self.value = key, None
            gc.collect()
            try:
                high = suite.reference(case, inp, lowp=False)
                low = suite.reference(case, inp, lowp=True) if suite.rule == "attention" else None
                self.value = (high, low)
            except Exception as exc:  # a missing oracle leaves rows unchecked, not dead
                self.value = exc
        return self.value


def _check_key(case: Case) -> str:
    # fwd+bwd and bwd rows of one shape share their gradients' check.
    return f"{case.suite}:{case.name.removesuffix(' fwd+bwd').removesuffix(' bwd')}"


def run_case(
    suite: Suite,
    case: Case,
    backend: Backend,
    variant: str,
    inp: dict[str, Any],
    refs: _ReferenceCache,
    checked: dict,
    opts: Options,
) -> dict[str, Any]:
    """One row: check, then time (or measure memory)."""
    device = "cuda" if opts.mode == "gpu" else "cpu"
    fn = backend.variants(case.op)[variant]
    row = _row_base(case, backend, variant)
    reason = backend.why_not(case.op, variant, case.shape, device)
    if reason:
        row.update(status="unsupported", message=reason)
        return row
    if suite.measure == "memory":
        return _measure_memory(suite, case, fn, inp, row, opts)

    first_call_s = None
    ck = (backend.label(variant), _check_key(case))
    if opts.check and ck in checked:
        row["check"] = dataclasses.asdict(checked[ck])
    elif opts.check:
        try:
            t0 = time.perf_counter()
            out = suite.outputs(fn, case, inp)
            _sync(opts.mode)
            first_call_s = time.perf_counter() - t0
        except Exception as exc:
            row.update(status=_status_of(exc), message=f"{type(exc).__name__}: {exc}"[:300])
            return row
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
        checked[ck] = result
        row["check"] = dataclasses.asdict(result)
    else:
        row["check"] = dataclasses.asdict(CheckResult("unchecked", detail="--no-check"))
    if row["check"]["status"] == "fail":
        row.update(status="check_failed", message=row["check"]["detail"])
        return row

    try:
        runner = suite.runner(fn, case, inp)
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
        for t in ("q", "k", "v"):
            if isinstance(inp.get(t), torch.Tensor):
                inp[t].grad = None
    row.update(status="ok", ms=ms, timer=timer)
    return row


def _measure_memory(suite, case, fn, inp, row, opts):
    if opts.mode != "gpu":
        row.update(status="skipped", message="peak memory needs CUDA (torch.cuda.max_memory_allocated)")
        return row
    try:
        runner = suite.runner(fn, case, inp)
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
        peak_memory_bytes=None,
        timer=None,
        message="",
    )


def derive(rows: list[dict[str, Any]], ceil: dict[str, Any]) -> None:
    """Throughput, percent of the roofline (the nearer of compute and memory ceilings), ratio to peers."""
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


def run(
    opts: Options, progress: Callable[[str, int, int], None] | None = None, inv: Inventory | None = None
) -> dict[str, Any]:
    """Run the suites and return the results document (see :mod:`attn_bench.schema`)."""
    if inv is None:
        inv = inventory(opts.mode, opts.backends, opts.peers)
    impls = inv.usable(opts.mode)
    notes: list[str] = []
    if opts.mode == "cpu":
        notes.append(
            "CPU mode: tiny fp32 shapes on the CPU (reference and Triton interpreter); these figures "
            "demonstrate the pipeline and say nothing about GPU performance."
        )
    with triton_interpreter(opts.mode == "cpu"):
        ceil = ceilings.measure(opts.mode, opts.quick)
        device = "cuda" if opts.mode == "gpu" else "cpu"
        work = []
        for name in opts.suites:
            suite = SUITES[name]
            if suite.measure == "memory" and opts.mode != "gpu":
                notes.append("memory suite skipped: peak memory needs CUDA (torch.cuda.max_memory_allocated)")
                continue
            work.append((suite, plan(suite, suite.cases(opts.mode, opts.quick), impls, opts.mode)))
        total = sum(len(p) for _, p in work)
        done = 0
        rows: list[dict[str, Any]] = []
        for suite, triples in work:
            refs = _ReferenceCache()
            checked: dict = {}
            current: Case | None = None
            inp: dict[str, Any] = {}
            for case, backend, variant in triples:
                if case is not current:
                    inp = {}
                    _empty_cache(opts.mode)
                    current = case
                    try:
                        inp = suite.inputs(case, device, opts.seed)
                    except Exception as exc:  # e.g. out of memory: every row of the case says so
                        inp = exc
                if progress:
                    progress(f"{suite.name} {case.name} {backend.label(variant)}", done, total)
                if isinstance(inp, Exception):
                    row = _row_base(case, backend, variant)
                    row.update(status=_status_of(inp), message=f"inputs: {type(inp).__name__}: {inp}"[:300])
                    rows.append(row)
                else:
                    rows.append(run_case(suite, case, backend, variant, inp, refs, checked, opts))
                done += 1
            inp, refs = {}, None
            _empty_cache(opts.mode)
        if progress:
            progress("done", done, total)
    derive(rows, ceil)
    return {
        "schema_version": SCHEMA_VERSION,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "mode": opts.mode,
        "attn_bench_version": __version__,
        "host": env.host(),
        "device": env.gpu(opts.mode),
        "versions": env.versions(),
        "ceilings": ceil,
        "options": {
            "suites": list(opts.suites),
            "quick": opts.quick,
            "check": opts.check,
            "cuda_graphs": opts.cuda_graphs,
            "seed": opts.seed,
        },
        "suites": [s.name for s, _ in work],
        "implementations": inv.entries(opts.mode),
        "rows": rows,
        "notes": notes,
    }
