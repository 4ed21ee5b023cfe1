"""One frame through the face front-end and the model: detect -> choose -> align -> quality -> embed.

The frame is never copied or converted here: detection runs on a downscaled view
(``detect_downscaled``), alignment samples the full-resolution frame directly, and the
crops of all judged faces go through the model in one batch. ``from_images`` takes the one
good face of each photo in a folder (enrollment, ``data align``, the Python API).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from ..contract import Embedder
from ..images import UnreadableImage, read_image
from .alignment import align_faces
from .detector import FaceDetector, detect_downscaled, refine_landmarks
from .quality import AcceptMinimum, FaceQuality, QualityThresholds, measure_quality

STAGES = ("detect", "align", "embed", "match")
LIVENESS = "liveness"  # the optional stage: timed by the gate loop when liveness is on
DETECTABLE_FACE_PX = 20.0  # YuNet finds faces down to about this width in the view it sees
FACE_PER_EYE_DISTANCE = 2.5  # face box width / inter-ocular distance, roughly
MIN_DETECT_SIDE = 320
FULL_RESOLUTION = 1 << 16  # as detect_side: detect on the frame itself (enrollment: find far faces to say "closer")


def auto_detect_side(frame_shape: tuple[int, ...], min_eye_distance: float) -> int:
    """Smallest detector view in which the smallest face the quality gate accepts is still found.

    A face with ``min_eye_distance`` between the eyes is about 2.5x that wide; the view is
    scaled so it stays >= ``DETECTABLE_FACE_PX`` wide, never below 320 px nor above the frame.
    """
    longest = max(frame_shape[:2])
    scale = DETECTABLE_FACE_PX / (FACE_PER_EYE_DISTANCE * min_eye_distance)
    return int(min(longest, max(MIN_DETECT_SIDE, round(longest * scale))))


@dataclass
class Faces:
    """The faces judged in one frame, best first (largest / most central).

    boxes (K, 4) x,y,w,h and landmarks (K, 5, 2) in frame pixels; crops (K, 112, 112, 3);
    qualities/problems per face; ``ok`` marks the faces without problems (the quality gate's,
    then the accept minimum's); ``below_accept`` the faces that passed the quality gate but
    not the accept minimum; embeddings (number of ok faces, D), in the order of the ok faces.
    """

    boxes: np.ndarray
    landmarks: np.ndarray
    crops: np.ndarray
    qualities: list[FaceQuality]
    problems: list[list[str]]
    n_detected: int
    below_accept: list[bool] = field(default_factory=list)
    embeddings: np.ndarray | None = None
    timings: dict[str, float] = field(default_factory=dict)  # milliseconds per stage

    @property
    def ok(self) -> list[int]:
        return [k for k, p in enumerate(self.problems) if not p]


class FaceFrontEnd:
    """Detector + aligner + quality gate + embedder, for the gate loop and enrollment."""

    def __init__(
        self,
        detector: FaceDetector,
        embed: Embedder | None,
        quality: QualityThresholds = QualityThresholds(),
        max_faces: int = 1,
        detect_side: int | None = None,
        refine: bool = True,
        accept: AcceptMinimum | None = None,
    ) -> None:
        """``detect_side``: longest side of the detector's view; None picks it per frame size
        (:func:`auto_detect_side`): 320 for 640x480, 768 for 1080p. ``refine``: faces small in
        that view get their landmarks from a second, full-resolution detection
        (:func:`refine_landmarks`). ``embed`` None: a front end that only finds and aligns faces
        (``faces``), for preparing data. ``accept``: the gate's minimum for judging a face, on
        top of ``quality`` (None: every face that passes the quality gate is judged)."""
        self.detector, self.embed_fn, self.quality, self.accept = detector, embed, quality, accept
        self.max_faces, self.detect_side, self.refine = max_faces, detect_side, refine

    def faces(self, image: np.ndarray) -> Faces:
        """Detect, keep the ``max_faces`` best, align them from the full frame, measure quality."""
        t0 = time.perf_counter()
        side = self.detect_side or auto_detect_side(image.shape, self.quality.min_size)
        found = detect_downscaled(self.detector, image, side)
        chosen = found.select(found.order_by_size_and_centrality(image.shape)[: self.max_faces])
        if self.refine:  # faces small in the downscaled view: landmarks again from the full frame
            too_small = 0.8 * FACE_PER_EYE_DISTANCE * self.quality.min_size  # the quality gate's "closer" (eye distance), with slack
            chosen = refine_landmarks(self.detector, image, chosen, max(image.shape[:2]) / side, too_small)
        t1 = time.perf_counter()
        crops = align_faces(image, chosen.landmarks)
        qualities = [measure_quality(crop, lm) for crop, lm in zip(crops, chosen.landmarks)]
        problems, below = [], []
        for q in qualities:
            poor = self.quality.problems(q)
            late = [] if poor or self.accept is None else self.accept.problems(q)
            problems.append(poor or late)
            below.append(bool(late))
        t2 = time.perf_counter()
        return Faces(
            boxes=chosen.boxes,
            landmarks=chosen.landmarks,
            crops=crops,
            qualities=qualities,
            problems=problems,
            n_detected=len(found),
            below_accept=below,
            timings={"detect": (t1 - t0) * 1e3, "align": (t2 - t1) * 1e3},
        )

    def judge(self, image: np.ndarray) -> Faces:
        """``faces`` plus one batched embedding of every face that passed the quality gate."""
        faces = self.faces(image)
        t0 = time.perf_counter()
        ok = faces.ok
        faces.embeddings = self.embed_fn(faces.crops[ok]) if ok else None
        faces.timings["embed"] = (time.perf_counter() - t0) * 1e3
        return faces


@dataclass
class Collected:
    """Good aligned faces of one person, with where each came from and why others were skipped."""

    crops: list[np.ndarray] = field(default_factory=list)
    qualities: list[dict[str, float]] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def add(self, front: FaceFrontEnd, image: np.ndarray, source: str) -> list[str]:
        """Take the best face of ``image`` if it is good enough; returns what is wrong otherwise."""
        faces = front.faces(image)
        if len(faces.problems) == 0:
            return ["no face"]
        if faces.n_detected > 1:  # whose face is it? never guess at enrollment
            return [f"{faces.n_detected} faces: only the person to enroll may be in view"]
        if faces.problems[0]:
            return faces.problems[0]
        self.crops.append(faces.crops[0])
        self.qualities.append(faces.qualities[0].as_dict())
        self.sources.append(source)
        return []


def from_images(front: FaceFrontEnd, files: list[Path], advance: Callable[[], None]) -> Collected:
    """The best face of every image file; unreadable (truncated included) / faceless / poor images
    are listed as skipped."""
    got = Collected()
    for path in files:
        try:
            problems = got.add(front, read_image(path), path.name)
        except UnreadableImage as exc:
            problems = [exc.reason]
        if problems:
            got.skipped.append((path.name, ", ".join(problems)))
        advance()
    return got
