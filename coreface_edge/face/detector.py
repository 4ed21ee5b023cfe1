"""Face detectors behind one small interface; YuNet in ONNX Runtime, decoded as OpenCV does."""

from __future__ import annotations

import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np

from ..errors import CorefaceError

cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)  # OpenCV's warnings (camera probing, codecs) are not the user's errors


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


YUNET_STRIDES = (8, 16, 32)


def decode_yunet(outputs: dict[str, np.ndarray], padded_shape: tuple[int, int], score_threshold: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """YuNet's raw heads -> candidate boxes ``(M, 4)`` x,y,w,h, landmarks ``(M, 5, 2)``, scores ``(M,)``.

    The decoding of OpenCV's ``FaceDetectorYN`` (objdetect/src/face_detect.cpp): for each stride
    s, anchor (row r, column c) of the padded input scores sqrt(cls * obj) (both clipped to
    [0, 1]); its centre is ``(c, r) + offset`` and its size ``exp(log-size)``, times s; each
    landmark is ``(c, r) + offset``, times s. Before non-maximum suppression.
    """
    height, width = padded_shape
    boxes, landmarks, scores = [], [], []
    for stride in YUNET_STRIDES:
        cls = np.clip(outputs[f"cls_{stride}"][0, :, 0], 0.0, 1.0)
        obj = np.clip(outputs[f"obj_{stride}"][0, :, 0], 0.0, 1.0)
        score = np.sqrt(cls * obj)
        keep = np.flatnonzero(score >= score_threshold)
        if not len(keep):
            continue
        rows, cols = np.divmod(keep, width // stride)
        anchor = np.stack([cols, rows], axis=1).astype(np.float32)
        raw_box = outputs[f"bbox_{stride}"][0, keep]
        size = np.exp(raw_box[:, 2:]) * stride
        boxes.append(np.concatenate([(anchor + raw_box[:, :2]) * stride - size / 2, size], axis=1))
        landmarks.append((outputs[f"kps_{stride}"][0, keep].reshape(-1, 5, 2) + anchor[:, None]) * stride)
        scores.append(score[keep])
    if not scores:
        return np.zeros((0, 4), np.float32), np.zeros((0, 5, 2), np.float32), np.zeros((0,), np.float32)
    return (np.concatenate(boxes).astype(np.float32), np.concatenate(landmarks).astype(np.float32), np.concatenate(scores).astype(np.float32))


class YuNetDetector:
    """YuNet in an ONNX Runtime session, decoded as OpenCV's ``FaceDetectorYN`` decodes it.

    Same boxes, landmarks and scores as ``cv2.FaceDetectorYN`` (tests/test_face.py) at about
    0.55x its time on a CPU, and the execution providers of the embedder: ``device`` "cuda" or
    "tensorrt" puts detection on a Jetson's GPU. The frame is zero-padded to a multiple of 32,
    as OpenCV pads it.
    """

    def __init__(
        self,
        model_path: str | os.PathLike[str] | None = None,
        score_threshold: float = 0.5,
        nms_threshold: float = 0.3,
        top_k: int = 50,
        device: str = "cpu",
        threads: int | None = None,
    ) -> None:
        from ..ort_session import open_session

        self.model_path = Path(model_path) if model_path else default_detector_path()
        self._session = open_session(self.model_path, device, threads, "a YuNet face detector")
        self._outputs = [output.name for output in self._session.get_outputs()]
        expected = {f"{head}_{stride}" for head in ("cls", "obj", "bbox", "kps") for stride in YUNET_STRIDES}
        if not expected <= set(self._outputs):
            raise CorefaceError(f"{self.model_path}: not a YuNet detector (outputs {', '.join(self._outputs)}; expected {', '.join(sorted(expected))})")
        self._input = self._session.get_inputs()[0].name
        self.score_threshold, self.nms_threshold, self.top_k = score_threshold, nms_threshold, top_k
        self._blob = np.zeros((1, 3, 0, 0), np.float32)

    def detect(self, image_bgr: np.ndarray) -> Detections:
        """Faces in one uint8 BGR image ``(H, W, 3)`` scoring at least the threshold, best first."""
        if image_bgr is None or image_bgr.ndim != 3 or image_bgr.shape[2] != 3:
            raise CorefaceError(f"detector expects a BGR image (H, W, 3), got {getattr(image_bgr, 'shape', None)}")
        h, w = image_bgr.shape[:2]
        if h == 0 or w == 0:
            return Detections.empty()
        padded = (-(-h // 32) * 32, -(-w // 32) * 32)
        if self._blob.shape[2:] != padded:
            self._blob = np.zeros((1, 3, *padded), np.float32)
        blob = self._blob[0]
        blob[:, :h, :w] = image_bgr.transpose(2, 0, 1)
        blob[:, h:, :] = 0.0  # the padding: zero, whatever a previous image of the same padded size left there
        blob[:, :h, w:] = 0.0
        outputs = dict(zip(self._outputs, self._session.run(self._outputs, {self._input: self._blob})))
        boxes, landmarks, scores = decode_yunet(outputs, padded, self.score_threshold)
        if not len(scores):
            return Detections.empty()
        whole_pixels = boxes.astype(np.int32).tolist()  # OpenCV suppresses overlaps on integer boxes
        keep = np.asarray(cv2.dnn.NMSBoxes(whole_pixels, scores.tolist(), self.score_threshold, self.nms_threshold, top_k=self.top_k), np.int64).reshape(-1)
        return Detections(boxes[keep], landmarks[keep], scores[keep])


def detect_downscaled(detector: FaceDetector, frame_bgr: np.ndarray, max_side: int = 640) -> Detections:
    """Detect on a view no larger than ``max_side`` and return full-frame coordinates.

    Large frames (1080p) are downscaled once for the detector; alignment then samples the
    full-resolution frame, so no resolution is lost on the face crop.
    """
    h, w = frame_bgr.shape[:2]
    scale = max(h, w) / float(max_side)
    if scale <= 1.0:
        return detector.detect(frame_bgr)
    return detector.detect(downscale(frame_bgr, (max(1, round(w / scale)), max(1, round(h / scale))))).scaled(scale)


def downscale(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``image`` shrunk to ``size`` (w, h), anti-aliased: pixel-area averaging by the largest whole
    factor (OpenCV's fast path), then bilinear for the rest (less than 2x on each side when the
    aspect ratio is kept, where it hardly aliases).

    A 1080p frame to 768x432 takes 0.85 ms this way against 4.1 ms for one non-integer
    ``INTER_AREA`` resize, with the same detections (docs/benchmarks.md, "YuNet in ONNX Runtime").
    """
    factor = int(min(image.shape[1] / size[0], image.shape[0] / size[1]))
    if factor >= 2:
        image = cv2.resize(image, (image.shape[1] // factor, image.shape[0] // factor), interpolation=cv2.INTER_AREA)
    if (image.shape[1], image.shape[0]) == size:
        return image
    return cv2.resize(image, size, interpolation=cv2.INTER_LINEAR if factor >= 2 else cv2.INTER_AREA)


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
