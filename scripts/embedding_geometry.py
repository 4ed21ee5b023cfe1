"""How a fixed linear map of a model's embeddings changes CFP open-set verification.

Embeds CFP 001-400 (to measure the map) and 401-500 (to score it) with MODEL, then scores the
L2-normalised embeddings as they are, centred (the training mean subtracted, fully and half-way),
centred + within-class whitened (WCCN), and sphere-lifted (:mod:`coreface_edge.models.spread`;
the shipped radius rule and a sweep): does spreading the cosine scores cost accuracy?
MODEL must be dlib's network *without* the lift:
``coreface-edge models import dlib_face_recognition_resnet_model_v1.dat -o raw.pt && coreface-edge export raw.pt -o raw.onnx``,
then ``python scripts/embedding_geometry.py raw.onnx --data data/cfp112``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from rich.console import Console

from coreface_edge.data.imagefolder import ImageFolder
from coreface_edge.evaluation.cfp_protocol import load_protocol
from coreface_edge.evaluation.embedding import embed_batches, open_embedder, read_aligned
from coreface_edge.evaluation.evaluate import score_cfp
from coreface_edge.models.spread import lift_parameters, sphere_lift


def normalised(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("--data", type=Path, required=True, help="prepare-cfp output")
    parser.add_argument("--cfp-root", type=Path, default=Path("../shared/data/cfp"))
    args = parser.parse_args()
    console = Console(stderr=True)
    embedder, _ = open_embedder(args.model)
    train = ImageFolder(args.data, "1-400")
    fit = embed_batches(read_aligned([p for p, _ in train.samples], 64), len(train), embedder, console, "CFP 001-400")
    protocol, identities = load_protocol(args.cfp_root), set(range(401, 501))
    listed = protocol.images(identities, "frontal") + protocol.images(identities, "profile")
    test = embed_batches(read_aligned([args.data / i.aligned_relpath for i in listed], 64), len(listed), embedder, console, "CFP 401-500")
    labels = np.asarray(train.labels)
    mean = fit.mean(axis=0)
    centres = np.stack([fit[labels == c].mean(axis=0) for c in range(train.num_classes)])
    within = (fit - centres[labels]).T @ (fit - centres[labels]) / len(fit)
    values, vectors = np.linalg.eigh(within + 1e-3 * np.eye(within.shape[0]))
    whitening = vectors @ np.diag(values**-0.5) @ vectors.T
    maps = {"as is": test, "centred": test - mean, "centred half-way": test - 0.5 * mean, "centred + WCCN": (test - mean) @ whitening}
    lift_mean, radius = lift_parameters(torch.from_numpy(fit))
    for scale, name in [(1.0, "sphere lift, R = max of 001-400 (shipped)"), (0.85, "sphere lift, R x 0.85"), (0.93, "sphere lift, R x 0.93"),
                        (1.12, "sphere lift, R x 1.12"), (1.5, "sphere lift, R x 1.5"), (3.0, "sphere lift, R x 3")]:
        maps[f"{name} = {float(radius) * scale:.3f}"] = sphere_lift(torch.from_numpy(test), lift_mean, radius * scale).numpy()
    print("| map | FF acc | FF TAR@1e-3 | FF TAR@1e-4 | FP acc | FP TAR@1e-3 | FF threshold @1e-4 |\n|---|---|---|---|---|---|---|")
    for name, embeddings in maps.items():
        rows = score_cfp(protocol, listed, normalised(embeddings), identities)[0]["rows"]
        ff, fp = rows["FF"], rows["FP"]
        tar = lambda row, far: row["verification"]["tar_at_far"][far]["tar"]  # noqa: E731
        print(f"| {name} | {ff['accuracy']['mean']:.2%} | {tar(ff, '1e-3'):.2%} | {tar(ff, '1e-4'):.2%} | {fp['accuracy']['mean']:.2%} | "
              f"{tar(fp, '1e-3'):.2%} | {ff['verification']['tar_at_far']['1e-4']['threshold']:.3f} |")


if __name__ == "__main__":
    main()
