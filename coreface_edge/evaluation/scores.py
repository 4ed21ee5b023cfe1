"""Cosine scores from an embedding matrix: chosen pairs, or every genuine/impostor pair at once."""

from __future__ import annotations

import numpy as np


def l2_normalize(embeddings: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (all-zero rows stay zero), float32."""
    x = np.asarray(embeddings, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norms, np.float32(1e-12))


def pair_scores(embeddings: np.ndarray, left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Cosine score of rows ``left[n]`` and ``right[n]`` of L2-normalised ``embeddings``."""
    return np.einsum("nd,nd->n", embeddings[left], embeddings[right])


def exhaustive_scores(
    emb_a: np.ndarray,
    ids_a: np.ndarray,
    emb_b: np.ndarray | None = None,
    ids_b: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """``(genuine, impostor)`` cosine scores of all pairs, from one matrix product.

    With only set A: every unordered pair of distinct images of A (i < j). With set B too:
    every (a, b) pair across the sets. Genuine when the two identities are equal.
    """
    ids_a = np.asarray(ids_a)
    if emb_b is None:
        scores = emb_a @ emb_a.T
        i, j = np.triu_indices(ids_a.size, k=1)
        scores, same = scores[i, j], ids_a[i] == ids_a[j]
    else:
        scores = (emb_a @ emb_b.T).ravel()
        same = (ids_a[:, None] == np.asarray(ids_b)[None, :]).ravel()
    return scores[same], scores[~same]
