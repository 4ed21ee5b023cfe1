"""Similarity alignment of 5 facial landmarks onto the standard 112x112 ArcFace template."""

from __future__ import annotations

import cv2
import numpy as np

# insightface's arcface_dst: right eye, left eye, nose, right mouth, left mouth (image left first).
ARCFACE_TEMPLATE = np.array(
    [
        [38.2946, 51.6963],
        [73.5318, 51.5014],
        [56.0252, 71.7366],
        [41.5493, 92.3655],
        [70.7299, 92.2041],
    ],
    dtype=np.float32,
)


def estimate_similarity(src: np.ndarray, dst: np.ndarray = ARCFACE_TEMPLATE) -> np.ndarray:
    """Least-squares similarity transform (Umeyama, no reflection) mapping ``src`` onto ``dst``.

    Returns the 2x3 float64 matrix ``M`` with ``dst ~= M[:, :2] @ src + M[:, 2]``.
    """
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    n = src.shape[0]
    src_mean, dst_mean = src.mean(axis=0), dst.mean(axis=0)
    src_c, dst_c = src - src_mean, dst - dst_mean
    cov = dst_c.T @ src_c / n
    u, s, vt = np.linalg.svd(cov)
    d = np.ones(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        d[1] = -1.0
    rotation = u @ np.diag(d) @ vt
    src_var = (src_c**2).sum() / n
    scale = (s * d).sum() / src_var if src_var > 0 else 1.0
    matrix = np.zeros((2, 3))
    matrix[:, :2] = scale * rotation
    matrix[:, 2] = dst_mean - scale * rotation @ src_mean
    return matrix


def align_faces(image_bgr: np.ndarray, landmarks: np.ndarray, size: int = 112) -> np.ndarray:
    """Warp every face of one image onto the template: ``(K, 5, 2)`` -> ``(K, size, size, 3)`` uint8."""
    landmarks = np.asarray(landmarks, dtype=np.float32).reshape(-1, 5, 2)
    template = ARCFACE_TEMPLATE * (size / 112.0)
    out = np.empty((landmarks.shape[0], size, size, 3), dtype=np.uint8)
    for k, points in enumerate(landmarks):
        matrix = estimate_similarity(points, template)
        cv2.warpAffine(image_bgr, matrix, (size, size), dst=out[k], borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    return out
