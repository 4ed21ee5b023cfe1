"""Cheap face-quality measures for enrollment, calibration and the gate's quality gate."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class FaceQuality:
    """Quality of one detected face.

    size: inter-ocular distance in source pixels; sharpness: variance of the Laplacian of the
    aligned crop; brightness/contrast: mean and std of the crop's grey levels (0-255);
    frontal: 1.0 for a frontal face, falling towards 0 as the head turns (from the landmarks).
    """

    size: float
    sharpness: float
    brightness: float
    contrast: float
    frontal: float

    def as_dict(self) -> dict[str, float]:
        return {k: round(float(v), 3) for k, v in asdict(self).items()}


@dataclass(frozen=True)
class QualityThresholds:
    """Minimums a face must meet to be judged; ``problems`` names what a person should fix."""

    min_size: float = 20.0
    min_sharpness: float = 20.0
    min_brightness: float = 40.0
    max_brightness: float = 220.0
    min_contrast: float = 15.0
    min_frontal: float = 0.5

    def problems(self, q: FaceQuality) -> list[str]:
        """Short hints for each minimum ``q`` misses; empty when the face is good enough."""
        found = []
        if q.size < self.min_size:
            found.append("closer")
        if q.frontal < self.min_frontal:
            found.append("face the camera")
        if q.brightness < self.min_brightness:
            found.append("too dark")
        elif q.brightness > self.max_brightness:
            found.append("too bright")
        if q.contrast < self.min_contrast:
            found.append("low contrast")
        if q.sharpness < self.min_sharpness:
            found.append("hold still (blurred)")
        return found


@dataclass(frozen=True)
class AcceptMinimum:
    """What a face must show before the gate judges it for a decision, above the quality gate.

    The quality gate decides what is detected and tracked (and what enrollment takes); a face
    that passes it but is smaller or more turned than this is shown and logged but never
    embedded, voted on or accepted: far faces match strangers more often than the threshold's
    FAR promises (docs/benchmarks.md, "Minimum face for an accept"). ``min_size`` is the eye
    distance in frame pixels (a face box is about 2.2x as wide).
    """

    min_size: float = 22.0
    min_frontal: float = 0.5

    def problems(self, q: FaceQuality) -> list[str]:
        """Why ``q`` may not be judged for an accept; empty when it may."""
        found = []
        if q.size < self.min_size:
            found.append(f"too small to judge (eyes {q.size:.0f} px apart, {self.min_size:g} needed)")
        if q.frontal < self.min_frontal:
            found.append(f"too turned to judge (frontal {q.frontal:.2f}, {self.min_frontal:g} needed)")
        return found


def frontal_score(landmarks: np.ndarray) -> float:
    """Symmetry of the nose between the eyes and between the mouth corners, in [0, 1].

    For a frontal face the nose tip projects near the midpoint of the eye line; as the head
    turns it moves towards one eye. 1 - |offset| / (half the eye distance), clipped at 0.
    """
    p = np.asarray(landmarks, dtype=np.float64).reshape(5, 2)
    eye_l, eye_r, nose, mouth_l, mouth_r = p
    scores = []
    for a, b in ((eye_l, eye_r), (mouth_l, mouth_r)):
        axis = b - a
        half = np.linalg.norm(axis) / 2.0
        if half < 1e-6:
            return 0.0
        t = float(np.dot(nose - (a + b) / 2.0, axis / (2.0 * half)))
        scores.append(1.0 - abs(t) / half)
    return float(np.clip(min(scores), 0.0, 1.0))


def measure_quality(crop_bgr: np.ndarray, landmarks: np.ndarray) -> FaceQuality:
    """Quality of one aligned crop, given the face's 5 landmarks in the source image."""
    grey = cv2.cvtColor(crop_bgr, cv2.COLOR_BGR2GRAY)
    points = np.asarray(landmarks, dtype=np.float64).reshape(5, 2)
    return FaceQuality(
        size=float(np.linalg.norm(points[1] - points[0])),
        sharpness=float(cv2.Laplacian(grey, cv2.CV_64F).var()),
        brightness=float(grey.mean()),
        contrast=float(grey.std()),
        frontal=frontal_score(points),
    )
