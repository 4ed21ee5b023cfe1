"""Liveness (presentation-attack detection) on the live faces and the attacks we have.

Bona fide: every face of walkers.mp4 (real people, a real camera) and every frontal CFP photo of
identities 401-500 shown in 640x480 frames two ways: blended into a real scene (a window of a
walkers.mp4 frame from the second half) at each ``--heights`` px, and pasted with hard edges on grey at
``--photo-height`` px (as scripts/landmark_refinement.py builds them: the look of a held-up
print). Attacks: the three samples beside the MiniFASNet weights, and synthetic print / screen
re-imagings of the first ``--attack-photos`` frontal photos of each identity
(coreface_edge.liveness.synthetic) in the same scenes at the same heights, and on grey. Every
face goes through the gate's front end (YuNet, alignment, quality gate) and only faces that pass
quality are scored, as in the gate. Prints score quantiles,
BPCER / APCER per-frame at ``--threshold`` and over a threshold sweep, and the worst-case cost:
the gate's per-frame work (front end + the shipped model's embedding) against the liveness check
of the same face, alternating on the same frames (the gate itself checks far fewer frames).

    python scripts/liveness_benchmark.py --json liveness_benchmark.json
    python scripts/liveness_benchmark.py --write-frames cfp_frames   # only write the CFP frames (for profile --pipeline)
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import cv2
import numpy as np
from landmark_refinement import cfp_frames

from coreface_edge.face.detector import YuNetDetector
from coreface_edge.face.frontend import FaceFrontEnd
from coreface_edge.liveness.metrics import apcer, bpcer
from coreface_edge.liveness.runtime import open_liveness
from coreface_edge.liveness.synthetic import ATTACKS, bona_fide_frame, scene_from, synthetic_attack
from coreface_edge.pretrained import DEFAULT_MODEL, shipped_onnx_path
from coreface_edge.runtime import open_backend

SWEEP = (0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5)
SCENE_SPLIT = 53  # walkers.mp4 frames before this are liveness_site_frames.py's (fine-tuning), the rest the benchmark's


def judged_scores(front: FaceFrontEnd, checker, frames) -> tuple[list[float], list[float]]:
    """Liveness scores of the faces that pass the quality gate, and the liveness ms per frame."""
    scores, cost = [], []
    for frame in frames:
        faces = front.faces(frame)
        ok = faces.ok
        if not ok:
            continue
        t0 = time.perf_counter()
        scores.extend(checker.score(frame, faces.boxes[ok]).tolist())
        cost.append((time.perf_counter() - t0) * 1e3)
    return scores, cost


def every_frame_cost(frames: list[np.ndarray], checker, threads: int) -> dict:
    """Median ms per frame of the gate's front end + embedding, and of the liveness check of the
    same faces, measured alternately on the same frames (two passes, the first warms up)."""
    embedder = open_backend(str(shipped_onnx_path(DEFAULT_MODEL)), threads=threads)
    front = FaceFrontEnd(YuNetDetector(), embedder.embed)
    gate_ms, live_ms = [], []
    for attempt in range(2):
        for frame in frames:
            t0 = time.perf_counter()
            faces = front.judge(frame)
            t1 = time.perf_counter()
            if faces.ok:
                checker.score(frame, faces.boxes[faces.ok])
                if attempt:
                    gate_ms.append((t1 - t0) * 1e3)
                    live_ms.append((time.perf_counter() - t1) * 1e3)
    gate, live = statistics.median(gate_ms), statistics.median(live_ms)
    return {"frames": len(gate_ms), "gate_front_end_and_embed_ms_p50": round(gate, 2), "liveness_ms_p50": round(live, 2), "ratio": round(live / gate, 3)}


def video_frames(path: Path):
    capture = cv2.VideoCapture(str(path))
    while True:
        ok, frame = capture.read()
        if not ok:
            return
        yield frame


def scenes(video: Path, first: int = SCENE_SPLIT, every: int = 5) -> list[np.ndarray]:
    """Every ``every``-th frame of the video from ``first`` on: the real scenes faces are shown in."""
    return [frame for k, frame in enumerate(video_frames(video)) if k >= first and (k - first) % every == 0]


def summary(scores: list[float], threshold: float, attack: bool) -> dict:
    s = np.asarray(scores)
    rate = apcer(s, threshold) if attack else bpcer(s, threshold)
    return {"faces": len(s), "rate": rate, "quantiles": {q: round(float(np.quantile(s, q / 100)), 4) for q in (1, 5, 10, 50, 90)} if len(s) else {},
            "sweep": {t: (apcer(s, t) if attack else bpcer(s, t)) for t in SWEEP}}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--shared", type=Path, default=Path(__file__).resolve().parents[2] / "shared")
    parser.add_argument("--photo-height", type=int, default=120, help="the grey-paste frames' photo height")
    parser.add_argument("--heights", type=int, nargs="+", default=[160, 240, 320], help="photo heights in the real-scene frames")
    parser.add_argument("--attack-photos", type=int, default=2, help="frontal photos per identity turned into each attack")
    parser.add_argument("--threshold", type=float, default=None, help="default: the shipped one")
    parser.add_argument("--models", nargs="+", type=Path, help="liveness ONNX files (default: the shipped pair)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--write-frames", type=Path, help="write the bona fide CFP frames as JPEGs (quality 95) to this folder and stop")
    args = parser.parse_args()
    if args.write_frames:
        args.write_frames.mkdir(parents=True, exist_ok=True)
        for k, frame in enumerate(cfp_frames(args.shared / "data" / "cfp", args.photo_height)[0]):
            cv2.imwrite(str(args.write_frames / f"frame_{k:04d}.jpg"), frame, [cv2.IMWRITE_JPEG_QUALITY, 95])
        return
    checker = open_liveness(args.models, args.threshold, threads=args.threads)
    t = checker.threshold
    cfp = args.shared / "data" / "cfp"
    walkers_video = args.shared / "data" / "video" / "walkers.mp4"
    front = FaceFrontEnd(YuNetDetector(), None, max_faces=1)
    results: dict = {"threshold": t}
    walkers = FaceFrontEnd(YuNetDetector(), None, max_faces=8)
    first, cost_first = judged_scores(walkers, checker, (f for k, f in enumerate(video_frames(walkers_video)) if k < SCENE_SPLIT))
    second, cost_second = judged_scores(walkers, checker, (f for k, f in enumerate(video_frames(walkers_video)) if k >= SCENE_SPLIT))
    live_walk = first + second
    results["bona fide: walkers.mp4 (up to 8 faces per frame)"] = {**summary(live_walk, t, False), "liveness_ms_p50_per_frame": statistics.median(cost_first + cost_second)}
    results[f"bona fide: walkers.mp4 frames 0-{SCENE_SPLIT - 1} (liveness_site_frames.py's)"] = summary(first, t, False)
    results[f"bona fide: walkers.mp4 frames {SCENE_SPLIT}-104"] = summary(second, t, False)
    frames, _ = cfp_frames(cfp, args.photo_height)
    live_cfp, cost = judged_scores(front, checker, frames)
    results[f"CFP 401-500 frontal pasted on grey at {args.photo_height} px (hard photo edges)"] = {**summary(live_cfp, t, False), "frames": len(frames), "liveness_ms_p50": statistics.median(cost)}
    backgrounds = scenes(walkers_video)
    frontal = [sorted((cfp / "Data" / "Images" / f"{i:03d}" / "frontal").glob("*.jpg")) for i in range(401, 501)]
    photos = [p for person in frontal for p in person]
    attacked = [p for person in frontal for p in person[: args.attack_photos]]

    def scene(k: int) -> np.ndarray:
        return scene_from(backgrounds[k % len(backgrounds)], np.random.default_rng(10_000 + k))

    for height in args.heights:
        native, live_scene = [], []
        for k, path in enumerate(photos):
            photo = cv2.imread(str(path))
            scored, _ = judged_scores(front, checker, [bona_fide_frame(photo, k, height, scene(k))])
            native.extend([photo.shape[0]] * len(scored))
            live_scene.extend(scored)
        upscaled = np.asarray(native) < height
        results[f"bona fide: CFP 401-500 frontal in a real scene at {height} px"] = {
            **summary(live_scene, t, False),
            "photos shown larger than taken": summary(np.asarray(live_scene)[upscaled].tolist(), t, False),
            "photos shown at or below their size": summary(np.asarray(live_scene)[~upscaled].tolist(), t, False),
        }
        for attack in ATTACKS:
            made = (synthetic_attack(cv2.imread(str(p)), attack, k, height, scene(k)) for k, p in enumerate(attacked))
            results[f"synthetic attack: {attack} in a real scene at {height} px"] = summary(judged_scores(front, checker, made)[0], t, True)
    for attack in ATTACKS:
        made = (synthetic_attack(cv2.imread(str(p)), attack, k, args.photo_height) for k, p in enumerate(attacked))
        results[f"synthetic attack: {attack} on grey at {args.photo_height} px"] = summary(judged_scores(front, checker, made)[0], t, True)
    results["every-frame cost (CFP frames 1-200, one face)"] = every_frame_cost(frames[:200], checker, args.threads)
    detector = YuNetDetector()
    samples = {}
    for path in sorted((args.shared / "models" / "minifasnet" / "samples").glob("*.jpg")):
        image = cv2.imread(str(path))
        found = detector.detect(image)
        best = found.select(found.order_by_size_and_centrality(image.shape)[:1])
        samples[path.name] = round(float(checker.score(image, best.boxes)[0]), 4)
    results["samples"] = samples
    print(json.dumps(results, indent=1))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
