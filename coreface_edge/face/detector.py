"""Face detectors behind one small interface; YuNet through ``cv2.FaceDetectorYN``."""

from __future__ import annotations

import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np

from ..errors import CorefaceError

cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)  # OpenCV 5 warns on each create


@dataclass
class Detections:
    """Faces found in one image, in image pixel coordinates.

    boxes: (K, 4) float32 ``x, y, w, h``; landmarks: (K, 5, 2) float32 in ArcFace order
    (right eye, left eye, nose tip, right and left mouth corner, as seen in the image:
    the first point is the leftmost eye); scores: (K,) float32.
    """

    boxes: np.ndarray
    landmarks: np.ndarray
    scores: np.ndarray

    def __len__(self) -> int:
        return int(self.scores.shape[0])

    @classmethod
    def empty(cls) -> "Detections":
        """No faces."""
        return cls(np.zeros((0, 4), np.float32), np.zeros((0, 5, 2), np.float32), np.zeros((0,), np.float32))

    def select(self, index: np.ndarray | list[int]) -> "Detections":
        """The faces at ``index``, in that order."""
        index = np.asarray(index, dtype=np.int64)
        return Detections(self.boxes[index], self.landmarks[index], self.scores[index])

    def scaled(self, factor: float) -> "Detections":
        """Coordinates multiplied by ``factor`` (map a downscaled view back to the full frame)."""
        return Detections(self.boxes * factor, self.landmarks * factor, self.scores)

    def order_by_size_and_centrality(self, image_shape: tuple[int, ...]) -> np.ndarray:
        """Indices, best first: large faces near the image centre come first."""
        if len(self) == 0:
            return np.zeros((0,), np.int64)
        h, w = image_shape[:2]
        centres = self.boxes[:, :2] + self.boxes[:, 2:] / 2
        offset = np.linalg.norm((centres - (w / 2, h / 2)) / (w, h), axis=1)
        area = self.boxes[:, 2] * self.boxes[:, 3] / float(w * h)
        return np.argsort(-(area * (1.0 - offset)), kind="stable")


class FaceDetector(Protocol):
    """What the rest of the toolkit needs from a detector."""

    def detect(self, image_bgr: np.ndarray) -> Detections:
        """Faces in one uint8 BGR image ``(H, W, 3)``, in its pixel coordinates."""
        ...


def default_detector_path() -> Path:
    """The YuNet model vendored inside the package (Apache-2.0, LICENSE beside it)."""
    return Path(str(resources.files("coreface_edge") / "assets" / "yunet" / "yunet_n_dynamic.onnx"))


class YuNetDetector:
    """YuNet via OpenCV; the input size is set for each frame's shape."""

    def __init__(
        self,
        model_path: str | os.PathLike[str] | None = None,
        score_threshold: float = 0.5,
        nms_threshold: float = 0.3,
        top_k: int = 50,
    ) -> None:
        path = Path(model_path) if model_path else default_detector_path()
        if not path.is_file():
            raise CorefaceError(f"{path}: detector model not found")
        try:
            self._net = cv2.FaceDetectorYN.create(str(path), "", (320, 320), score_threshold, nms_threshold, top_k)
        except cv2.error as exc:
            raise CorefaceError(f"{path}: not a loadable YuNet ONNX model ({str(exc).strip().splitlines()[-1]})") from None
        self._size: tuple[int, int] = (320, 320)
        self.model_path = path

    def detect(self, image_bgr: np.ndarray) -> Detections:
        """Faces in one uint8 BGR image ``(H, W, 3)`` scoring at least the threshold."""
        if image_bgr is None or image_bgr.ndim != 3 or image_bgr.shape[2] != 3:
            raise CorefaceError(f"detector expects a BGR image (H, W, 3), got {getattr(image_bgr, 'shape', None)}")
        size = (int(image_bgr.shape[1]), int(image_bgr.shape[0]))
        if size != self._size:
            self._net.setInputSize(size)
            self._size = size
        _, faces = self._net.detect(image_bgr)
        if faces is None or len(faces) == 0:
            return Detections.empty()
        faces = np.asarray(faces, dtype=np.float32)
        return Detections(faces[:, 0:4].copy(), faces[:, 4:14].reshape(-1, 5, 2).copy(), faces[:, 14].copy())


def detect_downscaled(detector: FaceDetector, frame_bgr: np.ndarray, max_side: int = 640) -> Detections:
    """Detect on a view no larger than ``max_side`` and return full-frame coordinates.

    Large frames (1080p) are downscaled once for the detector; alignment then samples the
    full-resolution frame, so no resolution is lost on the face crop.
    """
    h, w = frame_bgr.shape[:2]
    scale = max(h, w) / float(max_side)
    if scale <= 1.0:
        return detector.detect(frame_bgr)
    small = cv2.resize(frame_bgr, (round(w / scale), round(h / scale)), interpolation=cv2.INTER_AREA)
    return detector.detect(small).scaled(scale)


REFINE_BELOW_PX = 64.0  # faces narrower than this in the detector's view get their landmarks re-detected
REFINE_CONTEXT = 2.0  # the refining crop spans this many face widths, around the face
REFINE_CROP_PX = 192  # longest side of the refining crop (smaller crops stay at full resolution)


def refine_landmarks(detector: FaceDetector, frame_bgr: np.ndarray, found: Detections, view_scale: float, min_face_px: float = 0.0) -> Detections:
    """Re-detect faces that were small in a downscaled view on a full-resolution crop around each.

    Landmarks found on a downscaled view are only as precise as its pixels: a face 30 px wide
    there is aligned from points a few full-frame pixels off, which costs genuine score
    (docs/benchmarks.md, "Landmarks of small faces"). Each face narrower than
    ``REFINE_BELOW_PX`` in the view (``view_scale`` = frame / view pixels) is cropped from the
    frame with ``REFINE_CONTEXT`` face widths of context, at full resolution up to
    ``REFINE_CROP_PX``, and detected again; the detection nearest the crop's centre replaces
    it. Faces the second pass misses keep their first landmarks; faces narrower than
    ``min_face_px`` in the frame (too small for the quality gate anyway) are left as they are.
    """
    if view_scale <= 1.0 or not len(found):
        return found
    boxes, landmarks = found.boxes.copy(), found.landmarks.copy()
    h, w = frame_bgr.shape[:2]
    for k, (x, y, bw, bh) in enumerate(found.boxes):
        if bw / view_scale >= REFINE_BELOW_PX or bw < min_face_px:
            continue
        side = REFINE_CONTEXT * max(bw, bh)
        cx, cy = x + bw / 2, y + bh / 2
        x0, y0 = int(max(0, cx - side / 2)), int(max(0, cy - side / 2))
        x1, y1 = int(min(w, cx + side / 2)), int(min(h, cy + side / 2))
        crop = frame_bgr[y0:y1, x0:x1]
        if crop.size == 0:
            continue
        zoom = min(1.0, REFINE_CROP_PX / max(crop.shape[:2]))  # shrink only: no invented pixels
        view = crop if zoom >= 1.0 else cv2.resize(crop, None, fx=zoom, fy=zoom, interpolation=cv2.INTER_AREA)
        again = detector.detect(view).scaled(1.0 / zoom)
        if not len(again):
            continue
        centres = again.boxes[:, :2] + again.boxes[:, 2:] / 2
        best = int(np.argmin(np.linalg.norm(centres - [cx - x0, cy - y0], axis=1)))
        offset = np.array([x0, y0], np.float32)
        boxes[k] = np.r_[again.boxes[best, :2] + offset, again.boxes[best, 2:]]
        landmarks[k] = again.landmarks[best] + offset
    return Detections(boxes, landmarks, found.scores)
