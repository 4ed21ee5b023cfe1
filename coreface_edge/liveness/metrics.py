"""ISO/IEC 30107-3 presentation-attack detection error rates (pure).

APCER: the proportion of attack presentations classified as bona fide (live).
BPCER: the proportion of bona fide presentations classified as attacks.
A presentation is classified live when its liveness score is at or above the threshold.
"""

from __future__ import annotations

import numpy as np


def apcer(attack_scores: np.ndarray, threshold: float) -> float | None:
    """Share of attack scores at or above ``threshold`` (None without attacks)."""
    s = np.asarray(attack_scores, np.float64)
    return float((s >= threshold).mean()) if s.size else None


def bpcer(bona_fide_scores: np.ndarray, threshold: float) -> float | None:
    """Share of bona fide scores below ``threshold`` (None without bona fide presentations)."""
    s = np.asarray(bona_fide_scores, np.float64)
    return float((s < threshold).mean()) if s.size else None
