"""Evaluation outputs: the terminal summary table, the JSON file and the ROC plot."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from rich import box
from rich.table import Table

from ..atomic import atomic_path, write_text_atomic
from .metrics import Roc

_PLOT_POINTS = 2000


def summary_table(result: dict[str, Any], title: str) -> Table:
    """One row per protocol row (FF, FP or the .bin): accuracy, TAR@FAR, AUC, EER; counts below."""
    rows = result["rows"]
    fars = list(next(iter(rows.values()))["verification"]["tar_at_far"])
    folds = sorted({f for row in rows.values() if row["accuracy"] for f in row["accuracy"]["folds"]}, key=int)
    counts = ", ".join(f"{n} {r['verification']['genuine_pairs']:,}/{r['verification']['impostor_pairs']:,}" for n, r in rows.items())
    caption = f"TAR/AUC/EER on genuine/impostor pairs: {counts}"
    if folds:
        caption += f"; accuracy: mean±std over folds {','.join(folds)}, each with the threshold of the other folds"
    table = Table(title=title, caption=caption, box=box.SIMPLE_HEAD)
    table.add_column("pairs")
    table.add_column("acc %", justify="right", no_wrap=True)
    for far in fars:
        table.add_column(f"TAR@{far} %", justify="right")
    table.add_column("AUC", justify="right")
    table.add_column("EER %", justify="right")
    for name, row in rows.items():
        acc, ver = row["accuracy"], row["verification"]
        table.add_row(
            name,
            "n/a" if acc is None else f"{100 * acc['mean']:.2f}±{100 * acc['std']:.2f}",
            *(f"{100 * ver['tar_at_far'][far]['tar']:.2f}" for far in fars),
            f"{ver['auc']:.4f}",
            f"{100 * ver['eer']:.2f}",
        )
    return table


def write_json(path: Path, result: dict[str, Any]) -> None:
    """The result as indented JSON, written atomically (NaN/inf refused: they are not JSON)."""
    write_text_atomic(path, json.dumps(result, indent=2, allow_nan=False) + "\n")


def _plot_indices(roc: Roc) -> np.ndarray:
    """ROC points worth drawing on a log-FAR axis: about ``_PLOT_POINTS``, log-spaced in FAR,
    led by the last FAR-0 point (the highest TAR reached without any false accept)."""
    positive = np.flatnonzero(roc.far > 0)
    grid = np.geomspace(roc.far[positive[0]], 1.0, _PLOT_POINTS)
    # the last point at each FAR value (highest TAR for it), so the steps are drawn exactly
    return np.unique(np.r_[positive[0] - 1, np.searchsorted(roc.far, grid, side="right") - 1])


def plot_rocs(path: Path, rocs: dict[str, Roc], title: str, far_marks: tuple[float, ...]) -> None:
    """ROC curves (TAR against log FAR), one per protocol row, written as a PNG.

    The axis starts at the lowest non-zero FAR (or the lowest marked target, if lower); the
    FAR-0 part of a curve is drawn at that left edge.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 5), dpi=120)
    low = min([*far_marks, *(float(roc.far[roc.far > 0].min()) for roc in rocs.values())])
    for name, roc in rocs.items():
        idx = _plot_indices(roc)
        far = np.maximum(roc.far[idx], low)
        ax.plot(far, 100 * roc.tar[idx], drawstyle="steps-post", label=f"{name} ({roc.n_genuine:,} gen / {roc.n_impostor:,} imp)")
    for far in far_marks:
        ax.axvline(far, color="grey", linestyle=":", linewidth=0.8)
    ax.set_xscale("log")
    ax.set_xlim(low, 1.0)
    ax.set_ylim(0, 101)  # a 100 % TAR line stays visible above the frame
    ax.set_xlabel("FAR (false accept rate)")
    ax.set_ylabel("TAR % (true accept rate)")
    ax.set_title(title)
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(loc="upper left")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
