"""Verification metrics on similarity scores: ROC, TAR@FAR, AUC, EER, accuracy, k-fold accuracy.

Conventions shared by every function here:

* a pair is **accepted** when ``score >= threshold`` (higher score = more similar);
* FAR = accepted impostors / impostors, TAR = accepted genuines / genuines;
* the ROC is evaluated at every *distinct* score, so pairs with equal scores are always
  accepted or rejected together (ties never split); its first point is ``threshold=+inf``
  (nothing accepted, FAR = TAR = 0) and its last is the lowest score (FAR = TAR = 1);
* operating points are never interpolated (except the EER, see :func:`equal_error_rate`).

Everything is vectorised NumPy: one sort of all scores, then cumulative sums.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

_REL_TOL = 1e-9  # k / n <= target compared with this slack, so FAR = 1e-3 on n = 1000 counts 1


@dataclass(frozen=True)
class Roc:
    """ROC at every distinct score, thresholds descending (first ``+inf``)."""

    thresholds: np.ndarray
    far: np.ndarray
    tar: np.ndarray
    n_genuine: int
    n_impostor: int


@dataclass(frozen=True)
class OperatingPoint:
    """One ROC point: accept ``score >= threshold``; the FAR and TAR it gives."""

    threshold: float
    far: float
    tar: float


@dataclass(frozen=True)
class KFoldAccuracy:
    """Accuracy per held-out fold, each with the threshold chosen on the other folds."""

    folds: list[int]
    accuracies: list[float]
    thresholds: list[float]

    @property
    def mean(self) -> float:
        return float(np.mean(self.accuracies))

    @property
    def std(self) -> float:
        """Population standard deviation over folds (as the LFW/insightface tools report it)."""
        return float(np.std(self.accuracies))


def _scores(values: np.ndarray, what: str) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64).ravel()
    if arr.size == 0:
        raise ValueError(f"no {what} scores")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{what} scores contain NaN or inf")
    return arr


def roc_curve(genuine: np.ndarray, impostor: np.ndarray) -> Roc:
    """FAR and TAR at ``+inf`` and at every distinct score, thresholds descending."""
    gen = _scores(genuine, "genuine")
    imp = _scores(impostor, "impostor")
    scores = np.concatenate([gen, imp])
    is_genuine = np.concatenate([np.ones(gen.size, np.int64), np.zeros(imp.size, np.int64)])
    order = np.argsort(-scores)  # order within a run of equal scores does not matter
    ranked = scores[order]
    accepted_genuine = np.cumsum(is_genuine[order])
    accepted_impostor = np.arange(1, ranked.size + 1) - accepted_genuine
    group_end = np.r_[ranked[1:] != ranked[:-1], True]  # last pair of each run of equal scores
    return Roc(
        thresholds=np.r_[np.inf, ranked[group_end]],
        far=np.r_[0, accepted_impostor[group_end]] / imp.size,
        tar=np.r_[0, accepted_genuine[group_end]] / gen.size,
        n_genuine=int(gen.size),
        n_impostor=int(imp.size),
    )


def tar_at_far(roc: Roc, far_target: float) -> OperatingPoint:
    """The ROC point with the lowest threshold whose FAR is still ``<= far_target``.

    No interpolation: the returned TAR is the highest TAR any threshold reaches without its
    empirical FAR exceeding the target (so the reported FAR is usually a little below it).
    With fewer than ``1 / far_target`` impostors this can be the ``+inf`` point (TAR 0).
    """
    if far_target < 0:
        raise ValueError(f"FAR target must be >= 0, got {far_target}")
    k = int(np.searchsorted(roc.far, far_target * (1 + _REL_TOL), side="right")) - 1
    return OperatingPoint(float(roc.thresholds[k]), float(roc.far[k]), float(roc.tar[k]))


def threshold_for_far(impostor: np.ndarray, far_target: float) -> float:
    """Smallest threshold that accepts at most ``far_target`` of these impostor scores.

    Returns the smallest impostor score ``s`` with ``mean(impostor >= s) <= far_target``
    (equal scores counted together, no interpolation); when even the highest impostor
    score would exceed the target, the next float above it (FAR 0).
    """
    imp = _scores(impostor, "impostor")
    if far_target < 0:
        raise ValueError(f"FAR target must be >= 0, got {far_target}")
    allowed = np.floor(far_target * imp.size * (1 + _REL_TOL))
    values, counts = np.unique(imp, return_counts=True)  # ascending
    accepted = np.cumsum(counts[::-1])[::-1]  # impostors with score >= values[i]
    ok = np.flatnonzero(accepted <= allowed)
    if ok.size == 0:
        return float(np.nextafter(values[-1], np.inf))
    return float(values[ok[0]])


def auc(roc: Roc) -> float:
    """Area under the ROC (trapezoids; equals P(genuine > impostor) + P(tie) / 2)."""
    return float(np.sum(np.diff(roc.far) * (roc.tar[1:] + roc.tar[:-1])) / 2.0)


def equal_error_rate(roc: Roc) -> float:
    """Rate where FAR equals FRR = 1 - TAR.

    Found on the first ROC segment where FRR - FAR turns ``<= 0``, by linear interpolation
    between that segment's two ROC points (exact when a point has FAR == FRR).
    """
    gap = (1.0 - roc.tar) - roc.far  # +1 at threshold +inf, -1 at the lowest score
    k = int(np.argmax(gap <= 0))
    if gap[k] == 0:
        return float(roc.far[k])
    alpha = gap[k - 1] / (gap[k - 1] - gap[k])
    return float(roc.far[k - 1] + alpha * (roc.far[k] - roc.far[k - 1]))


def accuracy_at(scores: np.ndarray, labels: np.ndarray, threshold: float) -> float:
    """Fraction of pairs decided right: genuine (label True) accepted, impostor rejected."""
    labels = np.asarray(labels, dtype=bool)
    return float(np.mean((np.asarray(scores) >= threshold) == labels))


def best_threshold(scores: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """``(threshold, accuracy)`` maximising accuracy on these pairs.

    Among equally accurate ROC points the one with the highest threshold wins; the threshold
    returned is the midpoint between that point's score and the next lower distinct score
    (any value in between decides these pairs identically; the midpoint generalises best).
    When accepting everything is best it is the lowest score; rejecting everything, ``+inf``.
    """
    scores = np.asarray(scores, dtype=np.float64).ravel()
    labels = np.asarray(labels, dtype=bool).ravel()
    roc = roc_curve(scores[labels], scores[~labels])
    correct = roc.tar * roc.n_genuine + (1.0 - roc.far) * roc.n_impostor
    k = int(np.argmax(correct))
    accuracy = float(correct[k] / (roc.n_genuine + roc.n_impostor))
    if k == 0 or k == roc.thresholds.size - 1:
        return float(roc.thresholds[k]), accuracy
    return float((roc.thresholds[k] + roc.thresholds[k + 1]) / 2.0), accuracy


def kfold_accuracy(scores: np.ndarray, labels: np.ndarray, folds: np.ndarray) -> KFoldAccuracy:
    """LFW-style accuracy: for each fold, pick :func:`best_threshold` on all *other* folds'
    pairs and measure accuracy on the held-out fold. Needs at least two folds."""
    scores = np.asarray(scores, dtype=np.float64).ravel()
    labels = np.asarray(labels, dtype=bool).ravel()
    folds = np.asarray(folds).ravel()
    if not scores.size == labels.size == folds.size:
        raise ValueError("scores, labels and folds must have the same length")
    fold_ids = np.unique(folds)
    if fold_ids.size < 2:
        raise ValueError(f"k-fold accuracy needs at least 2 folds, got {fold_ids.size}")
    accuracies, thresholds = [], []
    for fold in fold_ids:
        held_out = folds == fold
        threshold, _ = best_threshold(scores[~held_out], labels[~held_out])
        thresholds.append(threshold)
        accuracies.append(accuracy_at(scores[held_out], labels[held_out], threshold))
    return KFoldAccuracy([int(f) for f in fold_ids], accuracies, thresholds)


def contiguous_folds(n: int, k: int = 10) -> np.ndarray:
    """Fold index (0..k-1) of each of ``n`` pairs, split in order into ``k`` near-equal runs
    (the first ``n % k`` folds one longer), as the insightface .bin evaluation does."""
    if not 1 <= k <= n:
        raise ValueError(f"cannot split {n} pairs into {k} folds")
    sizes = np.full(k, n // k)
    sizes[: n % k] += 1
    return np.repeat(np.arange(k), sizes)
