"""How much the profiler itself adds to what it measures.

A backend-like object whose ``embed`` busy-waits ``work_ms`` of wall time is run
``iterations`` times through the bare loop ``for _ in range(n): embed(x)`` and through
:func:`profile_backend` (timing, part reads, progress bar, statistics), alternating rounds.
Three figures come out:

- ``overhead_pct``: median over rounds of profiled / bare wall time, minus one. On a shared
  machine a neighbour that preempts a call past its deadline makes this noisy (about a percent).
- ``bias_ms``: the p50 the profiler records minus the true ``work_ms``.
- ``extra_us_per_call``: the profiler's own per-call cost measured directly, with an
  ``embed`` that does nothing (CPU time, many calls), immune to that noise.

Run: ``python -m coreface_edge.profiling.overhead [WORK_MS] [ITERATIONS] [ROUNDS]``.
"""

from __future__ import annotations

import io
import statistics
import sys
import time
from typing import Any, Callable

import numpy as np
from rich.console import Console

from ..contract import InputContract
from .models import profile_backend
from .progress import advancer, progress_bar
from .runner import synthetic_crops

EMPTY_CALLS_PER_ITERATION = 50  # the empty-embed measure runs this many times more calls


class BusyWaitBackend:
    """An embedding backend whose every call spins until ``work_ms`` of wall time has passed."""

    name = "busy-wait"

    def __init__(self, work_ms: float = 1.0, embedding_size: int = 8) -> None:
        self.work_ns = int(work_ms * 1e6)
        self.contract = InputContract(embedding_size=embedding_size)
        self._out = np.zeros((1, embedding_size), np.float32)

    def embed(self, crops: np.ndarray) -> np.ndarray:
        if self.work_ns:
            end = time.perf_counter_ns() + self.work_ns
            while time.perf_counter_ns() < end:
                pass
        return self._out

    def info(self) -> dict[str, Any]:
        return {"backend": self.name, "precision": "-", "device": "cpu", "runtime": f"busy-wait {self.work_ns / 1e6:g} ms"}


def _bare_loop(backend: BusyWaitBackend, crops: np.ndarray, iterations: int) -> None:
    for _ in range(iterations):
        backend.embed(crops)


def _profiled(backend: BusyWaitBackend, iterations: int) -> dict[str, Any]:
    with progress_bar(Console(file=io.StringIO(), force_terminal=True)) as progress:
        task = progress.add_task("overhead", total=iterations)
        return profile_backend(backend, "busy-wait", [1], iterations, 0, advancer(progress, task))[0]


def _seconds(fn: Callable[[], Any], clock: Callable[[], float] = time.perf_counter) -> float:
    start = clock()
    fn()
    return clock() - start


def measure_overhead(work_ms: float = 1.0, iterations: int = 1000, rounds: int = 5) -> dict[str, float]:
    """The profiler's overhead on a ``work_ms`` workload (see the module docstring)."""
    backend, empty = BusyWaitBackend(work_ms), BusyWaitBackend(0.0)
    crops = synthetic_crops(1)
    bare, profiled, p50 = [], [], []
    for _ in range(rounds):
        bare.append(_seconds(lambda: _bare_loop(backend, crops, iterations)))
        start = time.perf_counter()
        row = _profiled(backend, iterations)
        profiled.append(time.perf_counter() - start)
        p50.append(row["metrics"]["p50_ms"])
    n_empty = EMPTY_CALLS_PER_ITERATION * iterations
    extra_s = statistics.median(
        _seconds(lambda: _profiled(empty, n_empty), time.process_time) - _seconds(lambda: _bare_loop(empty, crops, n_empty), time.process_time)
        for _ in range(rounds)
    )
    return {
        "work_ms": work_ms,
        "iterations": iterations,
        "rounds": rounds,
        "bare_ms_per_call": statistics.median(bare) * 1e3 / iterations,
        "profiled_ms_per_call": statistics.median(profiled) * 1e3 / iterations,
        "overhead_pct": (statistics.median(p / b for p, b in zip(profiled, bare)) - 1.0) * 100.0,
        "recorded_p50_ms": statistics.median(p50),
        "bias_ms": statistics.median(p50) - work_ms,
        "extra_us_per_call": extra_s * 1e6 / n_empty,
        "extra_pct_of_work": extra_s / n_empty / (work_ms / 1e3) * 100.0 if work_ms else float("nan"),
    }


def main(argv: list[str]) -> None:
    work_ms = float(argv[0]) if argv else 1.0
    iterations = int(argv[1]) if len(argv) > 1 else 1000
    rounds = int(argv[2]) if len(argv) > 2 else 5
    r = measure_overhead(work_ms, iterations, rounds)
    Console().print(
        f"busy-wait {work_ms:g} ms x {iterations} calls, median of {rounds} alternating rounds:\n"
        f"  wall time: bare loop {r['bare_ms_per_call']:.4f} ms/call, profiled {r['profiled_ms_per_call']:.4f} ms/call, "
        f"overhead {r['overhead_pct']:+.3f} %\n"
        f"  recorded p50 {r['recorded_p50_ms']:.4f} ms (bias {r['bias_ms'] * 1e3:+.2f} us)\n"
        f"  direct: the profiler's own cost per call (empty embed) {r['extra_us_per_call']:.3f} us "
        f"= {r['extra_pct_of_work']:.4f} % of {work_ms:g} ms"
    )


if __name__ == "__main__":
    main(sys.argv[1:])
