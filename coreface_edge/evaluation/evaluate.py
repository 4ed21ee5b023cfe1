"""Protocol runs: embed each image once, then score every pair from the embedding matrix.

Each protocol returns ``(result, rocs)``: ``result`` is JSON-ready; ``result["rows"]`` maps a
row name (``FF``, ``FP``, or the .bin name) to ``{"accuracy": ..., "verification": ...}``,
and ``rocs`` maps the same names to their :class:`~.metrics.Roc` for plotting.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console

from ..errors import CorefaceError
from ..contract import Embedder
from .cfp_protocol import EVAL_FOLDS, SETTINGS, CfpImage, CfpProtocol
from .embedding import embed_batches, read_aligned
from .metrics import KFoldAccuracy, Roc, auc, contiguous_folds, equal_error_rate, kfold_accuracy, roc_curve, tar_at_far
from .scores import exhaustive_scores, pair_scores

FAR_TARGETS = (1e-2, 1e-3, 1e-4)


def far_label(far: float) -> str:
    """``1e-3`` -> ``"1e-3"`` (the key of a FAR target in results)."""
    return f"{far:.0e}".replace("e-0", "e-")


def _finite(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None


def verification_summary(genuine: np.ndarray, impostor: np.ndarray, far_targets: tuple[float, ...] = FAR_TARGETS) -> tuple[dict[str, Any], Roc]:
    """TAR at each FAR target (see :func:`~.metrics.tar_at_far`), AUC and EER of these scores."""
    roc = roc_curve(genuine, impostor)
    points = {far_label(far): tar_at_far(roc, far) for far in far_targets}
    summary = {
        "genuine_pairs": roc.n_genuine,
        "impostor_pairs": roc.n_impostor,
        "tar_at_far": {k: {"tar": p.tar, "far": p.far, "threshold": _finite(p.threshold)} for k, p in points.items()},
        "auc": auc(roc),
        "eer": equal_error_rate(roc),
    }
    return summary, roc


def kfold_summary(result: KFoldAccuracy, n_pairs: int) -> dict[str, Any]:
    """JSON form of a k-fold accuracy: mean, std, and each fold's accuracy and threshold."""
    return {
        "pairs": n_pairs,
        "mean": result.mean,
        "std": result.std,
        "folds": {str(f): {"accuracy": a, "threshold": _finite(t)} for f, a, t in zip(result.folds, result.accuracies, result.thresholds)},
    }


def score_cfp(
    protocol: CfpProtocol, images: list[CfpImage], embeddings: np.ndarray, identities: set[int]
) -> tuple[dict[str, Any], dict[str, Roc]]:
    """All CFP open-set figures from precomputed L2-normalised embeddings (row n = ``images[n]``).

    Official pairs of folds 09-10 with an image missing from ``images`` are dropped; their
    accuracy is ``None`` when fewer than two folds with both pair kinds remain.
    """
    row = {img: n for n, img in enumerate(images)}
    ids = np.array([img.identity for img in images])
    kinds = np.array([img.kind for img in images])
    frontal, profile = np.flatnonzero(kinds == "frontal"), np.flatnonzero(kinds == "profile")
    rows: dict[str, Any] = {}
    rocs: dict[str, Roc] = {}
    for setting in SETTINGS:
        pairs = protocol.pairs(setting, EVAL_FOLDS, identities)
        keep = np.array([a in row and b in row for a, b in zip(pairs.left, pairs.right)], dtype=bool)
        left = np.array([row[a] for a, k in zip(pairs.left, keep) if k], dtype=np.int64)
        right = np.array([row[b] for b, k in zip(pairs.right, keep) if k], dtype=np.int64)
        scores = pair_scores(embeddings, left, right)
        try:
            accuracy = kfold_summary(kfold_accuracy(scores, pairs.labels[keep], pairs.folds[keep]), int(keep.sum()))
        except ValueError:  # fewer than 2 folds, or a training fold without both pair kinds
            accuracy = None
        if setting == "FF":
            genuine, impostor = exhaustive_scores(embeddings[frontal], ids[frontal])
        else:
            genuine, impostor = exhaustive_scores(embeddings[frontal], ids[frontal], embeddings[profile], ids[profile])
        if genuine.size == 0 or impostor.size == 0:
            raise CorefaceError(f"--identities: {setting} needs genuine and impostor pairs; select 2+ identities with their images aligned")
        verification, rocs[setting] = verification_summary(genuine, impostor)
        rows[setting] = {"accuracy": accuracy, "official_pairs_dropped": int((~keep).sum()), "verification": verification}
    return {"rows": rows}, rocs


def evaluate_cfp(
    protocol: CfpProtocol,
    aligned_dir: Path,
    embedder: Embedder,
    identities: set[int],
    batch_size: int,
    console: Console,
) -> tuple[dict[str, Any], dict[str, Roc]]:
    """Embed every image of ``identities`` found in ``aligned_dir`` once, then :func:`score_cfp`."""
    listed = protocol.images(identities, "frontal") + protocol.images(identities, "profile")
    if not listed:
        raise CorefaceError(f"--identities: no CFP images listed for these identities in {protocol.root}")
    found = [(aligned_dir / img.aligned_relpath).is_file() for img in listed]
    present = [img for img, ok in zip(listed, found) if ok]
    missing = [img.aligned_relpath for img, ok in zip(listed, found) if not ok]
    if not present:
        raise CorefaceError(f"{aligned_dir}: no aligned CFP images found (expected e.g. {aligned_dir / listed[0].aligned_relpath})")
    start = time.perf_counter()
    batches = read_aligned([aligned_dir / img.aligned_relpath for img in present], batch_size)
    embeddings = embed_batches(batches, len(present), embedder, console, f"embedding {len(present)} CFP images")
    embedded = time.perf_counter()
    result, rocs = score_cfp(protocol, present, embeddings, identities)
    result.update(
        protocol="cfp",
        images={"listed": len(listed), "embedded": len(present), "missing": missing},
        timing_s={"embed": embedded - start, "score": time.perf_counter() - embedded},
    )
    return result, rocs


def evaluate_pairs(
    name: str,
    crops: np.ndarray,
    labels: np.ndarray,
    embedder: Embedder,
    batch_size: int,
    console: Console,
    n_folds: int = 10,
) -> tuple[dict[str, Any], dict[str, Roc]]:
    """Verification-.bin style: ``crops[2n]`` vs ``crops[2n+1]`` genuine when ``labels[n]``;
    accuracy over ``n_folds`` contiguous folds (fewer for fewer pairs; ``None`` when some
    training folds lack a pair kind), plus ROC figures over all pairs."""
    labels = np.asarray(labels, dtype=bool)
    if crops.shape[0] != 2 * labels.size:
        raise CorefaceError(f"{name}: {crops.shape[0]} images for {labels.size} pairs (expected 2 per pair)")
    if labels.all() or not labels.any():
        raise CorefaceError(f"{name}: needs both same and different pairs, got {int(labels.sum())} same of {labels.size}")
    start = time.perf_counter()
    batches = (crops[i : i + batch_size] for i in range(0, crops.shape[0], batch_size))
    embeddings = embed_batches(batches, crops.shape[0], embedder, console, f"embedding {crops.shape[0]} images")
    embedded = time.perf_counter()
    scores = pair_scores(embeddings, np.arange(0, crops.shape[0], 2), np.arange(1, crops.shape[0], 2))
    try:
        accuracy = kfold_summary(kfold_accuracy(scores, labels, contiguous_folds(labels.size, min(n_folds, labels.size))), labels.size)
    except ValueError:  # a single pair, or a training fold without both pair kinds
        accuracy = None
    verification, roc = verification_summary(scores[labels], scores[~labels])
    result = {
        "protocol": "bin",
        "rows": {name: {"accuracy": accuracy, "verification": verification}},
        "timing_s": {"embed": embedded - start, "score": time.perf_counter() - embedded},
    }
    return result, {name: roc}
