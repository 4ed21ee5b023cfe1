"""Accuracy guard: does a converted model (INT8, FP16) still verify faces like the FP32 one?

Pure functions on embeddings: cosine agreement per face, and the verification protocol on
labelled held-out faces (every genuine/impostor pair; TAR at a FAR, and a 10-fold accuracy on
balanced pairs), through :mod:`coreface_edge.evaluation`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from ..evaluation.metrics import kfold_accuracy, roc_curve, tar_at_far
from ..evaluation.scores import exhaustive_scores, l2_normalize


@dataclass(frozen=True)
class Tolerance:
    """How far a converted model may drift from FP32 before the guard refuses it."""

    max_tar_drop_points: float = 0.5
    min_mean_cosine: float = 0.99
    far: float = 1e-3


@dataclass(frozen=True)
class Verification:
    """Verification on held-out faces: TAR at ``far`` over every pair, 10-fold accuracy on balanced pairs."""

    tar: float
    far: float
    accuracy: float
    n_genuine: int
    n_impostor: int


@dataclass
class GuardResult:
    """The verdict, with every number it rests on."""

    mean_cosine: float
    p1_cosine: float
    min_cosine: float
    n_faces: int
    reference: Verification
    candidate: Verification
    tolerance: Tolerance
    problems: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.problems

    @property
    def tar_drop_points(self) -> float:
        return 100.0 * (self.reference.tar - self.candidate.tar)

    def summary(self) -> str:
        far = f"{self.tolerance.far:g}"
        return (
            f"mean cosine {self.mean_cosine:.4f} (1st percentile {self.p1_cosine:.4f}) on {self.n_faces} held-out faces; "
            f"TAR@FAR={far} {100 * self.reference.tar:.2f}% -> {100 * self.candidate.tar:.2f}%, "
            f"accuracy {100 * self.reference.accuracy:.2f}% -> {100 * self.candidate.accuracy:.2f}%"
        )

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out.update(passed=self.passed, tar_drop_points=self.tar_drop_points)
        return out


def cosine_agreement(reference: np.ndarray, candidate: np.ndarray) -> np.ndarray:
    """Cosine between each face's two embeddings, ``(N,)``."""
    return np.einsum("nd,nd->n", l2_normalize(reference), l2_normalize(candidate))


def balanced_pair_folds(n_genuine: int, n_impostor: int, k: int = 10, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Indices of ``min(n_genuine, n_impostor)`` genuine and impostor pairs each, and a fold per pair.

    Fixed seed: the reference and the candidate model are scored on exactly the same pairs.
    """
    rng = np.random.default_rng(seed)
    m = min(n_genuine, n_impostor)
    gen = np.sort(rng.choice(n_genuine, m, replace=False))
    imp = np.sort(rng.choice(n_impostor, m, replace=False))
    folds = np.concatenate([np.arange(m) % k, np.arange(m) % k])
    return np.concatenate([gen, imp]), folds


def verification(embeddings: np.ndarray, labels: np.ndarray, far: float) -> Verification:
    """TAR@``far`` over every pair of these faces, and 10-fold accuracy on balanced pairs."""
    genuine, impostor = exhaustive_scores(l2_normalize(embeddings), np.asarray(labels))
    point = tar_at_far(roc_curve(genuine, impostor), far)
    m = min(genuine.size, impostor.size)
    picked, folds = balanced_pair_folds(genuine.size, impostor.size, k=min(10, m))
    scores = np.concatenate([genuine[picked[:m]], impostor[picked[m:]]])
    truth = np.concatenate([np.ones(m, bool), np.zeros(m, bool)])
    accuracy = kfold_accuracy(scores, truth, folds).mean
    return Verification(point.tar, far, accuracy, int(genuine.size), int(impostor.size))


def check_pairs(labels: np.ndarray, far: float) -> str | None:
    """Why these labels cannot measure TAR@``far`` (too few impostor or genuine pairs), or None."""
    labels = np.asarray(labels)
    _, counts = np.unique(labels, return_counts=True)
    n_pairs = labels.size * (labels.size - 1) // 2
    n_genuine = int((counts * (counts - 1) // 2).sum())
    need = int(np.ceil(1.0 / far))
    if n_genuine < 10:
        return f"{n_genuine} genuine pairs (need at least 10: several faces per identity)"
    if n_pairs - n_genuine < need:
        return f"{n_pairs - n_genuine} impostor pairs, need at least {need} to measure TAR at FAR={far:g}"
    return None


def judge(reference: np.ndarray, candidate: np.ndarray, labels: np.ndarray, tolerance: Tolerance = Tolerance()) -> GuardResult:
    """Compare ``candidate`` embeddings with the ``reference`` (FP32) ones of the same faces."""
    cos = cosine_agreement(reference, candidate)
    result = GuardResult(
        mean_cosine=float(cos.mean()),
        p1_cosine=float(np.percentile(cos, 1)),
        min_cosine=float(cos.min()),
        n_faces=int(cos.size),
        reference=verification(reference, labels, tolerance.far),
        candidate=verification(candidate, labels, tolerance.far),
        tolerance=tolerance,
    )
    if result.mean_cosine < tolerance.min_mean_cosine:
        result.problems.append(f"mean cosine to FP32 {result.mean_cosine:.4f} < {tolerance.min_mean_cosine:g}")
    if result.tar_drop_points > tolerance.max_tar_drop_points:
        result.problems.append(
            f"TAR@FAR={tolerance.far:g} fell {result.tar_drop_points:.2f} points "
            f"({100 * result.reference.tar:.2f}% -> {100 * result.candidate.tar:.2f}%), more than {tolerance.max_tar_drop_points:g}"
        )
    return result
