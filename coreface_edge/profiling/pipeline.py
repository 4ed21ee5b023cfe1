"""Per-stage latency of the real gate loop on a real source: capture, detect, align, embed,
match, decide, log, and the end-to-end frame time.

The gate's own :class:`~coreface_edge.gate.loop.GateLoop` runs unchanged; the profiler hands
it timed wrappers of its parts (frame iterator, matcher, decider, audit log, output line)
and reads detect / align / embed from the per-frame timings the front-end already keeps.
Each frame's time in a stage is the sum of that stage's calls during the frame (0 when the
stage had nothing to do, e.g. no face); "other" is what the frame took beyond the stages.
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import numpy as np

from .report import latency_row
from .runner import TimedCalls

STAGES = ("capture", "detect", "align", "liveness", "embed", "match", "decide", "log")
OPTIONAL_STAGES = ("liveness",)  # rows only when the stage ran
FRONT_END_STAGES = ("detect", "align", "embed")  # timed by the gate's FaceFrontEnd itself
END_TO_END = "end-to-end"
OTHER = "other"


class StageClock:
    """Milliseconds spent per stage during the current frame; a stage timed inside another
    (liveness inside the decider's update) is not counted twice: the outer stage gets the rest."""

    def __init__(self) -> None:
        self.current: dict[str, float] = defaultdict(float)
        self._inner: list[float] = []  # per open timed call: ms of the timed calls nested in it

    def add(self, stage: str, ms: float) -> None:
        self.current[stage] += ms

    def timed(self, stage: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        """``fn`` with its wall time added to ``stage``."""

        def call(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            self._inner.append(0.0)
            try:
                return fn(*args, **kwargs)
            finally:
                ms = (time.perf_counter() - start) * 1e3
                self.add(stage, ms - self._inner.pop())
                if self._inner:
                    self._inner[-1] += ms

        return call

    def take(self) -> dict[str, float]:
        """This frame's stage times; starts the next frame."""
        out = dict(self.current)
        self.current.clear()
        return out


class Timed:
    """A stand-in for ``target`` whose ``methods`` ({name: stage}) are timed; the rest passes through."""

    def __init__(self, target: Any, clock: StageClock, methods: dict[str, str]) -> None:
        self._target = target
        for name, stage in methods.items():
            setattr(self, name, clock.timed(stage, getattr(target, name)))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._target, name)


class TimedFrontEnd(Timed):
    """The face front-end, with its own detect / align / embed timings copied to the clock."""

    def __init__(self, front: Any, clock: StageClock) -> None:
        super().__init__(front, clock, {})
        self._clock = clock

    def judge(self, image: np.ndarray) -> Any:
        faces = self._target.judge(image)
        for stage in FRONT_END_STAGES:
            self._clock.add(stage, faces.timings.get(stage, 0.0))
        return faces


class FrameTimer:
    """Wraps the source: times each read (``capture``) and closes a frame when the next is read.

    A frame lasts from the start of its read to the start of the next read, so its time is
    everything the loop did with it. The frame still open when the loop stops at
    ``--max-frames`` has no end and is not counted; the first ``warmup`` frames are dropped.
    """

    def __init__(self, clock: StageClock, warmup: int = 0, advance: Callable[[int], None] | None = None) -> None:
        self.clock, self.warmup, self.advance = clock, warmup, advance
        self.frames: list[dict[str, float]] = []
        self.totals_ms: list[float] = []
        self.closed = 0

    def _close(self, total_ms: float) -> None:
        stages = self.clock.take()
        self.closed += 1
        if self.closed > self.warmup:
            self.frames.append(stages)
            self.totals_ms.append(total_ms)
        if self.advance is not None:
            self.advance(1)

    def wrap(self, frames: Iterable[Any]) -> Iterator[Any]:
        iterator = iter(frames)
        self.clock.take()
        opened: float | None = None
        while True:
            start = time.perf_counter()
            if opened is not None:
                self._close((start - opened) * 1e3)
            frame = next(iterator, None)
            if frame is None:
                return
            self.clock.add("capture", (time.perf_counter() - start) * 1e3)
            opened = start
            yield frame


def stage_rows(frames: list[dict[str, float]], totals_ms: list[float]) -> list[dict[str, Any]]:
    """Report rows: one per stage (per-frame times), "other", and the end-to-end frame time.

    Only the end-to-end row has a throughput (frames per second); ``share_pct`` is each
    row's share of the mean frame time.
    """
    if not frames:
        return []
    stages = [s for s in STAGES if s not in OPTIONAL_STAGES or any(s in f for f in frames)]
    per_stage = {s: np.array([f.get(s, 0.0) for f in frames]) for s in stages}
    total = np.asarray(totals_ms, dtype=np.float64)
    per_stage[OTHER] = np.maximum(total - sum(per_stage.values()), 0.0)
    mean_total = float(total.mean())
    rows = []
    for stage, ms in per_stage.items():
        row = latency_row(stage, {"stage": stage}, TimedCalls(ms), 1, share_pct=float(ms.mean()) / mean_total * 100.0 if mean_total else None)
        row["metrics"]["throughput"] = None
        rows.append(row)
    rows.append(latency_row(END_TO_END, {"stage": END_TO_END}, TimedCalls(total), 1, share_pct=100.0))
    return rows


def synthetic_gallery(people: int, dim: int, model: str, seed: int = 0) -> Any:
    """A gallery of ``people`` random unit embeddings: realistic matching cost, no real identities."""
    from ..gate.gallery import GalleryMatrix

    rng = np.random.default_rng(seed)
    vectors = rng.standard_normal((people, dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    names = tuple(f"synthetic-{i:04d}" for i in range(people))
    return GalleryMatrix(vectors, np.arange(people, dtype=np.int64), tuple(range(1, people + 1)), names, (None,) * people, model)


@dataclass(frozen=True)
class PipelineOptions:
    gallery: Path | None = None
    gallery_size: int = 100
    threshold: float | None = None
    max_faces: int = 1
    detect_side: int | None = None  # None: as the gate picks it (auto_detect_side)
    max_frames: int | None = None
    warmup: int = 5
    backend: str | None = None
    audit: Path = Path("pipeline_audit.db")
    liveness: str = "off"  # as gate --liveness: on, off, or MODEL[,MODEL] (the CLI passes the gate's default)


def profile_pipeline(
    source: str, model: Path, options: PipelineOptions, advance: Callable[[int], None] | None = None
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Run the gate loop on ``source`` and return ``(rows, summary)`` for a pipeline report."""
    from ..face.detector import YuNetDetector
    from ..face.frontend import FaceFrontEnd
    from ..face.quality import AcceptMinimum
    from ..gate.audit import AuditLog
    from ..gate.gallery import Gallery
    from ..gate.loop import BadgeReader, GateLoop
    from ..gate.matcher import Matcher
    from ..gate.sources import open_source
    from ..gate.threshold import open_model, reject_margin_of
    from ..gate.voting import Decider, VotingPolicy
    from ..liveness.runtime import liveness_option
    from ..threshold_file import load_threshold

    embedder, fingerprint = open_model(model, options.backend)
    if options.gallery is not None:
        with Gallery(options.gallery) as store:
            matrix = store.matrix(fingerprint)
        gallery_text = f"{options.gallery} ({len(matrix)} people)"
    else:
        matrix = synthetic_gallery(options.gallery_size, embedder.contract.embedding_size, fingerprint)
        gallery_text = f"synthetic: {options.gallery_size} random unit embeddings (timing only)"
    stored = load_threshold(model, fingerprint)
    threshold = options.threshold if options.threshold is not None else (stored.threshold if stored else 0.5)
    checker = liveness_option(options.liveness)
    clock = StageClock()
    timer = FrameTimer(clock, options.warmup, advance)
    front = FaceFrontEnd(YuNetDetector(), embedder.embed, max_faces=options.max_faces, detect_side=options.detect_side, accept=AcceptMinimum())  # as the gate judges
    discard = lambda line: None  # noqa: E731 - decisions are formatted as the gate does, not printed
    with AuditLog(options.audit) as audit:
        loop = GateLoop(
            front=TimedFrontEnd(front, clock),
            matcher=Timed(Matcher(matrix), clock, {"match": "match"}),
            decider=Timed(Decider(VotingPolicy(threshold, reject_margin=reject_margin_of(stored), live_threshold=checker and checker.threshold)), clock, {"update": "decide"}),
            audit=Timed(audit, clock, {"write": "log"}),
            actions=_no_actions(),
            badges=BadgeReader(None, None, lambda _msg: None),
            camera=source,
            emit=clock.timed("log", discard),
            liveness=checker and Timed(checker, clock, {"score": "liveness"}),
        )
        opened = open_source(source, on_event=loop.event)
        kind = opened.kind
        audit.start_run(source, fingerprint, threshold, {"profile": True, "source": source, "kind": kind, "model": str(model)})
        stats = loop.run(timer.wrap(opened.frames), options.max_frames)
    summary = {
        "source": source,
        "source_kind": kind,
        "model": str(model),
        "backend": embedder.info(),
        "gallery": gallery_text,
        "threshold": threshold,
        "max_faces": options.max_faces,
        "detect_side": options.detect_side or "auto (as the gate)",
        "liveness": checker.info() if checker else "off",
        "frames": stats.frames,
        "warmup_frames": min(options.warmup, timer.closed),
        "measured_frames": len(timer.frames),
        "faces_detected": stats.faces_detected,
        "faces_judged": stats.faces_judged,
        "decisions": dict(stats.decisions),
        "bad_frames": stats.bad_frames,
        "audit_log": str(options.audit),
    }
    return stage_rows(timer.frames, timer.totals_ms), summary


def _no_actions() -> Any:
    from ..gate.actions import ActionRunner

    return ActionRunner([], lambda _msg: None)
