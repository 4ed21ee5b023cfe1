"""Measure where YuNet's 5 points fall on dlib's 150x150 face chips (``DLIB_CHIP_TEMPLATE``).

dlib's face-recognition ResNet was trained on chips from ``dlib.get_face_chip(img, shape, 150,
0.25)`` with its own 5-point shape predictor. The project aligns with YuNet's points on the
ArcFace template, so ``models/dlib_resnet.py`` needs the chip's frame in YuNet's terms: this
script cuts dlib's chip from CFP training photos (identities 001-400 only), runs YuNet on each
chip (inside a black border, so the face is not at the image edge) and prints the mean points.

Needs ``pip install dlib-bin face-recognition-models`` (its 5-point predictor, CC0).
Run: ``python scripts/dlib_chip_template.py --cfp ../shared/data/cfp``.
"""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path

import cv2
import dlib
import numpy as np

from coreface_edge.face.alignment import ARCFACE_TEMPLATE, estimate_similarity
from coreface_edge.face.detector import YuNetDetector

BORDER = 75


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cfp", type=Path, default=Path("../shared/data/cfp"))
    parser.add_argument("--every", type=int, default=3, help="Use every n-th photo (frontal 01-02 of identities 001-400).")
    args = parser.parse_args()
    models = Path(importlib.util.find_spec("face_recognition_models").origin).parent / "models"
    predictor = dlib.shape_predictor(str(models / "shape_predictor_5_face_landmarks.dat"))
    detector = YuNetDetector()
    photos = sorted(p for p in (args.cfp / "Data" / "Images").glob("[0-3][0-9][0-9]/frontal/0[12].jpg") if 1 <= int(p.parts[-3]) <= 400)
    points = []
    for photo in photos[:: args.every]:
        bgr = cv2.imread(str(photo))
        found = detector.detect(bgr)
        if not len(found):
            continue
        x, y, w, h = found.boxes[int(found.order_by_size_and_centrality(bgr.shape)[0])]
        rgb = np.ascontiguousarray(bgr[..., ::-1])
        chip = dlib.get_face_chip(rgb, predictor(rgb, dlib.rectangle(int(x), int(y), int(x + w), int(y + h))), 150, 0.25)
        canvas = cv2.copyMakeBorder(np.ascontiguousarray(chip[..., ::-1]), BORDER, BORDER, BORDER, BORDER, cv2.BORDER_CONSTANT)
        on_chip = detector.detect(canvas)
        if len(on_chip):
            points.append(on_chip.landmarks[int(on_chip.order_by_size_and_centrality(canvas.shape)[0])] - BORDER)
    stacked = np.asarray(points)
    template = stacked.mean(axis=0)
    print(f"{len(stacked)} chips; DLIB_CHIP_TEMPLATE (x, y per point):\n{np.round(template, 2).tolist()}")
    print(f"spread (std, px): {np.round(stacked.std(axis=0), 2).tolist()}")
    print(f"ArcFace 112 crop -> chip similarity:\n{np.round(estimate_similarity(ARCFACE_TEMPLATE, template), 4)}")


if __name__ == "__main__":
    main()
