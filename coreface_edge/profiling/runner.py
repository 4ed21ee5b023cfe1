"""The timing loop: warm-up, then timed calls, with optional per-call part timings.

An embedding backend returns host arrays, so one ``embed`` call is synchronous: its wall
time includes any GPU work and copies. A backend that can split that time (TensorRT:
host-to-device copy, compute, device-to-host copy, measured with CUDA events) exposes
``timings`` -- ``{"h2d_ms": .., "compute_ms": .., "d2h_ms": ..}`` for its most recent
call -- and the loop records it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from ..contract import CROP_SIZE

PROGRESS_EVERY_NS = 1_000_000_000  # report progress at most once a second (a redraw costs ~5 ms of CPU)


@dataclass
class TimedCalls:
    """Per-call wall times (ms) and, when the callee reports them, per-part times (ms)."""

    latencies_ms: np.ndarray
    parts_ms: dict[str, np.ndarray] = field(default_factory=dict)


def time_calls(
    call: Callable[[], Any],
    iterations: int,
    warmup: int = 0,
    parts: Callable[[], dict[str, float] | None] | None = None,
    advance: Callable[[int], None] | None = None,
) -> TimedCalls:
    """Run ``call`` ``warmup`` times untimed, then ``iterations`` times timed.

    ``parts`` is read after each timed call (outside the timed span); ``advance(n)`` is told
    how many calls finished, at most once a second, between timed calls.
    """
    if iterations < 1:
        raise ValueError(f"iterations must be >= 1, got {iterations}")
    for _ in range(warmup):
        call()
    clock = time.perf_counter_ns
    latencies = np.empty(iterations, dtype=np.float64)
    split: dict[str, list[float]] = {}
    reported = 0
    last = clock()
    for i in range(iterations):
        start = clock()
        call()
        end = clock()
        latencies[i] = end - start
        if parts is not None:
            for name, ms in (parts() or {}).items():
                split.setdefault(name, []).append(ms)
        if advance is not None and end - last >= PROGRESS_EVERY_NS:
            advance(i + 1 - reported)
            reported, last = i + 1, end
    if advance is not None and reported < iterations:
        advance(iterations - reported)
    return TimedCalls(latencies / 1e6, {k: np.asarray(v, dtype=np.float64) for k, v in split.items()})


def backend_parts(backend: Any) -> Callable[[], dict[str, float] | None] | None:
    """A reader of the backend's per-call split timings (``h2d_ms`` -> ``h2d``), or None without."""
    if not hasattr(backend, "timings"):
        return None

    def read() -> dict[str, float] | None:
        timings = getattr(backend, "timings", None)
        return {k.removesuffix("_ms"): float(v) for k, v in timings.items()} if timings else None

    return read


def synthetic_crops(batch: int, size: int = CROP_SIZE, seed: int = 0) -> np.ndarray:
    """A fixed batch of uint8 BGR crops: latency does not depend on what the faces look like."""
    return np.random.default_rng(seed).integers(0, 256, size=(batch, size, size, 3), dtype=np.uint8)
