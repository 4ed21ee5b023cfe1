"""Ratios of a report against a saved baseline report, row by row (matched on ``key``)."""

from __future__ import annotations

from typing import Any

from ..errors import CorefaceError


def numeric_metrics(row: dict[str, Any]) -> dict[str, float]:
    """A row's numbers, parts flattened as ``part.metric`` (e.g. ``h2d.p50_ms``)."""
    flat = {k: float(v) for k, v in row.get("metrics", {}).items() if _is_number(v)}
    for part, metrics in row.get("parts", {}).items():
        flat.update({f"{part}.{k}": float(v) for k, v in metrics.items() if _is_number(v)})
    return flat


def metric_ratios(row: dict[str, Any], base: dict[str, Any]) -> dict[str, float]:
    """``new / baseline`` for every metric both rows have (a zero baseline has no ratio)."""
    new, old = numeric_metrics(row), numeric_metrics(base)
    return {k: new[k] / old[k] for k in new if k in old and old[k] != 0.0}


def compare_reports(report: dict[str, Any], baseline: dict[str, Any], baseline_name: str = "baseline") -> dict[str, Any]:
    """Attach ``vs_baseline`` ratios to each row of ``report`` whose key the baseline has.

    Returns (and stores under ``report["comparison"]``) what matched and whether the two
    reports come from different machines, which makes their ratios a cross-machine figure.
    """
    if baseline.get("kind") != report.get("kind"):
        raise CorefaceError(f"{baseline_name}: is a {baseline.get('kind')} report, cannot compare with a {report.get('kind')} report")
    base_rows = {row["key"]: row for row in baseline["rows"] if "key" in row}
    matched, unmatched = [], []
    for row in report["rows"]:
        base = base_rows.get(row["key"])
        if base is None:
            unmatched.append(row["key"])
            continue
        row["vs_baseline"] = metric_ratios(row, base)
        matched.append(row["key"])
    summary = {
        "baseline": baseline_name,
        "baseline_created_utc": baseline.get("created_utc"),
        "matched": matched,
        "unmatched": unmatched,
        "same_machine": _machine_identity(report.get("machine", {})) == _machine_identity(baseline.get("machine", {})),
    }
    report["comparison"] = summary
    return summary


def _machine_identity(machine: dict[str, Any]) -> tuple[Any, ...]:
    return (machine.get("cpu"), machine.get("cpu_cores_usable"), tuple(machine.get("gpus", [])), machine.get("jetson_power_mode"))


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
