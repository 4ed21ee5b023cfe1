"""Matching face embeddings against the gallery: 1:N (best person) or 1:1 (claimed person).

Scores are cosine similarities (unit vectors, one matrix product over the whole gallery);
a person's score is the best over their enrolled embeddings. FAISS takes over the 1:N
search for galleries of ``FAISS_MIN_ROWS`` embeddings and more when it is installed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..evaluation.scores import l2_normalize
from .gallery import GalleryMatrix

FAISS_MIN_ROWS = 100_000
FAISS_NEIGHBOURS = 64


@dataclass(frozen=True)
class Match:
    """person: index into the gallery's persons (-1 when none); margin: score minus the
    second-best person's score (the whole score when there is no second person)."""

    person: int
    score: float
    margin: float


def person_scores(queries: np.ndarray, matrix: GalleryMatrix) -> np.ndarray:
    """``(F, D)`` unit queries -> ``(F, P)`` best cosine per person (one matmul + reduceat)."""
    scores = queries @ matrix.embeddings.T
    return np.maximum.reduceat(scores, matrix.starts, axis=1)


def best_two(per_person: np.ndarray) -> list[Match]:
    """Best person, its score and the margin to the runner-up, for each row of ``(F, P)``."""
    out = []
    for row in per_person:
        if row.size == 0:
            out.append(Match(-1, float("-inf"), 0.0))
            continue
        best = int(np.argmax(row))
        second = float(np.partition(row, -2)[-2]) if row.size > 1 else 0.0
        out.append(Match(best, float(row[best]), float(row[best]) - second))
    return out


def match_one(queries: np.ndarray, matrix: GalleryMatrix, person: int) -> list[Match]:
    """1:1: each query's score against one claimed person; margin against everyone else."""
    per_person = person_scores(queries, matrix)
    claimed = per_person[:, person]
    others = np.delete(per_person, person, axis=1)
    second = others.max(axis=1) if others.shape[1] else np.zeros(len(claimed), np.float32)
    return [Match(person, float(s), float(s - o)) for s, o in zip(claimed, second)]


class Matcher:
    """1:N matcher over a loaded gallery; exact numpy search, or FAISS for very large galleries."""

    def __init__(self, matrix: GalleryMatrix, use_faiss: bool | None = None) -> None:
        self.matrix = matrix
        self.owner = np.repeat(np.arange(len(matrix)), np.diff(np.r_[matrix.starts, len(matrix.embeddings)]))
        if use_faiss is None:
            use_faiss = len(matrix.embeddings) >= FAISS_MIN_ROWS and _faiss_available()
        self._index = None
        if use_faiss:
            import faiss

            self._index = faiss.IndexFlatIP(matrix.embeddings.shape[1])
            self._index.add(matrix.embeddings)

    @property
    def engine(self) -> str:
        return "faiss" if self._index is not None else "numpy"

    def match(self, embeddings: np.ndarray, person: int | None = None) -> list[Match]:
        """Match ``(F, D)`` embeddings (normalised here); ``person`` set: 1:1 against it."""
        if len(embeddings) == 0:
            return []
        queries = l2_normalize(embeddings)
        if person is not None:
            return match_one(queries, self.matrix, person)
        if self._index is None:
            return best_two(person_scores(queries, self.matrix))
        return self._faiss_match(queries)

    def _faiss_match(self, queries: np.ndarray) -> list[Match]:
        k = min(FAISS_NEIGHBOURS, len(self.matrix.embeddings))
        scores, rows = self._index.search(np.ascontiguousarray(queries, dtype=np.float32), k)
        out = []
        for score_row, row in zip(scores, rows):
            owners = self.owner[row]
            best = int(owners[0])
            others = score_row[owners != best]
            second = float(others[0]) if others.size else 0.0
            out.append(Match(best, float(score_row[0]), float(score_row[0]) - second))
        return out


def _faiss_available() -> bool:
    try:
        import faiss  # noqa: F401
    except ImportError:
        return False
    return True
