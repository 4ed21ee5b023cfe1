"""Frame sources through OpenCV: webcam index, video file, image folder, network stream, GStreamer.

``open_source(spec)`` picks the kind from the spec. Live sources (camera, network stream,
GStreamer) are reopened with exponential back-off when they drop; files and folders end cleanly.

Network streams (RTSP, HTTP MJPEG, ...) go through OpenCV's FFmpeg backend with open and read
timeouts of a few seconds, so a stalled or silent camera is noticed (and a stop signal handled)
within seconds instead of FFmpeg's own ~30 s. A GStreamer pipeline needs an OpenCV built with
GStreamer (JetPack's is, pip's ``opencv-python(-headless)`` is not): that is checked first.
"""

from __future__ import annotations

import functools
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Protocol

import cv2
import numpy as np

from ..errors import CorefaceError
from ..images import UnreadableImage, folder_images, read_image

# The gate reports an unreachable stream itself, in one line; FFmpeg's own log would add noise.
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
# Sources FFmpeg reads over the network (source kind "rtsp", the first and most common of them).
NETWORK_SCHEMES = ("rtsp://", "rtsps://", "http://", "https://", "rtmp://", "rtmps://", "udp://", "tcp://", "srt://")
STREAM_OPEN_TIMEOUT_S = 5.0  # connect + handshake + stream probing of a network stream
STREAM_READ_TIMEOUT_S = 5.0  # longest wait for the next frame before the stream counts as lost
# cv::CAP_PROP_OPEN_TIMEOUT_MSEC / CAP_PROP_READ_TIMEOUT_MSEC (FFmpeg backend, OpenCV 4.5.4+); some
# Python builds of those versions lack the names, so the enum values are the fallback.
OPEN_TIMEOUT_PROP = int(getattr(cv2, "CAP_PROP_OPEN_TIMEOUT_MSEC", 53))
READ_TIMEOUT_PROP = int(getattr(cv2, "CAP_PROP_READ_TIMEOUT_MSEC", 54))
STREAM_TIMEOUTS_SINCE = (4, 5, 4)


@dataclass(frozen=True)
class Frame:
    index: int
    time: float  # time.time() when the frame was read
    image: np.ndarray | None  # BGR (H, W, 3), as decoded: never copied by the source; None when ``problem``
    name: str  # file name for folder sources, else the frame index
    problem: str | None = None  # why this frame (a folder's image file) could not be read


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
    """``camera`` | ``rtsp`` | ``gstreamer`` | ``folder`` | ``video`` for a SOURCE argument.

    ``rtsp`` is any network stream (:data:`NETWORK_SCHEMES`: RTSP, HTTP(S) MJPEG, RTMP, ...).
    """
    if spec.isdigit():
        return "camera"
    if spec.lower().startswith(NETWORK_SCHEMES):
        return "rtsp"
    if "!" in spec:
        return "gstreamer"
    path = Path(spec)
    if path.is_dir():
        return "folder"
    if path.is_file():
        return "video"
    raise CorefaceError(f"{spec}: no such file or folder, and not a camera index, RTSP URL or GStreamer pipeline")


def build_has(build_info: str, feature: str) -> bool:
    """Whether ``cv2.getBuildInformation()`` text says ``feature`` (``GStreamer``, ``FFMPEG``) is built in.

    OpenCV 4 prints ``GStreamer:  YES (1.20.3)`` or ``GStreamer:  NO`` under "Video I/O"; older
    builds put the value on indented lines below (``base: YES (ver 1.14.5)``). No line at all
    means OpenCV was configured without it.
    """
    lines = build_info.splitlines()
    for k, line in enumerate(lines):
        name, sep, value = line.strip().partition(":")
        if not sep or name.strip().lower() != feature.lower():
            continue
        value = value.strip().upper()
        if value:
            return not value.startswith("NO")
        indent = len(line) - len(line.lstrip())
        for below in lines[k + 1 :]:  # the 3.x layout: the parts on deeper-indented lines
            if not below.strip() or len(below) - len(below.lstrip()) <= indent:
                break
            if below.partition(":")[2].strip().upper().startswith("YES"):
                return True
        return False
    return False


def version_tuple(version: str) -> tuple[int, ...]:
    """``"4.10.0-dev"`` -> ``(4, 10, 0)``."""
    return tuple(int(part) for part in re.findall(r"\d+", version.split("-")[0])[:3])


@functools.lru_cache(maxsize=1)
def _build_information() -> str:
    return cv2.getBuildInformation()


def stream_timeouts_supported(version: str = cv2.__version__, build_info: str | None = None) -> bool:
    """Whether this OpenCV takes open/read timeouts for network streams (FFmpeg backend, 4.5.4+)."""
    info = _build_information() if build_info is None else build_info
    return version_tuple(version) >= STREAM_TIMEOUTS_SINCE and build_has(info, "FFMPEG")


def stream_params(open_timeout_s: float = STREAM_OPEN_TIMEOUT_S, read_timeout_s: float = STREAM_READ_TIMEOUT_S) -> list[int]:
    """The ``cv2.VideoCapture`` parameters that bound how long opening and reading a stream may block."""
    return [OPEN_TIMEOUT_PROP, round(open_timeout_s * 1000), READ_TIMEOUT_PROP, round(read_timeout_s * 1000)]


def no_gstreamer_error(spec: str, version: str = cv2.__version__, location: str = str(Path(cv2.__file__).parent)) -> CorefaceError:
    """The one line for a GStreamer pipeline on an OpenCV built without GStreamer."""
    head = spec.split("!")[0].strip()
    return CorefaceError(
        f"{head} ! ...: this OpenCV build has no GStreamer (cv2 {version} from {location}; pip's opencv-python and "
        f"opencv-python-headless are built without it), so no GStreamer pipeline can open; on a Jetson use JetPack's "
        f"OpenCV instead (docs/jetson.md, 'Keep JetPack's OpenCV')"
    )


def check_gstreamer(spec: str, build_info: str | None = None) -> None:
    """Refuse a GStreamer pipeline at once when this OpenCV cannot run one (instead of blaming the camera)."""
    info = _build_information() if build_info is None else build_info
    if build_has(info, "GStreamer"):
        return
    registry = getattr(cv2, "videoio_registry", None)  # a GStreamer plugin loaded at run time counts too
    if build_info is None and registry is not None and registry.hasBackend(cv2.CAP_GSTREAMER):
        return
    raise no_gstreamer_error(spec)


def opener(
    spec: str, kind: str, open_timeout_s: float = STREAM_OPEN_TIMEOUT_S, read_timeout_s: float = STREAM_READ_TIMEOUT_S
) -> Callable[[], Capture]:
    """A function that opens the capture for a live or video source.

    A network stream is opened through FFmpeg with open/read timeouts where this OpenCV has
    them (:func:`stream_timeouts_supported`); otherwise as before, with FFmpeg's ~30 s.
    """
    if kind == "camera":
        return lambda: cv2.VideoCapture(int(spec))
    if kind == "gstreamer":
        return lambda: cv2.VideoCapture(spec, cv2.CAP_GSTREAMER)
    if kind == "rtsp" and stream_timeouts_supported():
        params = stream_params(open_timeout_s, read_timeout_s)
        return lambda: cv2.VideoCapture(spec, cv2.CAP_FFMPEG, params)
    return lambda: cv2.VideoCapture(spec)


def folder_frames(files: list[Path]) -> Iterator[Frame]:
    """Images in the given order; an unreadable one (truncated included) comes as a frame
    without an image and with its ``problem``, so the consumer counts it."""
    for index, path in enumerate(files):
        try:
            yield Frame(index, time.time(), read_image(path), path.name)
        except UnreadableImage as exc:
            yield Frame(index, time.time(), None, path.name, exc.reason)


def open_checked(open_capture: Callable[[], Capture], label: str, kind: str, open_timeout_s: float | None = None) -> Capture:
    """Open a capture now, so a missing camera or unreachable stream fails before the loop starts."""
    cap = open_capture()
    if not cap.isOpened():
        cap.release()
        if kind == "video":
            raise CorefaceError(f"{label}: cannot open this video file (unsupported or corrupt)")
        within = f" or gave no answer within {open_timeout_s:g} s" if open_timeout_s else ""
        raise CorefaceError(f"{label}: cannot open this {kind} source (no camera there, or the stream is unreachable{within})")
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
    notice: str | None = None,
) -> Iterator[Frame]:
    """Frames of an opened live source; when it drops, reopen it with back-off (forever by default).

    The back-off restarts only after a good frame: a source that opens but gives no frame
    (a stream that connects and then sends nothing decodable) counts as a failed attempt, so
    it is retried ever more slowly instead of every ``backoff.first`` seconds. ``max_reopens``
    consecutive attempts without a frame end the stream with an error. ``notice`` (a warning
    about the source) is announced as a ``source_warning`` event when the first frame is asked for.
    """
    index = 0
    delays: Iterator[float] | None = None  # the back-off since the last good frame
    attempts = 0  # reopen attempts since the last good frame
    fresh = False  # cap was (re)opened and has not given a frame yet
    try:
        if notice:
            on_event("source_warning", notice)
        while True:
            ok, image = cap.read()
            if ok and image is not None:
                delays, attempts, fresh = None, 0, False
                yield Frame(index, time.time(), image, str(index))
                index += 1
                continue
            cap.release()
            on_event("source_lost", f"{label}: opened but gave no frame" if fresh or index == 0 else label)
            if delays is None:
                delays = backoff.delays()
            while True:
                attempts += 1
                if max_reopens is not None and attempts > max_reopens:
                    raise CorefaceError(f"{label}: source lost and {max_reopens} reopen attempts failed")
                sleep(next(delays))
                cap = open_capture()
                if cap.isOpened():
                    on_event("source_reopened", f"{label} after {attempts} attempt(s)")
                    fresh = True
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
    open_timeout_s: float = STREAM_OPEN_TIMEOUT_S,
    read_timeout_s: float = STREAM_READ_TIMEOUT_S,
) -> Source:
    """Open a SOURCE spec now (errors surface here); ``on_event(kind, detail)`` hears a live
    source drop and come back; a folder's unreadable files come as frames with a ``problem``.

    ``open_timeout_s`` / ``read_timeout_s`` bound each open and each read of a network stream.
    Nothing is announced through ``on_event`` before the first frame is asked for.
    """
    kind = source_kind(spec)
    if kind == "folder":
        files = folder_images(Path(spec))
        return Source(kind, folder_frames(files), len(files))
    if kind == "gstreamer":
        check_gstreamer(spec)
    timeouts = kind == "rtsp" and stream_timeouts_supported()
    open_capture = opener(spec, kind, open_timeout_s, read_timeout_s)
    cap = open_checked(open_capture, spec, kind, open_timeout_s if timeouts else None)
    if kind == "video":
        count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) if isinstance(cap, cv2.VideoCapture) else 0
        return Source(kind, video_frames(cap), count or None)
    notice = None
    if kind == "rtsp" and not timeouts:
        notice = (
            f"OpenCV {cv2.__version__} sets no stream timeouts (needs 4.5.4+ with FFmpeg): a stalled stream is noticed, "
            f"and a stop signal handled, only after FFmpeg's own timeout (~30 s)"
        )
    return Source(kind, live_frames(cap, open_capture, spec, backoff, max_reopens, on_event, notice=notice), None)
