"""The report document shared by ``profile``, ``profile --pipeline`` and ``benchmark``.

A report is plain JSON: ``kind``, ``machine``, ``settings`` and ``rows``. Every row has a
``key`` (what ``--compare`` matches on), ``labels`` (text), ``metrics`` (numbers, None when
not measured), optional ``parts`` (``{part: metrics}``: TensorRT copy/compute split) and
optional ``samples_ms`` (the raw timings the histograms are drawn from).
"""

from __future__ import annotations

import datetime as _dt
import json
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import CorefaceError
from .machine import describe_machine
from .runner import TimedCalls
from .stats import summarize

SCHEMA = "coreface-edge.report/1"
KINDS = ("profile", "pipeline", "benchmark")


@dataclass(frozen=True)
class Column:
    """One table column: a label or metric of a row, how to print it, and which way is better."""

    header: str
    key: str
    fmt: str = "{}"
    better: str = ""  # "lower" or "higher": which way a ratio against a baseline is good
    ratio: bool = False  # ``--compare`` adds a "vs base" column for it
    spread: str = ""  # metric printed after the value as ``±spread``

    def value(self, row: dict[str, Any]) -> Any:
        metrics = row.get("metrics", {})
        return metrics[self.key] if self.key in metrics else row.get("labels", {}).get(self.key)

    def cell(self, row: dict[str, Any]) -> str:
        value = self.value(row)
        if value is None:
            return "-"
        spread = row.get("metrics", {}).get(self.spread) if self.spread else None
        return self.fmt.format(value) + ("" if spread is None else "±" + self.fmt.format(spread))


_LATENCY = (
    Column("p50 ms", "p50_ms", "{:.3f}", "lower", ratio=True),
    Column("p90 ms", "p90_ms", "{:.3f}", "lower"),
    Column("p99 ms", "p99_ms", "{:.3f}", "lower", ratio=True),
    Column("max ms", "max_ms", "{:.3f}", "lower"),
    Column("mean±std ms", "mean_ms", "{:.3f}", "lower", spread="std_ms"),
)
COLUMNS: dict[str, tuple[Column, ...]] = {
    "profile": (
        Column("artefact", "artefact"),
        Column("backend", "backend"),
        Column("precision", "precision"),
        Column("batch", "batch"),
        *_LATENCY,
        Column("img/s", "throughput", "{:.1f}", "higher", ratio=True),
        Column("peak RAM MiB", "peak_rss_mb", "{:.0f}", "lower"),
        Column("GPU MiB", "gpu_mem_mb", "{:.0f}", "lower"),
    ),
    "pipeline": (
        Column("stage", "stage"),
        Column("calls", "count"),
        *_LATENCY,
        Column("share %", "share_pct", "{:.1f}"),
        Column("per s", "throughput", "{:.1f}", "higher", ratio=True),
    ),
    "benchmark": (
        Column("format", "format"),
        Column("status", "status"),
        Column("size MB", "size_mb", "{:.2f}"),
        Column("FF acc %", "ff_accuracy_pct", "{:.2f}", "higher", ratio=True),
        Column("FP acc %", "fp_accuracy_pct", "{:.2f}", "higher", ratio=True),
        Column("FF TAR@1e-3 %", "ff_tar_far_1e3_pct", "{:.2f}", "higher"),
        Column("FP TAR@1e-3 %", "fp_tar_far_1e3_pct", "{:.2f}", "higher"),
        Column("faces acc %", "faces_accuracy_pct", "{:.2f}", "higher", ratio=True),
        Column("faces TAR@1e-3 %", "faces_tar_far_1e3_pct", "{:.2f}", "higher"),
        Column("p50 ms b1", "p50_ms_b1", "{:.2f}", "lower", ratio=True),
        Column("img/s b32", "throughput_b32", "{:.1f}", "higher", ratio=True),
        Column("reason", "reason"),
    ),
}


def latency_row(key: str, labels: dict[str, Any], timed: TimedCalls, items_per_call: int, **extra: float | None) -> dict[str, Any]:
    """A row from timed calls: their statistics, extra metrics, part statistics and raw samples."""
    row: dict[str, Any] = {
        "key": key,
        "labels": labels,
        "metrics": {**summarize(timed.latencies_ms, items_per_call).to_dict(), **extra},
        "samples_ms": [round(float(x), 4) for x in timed.latencies_ms],
    }
    if timed.parts_ms:
        row["parts"] = {name: _part_metrics(ms) for name, ms in timed.parts_ms.items() if len(ms)}
    return row


def _part_metrics(latencies_ms: Any) -> dict[str, float | int]:
    """Statistics of one part of a call (a throughput of a part alone would mislead)."""
    metrics = summarize(latencies_ms).to_dict()
    del metrics["throughput"]
    return metrics


def new_report(kind: str, rows: list[dict[str, Any]], settings: dict[str, Any], machine: dict[str, Any] | None = None) -> dict[str, Any]:
    """A report document stamped with the time, the command line and the machine description."""
    if kind not in KINDS:
        raise ValueError(f"unknown report kind {kind!r}")
    return {
        "schema": SCHEMA,
        "kind": kind,
        "created_utc": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "command": "coreface-edge " + shlex.join(sys.argv[1:]),
        "machine": machine if machine is not None else describe_machine(),
        "settings": settings,
        "rows": rows,
    }


def load_report(path: str | Path) -> dict[str, Any]:
    """Read a saved report; a missing, unreadable or foreign file is a one-line error."""
    path = Path(path)
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CorefaceError(f"{path}: no such report file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise CorefaceError(f"{path}: cannot read report ({exc})") from None
    except json.JSONDecodeError as exc:
        raise CorefaceError(f"{path}: not a JSON report ({exc})") from None
    if not isinstance(report, dict) or report.get("schema") != SCHEMA:
        raise CorefaceError(f"{path}: not a coreface-edge report (schema {SCHEMA!r} expected)")
    if report.get("kind") not in KINDS or not isinstance(report.get("rows"), list):
        raise CorefaceError(f"{path}: report has no valid kind/rows")
    return report
