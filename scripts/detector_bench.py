"""YuNet through ONNX Runtime (the toolkit's detector) against OpenCV's FaceDetectorYN, same frames.

Alternates the two detectors in rounds on walkers.mp4 frames at the gate's views (768x432 for a
1080p camera, 320x180 and the full 1920x1080) and prints p50 ms per frame and their ratio.
Run: ``python scripts/detector_bench.py ../shared/data/video/walkers.mp4 --frames 60 --rounds 3``.
"""

from __future__ import annotations

import argparse
import time

import cv2
import numpy as np

from coreface_edge.face import YuNetDetector, default_detector_path


def read_frames(video: str, count: int) -> list[np.ndarray]:
    capture = cv2.VideoCapture(video)
    frames = []
    while len(frames) < count:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame)
    capture.release()
    return frames


def p50_ms(detect, frames: list[np.ndarray]) -> float:
    times = []
    for frame in frames:
        start = time.perf_counter()
        detect(frame)
        times.append((time.perf_counter() - start) * 1e3)
    return float(np.median(times))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("video")
    parser.add_argument("--frames", type=int, default=60)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    full = read_frames(args.video, args.frames)
    ours = YuNetDetector()
    print("| view | round | OpenCV FaceDetectorYN p50 ms | ONNX Runtime YuNet p50 ms | ratio |\n|---|---|---|---|---|")
    for side in (768, 320, 1920):
        frames = [cv2.resize(f, (side, side * f.shape[0] // f.shape[1]), interpolation=cv2.INTER_AREA) for f in full]
        h, w = frames[0].shape[:2]
        opencv = cv2.FaceDetectorYN.create(str(default_detector_path()), "", (w, h), 0.5, 0.3, 50)
        for detect in (opencv.detect, ours.detect):  # warm-up
            for frame in frames[:5]:
                detect(frame)
        for r in range(args.rounds):
            a, b = p50_ms(opencv.detect, frames), p50_ms(ours.detect, frames)
            print(f"| {w}x{h} | {r + 1} | {a:.2f} | {b:.2f} | {b / a:.2f}x |", flush=True)


if __name__ == "__main__":
    main()
