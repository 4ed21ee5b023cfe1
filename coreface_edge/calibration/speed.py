"""FP32 vs converted-model latency with real ONNX Runtime sessions (profiling's timing loop)."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..profiling.runner import time_calls
from ..profiling.stats import summarize

BATCHES = (1, 8)


def time_embed(backend: Any, crops: np.ndarray, batch: int, iterations: int, warmup: int = 2) -> float:
    """Median milliseconds of ``backend.embed`` on ``batch`` faces (cycled from ``crops``)."""
    x = np.ascontiguousarray(np.resize(crops, (batch, *crops.shape[1:])))
    return summarize(time_calls(lambda: backend.embed(x), iterations, warmup).latencies_ms, batch).p50_ms


def speed_table(backends: dict[str, Any], crops: np.ndarray, iterations: int, batches: tuple[int, ...] = BATCHES) -> list[dict[str, Any]]:
    """One row per batch size: median ms per precision, and each one's speed-up over the first (FP32).

    The precisions are timed in turns within each batch size, so machine noise hits them alike.
    """
    rows = []
    for batch in batches:
        row: dict[str, Any] = {"batch": batch}
        for name, backend in backends.items():
            row[f"{name}_ms"] = round(time_embed(backend, crops, batch, iterations), 3)
        base = row[f"{next(iter(backends))}_ms"]
        for name in list(backends)[1:]:
            row[f"{name}_speedup"] = round(base / row[f"{name}_ms"], 3)
        rows.append(row)
    return rows
