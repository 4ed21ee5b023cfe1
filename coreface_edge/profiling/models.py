"""Profile model artefacts (any backend) over batch sizes: one report row per artefact and batch."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Sequence

from ..runtime import open_backend
from .memory import gpu_memory_mb, peak_rss_mb, reset_peak_rss
from .report import latency_row
from .runner import backend_parts, synthetic_crops, time_calls


def profile_backend(
    backend: Any,
    artefact: str,
    batches: Sequence[int],
    iterations: int,
    warmup: int,
    advance: Callable[[int], None] | None = None,
    on_batch: Callable[[int], None] | None = None,
) -> list[dict[str, Any]]:
    """Time ``backend.embed`` on a fixed batch of each size; rows keyed ``artefact|backend|bN``."""
    info = backend.info()
    rows = []
    for batch in batches:
        if on_batch is not None:
            on_batch(batch)
        crops = synthetic_crops(batch, backend.contract.size)
        timed = time_calls(lambda: backend.embed(crops), iterations, warmup, backend_parts(backend), advance)
        labels = {
            "artefact": artefact,
            "backend": info.get("backend", getattr(backend, "name", "?")),
            "precision": info.get("precision", "?"),
            "batch": batch,
            "device": str(info.get("device", "")),
            "runtime": str(info.get("runtime", "")),
        }
        key = f"{artefact}|{labels['backend']}|b{batch}"
        rows.append(latency_row(key, labels, timed, batch, peak_rss_mb=peak_rss_mb(), gpu_mem_mb=gpu_memory_mb()))
    return rows


def profile_artefacts(
    paths: Sequence[Path],
    backend: str | None,
    batches: Sequence[int],
    iterations: int,
    warmup: int,
    advance: Callable[[int], None] | None = None,
    describe: Callable[[str], None] | None = None,
) -> list[dict[str, Any]]:
    """Open each artefact in turn and profile it; its peak memory window starts before it loads."""
    rows: list[dict[str, Any]] = []
    for path in paths:
        reset_peak_rss()
        model = open_backend(path, backend)
        on_batch = (lambda b, name=path.name: describe(f"{name} batch {b}")) if describe else None
        rows += profile_backend(model, path.name, batches, iterations, warmup, advance, on_batch)
        del model
    return rows
