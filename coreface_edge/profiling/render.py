"""A report as a rich table (terminal) and as Markdown (file), from the same cells."""

from __future__ import annotations

from typing import Any

from rich.table import Table

from .machine import machine_summary
from .report import COLUMNS, Column

NOISE_BAND = 0.05  # a ratio within 5% of 1.0 is not coloured: this is noise on a shared machine
TITLES = {"profile": "Model latency", "pipeline": "Pipeline stages", "benchmark": "Formats benchmark"}


def ratio_columns(report: dict[str, Any]) -> list[Column]:
    """The columns that get a "vs base" ratio, when the report was compared with a baseline."""
    if "comparison" not in report:
        return []
    return [c for c in COLUMNS[report["kind"]] if c.ratio]


def table_lines(report: dict[str, Any]) -> tuple[list[str], list[tuple[list[str], list[str]]]]:
    """Headers and ``(cells, styles)`` lines: one per row, then one per part of the row.

    Columns no row has a value for (GPU memory on a CPU machine) are left out.
    """
    columns = tuple(c for c in COLUMNS[report["kind"]] if any(c.value(row) is not None for row in report["rows"]))
    compared = ratio_columns(report)
    headers = [c.header for c in columns] + [f"{c.header} vs base" for c in compared]
    lines = []
    for row in report["rows"]:
        lines.append(_line(row, columns, compared, row.get("vs_baseline", {})))
        for part, metrics in row.get("parts", {}).items():
            part_row = {"labels": {columns[0].key: f"  └ {part}"}, "metrics": metrics}
            prefix = f"{part}."
            ratios = {k[len(prefix):]: v for k, v in row.get("vs_baseline", {}).items() if k.startswith(prefix)}
            lines.append(_line(part_row, columns, compared, ratios))
    return headers, lines


def _line(row: dict[str, Any], columns: tuple[Column, ...], compared: list[Column], ratios: dict[str, float]) -> tuple[list[str], list[str]]:
    cells = [c.cell(row) for c in columns]
    styles = [""] * len(columns)
    for column in compared:
        ratio = ratios.get(column.key)
        cells.append("-" if ratio is None else f"{ratio:.2f}x")
        styles.append(_ratio_style(ratio, column.better))
    return cells, styles


def _ratio_style(ratio: float | None, better: str) -> str:
    if ratio is None or abs(ratio - 1.0) <= NOISE_BAND:
        return ""
    improved = ratio < 1.0 if better == "lower" else ratio > 1.0
    return "green" if improved else "red"


def rich_table(report: dict[str, Any]) -> Table:
    """The report's rows as a terminal table, with the machine in the caption."""
    headers, lines = table_lines(report)
    table = Table(title=TITLES[report["kind"]], caption=machine_summary(report.get("machine", {})))
    for i, header in enumerate(headers):
        table.add_column(header, justify="left" if i == 0 else "right", overflow="fold")
    for cells, styles in lines:
        table.add_row(*(f"[{s}]{c}[/]" if s else c for c, s in zip(cells, styles)))
    return table


def markdown_table(headers: list[str], lines: list[list[str]]) -> str:
    """A GitHub-flavoured Markdown table."""
    escape = lambda text: str(text).replace("|", "\\|")  # noqa: E731
    out = ["| " + " | ".join(map(escape, headers)) + " |", "|" + "---|" * len(headers)]
    out += ["| " + " | ".join(map(escape, cells)) + " |" for cells in lines]
    return "\n".join(out)


def render_markdown(report: dict[str, Any], images: dict[str, str]) -> str:
    """The whole report as Markdown; ``images`` maps a caption to a PNG path relative to it."""
    headers, lines = table_lines(report)
    machine = report.get("machine", {})
    parts = [
        f"# coreface-edge {report['kind']} report",
        "",
        f"Created {report.get('created_utc', '?')} with:",
        "",
        f"```\n{report.get('command', '')}\n```",
        "",
        f"## {TITLES[report['kind']]}",
        "",
        markdown_table(headers, [cells for cells, _ in lines]),
        "",
    ]
    if report["kind"] == "pipeline":
        parts += [pipeline_summary(report), ""]
    comparison = report.get("comparison")
    if comparison:
        parts += [_comparison_note(comparison), ""]
    for caption, path in images.items():
        parts += [f"![{caption}]({path})", ""]
    settings = report.get("settings", {})
    if settings:
        parts += ["## Settings", "", markdown_table(["setting", "value"], [[k, _text(v)] for k, v in settings.items()]), ""]
    parts += ["## Machine", "", markdown_table(["field", "value"], [[k, _text(v)] for k, v in machine.items()]), ""]
    return "\n".join(parts)


def pipeline_summary(report: dict[str, Any]) -> str:
    """One line on what the pipeline saw: frames, faces, decisions, frames per second."""
    if report["kind"] != "pipeline":
        return ""
    s = report.get("settings", {})
    e2e = next((r for r in report["rows"] if r["key"] == "end-to-end"), None)
    fps = f"{e2e['metrics']['throughput']:.1f} frames/s end to end" if e2e else "no frames measured"
    decisions = ", ".join(f"{v} {k}" for k, v in sorted(s.get("decisions", {}).items())) or "none"
    return (
        f"{s.get('measured_frames', '?')} frames measured after {s.get('warmup_frames', '?')} warm-up frames: {fps}; "
        f"{s.get('faces_detected', '?')} faces detected, {s.get('faces_judged', '?')} judged (max {s.get('max_faces', '?')} per frame), "
        f"decisions: {decisions}; model {s.get('model', '?')}, gallery {s.get('gallery', '?')}."
    )


def _comparison_note(comparison: dict[str, Any]) -> str:
    note = f"Ratios are this run / baseline `{comparison['baseline']}` (created {comparison.get('baseline_created_utc')})."
    if not comparison.get("same_machine", True):
        note += " **The baseline was measured on a different machine.**"
    if comparison.get("unmatched"):
        note += f" Rows without a baseline: {', '.join(comparison['unmatched'])}."
    return note


def _text(value: Any) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k} {v}" for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return ", ".join(map(str, value)) or "-"
    return str(value)
