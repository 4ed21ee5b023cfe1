"""Camera sources in the field: a GStreamer pipeline on an OpenCV without GStreamer, network
streams that stall or never answer (real local HTTP servers in threads, real FFmpeg through
OpenCV), a stream that opens but gives no frame, and SIGTERM on a gate whose stream stalled."""

from __future__ import annotations

import functools
import http.server
import json
import shutil
import signal
import socket
import socketserver
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np
import pytest

from coreface_edge.errors import CorefaceError
from coreface_edge.gate import sources
from coreface_edge.pretrained import DEFAULT_MODEL
from coreface_edge.gate.sources import (
    STREAM_OPEN_TIMEOUT_S,
    STREAM_READ_TIMEOUT_S,
    Backoff,
    build_has,
    check_gstreamer,
    live_frames,
    open_checked,
    open_source,
    opener,
    source_kind,
    stream_timeouts_supported,
)

PIPELINE = "videotestsrc num-buffers=50 ! videoconvert ! appsink"
PIP_VIDEO_IO = """
  Video I/O:
    DC1394:                      NO
    FFMPEG:                      YES
      avcodec:                   YES (59.37.100)
      avformat:                  YES (59.27.100)
    GStreamer:                   NO
    v4l/v4l2:                    YES (linux/videodev2.h)
"""
JETPACK_VIDEO_IO = """
  Video I/O:
    FFMPEG:                      YES
      avcodec:                   YES (58.54.100)
    GStreamer:                   YES (1.20.3)
    v4l/v4l2:                    YES (linux/videodev2.h)
"""
OPENCV3_VIDEO_IO = """
  Video I/O:
    FFMPEG:                      YES
    GStreamer:
      base:                      YES (ver 1.14.5)
      video:                     YES (ver 1.14.5)
    v4l/v4l2:                    NO
"""
NO_GSTREAMER_LINE = """
  Video I/O:
    FFMPEG:                      NO
    v4l/v4l2:                    YES (linux/videodev2.h)
"""


# --- GStreamer (finding 3) ---------------------------------------------------------------------
def test_build_information_says_whether_gstreamer_and_ffmpeg_are_in():
    assert not build_has(PIP_VIDEO_IO, "GStreamer") and build_has(PIP_VIDEO_IO, "FFMPEG")
    assert build_has(JETPACK_VIDEO_IO, "GStreamer") and build_has(JETPACK_VIDEO_IO, "ffmpeg")
    assert build_has(OPENCV3_VIDEO_IO, "GStreamer") and not build_has(OPENCV3_VIDEO_IO, "v4l/v4l2")
    assert not build_has(NO_GSTREAMER_LINE, "GStreamer") and not build_has(NO_GSTREAMER_LINE, "FFMPEG")
    real = cv2.getBuildInformation()  # this workplace's pip wheel: FFmpeg yes, GStreamer no
    assert build_has(real, "FFMPEG") and build_has(real, "GStreamer") == ("GStreamer:                   YES" in real)
    check_gstreamer(PIPELINE, build_info=JETPACK_VIDEO_IO)  # JetPack's OpenCV: nothing to say
    with pytest.raises(CorefaceError) as refused:
        check_gstreamer(PIPELINE, build_info=PIP_VIDEO_IO)
    message = str(refused.value)
    assert "\n" not in message and message.startswith("videotestsrc num-buffers=50 ! ...: this OpenCV build has no GStreamer")
    assert "opencv-python-headless" in message and "JetPack's OpenCV" in message and "docs/jetson.md" in message


@pytest.mark.skipif(build_has(cv2.getBuildInformation(), "GStreamer"), reason="this OpenCV has GStreamer")
def test_a_pipeline_on_an_opencv_without_gstreamer_fails_at_once_blaming_opencv_not_the_camera():
    start = time.monotonic()
    with pytest.raises(CorefaceError, match="this OpenCV build has no GStreamer") as refused:
        open_source(PIPELINE)
    assert time.monotonic() - start < 1 and "no camera there" not in str(refused.value)
    with pytest.raises(CorefaceError, match="no GStreamer"):
        open_source(sources.nvargus_pipeline())


# --- network streams: timeouts (finding 4) -----------------------------------------------------
def _jpeg(value: int) -> bytes:
    return cv2.imencode(".jpg", np.full((120, 160, 3), value, np.uint8))[1].tobytes()


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True


def _serve(handler) -> tuple[Server, str]:
    server = Server(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


@pytest.fixture
def stalling_mjpeg() -> Iterator[dict]:
    """An MJPEG camera (multipart/x-mixed-replace, like /tmp/review_gate/mjpeg.py) that sends a
    few frames on each connection, then stalls with the connection open (a hung camera)."""
    state = {"frames": 5, "stalled": threading.Event(), "connections": 0, "stop": threading.Event()}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            state["connections"] += 1
            self.send_response(200)
            self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
            self.end_headers()
            try:
                for k in range(state["frames"]):
                    body = _jpeg(40 * k % 255)
                    self.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n" % len(body) + body + b"\r\n")
                    self.wfile.flush()
                    time.sleep(0.04)
                state["stalled"].set()
                state["stop"].wait(120)  # the connection stays open, nothing more is sent
            except OSError:
                pass

        def log_message(self, *_: object) -> None:
            pass

    server, base = _serve(Handler)
    state["url"] = base + "/camera.mjpg"
    yield state
    state["stop"].set()
    server.shutdown()
    server.server_close()


def test_stream_timeouts_are_supported_by_this_opencv_and_accepted_by_ffmpeg(stalling_mjpeg: dict):
    assert stream_timeouts_supported()  # cv2 >= 4.5.4 with FFmpeg, as the package requires (>= 4.8)
    assert not stream_timeouts_supported("4.5.3", PIP_VIDEO_IO) and stream_timeouts_supported("4.5.4", PIP_VIDEO_IO)
    assert stream_timeouts_supported("4.10.0-dev", PIP_VIDEO_IO) and not stream_timeouts_supported("4.8.0", NO_GSTREAMER_LINE)
    assert source_kind("http://cam/x.mjpg") == source_kind("rtmp://cam/live") == source_kind("udp://239.0.0.1:5000") == "rtsp"
    cap = opener(stalling_mjpeg["url"], "rtsp")()
    try:
        assert cap.isOpened() and cap.getBackendName() == "FFMPEG"
        assert cap.read()[0]  # the timeouts are accepted (an unsupported parameter makes OpenCV refuse the open)
    finally:
        cap.release()


def test_a_stalled_stream_is_lost_within_the_read_timeout_and_reopened(stalling_mjpeg: dict):
    """Before: the stalled read blocked ~30 s (FFmpeg's default) and SIGTERM waited for it."""
    events: list[tuple[float, str, str]] = []
    source = open_source(stalling_mjpeg["url"], on_event=lambda kind, detail: events.append((time.monotonic(), kind, detail)))
    assert source.kind == "rtsp" and source.total is None
    got, last_frame_at = [], None
    for frame in source.frames:
        got.append(frame)
        if len(got) == stalling_mjpeg["frames"]:
            last_frame_at = time.monotonic()
        if len(got) == 2 * stalling_mjpeg["frames"]:  # all frames of the first and of the reopened connection
            break
    source.frames.close()
    kinds = [kind for _, kind, _ in events]
    assert kinds == ["source_lost", "source_reopened"] and stalling_mjpeg["connections"] == 2
    lost_after = events[0][0] - last_frame_at
    assert STREAM_READ_TIMEOUT_S - 1 < lost_after < STREAM_READ_TIMEOUT_S + 2, lost_after
    assert all(f.image.shape == (120, 160, 3) for f in got) and [f.index for f in got] == list(range(10))


def test_a_silent_host_fails_to_open_within_the_open_timeout():
    """A server that accepts the TCP connection and never answers (a camera still booting)."""
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    try:
        for url in (f"http://127.0.0.1:{silent.getsockname()[1]}/x.mjpg", f"rtsp://127.0.0.1:{silent.getsockname()[1]}/live"):
            start = time.monotonic()
            with pytest.raises(CorefaceError, match=r"stream is unreachable or gave no answer within 5 s\)$"):
                open_source(url)
            assert time.monotonic() - start < STREAM_OPEN_TIMEOUT_S + 2
    finally:
        silent.close()


def test_without_stream_timeouts_the_gate_says_so_and_still_runs(stalling_mjpeg: dict, monkeypatch: pytest.MonkeyPatch):
    """An OpenCV older than 4.5.4 (simulated: this one has them) opens the stream as before."""
    monkeypatch.setattr(sources, "stream_timeouts_supported", lambda *_: False)
    events: list[tuple[str, str]] = []
    source = open_source(stalling_mjpeg["url"], on_event=lambda *event: events.append(event))
    assert events == []  # nothing is announced before the gate asks for the first frame
    first = next(source.frames)
    source.frames.close()
    assert first.index == 0 and [kind for kind, _ in events] == ["source_warning"]
    assert "sets no stream timeouts" in events[0][1] and "~30 s" in events[0][1]


# --- back-off resets only after a good frame (finding 7) ---------------------------------------
@pytest.fixture
def http_files(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """Python's http.server (no Range requests), as a quick video server would be."""
    quiet = type("Quiet", (http.server.SimpleHTTPRequestHandler,), {"log_message": lambda *_: None})
    handler = functools.partial(quiet, directory=str(tmp_path))
    server, base = _serve(handler)
    yield base, tmp_path
    server.shutdown()
    server.server_close()


def test_a_stream_that_opens_but_gives_no_frame_backs_off_instead_of_flooding(http_files: tuple[str, Path]):
    """An MP4 (index at the end) over a server without Range support: FFmpeg opens it, then no
    frame can be read. Before: source_lost/source_reopened every 0.5 s forever."""
    base, folder = http_files
    video = folder / "people.mp4"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 10, (320, 240))
    rng = np.random.default_rng(0)
    for _ in range(5):
        writer.write(rng.integers(0, 255, (240, 320, 3), dtype=np.uint8))
    writer.release()
    local = cv2.VideoCapture(str(video))
    assert sum(local.read()[0] for _ in range(5)) == 5  # the file itself is fine
    local.release()
    url = f"{base}/people.mp4"
    open_capture = opener(url, "rtsp")
    cap = open_checked(open_capture, url, "rtsp")  # it opens ...
    events: list[str] = []

    def on_event(kind: str, detail: str) -> None:
        events.append(f"{kind}: {detail}")
        assert len(events) < 40, "the back-off never grows: " + " | ".join(events[-4:])

    sleeps: list[float] = []
    with pytest.raises(CorefaceError, match="source lost and 4 reopen attempts failed"):
        for _ in live_frames(cap, open_capture, url, Backoff(0.5, 2.0, 30.0), max_reopens=4, on_event=on_event, sleep=sleeps.append):
            pytest.fail("no frame was expected from this stream")
    assert sleeps == [0.5, 1.0, 2.0, 4.0]  # ... but gives no frame: every attempt waits longer
    assert events == [f"source_lost: {url}: opened but gave no frame"] + [
        f"source_reopened: {url} after {k} attempt(s)" if j == 0 else f"source_lost: {url}: opened but gave no frame"
        for k in range(1, 5)
        for j in range(2)
    ]


# --- SIGTERM on a gate whose stream stalled (finding 4, end to end) -----------------------------
@pytest.fixture(scope="module")
def small_site(tmp_path_factory: pytest.TempPathFactory, face_photos: list[Path]) -> dict[str, Path]:
    """The shipped ONNX model and a one-person gallery, enrolled through the CLI."""
    from typer.testing import CliRunner

    from coreface_edge.cli import app

    root = tmp_path_factory.mktemp("sources_site")
    model = root / "model.onnx"
    shutil.copy(Path(sources.__file__).parents[1] / "assets" / "models" / f"{DEFAULT_MODEL}.onnx", model)
    (root / "ann").mkdir()
    shutil.copy(face_photos[0], root / "ann" / face_photos[0].name)
    args = ["enroll", "--model", model, "--gallery", root / "g.db", "--name", "ann", "--images", root / "ann", "--threshold", "0.5"]
    result = CliRunner().invoke(app, list(map(str, args)))
    assert result.exit_code == 0, result.output
    return {"root": root, "model": model, "gallery": root / "g.db"}


def _gate(site: dict[str, Path], source: str) -> subprocess.Popen:
    args = ["gate", source, "--model", site["model"], "--gallery", site["gallery"], "--threshold", "0.5"]
    args += ["--audit", site["root"] / "audit.db"]
    command = [sys.executable, "-m", "coreface_edge", *map(str, args)]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_sigterm_stops_a_gate_whose_stream_stalled_within_the_read_timeout(small_site: dict[str, Path], stalling_mjpeg: dict):
    proc = _gate(small_site, stalling_mjpeg["url"])
    try:
        assert stalling_mjpeg["stalled"].wait(60), "the gate never connected"
        time.sleep(1.0)  # the few frames are processed; the gate now blocks in the stalled read
        sent = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=STREAM_READ_TIMEOUT_S + 10)  # before: ~25 s
        stopped_after = time.monotonic() - sent
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    print(f"SIGTERM -> exit: {stopped_after:.2f} s")
    assert stopped_after < STREAM_READ_TIMEOUT_S + 3, stopped_after
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["event"] == "summary" and summary["stopped_by"] == "SIGTERM" and 1 <= summary["frames"] <= stalling_mjpeg["frames"]


@pytest.mark.skipif(build_has(cv2.getBuildInformation(), "GStreamer"), reason="this OpenCV has GStreamer")
def test_the_gate_refuses_a_pipeline_in_one_line_on_pip_opencv(small_site: dict[str, Path]):
    proc = _gate(small_site, PIPELINE)
    out, err = proc.communicate(timeout=120)
    lines = [line for line in err.splitlines() if line.strip()]
    assert proc.returncode == 2 and len(lines) == 1, err
    assert lines[0].startswith("error: videotestsrc num-buffers=50 ! ...: this OpenCV build has no GStreamer")
