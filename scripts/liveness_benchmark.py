"""Liveness (presentation-attack detection) on the live faces and the attacks we have.

Bona fide: every frontal CFP photo of identities 401-500 pasted (``--photo-height`` px) in a
640x480 grey frame (as scripts/landmark_refinement.py builds them), and every face of
walkers.mp4; each goes through the gate's front end (YuNet, alignment, quality gate) and only
faces that pass quality are scored, as in the gate. Attacks: the three samples beside the
MiniFASNet weights, and synthetic print / screen re-imagings of the first ``--attack-photos``
frontal photos of each identity (coreface_edge.liveness.synthetic). Prints score quantiles,
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
from coreface_edge.liveness.synthetic import ATTACKS, synthetic_attack
from coreface_edge.pretrained import shipped_onnx_path
from coreface_edge.runtime import open_backend

SWEEP = (0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5)


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
    embedder = open_backend(str(shipped_onnx_path("mobilefacenet_coreface")), threads=threads)
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


def summary(scores: list[float], threshold: float, attack: bool) -> dict:
    s = np.asarray(scores)
    rate = apcer(s, threshold) if attack else bpcer(s, threshold)
    return {"faces": len(s), "rate": rate, "quantiles": {q: round(float(np.quantile(s, q / 100)), 4) for q in (1, 5, 10, 50, 90)} if len(s) else {},
            "sweep": {t: (apcer(s, t) if attack else bpcer(s, t)) for t in SWEEP}}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--shared", type=Path, default=Path(__file__).resolve().parents[2] / "shared")
    parser.add_argument("--photo-height", type=int, default=120)
    parser.add_argument("--attack-photos", type=int, default=2, help="frontal photos per identity turned into each attack")
    parser.add_argument("--threshold", type=float, default=None, help="default: the shipped one")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--write-frames", type=Path, help="write the bona fide CFP frames as JPEGs (quality 95) to this folder and stop")
    args = parser.parse_args()
    if args.write_frames:
        args.write_frames.mkdir(parents=True, exist_ok=True)
        for k, frame in enumerate(cfp_frames(args.shared / "data" / "cfp", args.photo_height)[0]):
            cv2.imwrite(str(args.write_frames / f"frame_{k:04d}.jpg"), frame, [cv2.IMWRITE_JPEG_QUALITY, 95])
        return
    checker = open_liveness(None, args.threshold, threads=args.threads)
    t = checker.threshold
    cfp = args.shared / "data" / "cfp"
    front = FaceFrontEnd(YuNetDetector(), None, max_faces=1)
    results: dict = {"threshold": t}
    frames, _ = cfp_frames(cfp, args.photo_height)
    live_cfp, cost = judged_scores(front, checker, frames)
    results["bona fide: CFP 401-500 frontal in 640x480"] = {**summary(live_cfp, t, False), "frames": len(frames), "liveness_ms_p50": statistics.median(cost)}
    walkers = FaceFrontEnd(YuNetDetector(), None, max_faces=8)
    live_walk, cost = judged_scores(walkers, checker, video_frames(args.shared / "data" / "video" / "walkers.mp4"))
    results["bona fide: walkers.mp4 (up to 8 faces per frame)"] = {**summary(live_walk, t, False), "liveness_ms_p50_per_frame": statistics.median(cost)}
    results["bona fide: both"] = summary(live_cfp + live_walk, t, False)
    results["every-frame cost (CFP frames 1-200, one face)"] = every_frame_cost(frames[:200], checker, args.threads)
    detector = YuNetDetector()
    samples = {}
    for path in sorted((args.shared / "models" / "minifasnet" / "samples").glob("*.jpg")):
        image = cv2.imread(str(path))
        found = detector.detect(image)
        best = found.select(found.order_by_size_and_centrality(image.shape)[:1])
        samples[path.name] = round(float(checker.score(image, best.boxes)[0]), 4)
    results["samples"] = samples
    photos = [p for i in range(401, 501) for p in sorted((cfp / "Data" / "Images" / f"{i:03d}" / "frontal").glob("*.jpg"))[: args.attack_photos]]
    for attack in ATTACKS:
        attack_frames = (synthetic_attack(cv2.imread(str(p)), attack, seed) for seed, p in enumerate(photos))
        scores, _ = judged_scores(front, checker, attack_frames)
        results[f"synthetic attack: {attack} ({len(photos)} frames)"] = summary(scores, t, True)
    print(json.dumps(results, indent=1))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
