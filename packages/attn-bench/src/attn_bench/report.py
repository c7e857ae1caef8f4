"""Markdown report of a results file, and the cell formatting the terminal table shares."""

from __future__ import annotations

from pathlib import Path
from typing import Any

STATUS_TEXT = {
    "ok": "ok",
    "check_failed": "CHECK FAILED",
    "error": "error",
    "unsupported": "unsupported",
    "oom": "out of memory",
    "skipped": "skipped",
}


def _num(x: float | None, digits: int = 1) -> str:
    if x is None:
        return "-"
    if abs(x) >= 100:
        return f"{x:,.0f}"
    return f"{x:.{digits}f}" if abs(x) >= 1 else f"{x:.3g}"


def _kernel_cell(row: dict[str, Any]) -> str:
    """The main kernel's ms, TFLOP/s and GB/s (``timing.main_kernel_ms``), where that kernel is at least
    half the call: a composite op's (the reference's) longest kernel says nothing about it."""
    ms = row.get("kernel_ms")
    if ms is None or ms <= 0 or ms < 0.5 * (row.get("ms") or 0):
        return "-"
    parts = [f"{_num(ms, 3)} ms"]
    if row.get("flops"):
        parts.append(f"{_num(row['flops'] / ms / 1e9)} TFLOP/s")
    if row.get("bytes"):
        parts.append(f"{_num(row['bytes'] / ms / 1e6)} GB/s")
    return ", ".join(parts)


def cells(row: dict[str, Any]) -> dict[str, str]:
    """The strings shown for one row, in the terminal and in markdown."""
    check = row.get("check") or {}
    status = row["status"]
    if status == "ok":
        state = check.get("status", "-") if check else "-"
        state = "UNCHECKED" if state == "unchecked" else state
    else:
        state = STATUS_TEXT.get(status, status)
    note = row.get("message") or ""
    if status == "ok" and check.get("status") == "unchecked":
        # Timed without a passing check: the row must say so where its figures are read.
        note = "; ".join(filter(None, (f"UNCHECKED: {check.get('detail') or 'no reason recorded'}", note)))
    elif status == "ok" and check.get("detail"):  # passed on what it returned (e.g. lse not returned)
        note = "; ".join(filter(None, (check["detail"], note)))
    mem = row.get("peak_memory_bytes")
    ratio = row.get("ratio_to_best_peer")
    own = row.get("ratio_to_baseline")
    return {
        "case": row["case"],
        "impl": row["impl"] + (" (peer)" if row.get("kind") == "peer" else ""),
        "check": state,
        "ms": _num(row.get("ms"), 3),
        "tflops": _num(row.get("tflops")),
        "gbps": _num(row.get("gbps")),
        "pct": "-"
        if row.get("pct_of_ceiling") is None
        else f"{row['pct_of_ceiling']:.0f}% {row['bound'][0]}",
        "ratio": "-" if ratio is None else f"{ratio:.2f}x {row.get('best_peer')}",
        "baseline": "-" if own is None else f"{own:.2f}x {row.get('baseline')}",
        "memory": "-" if mem is None else f"{mem / 2**20:,.0f} MiB",
        "kernel": _kernel_cell(row),
        "note": note[:120],
    }


TIME_COLUMNS = [
    ("case", "case"),
    ("impl", "implementation"),
    ("check", "check"),
    ("ms", "ms"),
    ("tflops", "TFLOP/s"),
    ("gbps", "GB/s"),
    ("pct", "% ceiling"),
    ("ratio", "vs best peer"),
    ("note", "note"),
]
MEMORY_COLUMNS = [
    ("case", "case"),
    ("impl", "implementation"),
    ("check", "status"),
    ("memory", "peak memory"),
    ("note", "note"),
]


def columns(suite: str, rows: list[dict[str, Any]] = ()) -> list[tuple[str, str]]:
    """A suite's columns; "vs baseline" only where some row has a ratio to another variant of its own."""
    if suite == "memory":
        return MEMORY_COLUMNS
    out = list(TIME_COLUMNS)
    if any(r.get("ratio_to_baseline") is not None for r in rows):
        out.insert(-1, ("baseline", "vs baseline"))
    if any(r.get("kernel_ms") is not None for r in rows):
        out.insert(4, ("kernel", "main kernel"))
    return out


def machine_lines(doc: dict[str, Any]) -> list[str]:
    dev, c, h = doc["device"], doc["ceilings"], doc["host"]
    where = (
        "CPU (figures are CPU figures, tiny fp32 shapes)"
        if doc["mode"] == "cpu"
        else (
            f"{dev['name']} (sm {dev.get('capability')}, driver {dev.get('driver')}, CUDA {dev.get('cuda')})"
        )
    )
    shape = "x".join(str(n) for n in c.get("matmul_shape", []))
    return [
        f"- Machine: {where}",
        f"- Host: {h.get('hostname')} ({h.get('platform')}, Python {h.get('python')})",
        f"- Ceilings measured in this run: {c['matmul_tflops']:.3g} TFLOP/s ({c.get('matmul_dtype')} matmul "
        f"{shape}), {c['copy_gbps']:.4g} GB/s (device copy, read + write)",
        f"- Created {doc['created']}, attn-bench {doc['attn_bench_version']}, schema {doc['schema_version']}",
    ]


def markdown(doc: dict[str, Any], plots: list[str] | None = None) -> str:
    """The whole report as markdown."""
    title = "attn-bench results" + (" (CPU mode)" if doc["mode"] == "cpu" else "")
    out = [f"# {title}", "", *machine_lines(doc), ""]
    for note in doc.get("notes", []):
        out.append(f"> {note}")
    if doc.get("notes"):
        out.append("")
    out += [
        "## Implementations",
        "",
        "| name | kind | version | available | reason |",
        "|---|---|---|---|---|",
    ]
    for impl in doc["implementations"]:
        out.append(
            f"| {impl['name']} | {impl['kind']} | {impl.get('version') or '-'} | "
            f"{'yes' if impl['available'] else 'no'} | {_md(impl.get('reason') or '')} |"
        )
    out.append("")
    for suite in doc["suites"]:
        rows = [r for r in doc["rows"] if r["suite"] == suite]
        out += [f"## {suite}", ""]
        if not rows:
            out += ["No implementation offers this suite's ops.", ""]
            continue
        cols = columns(suite, rows)
        out.append("| " + " | ".join(h for _, h in cols) + " |")
        out.append("|" + "---|" * len(cols))
        for r in rows:
            c = cells(r)
            out.append("| " + " | ".join(_md(c[k]) for k, _ in cols) + " |")
        out.append("")
    out += ["## Package versions", "", "| package | version |", "|---|---|"]
    out += [f"| {k} | {v} |" for k, v in doc["versions"].items() if v is not None]
    out.append("")
    if plots:
        out += ["## Figures", ""]
        out += [f"![{Path(p).stem}]({p})" for p in plots]
        out.append("")
    out.append(
        "% ceiling: the nearer roofline (c = compute, m = memory); vs best peer: best peer's time over "
        "this row's (above 1 is faster than the best peer); vs baseline: the time of the variant named (the "
        "backend's default unless the variant names another) over this row's on the same case (above 1: this "
        "variant is faster). check UNCHECKED: timed without a check against attn-reference (the note says "
        "why: the reference failed or ran out of time, or --no-check); CHECK FAILED rows are never timed."
    )
    return "\n".join(out) + "\n"


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def write(doc: dict[str, Any], path: str | Path, plots: list[str] | None = None) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(markdown(doc, plots))
    return path
