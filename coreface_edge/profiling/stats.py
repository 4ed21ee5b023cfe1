"""Latency statistics: percentiles, spread and throughput of timed samples (pure functions)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Sequence

import numpy as np

PERCENTILES = (50.0, 90.0, 99.0)


def percentile(samples: Sequence[float] | np.ndarray, q: float) -> float:
    """The ``q``-th percentile with linear interpolation between closest ranks (numpy's default).

    For sorted ``x`` of length ``n`` the rank is ``r = q/100 * (n - 1)`` and the result
    ``x[floor(r)] + (r - floor(r)) * (x[floor(r)+1] - x[floor(r)])``.
    """
    values = np.asarray(samples, dtype=np.float64)
    if values.size == 0:
        raise ValueError("percentile of an empty sample")
    if not 0.0 <= q <= 100.0:
        raise ValueError(f"percentile must be in [0, 100], got {q}")
    return float(np.percentile(values, q, method="linear"))


def throughput(items_per_call: int, latencies_ms: Sequence[float] | np.ndarray) -> float:
    """Items per second over the timed calls: ``items * calls / total seconds``."""
    values = np.asarray(latencies_ms, dtype=np.float64)
    total_s = float(values.sum()) / 1000.0
    if values.size == 0 or total_s <= 0.0:
        return 0.0
    return items_per_call * values.size / total_s


@dataclass(frozen=True)
class LatencyStats:
    """Summary of one series of timed calls, in milliseconds (``std`` is the population std)."""

    count: int
    mean_ms: float
    std_ms: float
    min_ms: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    throughput: float  # items per second (images for a model, frames for a pipeline)

    def to_dict(self) -> dict[str, float | int]:
        return asdict(self)


def summarize(latencies_ms: Sequence[float] | np.ndarray, items_per_call: int = 1) -> LatencyStats:
    """Summarise per-call latencies (ms) of calls that each process ``items_per_call`` items."""
    values = np.asarray(latencies_ms, dtype=np.float64)
    if values.size == 0:
        raise ValueError("no timed samples to summarise")
    p50, p90, p99 = (percentile(values, q) for q in PERCENTILES)
    return LatencyStats(
        count=int(values.size),
        mean_ms=float(values.mean()),
        std_ms=float(values.std()),
        min_ms=float(values.min()),
        p50_ms=p50,
        p90_ms=p90,
        p99_ms=p99,
        max_ms=float(values.max()),
        throughput=throughput(items_per_call, values),
    )
