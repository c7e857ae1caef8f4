"""Figures from a results file: throughput vs seqlen, the roofline, peak memory vs seqlen (PNG and SVG)."""

from __future__ import annotations

import itertools
from collections import defaultdict
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only: no display on the GPU machine or in CI

import matplotlib.pyplot as plt
from matplotlib.lines import Line2D

#: Suites plotted in GB/s rather than TFLOP/s (memory-bound by design).
MEMORY_BOUND = {"decode-kvcache"}
FORMATS = ("png", "svg")
#: Throughput panels leave out series whose best figure is under this fraction of the panel's best (the
#: teaching implementations: reference oracles, scalar kernels), so the fast ones are not squeezed into a
#: log scale; the footnote names them and the report keeps every row.
MIN_SHOWN_FRACTION = 0.05
XLABEL = {
    "basics": "problem size (elements, columns or n)",
    "decode-kvcache": "KV cache length",
    "mla-decode": "mean KV cache length",
    "mla-sparse": "KV length",
}


def _ok(rows, suite):
    return [r for r in rows if r["suite"] == suite and r["status"] == "ok" and r.get("ms")]


def _save(fig, out_dir: Path, stem: str) -> list[Path]:
    paths = []
    for fmt in FORMATS:
        p = out_dir / f"{stem}.{fmt}"
        fig.savefig(p, dpi=130, bbox_inches="tight")
        paths.append(p)
    plt.close(fig)
    return paths


def _subtitle(doc) -> str:
    if doc["mode"] == "cpu":
        return "CPU mode: tiny fp32 shapes, CPU figures"
    return f"{doc['device']['name']}, {doc['created'][:10]}"


def _colors(doc: dict[str, Any]) -> dict[str, Any]:
    """One colour per implementation, the same in every figure of a document (18 distinct hues first)."""
    names = sorted({r["impl"] for r in doc["rows"]})
    palette = [*plt.get_cmap("tab10").colors, *plt.get_cmap("Dark2").colors, *plt.get_cmap("tab20b").colors]
    return {name: palette[i % len(palette)] for i, name in enumerate(names)}


def _draw_lines(ax, lines: dict[tuple[str, str], list[tuple[Any, Any]]], colors: dict[str, Any]) -> None:
    """Peers dashed, each implementation in its document-wide colour, so every figure reads alike."""
    for (impl, kind), pts in sorted(lines.items()):
        pts.sort()
        ax.plot(
            [p[0] for p in pts],
            [p[1] for p in pts],
            marker="o",
            linestyle="--" if kind == "peer" else "-",
            color=colors[impl],
            label=impl,
        )


def throughput(doc: dict[str, Any], suite: str, out_dir: Path) -> list[Path]:
    rows = _ok(doc["rows"], suite)
    if not rows:
        return []
    colors = _colors(doc)
    hidden: set[str] = set()
    series = sorted({r["series"] for r in rows})
    ncols = min(3, len(series))
    nrows = (len(series) + ncols - 1) // ncols
    fig, axes = plt.subplots(nrows, ncols, figsize=(5 * ncols, 3.6 * nrows), squeeze=False)
    metric, unit = ("gbps", "GB/s") if suite in MEMORY_BOUND else ("tflops", "TFLOP/s")
    ceiling = doc["ceilings"]["copy_gbps" if metric == "gbps" else "matmul_tflops"]
    for ax, s in zip(axes.flat, series, strict=False):
        lines = defaultdict(list)
        for r in rows:
            if r["series"] == s:
                lines[(r["impl"], r["kind"])].append((r["x"], r[metric]))
        best = max((p[1] or 0 for pts in lines.values() for p in pts), default=0)
        if doc["mode"] == "gpu":
            for key in [
                k for k, pts in lines.items() if max(p[1] or 0 for p in pts) < MIN_SHOWN_FRACTION * best
            ]:
                hidden.add(key[0])
                del lines[key]
        _draw_lines(ax, lines, colors)
        ax.axhline(ceiling, color="grey", linewidth=0.8, linestyle=":", label="measured ceiling")
        values = [p[1] for pts in lines.values() for p in pts if p[1] and p[1] > 0]
        if values and max(values) > 50 * min(values):  # e.g. interpreter vs eager on the CPU
            ax.set_yscale("log")
        ax.set_xscale("log", base=2)
        ax.set_title(s)
        ax.set_xlabel(XLABEL.get(suite, "seqlen"))
        ax.set_ylabel(unit)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(series) :]:
        ax.axis("off")
    fig.suptitle(f"{suite}: {unit} vs seqlen ({_subtitle(doc)}); dashed: peers")
    if hidden:
        fig.text(
            0.01,
            -0.01,
            f"Not drawn (under {MIN_SHOWN_FRACTION:.0%} of a panel's best; figures in the report): "
            + ", ".join(sorted(hidden)),
            fontsize=8,
            va="top",
        )
    fig.tight_layout()
    return _save(fig, out_dir, f"throughput-{suite}")


def roofline(doc: dict[str, Any], out_dir: Path) -> list[Path]:
    rows = [r for r in doc["rows"] if r["status"] == "ok" and r.get("ms") and r["bytes"] > 0]
    if not rows:
        return []
    peak = doc["ceilings"]["matmul_tflops"]
    bw = doc["ceilings"]["copy_gbps"] / 1e3  # TB/s, so intensity (FLOP/byte) * bw is TFLOP/s
    fig, ax = plt.subplots(figsize=(8, 5.2))
    fig.subplots_adjust(right=0.88)
    xs = [r["flops"] / r["bytes"] for r in rows]
    lo, hi = min(xs) / 2, max(xs) * 2
    grid = [lo * (hi / lo) ** (i / 200) for i in range(201)]
    ax.plot(grid, [min(peak, x * bw) for x in grid], color="black", linewidth=1.2)
    # Marker by suite, colour by implementation: where each implementation sits against the roofline.
    # Two legends (colours, markers) outside the axes: one entry per (implementation, suite) would be ~40.
    suites = sorted({r["suite"] for r in rows})
    impls = sorted({r["impl"] for r in rows})
    markers = dict(zip(suites, itertools.cycle("os^vD<>p*"), strict=False))
    colors = _colors(doc)
    groups = defaultdict(list)
    for r in rows:
        groups[(r["suite"], r["impl"])].append(r)
    for (suite, impl), rs in sorted(groups.items()):
        ax.scatter(
            [r["flops"] / r["bytes"] for r in rs],
            [r["tflops"] for r in rs],
            s=18,
            alpha=0.8,
            marker=markers[suite],
            color=colors[impl],
        )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("arithmetic intensity (FLOP/byte)")
    ax.set_ylabel("TFLOP/s")
    ax.set_title(f"Roofline: {peak:.0f} TFLOP/s, {bw * 1e3:.0f} GB/s ({_subtitle(doc)})", fontsize=9)
    ax.grid(alpha=0.3, which="both")
    by_impl = [Line2D([], [], marker="o", linestyle="", color=colors[i], label=i) for i in impls]
    by_impl.append(Line2D([], [], color="black", label="measured roofline"))
    by_suite = [Line2D([], [], marker=markers[s], linestyle="", color="grey", label=s) for s in suites]
    # A figure legend: tight bounding boxes include it (an extra axes legend outside the axes is cut off).
    fig.legend(
        handles=by_impl, fontsize=7, title="implementation", loc="center left", bbox_to_anchor=(0.9, 0.5)
    )
    ax.legend(
        handles=by_suite, fontsize=7, title="suite", loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=4
    )
    return _save(fig, out_dir, "roofline")


def memory(doc: dict[str, Any], out_dir: Path) -> list[Path]:
    rows = [r for r in doc["rows"] if r["suite"] == "memory" and r.get("peak_memory_bytes") is not None]
    if not rows:
        return []
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    colors = _colors(doc)
    lines = defaultdict(list)
    for r in rows:
        lines[(r["impl"], r["kind"])].append((r["x"], r["peak_memory_bytes"] / 2**20))
    _draw_lines(ax, lines, colors)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("seqlen")
    ax.set_ylabel("peak memory above inputs (MiB)")
    ax.set_title(f"Attention forward memory: O(N^2) naive vs O(N) flash ({_subtitle(doc)})", fontsize=9)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7)
    return _save(fig, out_dir, "memory")


def plot_all(doc: dict[str, Any], out_dir: str | Path) -> list[Path]:
    """Every figure the document has data for; returns the files written."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths: list[Path] = []
    for suite in doc["suites"]:
        if suite != "memory":
            paths += throughput(doc, suite, out_dir)
    paths += roofline(doc, out_dir)
    paths += memory(doc, out_dir)
    return paths
