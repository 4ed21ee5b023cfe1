"""Face front-end: detection, 5-point alignment to the ArcFace template, quality measures."""

from .alignment import ARCFACE_TEMPLATE, align_faces, estimate_similarity
from .detector import Detections, FaceDetector, YuNetDetector, default_detector_path
from .quality import FaceQuality, measure_quality

__all__ = [
    "ARCFACE_TEMPLATE",
    "Detections",
    "FaceDetector",
    "FaceQuality",
    "YuNetDetector",
    "align_faces",
    "default_detector_path",
    "estimate_similarity",
    "measure_quality",
]
