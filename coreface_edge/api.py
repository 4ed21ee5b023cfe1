"""The Python API for integrators: embed a photo, verify two photos, enroll people, run the gate
on frames from your own capture code. Thin facades over the toolkit (the CLI runs the same code);
no torch needed. Guide with examples: docs/api.md.

    from coreface_edge import Embedder, Gallery, Gate, verify
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from .errors import CorefaceError
from .evaluation.scores import l2_normalize
from .face.detector import YuNetDetector
from .face.frontend import FULL_RESOLUTION, Collected, FaceFrontEnd, from_images
from .face.quality import AcceptMinimum
from .gate.actions import ActionRunner
from .gate.audit import AuditLog, Event
from .gate.gallery import Gallery as GalleryFile
from .gate.gallery import GalleryWatcher, model_mismatch
from .gate.loop import BadgeReader, GateLoop
from .gate.matcher import Matcher
from .gate.sources import Frame
from .gate.threshold import open_model, reject_margin_of, resolve_threshold
from .gate.voting import Decider, VotingPolicy
from .images import read_image
from .pretrained import DEFAULT_MODEL, shipped_onnx_path
from .runtime.base import embed_in_batches
from .threshold_file import load_threshold

SHIPPED_MODEL = DEFAULT_MODEL


class Embedder:
    """A face-embedding model behind the enrollment front end (YuNet detection on the full photo,
    5-point alignment, quality checks).

    ``model``: an ``.onnx`` (or a TensorRT ``.engine``, or a ``.pt`` where torch is installed);
    default: the shipped model, packaged with its operating threshold. ``threshold``: the score
    from which two faces are the same person, as stored beside the model (None if none is).
    """

    def __init__(self, model: str | Path | None = None, *, backend: str | None = None, threads: int | None = None) -> None:
        self.model = Path(model) if model is not None else shipped_onnx_path(SHIPPED_MODEL)
        self.backend, self.fingerprint = open_model(self.model, backend, **({} if threads is None else {"threads": threads}))
        stored = load_threshold(self.model, self.fingerprint)
        self.threshold: float | None = stored.threshold if stored is not None else None
        self.front = FaceFrontEnd(YuNetDetector(), self.backend.embed, detect_side=FULL_RESOLUTION)

    def face(self, photo: str | Path | np.ndarray) -> np.ndarray:
        """The aligned crop ``(112, 112, 3)`` of the one face in ``photo`` (a file, or a BGR array);
        ``CorefaceError`` when it is unreadable, has no face or several, or a poor one."""
        name = "image" if isinstance(photo, np.ndarray) else str(photo)
        got = Collected()
        problems = got.add(self.front, photo if isinstance(photo, np.ndarray) else read_image(photo), name)
        if problems:
            raise CorefaceError(f"{name}: no usable face ({', '.join(problems)})")
        return got.crops[0]

    def embed(self, photo: str | Path | np.ndarray) -> np.ndarray:
        """The unit-length embedding ``(D,)`` float32 of the one face in ``photo``."""
        return l2_normalize(self.backend.embed(self.face(photo)[None]))[0]


@dataclass(frozen=True)
class Verification:
    """1:1 result: cosine ``score`` of the two faces and the ``threshold`` it was judged at."""

    score: float
    threshold: float

    @property
    def same(self) -> bool:
        return self.score >= self.threshold


def verify(a: str | Path | np.ndarray, b: str | Path | np.ndarray, *, embedder: Embedder | None = None, threshold: float | None = None) -> Verification:
    """Whether photos ``a`` and ``b`` show the same person, at ``threshold`` (default: the model's stored one)."""
    embedder = embedder or Embedder()
    limit = threshold if threshold is not None else embedder.threshold
    if limit is None:
        raise CorefaceError(f"{embedder.model}: no operating threshold stored beside it; pass threshold= or run 'coreface-edge threshold --store'")
    return Verification(float(embedder.embed(a) @ embedder.embed(b)), limit)


@dataclass(frozen=True)
class Enrollment:
    """What ``Gallery.enroll`` stored: the person's id, the faces kept, the photos skipped and why."""

    person_id: int
    faces: int
    skipped: list[tuple[str, str]]


class Gallery:
    """The enrolled people: one SQLite file (created if missing) bound to the embedder's model,
    the same file ``coreface-edge enroll``, ``gallery`` and ``gate`` use."""

    def __init__(self, path: str | Path, embedder: Embedder | None = None) -> None:
        self.embedder = embedder or Embedder()
        self.file = GalleryFile(path, create=True)

    def __enter__(self) -> "Gallery":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.file.close()

    def enroll(self, name: str, photos: Iterable[str | Path], *, badge: str | None = None) -> Enrollment:
        """Enroll ``name`` from photo files (each gives its face if it is the only one and good
        enough); refused, with nothing stored, for a name or badge already enrolled, a read-only
        file, another model's gallery, or no usable face."""
        file, embedder = self.file, self.embedder
        file.check_new_person(name, badge)
        file.check_writable()
        if file.model is not None and file.model != embedder.fingerprint:
            raise model_mismatch(file.path, file.model, embedder.fingerprint)
        got = from_images(embedder.front, [Path(p) for p in photos], lambda: None)
        if not got.crops:
            raise CorefaceError(f"{name}: no usable face ({'; '.join(f'{p}: {why}' for p, why in got.skipped) or 'no photos'}); nothing enrolled")
        embeddings = embed_in_batches(embedder.backend.embed, np.stack(got.crops))
        person_id = file.add_person(name, embeddings, embedder.fingerprint, badge, got.qualities, got.sources)
        return Enrollment(person_id, len(got.crops), got.skipped)

    def remove(self, person: str) -> None:
        """Delete a person (id, name or badge) and everything stored about them."""
        self.file.remove(person)

    def people(self) -> list[str]:
        """Everyone enrolled, by name."""
        return [p.name for p in self.file.persons()]


@dataclass(frozen=True)
class Decision:
    """One gate decision, as logged: ``decision`` is accept, reject or unknown."""

    id: int
    decision: str
    person: str | None
    badge: str | None
    score: float
    frame: str
    time: float
    votes: int
    track: int

    @classmethod
    def of(cls, event_id: int, event: Event) -> "Decision":
        return cls(event_id, event.decision, event.person, event.badge, event.score, event.frame, event.time, event.votes, event.track)


class Gate:
    """The gate's decision loop (tracking, voting, cooldowns, accept minimum, audit log) on frames
    from your own capture code: call :meth:`process` with each BGR frame.

    The defaults are the ``coreface-edge gate`` command's: the model's stored threshold, 3 of 5
    frames, 5 s cooldown, the largest face. ``on_decision`` is called with each decision once the
    frame is done (after it is written to ``audit``, when given; an exception it raises reaches
    the caller of :meth:`process`); ``on_event`` with every other line the CLI prints, as a dict
    (``not_judged``, ``bad_frame``, ``gallery_reloaded``). Changes to the gallery file (people
    enrolled or removed meanwhile) are picked up while it runs.
    """

    def __init__(
        self,
        gallery: str | Path,
        embedder: Embedder | None = None,
        *,
        on_decision: Callable[[Decision], None] | None = None,
        on_event: Callable[[dict], None] | None = None,
        threshold: float | None = None,
        vote_k: int = 3,
        vote_n: int = 5,
        cooldown: float = 5.0,
        max_faces: int = 1,
        accept_minimum: AcceptMinimum = AcceptMinimum(),
        audit: str | Path | None = None,
        camera: str = "api",
    ) -> None:
        embedder = embedder or Embedder()
        self.on_decision, self.on_event = on_decision, on_event
        self._taken: list[Decision] = []
        self._events: list[dict] = []
        accept_at, origin, stored = resolve_threshold(embedder.model, embedder.fingerprint, threshold)
        policy = VotingPolicy(accept_at, vote_k, vote_n, cooldown, reject_margin_of(stored or load_threshold(embedder.model, embedder.fingerprint)))
        self._watcher = GalleryWatcher(gallery)  # opened once the settings are known to be good
        matrix = self._watcher.load(embedder.fingerprint)
        self._audit = AuditLog(audit) if audit is not None else None
        if self._audit is not None:
            self._audit.start_run(camera, embedder.fingerprint, accept_at, {"source": "python api", "threshold_from": origin, "vote": [vote_k, vote_n], "cooldown_s": cooldown})  # fmt: skip
        self._loop = GateLoop(
            front=FaceFrontEnd(YuNetDetector(), embedder.backend.embed, max_faces=max_faces, accept=accept_minimum),
            matcher=Matcher(matrix),
            decider=Decider(policy),
            audit=self._audit,
            actions=ActionRunner([], lambda _message: None),
            badges=BadgeReader(None, None, lambda _message: None),
            camera=camera,
            emit=self._emitted,
            gallery=self._watcher,
            on_decision=lambda event_id, event: self._taken.append(Decision.of(event_id, event)),
        )
        self.threshold = accept_at

    def __enter__(self) -> "Gate":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _emitted(self, line: str) -> None:
        """A line the CLI would print: events are kept for ``on_event`` (decisions come as :class:`Decision`)."""
        data = json.loads(line)
        if "event" in data:
            self._events.append(data)

    def process(self, frame: np.ndarray, name: str | None = None) -> list[Decision]:
        """Judge one BGR frame ``(H, W, 3)``; returns the decisions it completed (often none: a
        decision needs ``vote_k`` frames). A frame that cannot be processed is counted as bad."""
        self._taken, self._events = [], []
        index = self._loop.stats.frames
        self._loop.feed(Frame(index, time.time(), frame, name or str(index)))  # callbacks after: their errors are the caller's
        for event in self._events if self.on_event is not None else ():
            self.on_event(event)
        for decision in self._taken if self.on_decision is not None else ():
            self.on_decision(decision)
        return self._taken

    @property
    def summary(self) -> dict:
        """Frames, faces, decisions, bad frames and per-stage latency so far (as the CLI's summary)."""
        return self._loop.stats.summary()

    def close(self) -> None:
        """Close the run in the audit log and release the files."""
        self._loop.finish()
        if self._audit is not None:
            self._audit.close()
        self._watcher.close()
