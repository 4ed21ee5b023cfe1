"""Build a calibration set from image folders and videos: detect, align, filter, de-duplicate, sample."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import cv2
import numpy as np

from ..errors import CorefaceError
from ..images import UnreadableImage, read_image
from ..face import FaceDetector, align_faces, measure_quality
from ..face.detector import detect_downscaled
from ..face.quality import QualityThresholds
from .calibset import CalibrationSet, crop_contract

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}
VIDEO_EXTENSIONS = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v"}
THUMB = 16


@dataclass
class Source:
    """One input: a video file, or the images of one folder taken as a sequence of frames."""

    name: str
    video: Path | None = None
    images: list[Path] = field(default_factory=list)

    def frame_count(self) -> int:
        if self.video is None:
            return len(self.images)
        cap = cv2.VideoCapture(str(self.video))
        try:
            return max(int(cap.get(cv2.CAP_PROP_FRAME_COUNT)), 0)
        finally:
            cap.release()

    def frames(self, step: int = 1) -> Iterator[tuple[int, np.ndarray | None]]:
        """``(frame index, BGR image or None when unreadable)``, every ``step``-th frame."""
        if self.video is None:
            for i, path in enumerate(self.images):
                if i % step == 0:
                    try:
                        yield i, read_image(path)
                    except UnreadableImage:  # truncated or corrupt: counted as unreadable
                        yield i, None
            return
        cap = cv2.VideoCapture(str(self.video))
        if not cap.isOpened():
            raise CorefaceError(f"{self.video}: cannot open video")
        try:
            index = 0
            while True:
                ok, frame = cap.read()
                if not ok:
                    break
                if index % step == 0:
                    yield index, frame
                index += 1
        finally:
            cap.release()

    def frame_name(self, index: int) -> str:
        return str(index) if self.video is not None else self.images[index].name


def find_sources(paths: list[str | os.PathLike[str]]) -> list[Source]:
    """Videos become one source each; a folder's images (recursively) form one source per folder."""
    sources: list[Source] = []
    for raw in paths:
        path = Path(raw)
        if path.is_file() and path.suffix.lower() in VIDEO_EXTENSIONS:
            sources.append(Source(str(path), video=path))
        elif path.is_file() and path.suffix.lower() in IMAGE_EXTENSIONS:
            sources.append(Source(str(path), images=[path]))
        elif path.is_dir():
            by_folder: dict[Path, list[Path]] = {}
            for item in sorted(path.rglob("*")):
                if item.is_file() and item.suffix.lower() in IMAGE_EXTENSIONS:
                    by_folder.setdefault(item.parent, []).append(item)
                elif item.is_file() and item.suffix.lower() in VIDEO_EXTENSIONS:
                    sources.append(Source(str(item), video=item))
            sources.extend(Source(str(folder), images=files) for folder, files in sorted(by_folder.items()))
        elif path.exists():
            raise CorefaceError(f"{path}: not an image, a video ({', '.join(sorted(VIDEO_EXTENSIONS))}) or a folder")
        else:
            raise CorefaceError(f"{path}: no such file or folder")
    return sources


def thumbnail(crop_bgr: np.ndarray) -> np.ndarray:
    """A tiny grey view of an aligned crop, for near-duplicate tests."""
    grey = cv2.cvtColor(crop_bgr, cv2.COLOR_BGR2GRAY)
    return cv2.resize(grey, (THUMB, THUMB), interpolation=cv2.INTER_AREA).astype(np.float32)


class DuplicateFilter:
    """Drops a face that barely changed since the last kept crop of the same face in a sequence.

    Each kept face leaves a reference (landmark centre + thumbnail). A new face is matched to
    the nearest reference whose centre lies within one inter-ocular distance; it is a duplicate
    when its thumbnail's mean absolute grey difference to that reference is below ``threshold``.
    The reference follows the face's position even while its crops are dropped.
    """

    def __init__(self, threshold: float) -> None:
        self.threshold = threshold
        self._refs: list[tuple[np.ndarray, np.ndarray]] = []  # (centre, thumbnail)

    def is_duplicate(self, landmarks: np.ndarray, crop_bgr: np.ndarray) -> bool:
        points = np.asarray(landmarks, np.float32).reshape(5, 2)
        centre = points.mean(axis=0)
        reach = max(float(np.linalg.norm(points[1] - points[0])), 1.0)
        thumb = thumbnail(crop_bgr)
        best, best_dist = -1, reach
        for k, (ref_centre, _) in enumerate(self._refs):
            dist = float(np.linalg.norm(ref_centre - centre))
            if dist < best_dist:
                best, best_dist = k, dist
        if best >= 0 and float(np.abs(self._refs[best][1] - thumb).mean()) < self.threshold:
            self._refs[best] = (centre, self._refs[best][1])
            return True
        if best >= 0:
            self._refs[best] = (centre, thumb)
        else:
            self._refs.append((centre, thumb))
        return False


def balanced_indices(groups: list[str], size: int) -> np.ndarray:
    """Pick ``size`` items spread evenly over groups (water-filling), and evenly within each group.

    ``groups[i]`` names item i's group; items of a group are taken in their listed order.
    Returns sorted indices; all of them when there are no more than ``size`` items.
    """
    n = len(groups)
    if n <= size:
        return np.arange(n)
    members: dict[str, list[int]] = {}
    for i, g in enumerate(groups):
        members.setdefault(g, []).append(i)
    quota = dict.fromkeys(members, 0)
    left = size
    open_groups = sorted(members, key=lambda g: len(members[g]))
    while left > 0 and open_groups:
        share = max(left // len(open_groups), 1)
        for g in list(open_groups):
            take = min(share, len(members[g]) - quota[g], left)
            quota[g] += take
            left -= take
            if quota[g] == len(members[g]):
                open_groups.remove(g)
            if left == 0:
                break
    picked: list[int] = []
    for g, items in members.items():
        if quota[g]:
            positions = np.linspace(0, len(items) - 1, quota[g]).round().astype(int)
            picked.extend(items[p] for p in np.unique(positions))
    return np.array(sorted(picked), dtype=np.int64)


@dataclass
class CollectStats:
    """Counts for the summary table."""

    frames: int = 0
    unreadable: int = 0
    faces: int = 0
    low_quality: int = 0
    duplicates: int = 0
    candidates: int = 0
    kept: int = 0


def collect_calibration_set(
    sources: list[Source],
    detector: FaceDetector,
    size: int = 512,
    thresholds: QualityThresholds = QualityThresholds(),
    duplicate_threshold: float = 8.0,
    frame_step: int = 1,
    on_frame: Callable[[str], None] | None = None,
) -> tuple[CalibrationSet, CollectStats]:
    """Detect, align and filter faces from ``sources``; keep a balanced sample of ``size`` crops."""
    stats = CollectStats()
    crops: list[np.ndarray] = []
    entries: list[dict] = []
    for source in sources:
        dedupe = DuplicateFilter(duplicate_threshold)
        for index, frame in source.frames(frame_step):
            stats.frames += 1
            if on_frame is not None:
                on_frame(source.name)
            if frame is None:
                stats.unreadable += 1
                continue
            found = detect_downscaled(detector, frame)
            if len(found) == 0:
                continue
            aligned = align_faces(frame, found.landmarks)
            for k in range(len(found)):
                stats.faces += 1
                quality = measure_quality(aligned[k], found.landmarks[k])
                if thresholds.problems(quality):
                    stats.low_quality += 1
                    continue
                if dedupe.is_duplicate(found.landmarks[k], aligned[k]):
                    stats.duplicates += 1
                    continue
                crops.append(aligned[k])
                entries.append(
                    {
                        "source": source.name,
                        "frame": source.frame_name(index),
                        "face": k,
                        "score": round(float(found.scores[k]), 3),
                        "quality": quality.as_dict(),
                    }
                )
    stats.candidates = len(crops)
    keep = balanced_indices([e["source"] for e in entries], size)
    stats.kept = int(keep.size)
    kept_crops = np.stack([crops[i] for i in keep]) if keep.size else np.zeros((0, 112, 112, 3), np.uint8)
    summary = {k: v for k, v in vars(stats).items()}
    summary["sources"] = len(sources)
    return CalibrationSet(kept_crops, [entries[i] for i in keep], crop_contract(), summary), stats
