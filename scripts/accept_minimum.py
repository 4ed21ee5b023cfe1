"""Minimum face size for an accept: FAR and FRR of the gate's front end per face width.

Frontal CFP photos of identities 401-500: the first ``--enroll`` of each person are enrolled
from the full photo (as ``coreface-edge enroll`` does); each other one is scaled so its face is
W px wide (YuNet box on the full photo) and pasted, face centred, in a 640x480 grey frame, then
goes through the gate's front end at its default settings (auto 320 px detector view, landmark
refinement, quality gate) and the model. Each judged probe is scored against every person (best
of their embeddings) at the model's stored threshold (or ``--threshold``):

- FRR: genuine comparisons below the threshold (faces lost by the detector or the quality gate
  count as rejected: "judged" says how many were left);
- FAR: impostor comparisons at or above it; "1:N" is the share of probes that match *someone
  else* at or above it over the whole gallery (what a stranger does at a 1:N gate per frame).

Baseline in the same run: the probes' full photos through the enrollment front end. Every judged
probe of every width is also binned by its eye distance and by its frontality (what the gate's rule reads).

    python scripts/accept_minimum.py [--model M.onnx] [--widths 30 40 50 60 70 80 100 140]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import cv2
import numpy as np

from coreface_edge.evaluation.metrics import roc_curve, tar_at_far
from coreface_edge.evaluation.scores import l2_normalize
from coreface_edge.face.detector import YuNetDetector
from coreface_edge.gate.gallery import GalleryMatrix
from coreface_edge.gate.matcher import person_scores
from coreface_edge.face.frontend import FULL_RESOLUTION, FaceFrontEnd
from coreface_edge.gate.threshold import open_model
from coreface_edge.threshold_file import load_threshold
from coreface_edge.pretrained import DEFAULT_MODEL, shipped_onnx_path
from coreface_edge.runtime.base import embed_in_batches

FRAME = (480, 640)
EYE_BINS = (0, 20, 24, 28, 32, 40, 1e9)
FRONTAL_BINS = (0, 0.6, 0.7, 0.8, 0.9, 1.01)


def photos_of(cfp: Path) -> dict[int, list[Path]]:
    return {i: sorted((cfp / "Data" / "Images" / f"{i:03d}" / "frontal").glob("*.jpg")) for i in range(401, 501)}


def place(photo: np.ndarray, box: np.ndarray, width: float, jpeg_quality: int | None = None) -> np.ndarray:
    """``photo`` scaled so ``box`` is ``width`` px wide, pasted with the face at the frame's centre;
    with ``jpeg_quality``, the frame as a camera streaming MJPEG at that quality delivers it."""
    s = width / float(box[2])
    scaled = cv2.resize(photo, None, fx=s, fy=s, interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR)
    frame = np.full((*FRAME, 3), 110, np.uint8)
    cx, cy = (box[0] + box[2] / 2) * s, (box[1] + box[3] / 2) * s
    ox, oy = round(FRAME[1] / 2 - cx), round(FRAME[0] / 2 - cy)  # photo origin in the frame
    x0, y0 = max(0, ox), max(0, oy)
    x1, y1 = min(FRAME[1], ox + scaled.shape[1]), min(FRAME[0], oy + scaled.shape[0])
    frame[y0:y1, x0:x1] = scaled[y0 - oy : y1 - oy, x0 - ox : x1 - ox]
    if jpeg_quality is None:
        return frame
    return cv2.imdecode(cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality])[1], cv2.IMREAD_COLOR)


def judge(front: FaceFrontEnd, images: list[np.ndarray]) -> tuple[list[int], np.ndarray, list[dict]]:
    """Indices of the images whose best face passed the quality gate, their embeddings, qualities."""
    kept, crops, qualities = [], [], []
    for k, image in enumerate(images):
        faces = front.faces(image)
        if len(faces.problems) and not faces.problems[0]:
            kept.append(k)
            crops.append(faces.crops[0])
            qualities.append(faces.qualities[0].as_dict())
    embeddings = embed_in_batches(front.embed_fn, np.stack(crops)) if crops else np.zeros((0, 1), np.float32)
    return kept, embeddings, qualities


def rates(scores: np.ndarray, labels: np.ndarray, threshold: float, total: int) -> dict:
    """FRR / FAR of probes ``scores`` (F, P) with true person index ``labels`` at ``threshold``."""
    genuine = scores[np.arange(len(labels)), labels] if len(labels) else np.zeros(0)
    impostor_mask = np.ones_like(scores, bool)
    impostor_mask[np.arange(len(labels)), labels] = False
    impostor = scores[impostor_mask]
    accepted_other = (np.where(impostor_mask, scores, -np.inf) >= threshold).any(axis=1) if len(labels) else np.zeros(0, bool)
    return {
        "probes": total,
        "judged": int(len(labels)),
        "frr": 1.0 - float((genuine >= threshold).sum()) / max(total, 1),
        "far": float((impostor >= threshold).mean()) if impostor.size else 0.0,
        "impostor_comparisons": int(impostor.size),
        "far_1n": float(accepted_other.mean()) if len(labels) else 0.0,
        "tar@1e-3": tar_at_far(roc_curve(genuine, impostor), 1e-3).tar if len(genuine) and impostor.size >= 1000 else None,
        "genuine_p50": float(np.median(genuine)) if len(genuine) else None,
        "impostor_p999": float(np.quantile(impostor, 0.999)) if impostor.size else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=shipped_onnx_path(DEFAULT_MODEL), help="[default: the shipped model]")
    parser.add_argument("--cfp", type=Path, default=Path("../shared/data/cfp"))
    parser.add_argument("--widths", type=float, nargs="+", default=[30, 40, 50, 60, 70, 80, 100, 140])
    parser.add_argument("--enroll", type=int, default=3, help="photos enrolled per person (full photo)")
    parser.add_argument("--threshold", type=float, help="[default: the model's stored threshold]")
    parser.add_argument("--jpeg-quality", type=int, help="frames JPEG-compressed at this quality (an MJPEG webcam) [default: none]")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path, help="also write the result here")
    args = parser.parse_args()
    started = time.time()
    backend, fingerprint = open_model(args.model, threads=args.threads)
    stored = load_threshold(args.model, fingerprint)
    threshold = args.threshold if args.threshold is not None else stored.threshold
    detector = YuNetDetector()
    enroll_front = FaceFrontEnd(detector, backend.embed, detect_side=FULL_RESOLUTION)
    gate_front = FaceFrontEnd(detector, backend.embed)  # the gate's defaults: auto view, refinement

    gallery_imgs, gallery_ids, probes, probe_ids, boxes = [], [], [], [], []
    for person, (identity, paths) in enumerate(photos_of(args.cfp).items()):
        for k, path in enumerate(paths):
            image = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if k < args.enroll:
                gallery_imgs.append(image)
                gallery_ids.append(person)
                continue
            found = enroll_front.faces(image)
            if len(found.boxes):
                probes.append(image)
                probe_ids.append(person)
                boxes.append(found.boxes[0])
    kept, gallery_emb, _ = judge(enroll_front, gallery_imgs)
    ids = np.array(gallery_ids)[kept]
    order = np.argsort(ids, kind="stable")
    starts = np.flatnonzero(np.r_[True, ids[order][1:] != ids[order][:-1]])
    persons = ids[order][starts]
    index_of = {int(p): i for i, p in enumerate(persons)}
    matrix = GalleryMatrix(l2_normalize(gallery_emb[order]), starts, tuple(map(int, persons)), tuple(map(str, persons)), (None,) * len(persons), fingerprint)  # fmt: skip
    probe_labels = np.array([index_of.get(p, -1) for p in probe_ids])

    def measure(images: list[np.ndarray], front: FaceFrontEnd) -> tuple[dict, np.ndarray, np.ndarray, list[dict]]:
        kept, emb, qualities = judge(front, images)
        labels = probe_labels[kept]
        valid = labels >= 0
        scores = person_scores(l2_normalize(emb), matrix) if len(kept) else np.zeros((0, len(matrix)))
        row = rates(scores[valid], labels[valid], threshold, len(images))
        row["eye_px_p50"] = float(np.median([q["size"] for q in qualities])) if qualities else None
        row["frontal_p50"] = float(np.median([q["frontal"] for q in qualities])) if qualities else None
        return row, scores[valid], labels[valid], [q for q, v in zip(qualities, valid) if v]

    result = {"model": str(args.model), "threshold": threshold, "jpeg_quality": args.jpeg_quality, "people": len(matrix), "gallery_embeddings": len(matrix.embeddings),
              "probes": len(probes), "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs",
              "rows": {}}  # fmt: skip
    result["rows"]["full photo (enrollment front end)"] = measure(probes, enroll_front)[0]
    pooled_scores, pooled_labels, pooled_q = [], [], []
    for width in args.widths:
        frames = [place(photo, box, width, args.jpeg_quality) for photo, box in zip(probes, boxes)]
        row, scores, labels, qualities = measure(frames, gate_front)
        result["rows"][f"{width:g} px wide in 640x480"] = row
        pooled_scores.append(scores)
        pooled_labels.append(labels)
        pooled_q += qualities
    scores, labels = np.concatenate(pooled_scores), np.concatenate(pooled_labels)
    for key, bins in (("size", EYE_BINS), ("frontal", FRONTAL_BINS)):
        value = np.array([q[key] for q in pooled_q])
        table = result[f"by_{key}"] = {}
        for lo, hi in zip(bins[:-1], bins[1:]):
            mask = (value >= lo) & (value < hi)
            if mask.any():
                table[f"{key} {lo:g}-{hi:g}" if hi < 1e8 else f"{key} >= {lo:g}"] = rates(scores[mask], labels[mask], threshold, int(mask.sum()))
    result["seconds"] = round(time.time() - started, 1)
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    print(f"\n| probe | judged / probes | eye px p50 | frontal p50 | TAR@1e-3 | FRR at {threshold:.4f} | FAR per comparison | 1:N FAR per frame |")
    print("|---|---|---|---|---|---|---|---|")
    for name, r in {**result["rows"], **result["by_size"], **result["by_frontal"]}.items():
        eye50 = f"{r['eye_px_p50']:.1f}" if r.get("eye_px_p50") else "-"
        front50 = f"{r['frontal_p50']:.2f}" if r.get("frontal_p50") else "-"
        tar = f"{100 * r['tar@1e-3']:.2f} %" if r["tar@1e-3"] is not None else "-"
        print(f"| {name} | {r['judged']} / {r['probes']} | {eye50} | {front50} | {tar} | {100 * r['frr']:.1f} % | "
              f"{r['far']:.2e} ({r['impostor_comparisons']}) | {100 * r['far_1n']:.2f} % |")  # fmt: skip


if __name__ == "__main__":
    main()
