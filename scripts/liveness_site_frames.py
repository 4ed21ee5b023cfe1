"""Labelled captures to fine-tune and measure the liveness models on, in folders as a site would
record them (``live/``, ``attack/``), from one of two sources:

- ``--source cfp``: CFP frontal photos of the ``--identities``, each shown once as a person in a
  real scene (a window of a walkers.mp4 frame) and once as a print or a phone screen held up in
  such a scene or before a grey wall (CFP's terms: research use);
- ``--source walkers``: each face of the walkers.mp4 (MIT) frames, ``--attacks-per-face`` times
  in a window of its own frame (bona fide) and as many times cut out (head and shoulders) and
  held up as a print or a screen in such a scene or before a grey wall; both through the
  synthetic camera, so that the two differ only in the presentation.

Photo heights are drawn from ``--heights``; the scenes come from the ``--scene-frames`` of
walkers.mp4 (the benchmark's are 53 on). The attacks are synthetic
(coreface_edge.liveness.synthetic): see that module for what they can and cannot stand for.

    python scripts/liveness_site_frames.py --source cfp --identities 1-400 --out site_cfp_train
    python scripts/liveness_site_frames.py --source walkers --scene-frames 53 104 --out check_walkers
    coreface-edge liveness finetune --live site_cfp_train/live --attack site_cfp_train/attack \\
        --weights ../shared/models/minifasnet/2.7_80x80_MiniFASNetV2.pth,../shared/models/minifasnet/4_0_0_80x80_MiniFASNetV1SE.pth -o site_models
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np

from liveness_benchmark import SCENE_SPLIT, video_frames

from coreface_edge.data.cfp import parse_identities
from coreface_edge.errors import CorefaceError
from coreface_edge.face.detector import YuNetDetector
from coreface_edge.face.frontend import FaceFrontEnd
from coreface_edge.liveness.synthetic import ATTACKS, FRAME_H, FRAME_W, bona_fide_frame, camera, scene_from, synthetic_attack


def identities(text: str) -> list[int]:
    try:
        return parse_identities(text)
    except CorefaceError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--shared", type=Path, default=Path(__file__).resolve().parents[2] / "shared")
    parser.add_argument("--source", choices=("cfp", "walkers"), default="cfp")
    parser.add_argument("--identities", type=identities, default="1-400", help="CFP identities (--source cfp)")
    parser.add_argument("--attacks-per-face", type=int, default=4, help="--source walkers")
    parser.add_argument("--scene-frames", type=int, nargs=2, default=[0, SCENE_SPLIT - 1], metavar=("FIRST", "LAST"),
                        help=f"walkers.mp4 frames the scenes are cut from (the benchmark's are {SCENE_SPLIT} on)")
    parser.add_argument("--heights", type=int, nargs="+", default=[160, 200, 240, 280, 320])
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    first, last = args.scene_frames
    frames = {k: f for k, f in enumerate(video_frames(args.shared / "data" / "video" / "walkers.mp4")) if first <= k <= last}
    for sub in ("live", "attack"):
        (args.out / sub).mkdir(parents=True, exist_ok=True)
    if args.source == "cfp":
        cfp_sets(args, frames)
    else:
        walkers_sets(args, frames)


def write(path: Path, frame: np.ndarray) -> None:
    cv2.imwrite(str(path), frame, [cv2.IMWRITE_JPEG_QUALITY, 95])


def attack_frame(photo: np.ndarray, k: int, rng: np.random.Generator, heights: list[int], scene: np.ndarray) -> tuple[str, np.ndarray]:
    """Print or screen (alternating), at a drawn height, in ``scene`` three times in four, else on grey."""
    attack, height = ATTACKS[k % 2], int(rng.choice(heights))
    return attack, synthetic_attack(photo, attack, k, height, scene if rng.random() < 0.75 else None)


def cfp_sets(args: argparse.Namespace, frames: dict[int, np.ndarray]) -> None:
    images = args.shared / "data" / "cfp" / "Data" / "Images"
    photos = [p for i in args.identities for p in sorted((images / f"{i:03d}" / "frontal").glob("*.jpg"))]
    for k, path in enumerate(photos):
        rng = np.random.default_rng(k)
        photo, name = cv2.imread(str(path)), f"{path.parent.parent.name}_{path.stem}.jpg"
        scene = scene_from(list(frames.values())[int(rng.integers(len(frames)))], rng)
        write(args.out / "live" / name, bona_fide_frame(photo, k, int(rng.choice(args.heights)), scene))
        attack, frame = attack_frame(photo, k, rng, args.heights, scene)
        write(args.out / "attack" / f"{attack}_{name}", frame)


def face_window(frame: np.ndarray, box: np.ndarray, face_height: float, rng: np.random.Generator) -> np.ndarray:
    """A 640x480 window of ``frame`` around the face ``box``, scaled so the face is ``face_height`` px."""
    x, y, w, h = box
    win_h = min(FRAME_H * h / face_height, frame.shape[0])
    win_w = min(win_h * FRAME_W / FRAME_H, frame.shape[1])
    cx, cy = x + w / 2 + rng.uniform(-0.15, 0.15) * win_w, y + h / 2 + rng.uniform(-0.1, 0.1) * win_h
    x0 = int(np.clip(cx - win_w / 2, 0, frame.shape[1] - win_w))
    y0 = int(np.clip(cy - win_h / 2, 0, frame.shape[0] - win_h))
    return cv2.resize(frame[y0 : y0 + int(win_h), x0 : x0 + int(win_w)], (FRAME_W, FRAME_H), interpolation=cv2.INTER_LINEAR)


def walkers_sets(args: argparse.Namespace, frames: dict[int, np.ndarray]) -> None:
    """Per face of the scene frames: ``--attacks-per-face`` windows of the real frame around it
    (bona fide) and as many attacks of its head and shoulders; both through the same camera."""
    front = FaceFrontEnd(YuNetDetector(), None, max_faces=8)
    scenes, k = list(frames.values()), 0
    for index, frame in frames.items():
        faces = front.faces(frame)
        for face in faces.ok:
            x, y, w, h = faces.boxes[face]
            x0, y0 = int(max(x - 0.5 * w, 0)), int(max(y - 0.6 * h, 0))
            photo = frame[y0 : int(y + 1.8 * h), x0 : int(x + 1.5 * w)]  # head and shoulders
            for _ in range(args.attacks_per_face):
                rng = np.random.default_rng(k)
                live = face_window(frame, faces.boxes[face], 0.6 * int(rng.choice(args.heights)), rng)
                write(args.out / "live" / f"walkers_{index:03d}_{face}_{k:04d}.jpg", camera(live.astype(np.float32), rng))
                attack, made = attack_frame(photo, k, rng, args.heights, scene_from(scenes[int(rng.integers(len(scenes)))], rng))
                write(args.out / "attack" / f"{attack}_{index:03d}_{face}_{k:04d}.jpg", made)
                k += 1


if __name__ == "__main__":
    main()
