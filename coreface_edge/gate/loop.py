"""The live gate: frames -> faces -> matches -> votes -> decisions -> audit log, actions, stdout.

Runs until the source ends, ``max_frames`` is reached, or SIGINT/SIGTERM arrives (then it
finishes the frame in flight, commits, and closes the log). A frame that fails to process
is counted and skipped; each decision is committed before it is announced or acted on.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator

import cv2
import numpy as np

from ..errors import CorefaceError
from ..face.frontend import LIVENESS, STAGES, FaceFrontEnd, Faces
from ..profiling.stats import summarize
from .actions import ActionRunner
from .audit import AuditLog, Event
from .gallery import GalleryWatcher
from .matcher import Matcher
from .sources import Frame
from .voting import ACCEPT, NO_MATCH, REJECT, SPOOF, UNKNOWN, Decider, Decision, Observation

LATENCY_WINDOW = 10_000  # per-stage samples kept for the profile (bounded: memory stays flat)
CHECKPOINT_FRAMES = 500  # the run's frame count is committed this often
RELOAD_EVERY_S = 2.0  # how often the gate looks for changes to its gallery file
PREVIEW_WINDOW = "coreface-edge gate"


class BadgeReader:
    """The claimed badge for 1:1 matching: a fixed ``--badge``, or a reader command's output.

    The command is run (with a timeout) only when a face is in view and no claim is cached;
    its first output line is the badge, kept for ``ttl_s`` seconds; empty output means none.
    """

    def __init__(self, badge: str | None, command: str | None, on_error: Callable[[str], None], ttl_s: float = 10.0, timeout_s: float = 5.0) -> None:
        self.badge, self.command, self.on_error = badge, command, on_error
        self.ttl_s, self.timeout_s = ttl_s, timeout_s
        self._cached: tuple[float, str | None] = (float("-inf"), None)

    def claim(self, now: float) -> str | None:
        if self.badge or not self.command:
            return self.badge
        if now - self._cached[0] < self.ttl_s:
            return self._cached[1]
        try:
            proc = subprocess.run(self.command, shell=True, capture_output=True, text=True, timeout=self.timeout_s)
            lines = proc.stdout.strip().splitlines() if proc.returncode == 0 else []
            badge = lines[0].strip() if lines else None
            if proc.returncode != 0:
                self.on_error(f"--badge-command exited with status {proc.returncode}")
        except subprocess.TimeoutExpired:
            self.on_error(f"--badge-command gave no badge within {self.timeout_s:g} s")
            badge = None
        self._cached = (now, badge)
        return badge


@dataclass
class GateStats:
    """Counters and bounded latency windows of one gate run."""

    frames: int = 0
    bad_frames: int = 0
    faces_detected: int = 0
    faces_judged: int = 0
    faces_not_examined: int = 0  # detected beyond --max-faces (smaller / less central)
    faces_low_quality: int = 0
    faces_below_accept: int = 0  # passed the quality gate, but smaller or more turned than the accept minimum
    decisions: Counter = field(default_factory=Counter)
    latency: dict[str, deque] = field(default_factory=lambda: {s: deque(maxlen=LATENCY_WINDOW) for s in (*STAGES, LIVENESS, "read", "total")})
    started: float = field(default_factory=time.perf_counter)
    cpu_started: float = field(default_factory=time.process_time)
    stopped_by: str = "end of source"

    @property
    def elapsed_s(self) -> float:
        return time.perf_counter() - self.started

    @property
    def cpu_ms_per_frame(self) -> float:
        """Process CPU time (all threads) per frame: less sensitive than FPS to a busy machine."""
        return (time.process_time() - self.cpu_started) * 1e3 / max(self.frames, 1)

    def summary(self) -> dict:
        """JSON-ready: counts, FPS, CPU per frame, and p50/p90/p99 per stage (ms)."""
        elapsed = self.elapsed_s
        latency = {}
        for stage, samples in self.latency.items():
            if samples:
                s = summarize(list(samples))
                latency[stage] = {"p50": round(s.p50_ms, 2), "p90": round(s.p90_ms, 2), "p99": round(s.p99_ms, 2), "max": round(s.max_ms, 2)}
        return {
            "frames": self.frames,
            "fps": round(self.frames / elapsed, 2) if elapsed > 0 else None,
            "cpu_ms_per_frame": round(self.cpu_ms_per_frame, 2),
            "faces_detected": self.faces_detected,
            "faces_judged": self.faces_judged,
            "faces_not_examined": self.faces_not_examined,
            "faces_low_quality": self.faces_low_quality,
            "faces_below_accept": self.faces_below_accept,
            "decisions": {k: self.decisions[k] for k in (ACCEPT, REJECT, UNKNOWN, SPOOF) if k != SPOOF or self.latency[LIVENESS]},  # spoof: liveness ran
            "bad_frames": self.bad_frames,
            "stopped_by": self.stopped_by,
            "latency_ms": latency,
        }


class Stopped(Exception):
    """Raised by a signal that arrives while the loop waits for a frame."""


class StopFlag:
    """Set by SIGINT/SIGTERM; the loop checks it between frames.

    During a frame the signal only sets ``reason`` (the frame in flight is finished and
    committed); while the loop waits for a frame (``waiting``: a dropped camera's back-off can
    sleep for 30 s) it raises :class:`Stopped` at once, so a stop is never delayed by the source.
    """

    def __init__(self) -> None:
        self.reason: str | None = None
        self.waiting = False
        self._previous: dict[int, object] = {}

    def __enter__(self) -> "StopFlag":
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self._previous[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread: the caller stops us another way
                pass
        return self

    def _handle(self, signum: int, _frame: object) -> None:
        self.reason = signal.Signals(signum).name
        if self.waiting:
            raise Stopped(self.reason)

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


class GateLoop:
    """Wires the front-end, matcher, decider, audit log and actions together for one run."""

    def __init__(
        self,
        front: FaceFrontEnd,
        matcher: Matcher,
        decider: Decider,
        audit: AuditLog | None,
        actions: ActionRunner,
        badges: BadgeReader,
        camera: str,
        emit: Callable[[str], None] = print,
        snapshots: bool = False,
        preview: bool = False,
        gallery: GalleryWatcher | None = None,
        reload_every_s: float = RELOAD_EVERY_S,
        on_decision: Callable[[int, Event], None] | None = None,
        liveness: Any = None,
        alarms: ActionRunner | None = None,
    ) -> None:
        """``gallery``: reloaded when its file changes (checked every ``reload_every_s``), so a
        person removed while the gate runs is no longer accepted. ``on_decision(id, event)``:
        called with each decision once it is logged and announced (the Python API's callback).
        ``liveness``: a :class:`~coreface_edge.liveness.runtime.LivenessChecker`
        (``score(frame, boxes)``) for the decider's spoof votes; ``alarms``: actions run on each
        ``spoof`` decision."""
        self.liveness, self.alarms = liveness, alarms
        self.front, self.matcher, self.decider, self.audit = front, matcher, decider, audit
        self.actions, self.badges, self.camera, self.emit = actions, badges, camera, emit
        self.on_decision = on_decision
        self.snapshots, self.preview = snapshots, preview
        self.gallery, self.reload_every_s, self._gallery_checked = gallery, reload_every_s, time.monotonic()
        self.stats = GateStats()
        self._next_id = 1

    def event(self, kind: str, detail: str) -> None:
        """Announce something that is not a decision (source lost, bad frame, failed action)."""
        self.emit(json.dumps({"event": kind, "time": round(time.time(), 3), "camera": self.camera, "detail": detail}))

    def _claimed_person(self, now: float) -> tuple[int | None, str | None]:
        badge = self.badges.claim(now)
        if badge is None:
            return None, None
        try:
            return self.matcher.matrix.index_of_badge(badge), badge
        except CorefaceError:
            return NO_MATCH, badge

    def step(self, frame: Frame) -> list[int]:
        """Process one frame; returns the ids of the decisions it produced."""
        faces = self.front.judge(frame.image)
        ok = faces.ok
        self.stats.faces_detected += faces.n_detected
        self.stats.faces_judged += len(ok)
        below = sum(faces.below_accept)
        self.stats.faces_below_accept += below
        self.stats.faces_low_quality += len(faces.problems) - len(ok) - below
        self.stats.faces_not_examined += faces.n_detected - len(faces.problems)
        t0 = now = time.perf_counter()  # monotonic: votes and cooldowns ignore wall-clock jumps (NTP)
        person, badge = self._claimed_person(now) if ok else (None, None)
        if person == NO_MATCH:  # a badge nobody enrolled holds: every face is a mismatch
            matches = [None] * len(ok)
        else:
            matches = self.matcher.match(faces.embeddings, person) if ok else []
        observations = [
            Observation(tuple(map(float, faces.boxes[k])), NO_MATCH, 0.0, 0.0, True) if m is None
            else Observation(tuple(map(float, faces.boxes[k])), m.person, m.score, m.margin, badge is not None)
            for k, m in zip(ok, matches)
        ]  # fmt: skip
        live = None
        if self.liveness is not None:
            faces.timings[LIVENESS] = 0.0

            def live(index: list[int]) -> np.ndarray:
                start = time.perf_counter()
                scores = self.liveness.score(frame.image, faces.boxes[[ok[i] for i in index]])
                faces.timings[LIVENESS] += (time.perf_counter() - start) * 1e3
                return scores

        decisions = self.decider.update(now, observations, live)
        faces.timings["match"] = (time.perf_counter() - t0) * 1e3 - faces.timings.get(LIVENESS, 0.0)
        faces.timings["total"] = sum(faces.timings.get(s, 0.0) for s in (*STAGES, LIVENESS))
        for stage, ms in faces.timings.items():
            self.stats.latency[stage].append(ms)
        self._not_judged(frame, faces)
        ids = [self._record(frame, faces, ok[d.face], d, badge) for d in decisions]
        if self.preview:
            self._show(frame.image, faces, observations)
        return ids

    def _not_judged(self, frame: Frame, faces: Faces) -> None:
        """One ``not_judged`` line per face that the quality gate or the accept minimum held back."""
        for k, problems in enumerate(faces.problems):
            if problems:
                self.emit(json.dumps({
                    "event": "not_judged", "time": round(frame.time, 3), "camera": self.camera, "frame": frame.name,
                    "box": [round(float(v), 1) for v in faces.boxes[k]], "problems": problems, "quality": faces.qualities[k].as_dict(),
                }))  # fmt: skip

    def _record(self, frame: Frame, faces: Faces, k: int, d: Decision, badge: str | None) -> int:
        matrix = self.matcher.matrix
        known = 0 <= d.person < len(matrix)
        event = Event(
            time=frame.time,
            camera=self.camera,
            frame=frame.name,
            decision=d.kind,
            person_id=matrix.ids[d.person] if known else None,
            person=matrix.names[d.person] if known else None,
            badge=badge if badge is not None else (matrix.badges[d.person] if known else None),
            score=d.score,
            margin=d.margin,
            votes=d.votes,
            track=d.track,
            quality=faces.qualities[k].as_dict(),
            timings=dict(faces.timings),
            snapshot=faces.crops[k] if self.snapshots else None,
            live=d.live,
        )
        if self.audit is not None:
            event_id = self.audit.write(event)
        else:
            event_id = self._next_id
            self._next_id += 1
        self.stats.decisions[d.kind] += 1
        self.emit(event.as_json(event_id))
        if self.on_decision is not None:
            self.on_decision(event_id, event)
        if d.kind == ACCEPT:
            self.actions.submit(
                {
                    "COREFACE_EVENT_ID": str(event_id),
                    "COREFACE_PERSON": event.person or "",
                    "COREFACE_PERSON_ID": str(event.person_id),
                    "COREFACE_BADGE": event.badge or "",
                    "COREFACE_SCORE": f"{event.score:.4f}",
                    "COREFACE_CAMERA": self.camera,
                }
            )
        elif d.kind == SPOOF and self.alarms is not None:
            self.alarms.submit(
                {
                    "COREFACE_EVENT_ID": str(event_id),
                    "COREFACE_PERSON": event.person or "",
                    "COREFACE_LIVENESS": f"{d.live:.4f}",
                    "COREFACE_CAMERA": self.camera,
                }
            )
        return event_id

    def _show(self, image: np.ndarray, faces: Faces, observations: list[Observation]) -> None:
        view = image.copy()  # only when previewing: the frame itself is never drawn on
        names = self.matcher.matrix.names
        judged = dict(zip(faces.ok, observations))
        for k, box in enumerate(faces.boxes.astype(int)):
            obs = judged.get(k)
            if obs is None:
                label, colour = ", ".join(faces.problems[k]), (0, 200, 255)
            else:
                ok = obs.score >= self.decider.policy.threshold and obs.person >= 0
                label = f"{names[obs.person] if obs.person >= 0 else '?'} {obs.score:.2f}"
                colour = (0, 200, 0) if ok else (0, 0, 255)
            x, y, w, h = box
            cv2.rectangle(view, (x, y), (x + w, y + h), colour, 2)
            cv2.putText(view, label, (x, max(12, y - 6)), cv2.FONT_HERSHEY_SIMPLEX, 0.6, colour, 2)
        cv2.imshow(PREVIEW_WINDOW, view)
        if cv2.waitKey(1) & 0xFF in (ord("q"), 27):
            raise KeyboardInterrupt

    def _reload_gallery(self) -> None:
        """Match against the gallery as it is now (people enrolled or removed meanwhile)."""
        now = time.monotonic()
        if self.gallery is None or now - self._gallery_checked < self.reload_every_s:
            return
        self._gallery_checked = now
        matrix = self.gallery.poll()  # an emptied or unreadable gallery stops the gate (CorefaceError)
        if matrix is None:
            return
        old = self.matcher.matrix
        position = {person_id: i for i, person_id in enumerate(matrix.ids)}
        self.decider.remap({i: position[person_id] for i, person_id in enumerate(old.ids) if person_id in position})
        self.matcher = Matcher(matrix)
        self.event("gallery_reloaded", f"{len(matrix)} people, {len(matrix.embeddings)} embeddings (was {len(old)} people)")

    def _record_actions(self) -> None:
        """Door-action outcomes into the audit log, from this (the SQLite) thread."""
        outcomes = self.actions.drain_outcomes() + (self.alarms.drain_outcomes() if self.alarms is not None else [])
        if outcomes and self.audit is not None:
            self.audit.record_actions(outcomes)

    def feed(self, frame: Frame) -> list[int]:
        """One frame as the run loop takes it: counted; the gallery reloaded if its file changed;
        a frame that cannot be read or processed is a ``bad_frame`` event, never a stop (except
        an audit log that cannot be written). Returns the ids of the decisions it produced."""
        stats = self.stats
        stats.frames += 1
        ids: list[int] = []
        if frame.problem:  # a folder's unreadable file: a frame that could not be used
            stats.bad_frames += 1
            self.event("bad_frame", f"frame {frame.name}: {frame.problem}")
            return ids
        self._reload_gallery()  # before judging: a change made while waiting for this frame applies to it
        try:
            ids = self.step(frame)
        except CorefaceError:
            raise  # the audit log cannot be written: stop rather than run unlogged
        except Exception as exc:  # noqa: BLE001 - one bad frame must never stop the gate
            stats.bad_frames += 1
            self.event("bad_frame", f"frame {frame.name}: {type(exc).__name__}: {str(exc).strip()[:200]}")
        self._record_actions()
        if self.audit is not None and stats.frames % CHECKPOINT_FRAMES == 0:
            self.audit.update_frames(stats.frames)
        return ids

    def finish(self) -> None:
        """Let the door actions and alarms finish, log their outcomes and close the run in the audit log."""
        self.actions.close()
        if self.alarms is not None:
            self.alarms.close()
        self._record_actions()
        if self.audit is not None:
            self.audit.finish_run(self.stats.frames)

    def run(self, frames: Iterable[Frame], max_frames: int | None = None) -> GateStats:
        """Run until the source ends, ``max_frames``, a signal, or 'q' in the preview."""
        stats = self.stats
        iterator: Iterator[Frame] = iter(frames)
        with StopFlag() as stop:
            try:
                while max_frames is None or stats.frames < max_frames:
                    t0 = time.perf_counter()
                    stop.waiting = True
                    try:
                        frame = next(iterator, None)
                    finally:
                        stop.waiting = False
                    if frame is None:
                        break
                    stats.latency["read"].append((time.perf_counter() - t0) * 1e3)
                    self.feed(frame)
                    if stop.reason:
                        stats.stopped_by = stop.reason
                        break
                else:
                    stats.stopped_by = f"--max-frames {max_frames}"
            except Stopped as stopped:
                stats.stopped_by = str(stopped)
            except KeyboardInterrupt:
                stats.stopped_by = "preview closed" if self.preview else "SIGINT"
            finally:
                self.finish()
                if self.preview:
                    cv2.destroyAllWindows()
        return stats
