"""The liveness crops: the detector's face box enlarged around its centre, cropped, resized.

MiniFASNet models were trained on such crops, one context scale per model (2.7 and 4.0 face
boxes): the wider view shows the edges of a photo or a phone held up to the camera. A box that
would leave the frame is shifted back inside (and shrunk only when the frame is too small),
as the models' training crops were.
"""

from __future__ import annotations

import cv2
import numpy as np


def context_box(box: np.ndarray, scale: float, frame_w: int, frame_h: int) -> tuple[int, int, int, int]:
    """``(x0, y0, x1, y1)`` inclusive pixel bounds of ``box`` (x, y, w, h) scaled by ``scale``
    about its centre, shifted to lie inside a ``frame_w`` x ``frame_h`` frame."""
    x, y, w, h = (float(v) for v in box)
    w, h = max(w, 1.0), max(h, 1.0)
    scale = min(scale, (frame_h - 1) / h, (frame_w - 1) / w)
    half_w, half_h = w * scale / 2, h * scale / 2
    cx, cy = x + w / 2, y + h / 2
    x0, y0, x1, y1 = cx - half_w, cy - half_h, cx + half_w, cy + half_h
    if x0 < 0:
        x0, x1 = 0.0, x1 - x0
    if y0 < 0:
        y0, y1 = 0.0, y1 - y0
    if x1 > frame_w - 1:
        x0, x1 = x0 - (x1 - frame_w + 1), float(frame_w - 1)
    if y1 > frame_h - 1:
        y0, y1 = y0 - (y1 - frame_h + 1), float(frame_h - 1)
    return int(max(x0, 0)), int(max(y0, 0)), int(x1), int(y1)


def liveness_crops(frame: np.ndarray, boxes: np.ndarray, scale: float, side: int) -> np.ndarray:
    """uint8 BGR ``(K, side, side, 3)``: one enlarged-box crop per face box, from the full frame."""
    h, w = frame.shape[:2]
    out = np.empty((len(boxes), side, side, 3), np.uint8)
    for k, box in enumerate(boxes):
        x0, y0, x1, y1 = context_box(box, scale, w, h)
        out[k] = cv2.resize(frame[y0 : y1 + 1, x0 : x1 + 1], (side, side), interpolation=cv2.INTER_LINEAR)
    return out
