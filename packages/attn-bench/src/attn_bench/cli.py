"""The ``attn-bench`` command: run, list, plot, report."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from attn_bench import __version__, engine, presets, schema
from attn_bench import plot as plotting
from attn_bench import report as reporting
from attn_bench.suites import SUITES

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Benchmark every installed attention backend against the best peers.",
)
# Wide when piped (CI logs, the GPU machine's captured output): tables wrap badly at 80 columns.
console = Console() if sys.stdout.isatty() else Console(width=180)

#: Default per-row limit on the GPU (compile, check and timing of one row): Triton autotuning or a CuTe DSL
#: JIT takes seconds to a minute per configuration; a row past this is recorded as an error.
GPU_ROW_TIMEOUT_S = 180.0

STATUS_STYLE = {
    "ok": "",
    "check_failed": "bold red",
    "error": "red",
    "oom": "yellow",
    "unsupported": "dim",
    "skipped": "dim",
}


def _split(values: list[str] | None) -> list[str] | None:
    if not values:
        return None
    return [v.strip() for item in values for v in item.split(",") if v.strip()]


def print_tables(doc: dict, con: Console = console) -> None:
    """One rich table per suite."""
    label = "CPU figures (tiny fp32 shapes)" if doc["mode"] == "cpu" else doc["device"]["name"]
    for suite in doc["suites"]:
        rows = [r for r in doc["rows"] if r["suite"] == suite]
        table = Table(title=f"{suite} - {label}", title_justify="left", show_lines=False)
        cols = reporting.columns(suite, rows)
        for key, header in cols:
            table.add_column(
                header,
                justify="right" if key in ("ms", "tflops", "gbps", "pct", "memory") else "left",
                overflow="fold",
            )
        for r in rows:
            c = reporting.cells(r)
            table.add_row(*(c[k] for k, _ in cols), style=STATUS_STYLE.get(r["status"], ""))
        if not rows:
            table.add_row(*(["no implementation offers this suite's ops"] + [""] * (len(cols) - 1)))
        con.print(table)
    c = doc["ceilings"]
    con.print(
        f"Ceilings measured in this run: {c['matmul_tflops']:.3g} TFLOP/s matmul, "
        f"{c['copy_gbps']:.4g} GB/s copy."
    )
    for note in doc.get("notes", []):
        con.print(f"[bold]note:[/bold] {note}")


@app.command()
def run(
    suite: Annotated[
        list[str] | None,
        typer.Option(
            "--suite", "-s", help=f"suite(s) to run (repeat or comma-separate): {', '.join(SUITES)}"
        ),
    ] = None,
    device: Annotated[str, typer.Option(help="auto, cuda or cpu (CPU mode: tiny fp32 shapes)")] = "auto",
    backend: Annotated[
        list[str] | None, typer.Option("--backend", "-b", help="only these backends (entry point names)")
    ] = None,
    peer: Annotated[list[str] | None, typer.Option("--peer", help="only these peers")] = None,
    no_peers: Annotated[bool, typer.Option("--no-peers", help="skip the peers")] = False,
    quick: Annotated[bool, typer.Option("--quick", help="a short version of every grid")] = False,
    check: Annotated[
        bool, typer.Option("--check/--no-check", help="check against attn-reference first")
    ] = True,
    cuda_graphs: Annotated[bool, typer.Option("--cuda-graphs", help="time through CUDA graphs")] = False,
    seed: Annotated[int, typer.Option(help="seed of the random inputs")] = 0,
    out: Annotated[Path, typer.Option("--out", "-o", help="results JSON (rewritten after every row)")] = Path(
        "results.json"
    ),
    preset: Annotated[
        str | None, typer.Option(help=f"a named selection of the GPU grids: {', '.join(presets.PRESETS)}")
    ] = None,
    split: Annotated[
        str | None, typer.Option(help="i/N: run only the i-th (1-based) of N balanced parts of the selection")
    ] = None,
    where: Annotated[
        list[str] | None,
        typer.Option(
            help="KEY=VALUE: only cases whose shape has it (repeat for several), e.g. seqlen_k=16384"
        ),
    ] = None,
    resume: Annotated[
        Path | None,
        typer.Option(help="an earlier results JSON: keep its rows, run only the missing (or skipped) ones"),
    ] = None,
    time_budget: Annotated[
        float | None,
        typer.Option(help="seconds: start no row after this (rows left: skipped 'time budget'), then write"),
    ] = None,
    row_timeout: Annotated[
        float | None,
        typer.Option(
            help=f"seconds one row may take, compile included (GPU default {GPU_ROW_TIMEOUT_S:g}; 0: none)"
        ),
    ] = None,
) -> None:
    """Discover backends and peers, check each against the reference, time, print tables, write JSON."""
    t_start = time.monotonic()  # the budget counts from here: discovery imports (CuTe DSL) take seconds
    if preset is not None and preset not in presets.PRESETS:
        raise typer.BadParameter(f"unknown preset {preset!r}; choose from {list(presets.PRESETS)}")
    names = _split(suite) or (list(presets.PRESETS[preset].suites) if preset else list(engine.DEFAULT_SUITES))
    unknown = [n for n in names if n not in SUITES]
    if unknown:
        raise typer.BadParameter(
            f"unknown suite(s) {unknown}; choose from {list(SUITES)}", param_hint="--suite"
        )
    try:
        mode = engine.resolve_mode(device)
    except (RuntimeError, ValueError) as exc:
        raise typer.BadParameter(str(exc), param_hint="--device") from exc
    if preset is not None and mode != presets.PRESETS[preset].mode:
        raise typer.BadParameter(f"preset {preset} selects {presets.PRESETS[preset].mode} grids: needs a GPU")
    try:
        parts = presets.parse_split(split) if split else None
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--split") from exc
    conditions = {}
    for item in _split(where) or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise typer.BadParameter(f"--where takes KEY=VALUE, got {item!r}", param_hint="--where")
        conditions[key.strip()] = value.strip()
    previous = _load(resume) if resume is not None and resume.exists() else None
    if resume is not None and previous is None:
        console.print(f"[yellow]--resume {resume}: no such file, starting afresh[/yellow]")
    if row_timeout is None:
        row_timeout = GPU_ROW_TIMEOUT_S if mode == "gpu" else 0
    opts = engine.Options(
        mode=mode,
        suites=tuple(names),
        backends=_split(backend),
        peers=[] if no_peers else _split(peer),
        quick=quick,
        check=check,
        cuda_graphs=cuda_graphs,
        seed=seed,
        preset=preset,
        split=parts,
        where=conditions or None,
        time_budget=time_budget or None,
        row_timeout=row_timeout or None,
    )
    inv = engine.inventory(mode, opts.backends, opts.peers)
    for item in inv.entries(mode):
        if not item["available"] and item["kind"] == "backend":
            console.print(f"[yellow]backend {item['name']} unavailable:[/yellow] {item['reason']}")
    if mode == "cpu":
        console.print("[bold yellow]CPU mode[/bold yellow]: tiny fp32 shapes; CPU figures, not GPU ones.")
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as prog:
        task = prog.add_task("starting", total=None)

        def tick(desc: str, done: int, total: int) -> None:
            prog.update(task, description=desc[:70], completed=done, total=total)

        if opts.time_budget:
            opts.time_budget = max(opts.time_budget - (time.monotonic() - t_start), 0.01)
        try:
            doc = engine.run(
                opts, progress=tick, inv=inv, resume=previous, write=lambda d: schema.dump(d, out)
            )
        except ValueError as exc:  # a --resume file of the other mode
            raise typer.BadParameter(str(exc), param_hint="--resume") from exc
    print_tables(doc)
    schema.dump(doc, out)
    last = doc["runs"][-1]
    console.print(
        f"wrote {out}: {len(doc['rows'])} rows, {last['rows_run']} run now in {last['elapsed_s']:g} s"
        + (f"; stopped: {last['stopped']}" if last["stopped"] else "")
    )
    if last["stopped"] and "CUDA context lost" in last["stopped"]:
        raise typer.Exit(3)


@app.command("plan")
def plan_(
    preset: Annotated[str, typer.Option(help="preset to list")] = "deliverable",
    split: Annotated[str | None, typer.Option(help="i/N: list only the i-th of N parts")] = None,
    parts: Annotated[int, typer.Option(help="show the sizes of a split into this many parts")] = 0,
) -> None:
    """List a preset's cases (shapes), or one part of its split; rows are these times the implementations."""
    if preset not in presets.PRESETS:
        raise typer.BadParameter(f"unknown preset {preset!r}; choose from {list(presets.PRESETS)}")
    cases = presets.cases(preset)
    if split:
        try:
            i, n = presets.parse_split(split)
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint="--split") from exc
        cases = presets.split_cases(cases, n)[i - 1]
    table = Table(
        title=f"preset {preset}{f' part {split}' if split else ''}: {len(cases)} cases", title_justify="left"
    )
    for h in ("suite", "case", "dtype", "GFLOP", "MB", "weight"):
        table.add_column(h, justify="right" if h in ("GFLOP", "MB", "weight") else "left")
    for c in cases:
        table.add_row(
            c.suite, c.name, c.dtype, f"{c.flops / 1e9:.4g}", f"{c.bytes / 1e6:.4g}", f"{presets.cost(c):.2f}"
        )
    console.print(table)
    if parts:
        for j, part in enumerate(presets.split_cases(cases, parts), 1):
            console.print(f"part {j}/{parts}: {len(part)} cases, weight {sum(map(presets.cost, part)):.1f}")


@app.command("list")
def list_(device: Annotated[str, typer.Option(help="auto, cuda or cpu")] = "auto") -> None:
    """Backends and peers found, their ops, and why a missing one is missing."""
    mode = engine.resolve_mode(device)
    inv = engine.inventory(mode)
    table = Table(title=f"attn-bench {__version__}: implementations ({mode} mode)", title_justify="left")
    for h in ("name", "kind", "version", "available", "ops / reason"):
        table.add_column(h, overflow="fold")
    for e in inv.entries(mode):
        detail = ", ".join(e["ops"]) if e["available"] else (e["reason"] or "")
        table.add_row(
            e["name"], e["kind"], e["version"] or "-", "yes" if e["available"] else "[red]no[/red]", detail
        )
    console.print(table)
    if not inv.backends:
        console.print(
            "[yellow]No backend registered[/yellow] (entry point group attn_bench.backends): install the "
            "packages (pip install -e packages/attn-reference ...) or name them in ATTN_BENCH_BACKENDS, e.g. "
            "reference=attn_reference.bench:backend"
        )
    console.print("Suites: " + ", ".join(f"{n} ({s.description})" for n, s in SUITES.items()))


@app.command()
def merge(
    results: Annotated[list[Path], typer.Argument(help="results JSON files (parts of one run)")],
    out: Annotated[Path, typer.Option("--out", "-o", help="merged results JSON")],
) -> None:
    """Merge results files of one preset run in parts (e.g. parts run side by side on two GPUs)."""
    try:
        doc = engine.merge([_load(p) for p in results])
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="RESULTS") from exc
    schema.dump(doc, out)
    done = sum(r["status"] != "skipped" for r in doc["rows"])
    console.print(f"wrote {out}: {len(doc['rows'])} rows ({done} run) from {len(results)} files")


@app.command()
def plot(
    results: Annotated[Path, typer.Argument(help="results JSON from attn-bench run")],
    out_dir: Annotated[Path | None, typer.Option("--out-dir", "-o", help="default: next to the JSON")] = None,
) -> None:
    """Draw throughput vs seqlen, the roofline and memory vs seqlen (PNG and SVG)."""
    doc = _load(results)
    paths = plotting.plot_all(doc, out_dir or results.parent / f"{results.stem}-plots")
    for p in paths:
        console.print(f"wrote {p}")
    if not paths:
        console.print("nothing to plot: no successful rows")


@app.command()
def report(
    results: Annotated[Path, typer.Argument(help="results JSON from attn-bench run")],
    out: Annotated[Path | None, typer.Option("--out", "-o", help="default: <results>.md")] = None,
    plots_dir: Annotated[Path | None, typer.Option(help="link the figures found in this folder")] = None,
) -> None:
    """Write a markdown report of a results file."""
    doc = _load(results)
    out = out or results.with_suffix(".md")
    plots = None
    if plots_dir is not None and plots_dir.is_dir():
        import os

        plots = [os.path.relpath(p, out.parent) for p in sorted(plots_dir.glob("*.png"))]
    reporting.write(doc, out, plots)
    console.print(f"wrote {out}")


def _load(path: Path) -> dict:
    try:
        return schema.load(path)
    except FileNotFoundError as exc:
        raise typer.BadParameter(f"{path} does not exist") from exc
    except schema.SchemaError as exc:
        console.print(f"[red]{path}: {exc}[/red]")
        raise typer.Exit(2) from exc


def main() -> None:
    app()
