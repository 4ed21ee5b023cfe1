"""PNG plots of a report: latency histograms, latency and throughput against batch size,
per-stage breakdown of a pipeline. Uses matplotlib's object API (Agg canvas, no pyplot state).
"""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from ..atomic import atomic_path

MAX_PANELS = 12


def _save(fig: Figure, path: Path) -> Path:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100, bbox_inches="tight")
    return path


def _row_title(row: dict[str, Any]) -> str:
    labels = row.get("labels", {})
    if "batch" in labels:
        return f"{labels.get('artefact', row['key'])} ({labels.get('precision', '')}) batch {labels['batch']}"
    return str(labels.get("stage", row["key"]))


def histogram_range(samples: list[float], p99: float) -> tuple[float, float]:
    """Bins from the minimum to the maximum, or to the p99 when rare outliers would flatten the rest."""
    low, high = min(samples), max(samples)
    if high > 2 * p99:
        high = p99
    return low, max(high, low * 1.001 + 1e-6)


def latency_histogram(rows: list[dict[str, Any]], path: Path) -> Path | None:
    """One histogram of per-call latency per row that kept its samples (p50 and p99 marked)."""
    rows = [r for r in rows if r.get("samples_ms")][:MAX_PANELS]
    if not rows:
        return None
    ncols = min(3, len(rows))
    nrows = math.ceil(len(rows) / ncols)
    fig = Figure(figsize=(4.2 * ncols, 3.0 * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax, row in zip(axes, rows):
        metrics, samples = row["metrics"], row["samples_ms"]
        low, high = histogram_range(samples, metrics["p99_ms"])
        hidden = sum(1 for x in samples if x > high)
        ax.hist(samples, bins=min(50, max(5, len(samples) // 4)), range=(low, high), color="#4878a8")
        ax.axvline(metrics["p50_ms"], color="black", linestyle="-", label=f"p50 {metrics['p50_ms']:.3g} ms")
        ax.axvline(metrics["p99_ms"], color="#c03030", linestyle="--", label=f"p99 {metrics['p99_ms']:.3g} ms")
        title = _row_title(row) + (f"\n{hidden} call(s) above {high:.3g} ms not shown (max {metrics['max_ms']:.3g})" if hidden else "")
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("latency per call (ms)")
        ax.set_ylabel("calls")
        ax.legend(fontsize=8)
    for ax in axes[len(rows):]:
        ax.set_visible(False)
    return _save(fig, path)


def latency_vs_batch(rows: list[dict[str, Any]], path: Path) -> Path | None:
    """p50 (solid) and p99 (dashed) latency and throughput against batch size, per artefact."""
    series: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        labels = row.get("labels", {})
        if "batch" in labels:
            series[f"{labels.get('artefact')} ({labels.get('backend')}, {labels.get('precision')})"].append(row)
    if not series:
        return None
    fig = Figure(figsize=(10, 4), layout="constrained")
    latency_ax, throughput_ax = fig.subplots(1, 2)
    all_batches: set[int] = set()
    for name, points in series.items():
        points.sort(key=lambda r: r["labels"]["batch"])
        batches = [r["labels"]["batch"] for r in points]
        p50 = [r["metrics"]["p50_ms"] for r in points]
        (line,) = latency_ax.plot(batches, p50, marker="o", label=name)
        latency_ax.plot(batches, [r["metrics"]["p99_ms"] for r in points], linestyle="--", color=line.get_color(), alpha=0.7)
        throughput_ax.plot(batches, [r["metrics"]["throughput"] for r in points], marker="o", label=name)
        all_batches.update(batches)
    ticks = sorted(all_batches)
    for ax, ylabel in ((latency_ax, "latency per call (ms): p50 solid, p99 dashed"), (throughput_ax, "throughput (img/s)")):
        ax.set_xscale("log", base=2)
        ax.set_xticks(ticks, [str(t) for t in ticks])
        ax.set_xlabel("batch size")
        ax.set_ylabel(ylabel)
        ax.grid(True, alpha=0.3)
    latency_ax.legend(fontsize=8)
    return _save(fig, path)


def stage_breakdown(rows: list[dict[str, Any]], path: Path) -> Path | None:
    """Horizontal bars of each pipeline stage's p50 latency, with a p50-p99 whisker."""
    stages = [r for r in rows if r.get("labels", {}).get("stage") and r["key"] != "end-to-end"]
    if not stages:
        return None
    names = [r["labels"]["stage"] for r in stages][::-1]
    p50 = [r["metrics"]["p50_ms"] for r in stages][::-1]
    p99 = [r["metrics"]["p99_ms"] for r in stages][::-1]
    fig = Figure(figsize=(7, 0.5 * len(names) + 1.5), layout="constrained")
    ax = fig.subplots()
    ax.barh(names, p50, xerr=[[0] * len(p50), [max(0.0, b - a) for a, b in zip(p50, p99)]], color="#4878a8", capsize=3)
    ax.set_xlabel("latency per frame (ms): bar p50, whisker to p99")
    ax.grid(True, axis="x", alpha=0.3)
    return _save(fig, path)
