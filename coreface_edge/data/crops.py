"""Decoding encoded face images into the toolkit's crop convention (uint8 BGR 112x112)."""

from __future__ import annotations

import cv2
import numpy as np

from ..contract import CROP_SIZE
from ..errors import CorefaceError


def decode_crop(data: bytes, source: str, size: int = CROP_SIZE) -> np.ndarray:
    """JPEG/PNG bytes -> ``(size, size, 3)`` uint8 BGR, resized if the image is another size.

    ``source`` names the file (and record) in the one-line error for undecodable bytes.
    """
    image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR) if data else None
    if image is None:
        raise CorefaceError(f"{source}: not a decodable image")
    if image.shape[:2] != (size, size):
        image = cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA if image.shape[0] > size else cv2.INTER_LINEAR)
    return image


def encode_jpeg(crop: np.ndarray, quality: int = 95) -> bytes:
    """uint8 BGR image -> JPEG bytes."""
    ok, data = cv2.imencode(".jpg", crop, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise CorefaceError(f"cannot encode an image of shape {crop.shape} as JPEG")
    return data.tobytes()
