"""Verification evaluation: metrics, the CFP open-set protocol, embedders and the ``eval`` CLI.

The metrics (NumPy only) are re-exported here; ``threshold_for_far`` is what the gate uses to
pick its operating threshold from impostor scores.
"""

from .metrics import (
    KFoldAccuracy,
    OperatingPoint,
    Roc,
    auc,
    best_threshold,
    equal_error_rate,
    kfold_accuracy,
    roc_curve,
    tar_at_far,
    threshold_for_far,
)

__all__ = [
    "KFoldAccuracy",
    "OperatingPoint",
    "Roc",
    "auc",
    "best_threshold",
    "equal_error_rate",
    "kfold_accuracy",
    "roc_curve",
    "tar_at_far",
    "threshold_for_far",
]
