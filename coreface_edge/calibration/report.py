"""The quantization / FP16 report: one JSON for tools, one Markdown for people, side by side."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from ..atomic import write_text_atomic

MAX_RANGE_ROWS = 200


def report_paths(model_out: str | Path) -> tuple[Path, Path, Path]:
    """``OUT.onnx`` -> ``OUT.report.json``, ``OUT.report.md``, ``OUT.roc.png``."""
    base = Path(model_out).with_suffix("")
    return tuple(base.with_name(base.name + suffix) for suffix in (".report.json", ".report.md", ".roc.png"))  # type: ignore[return-value]


def plot_guard_roc(model_out: str | Path, reference: np.ndarray, candidate: np.ndarray, labels: np.ndarray, name: str, far: float) -> Path:
    """ROC of the held-out faces, FP32 against the converted model, as ``OUT.roc.png``."""
    from ..evaluation.metrics import roc_curve
    from ..evaluation.report import plot_rocs
    from ..evaluation.scores import exhaustive_scores, l2_normalize

    rocs = {label: roc_curve(*exhaustive_scores(l2_normalize(emb), labels)) for label, emb in (("FP32", reference), (name, candidate))}
    path = report_paths(model_out)[2]
    plot_rocs(path, rocs, f"{Path(model_out).name}: FP32 vs {name} on held-out faces", (far,))
    return path


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return lines


def _accuracy_rows(guard: dict[str, Any], name: str) -> list[list[Any]]:
    ref, cand = guard["reference"], guard["candidate"]
    far = f"{guard['tolerance']['far']:g}"
    return [
        [f"TAR@FAR={far} (%)", f"{100 * ref['tar']:.2f}", f"{100 * cand['tar']:.2f}", f"{-guard['tar_drop_points']:+.2f}"],
        ["verification accuracy, 10-fold (%)", f"{100 * ref['accuracy']:.2f}", f"{100 * cand['accuracy']:.2f}", f"{100 * (cand['accuracy'] - ref['accuracy']):+.2f}"],
        [f"cosine to FP32: mean / 1st pct / min ({name})", "1", f"{guard['mean_cosine']:.4f} / {guard['p1_cosine']:.4f} / {guard['min_cosine']:.4f}", ""],
    ]


def render_markdown(report: dict[str, Any]) -> str:
    """Markdown view of a report dict (as written to JSON)."""
    name = report["precision_tested"].upper()
    lines = [f"# {report['kind']} report: {Path(report['model']).name}", ""]
    written = f"`{report['output']}` ({report.get('chosen_precision', report['precision_tested']).upper()})" if report.get("output") else "none written"
    lines += [f"- **Verdict:** {report['verdict']}", f"- Output: {written}"]
    for key, label in (("method", "Calibration method"), ("scheme", "Scheme")):
        if key in report:
            value = report[key]
            lines.append(f"- {label}: {value['target'] + ' on ' + value['isa'] + ' (' + value['reason'] + ')' if isinstance(value, dict) else value}")
    if "calibration" in report:
        c = report["calibration"]
        lines.append(f"- Calibration set: `{c['file']}`, {c['faces']} faces from {c['sources']} source(s)")
    h = report["holdout"]
    lines.append(f"- Held-out faces: `{h['source']}`, {h['faces']} faces, {h['identities']} identities")
    if report.get("excluded_nodes") is not None:
        excluded = report["excluded_nodes"]
        lines.append(f"- Layers kept in float: {', '.join(f'`{n}`' for n in excluded) if excluded else 'none'}")
    lines += ["", "## Accuracy", ""]
    lines += _table(["metric", "FP32", name, "change"], _accuracy_rows(report["guard"], name))
    lines += ["", f"Guard: {'passed' if report['guard']['passed'] else 'FAILED: ' + '; '.join(report['guard']['problems'])}", ""]
    if report.get("roc_plot"):
        lines += [f"![ROC FP32 vs {name}]({Path(report['roc_plot']).name})", ""]
    if report.get("speed"):
        lines += [f"## Speed (ONNX Runtime CPU, {report['threads']} threads, median ms)", ""]
        rows = [[r["batch"], r["fp32_ms"], r[f"{report['precision_tested']}_ms"], f"{r[report['precision_tested'] + '_speedup']:.2f}x"] for r in report["speed"]]
        lines += _table(["batch", "FP32", name, "speed-up"], rows)
        lines += ["", report.get("speed_note", ""), ""]
    if report.get("sensitivity"):
        lines += ["## Most sensitive tensors (lowest SQNR first)", ""]
        lines += _table(["tensor", "SQNR dB", "nodes"], [[f"`{t['tensor']}`", f"{t['sqnr_db']:.1f}", ", ".join(t["nodes"])] for t in report["sensitivity"][:15]])
        lines.append("")
    if report.get("ranges"):
        lines += ["## Calibrated activation ranges", ""]
        rows = [[f"`{r['name']}`", f"{r['low']:.4g}", f"{r['high']:.4g}"] for r in report["ranges"][:MAX_RANGE_ROWS]]
        lines += _table(["tensor", "min", "max"], rows)
        if len(report["ranges"]) > MAX_RANGE_ROWS:
            lines.append(f"... {len(report['ranges']) - MAX_RANGE_ROWS} more in the JSON report")
        lines.append("")
    return "\n".join(lines) + "\n"


def write_report(model_out: str | Path, report: dict[str, Any]) -> tuple[Path, Path]:
    """Write ``report`` as JSON and Markdown next to ``model_out``; returns both paths."""
    json_path, md_path, _ = report_paths(model_out)
    write_text_atomic(json_path, json.dumps(report, indent=2, default=str) + "\n")
    write_text_atomic(md_path, render_markdown(report))
    return json_path, md_path
