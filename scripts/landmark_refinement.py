"""Landmark refinement of small faces: verification accuracy on CFP 401-500 and detect cost.

1. Every frontal CFP photo of identities 401-500, scaled to ``--photo-height`` px and pasted in a
   640x480 grey frame, goes through the gate's front end (YuNet, auto 320 px view) with and
   without ``refine`` and with detection on the whole 640 px frame; the shipped model embeds the
   crops; all frontal pairs are scored (TAR@FAR, and at the shipped threshold).
2. With ``--video``: the detect stage on its first 60 frames, ``--max-faces 8``, refine on and
   off interleaved (the cost in a crowded 1080p scene).

    python scripts/landmark_refinement.py --photo-height 120 --video ../shared/data/video/walkers.mp4
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import cv2
import numpy as np

from coreface_edge.evaluation.metrics import roc_curve, tar_at_far
from coreface_edge.evaluation.scores import exhaustive_scores
from coreface_edge.face.detector import YuNetDetector
from coreface_edge.face.frontend import FaceFrontEnd
from coreface_edge.pretrained import DEFAULT_MODEL, shipped_onnx_path
from coreface_edge.runtime import open_backend

SHIPPED_THRESHOLD = 0.9929
ARMS = {"320 px view": (None, False), "320 px view + refine": (None, True), "640 px (whole frame)": (640, False)}


def cfp_frames(cfp: Path, photo_height: int) -> tuple[list[np.ndarray], np.ndarray]:
    frames, labels = [], []
    for identity in range(401, 501):
        for path in sorted((cfp / "Data" / "Images" / f"{identity:03d}" / "frontal").glob("*.jpg")):
            photo = cv2.imread(str(path))
            photo = cv2.resize(photo, (round(photo.shape[1] * photo_height / photo.shape[0]), photo_height), interpolation=cv2.INTER_AREA)[:, :640]
            frame = np.full((480, 640, 3), 110, np.uint8)
            y0, x0 = (480 - photo.shape[0]) // 2, (640 - photo.shape[1]) // 2
            frame[y0 : y0 + photo.shape[0], x0 : x0 + photo.shape[1]] = photo
            frames.append(frame)
            labels.append(identity)
    return frames, np.array(labels)


def accuracy(frames: list[np.ndarray], labels: np.ndarray, side: int | None, refine: bool) -> dict[str, float]:
    backend = open_backend(str(shipped_onnx_path(DEFAULT_MODEL)), threads=2)
    front = FaceFrontEnd(YuNetDetector(), backend.embed, detect_side=side, refine=refine)
    embeddings, kept, detect_ms = [], [], []
    for k, frame in enumerate(frames):
        faces = front.faces(frame)
        detect_ms.append(faces.timings["detect"])
        if len(faces.crops):
            embeddings.append(backend.embed(faces.crops[:1])[0])
            kept.append(k)
    unit = np.stack(embeddings) / np.linalg.norm(np.stack(embeddings), axis=1, keepdims=True)  # cosine scores
    genuine, impostor = exhaustive_scores(unit, labels[kept])
    roc = roc_curve(genuine, impostor)
    return {
        "faces": len(kept),
        "detect_ms_p50": statistics.median(detect_ms),
        "tar@1e-3": tar_at_far(roc, 1e-3).tar,
        "tar@1e-4": tar_at_far(roc, 1e-4).tar,
        "tar_at_shipped_threshold": float((genuine >= SHIPPED_THRESHOLD).mean()),
        "far_at_shipped_threshold": float((impostor >= SHIPPED_THRESHOLD).mean()),
    }


def video_cost(video: Path, frames_n: int = 60) -> dict[str, float]:
    capture = cv2.VideoCapture(str(video))
    frames = [f for ok, f in (capture.read() for _ in range(frames_n)) if ok]
    fronts = {refine: FaceFrontEnd(YuNetDetector(), None, max_faces=8, refine=refine) for refine in (False, True)}
    detect: dict[bool, list[float]] = {False: [], True: []}
    passing = {False: 0, True: 0}
    for repeat in range(2):  # the first pass warms up
        for frame in frames:
            for refine, front in fronts.items():
                faces = front.faces(frame)
                if repeat:
                    detect[refine].append(faces.timings["detect"])
                    passing[refine] += len(faces.ok)
    return {
        "detect_ms_p50_plain": statistics.median(detect[False]),
        "detect_ms_p50_refine": statistics.median(detect[True]),
        "faces_passing_quality_plain": passing[False],
        "faces_passing_quality_refine": passing[True],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cfp", type=Path, default=Path("../shared/data/cfp"))
    parser.add_argument("--photo-height", type=int, default=120, help="height of each CFP photo in the 640x480 frame")
    parser.add_argument("--video", type=Path, help="also measure the detect cost on this video's first 60 frames")
    args = parser.parse_args()
    frames, labels = cfp_frames(args.cfp, args.photo_height)
    result = {"photo_height": args.photo_height, "arms": {name: accuracy(frames, labels, *arm) for name, arm in ARMS.items()}}
    if args.video:
        result["video"] = video_cost(args.video)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
