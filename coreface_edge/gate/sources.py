"""Frame sources through OpenCV: webcam index, video file, image folder, RTSP URL, GStreamer.

``open_source(spec)`` picks the kind from the spec. Live sources (camera, RTSP, GStreamer)
are reopened with exponential back-off when they drop; files and folders end cleanly.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Protocol

import cv2
import numpy as np

from ..errors import CorefaceError

# The gate reports an unreachable stream itself, in one line; FFmpeg's own log would add noise.
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}


@dataclass(frozen=True)
class Frame:
    index: int
    time: float  # time.time() when the frame was read
    image: np.ndarray  # BGR (H, W, 3), as decoded: never copied by the source
    name: str  # file name for folder sources, else the frame index


class Capture(Protocol):
    """The part of ``cv2.VideoCapture`` the sources use."""

    def isOpened(self) -> bool: ...

    def read(self) -> tuple[bool, np.ndarray | None]: ...

    def release(self) -> None: ...


def nvargus_pipeline(
    sensor_id: int = 0, width: int = 1280, height: int = 720, fps: int = 30, flip: int = 0, max_buffers: int = 1
) -> str:
    """The standard GStreamer pipeline for a Jetson CSI camera (nvarguscamerasrc -> BGR appsink).

    ``drop=true max-buffers=1`` keeps only the newest frame, so a slow loop never lags behind.
    """
    return (
        f"nvarguscamerasrc sensor-id={sensor_id} ! "
        f"video/x-raw(memory:NVMM), width={width}, height={height}, framerate={fps}/1, format=NV12 ! "
        f"nvvidconv flip-method={flip} ! video/x-raw, format=BGRx ! videoconvert ! video/x-raw, format=BGR ! "
        f"appsink drop=true max-buffers={max_buffers} sync=false"
    )


def source_kind(spec: str) -> str:
    """``camera`` | ``rtsp`` | ``gstreamer`` | ``folder`` | ``video`` for a SOURCE argument."""
    if spec.isdigit():
        return "camera"
    if spec.lower().startswith(("rtsp://", "rtsps://", "http://", "https://")):
        return "rtsp"
    if "!" in spec:
        return "gstreamer"
    path = Path(spec)
    if path.is_dir():
        return "folder"
    if path.is_file():
        return "video"
    raise CorefaceError(f"{spec}: no such file or folder, and not a camera index, RTSP URL or GStreamer pipeline")


def opener(spec: str, kind: str) -> Callable[[], Capture]:
    """A function that opens the capture for a live or video source."""
    if kind == "camera":
        return lambda: cv2.VideoCapture(int(spec))
    if kind == "gstreamer":
        return lambda: cv2.VideoCapture(spec, cv2.CAP_GSTREAMER)
    return lambda: cv2.VideoCapture(spec)


def folder_images(folder: Path) -> list[Path]:
    """The images of a folder, sorted by name; none is an error."""
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise CorefaceError(f"{folder}: no images in this folder")
    return files


def folder_frames(files: list[Path], on_bad: Callable[[str, str], None]) -> Iterator[Frame]:
    """Images in the given order; an unreadable one is reported and skipped."""
    for index, path in enumerate(files):
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            on_bad(path.name, "unreadable image")
            continue
        yield Frame(index, time.time(), image, path.name)


def open_checked(open_capture: Callable[[], Capture], label: str, kind: str) -> Capture:
    """Open a capture now, so a missing camera or unreachable stream fails before the loop starts."""
    cap = open_capture()
    if not cap.isOpened():
        cap.release()
        if kind == "video":
            raise CorefaceError(f"{label}: cannot open this video file (unsupported or corrupt)")
        raise CorefaceError(f"{label}: cannot open this {kind} source (no camera there, or the stream is unreachable)")
    return cap


def video_frames(cap: Capture) -> Iterator[Frame]:
    """Frames of an opened video file until its end."""
    try:
        index = 0
        while True:
            ok, image = cap.read()
            if not ok or image is None:
                return
            yield Frame(index, time.time(), image, str(index))
            index += 1
    finally:
        cap.release()


@dataclass
class Backoff:
    """Exponential back-off delays: first, first*factor, ... capped at ``maximum`` seconds."""

    first: float = 0.5
    factor: float = 2.0
    maximum: float = 30.0

    def delays(self) -> Iterator[float]:
        delay = self.first
        while True:
            yield delay
            delay = min(delay * self.factor, self.maximum)


def live_frames(
    cap: Capture,
    open_capture: Callable[[], Capture],
    label: str,
    backoff: Backoff = Backoff(),
    max_reopens: int | None = None,
    on_event: Callable[[str, str], None] = lambda *_: None,
    sleep: Callable[[float], None] = time.sleep,
) -> Iterator[Frame]:
    """Frames of an opened live source; when it drops, reopen it with back-off (forever by default).

    ``max_reopens`` consecutive failed reopens end the stream with an error.
    """
    index = 0
    try:
        while True:
            ok, image = cap.read()
            if ok and image is not None:
                yield Frame(index, time.time(), image, str(index))
                index += 1
                continue
            cap.release()
            on_event("source_lost", label)
            for attempt, delay in enumerate(backoff.delays(), start=1):
                if max_reopens is not None and attempt > max_reopens:
                    raise CorefaceError(f"{label}: source lost and {max_reopens} reopen attempts failed")
                sleep(delay)
                cap = open_capture()
                if cap.isOpened():
                    on_event("source_reopened", f"{label} after {attempt} attempt(s)")
                    break
                cap.release()
    finally:
        cap.release()


@dataclass(frozen=True)
class Source:
    """An opened SOURCE: its kind, its frames, and how many there are (None for live sources)."""

    kind: str
    frames: Iterator[Frame]
    total: int | None


def open_source(
    spec: str,
    on_event: Callable[[str, str], None] = lambda *_: None,
    backoff: Backoff = Backoff(),
    max_reopens: int | None = None,
) -> Source:
    """Open a SOURCE spec now (errors surface here); ``on_event(kind, detail)`` hears drops and bad frames."""
    kind = source_kind(spec)
    if kind == "folder":
        files = folder_images(Path(spec))
        return Source(kind, folder_frames(files, lambda name, why: on_event("bad_frame", f"{name}: {why}")), len(files))
    open_capture = opener(spec, kind)
    cap = open_checked(open_capture, spec, kind)
    if kind == "video":
        count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) if isinstance(cap, cv2.VideoCapture) else 0
        return Source(kind, video_frames(cap), count or None)
    return Source(kind, live_frames(cap, open_capture, spec, backoff, max_reopens, on_event), None)
