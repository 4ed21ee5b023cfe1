"""Write a report to a folder: ``<kind>.json``, ``<kind>.md`` and its PNG plots."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

from ..atomic import write_text_atomic
from . import plots
from .render import render_markdown

Plot = Callable[[list[dict[str, Any]], Path], "Path | None"]
PLOTS: dict[str, tuple[tuple[str, str, Plot], ...]] = {  # kind -> (caption, file suffix, plot)
    "profile": (
        ("Latency against batch size", "latency_vs_batch", plots.latency_vs_batch),
        ("Latency histograms", "latency_hist", plots.latency_histogram),
    ),
    "pipeline": (
        ("Per-stage latency", "stages", plots.stage_breakdown),
        ("Latency histograms", "latency_hist", plots.latency_histogram),
    ),
    "benchmark": (),
}


def write_report(report: dict[str, Any], out_dir: str | Path) -> list[Path]:
    """Write the plots, the Markdown report and the JSON; returns the paths written."""
    out_dir = Path(out_dir)
    kind = report["kind"]
    written: list[Path] = []
    images: dict[str, str] = {}
    for caption, suffix, plot in PLOTS[kind]:
        path = plot(report["rows"], out_dir / f"{kind}_{suffix}.png")
        if path is not None:
            images[caption] = path.name
            written.append(path)
    markdown, data = out_dir / f"{kind}.md", out_dir / f"{kind}.json"
    write_text_atomic(markdown, render_markdown(report, images))
    write_text_atomic(data, json.dumps(report, indent=1) + "\n")
    return [*written, markdown, data]
