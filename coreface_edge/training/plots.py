"""The training curves as a PNG: loss terms and the adaptive margin against the step."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..atomic import atomic_path


def plot_training_curves(records: list[dict[str, Any]], path: Path, title: str) -> None:
    """Left: total, ce1, ce2, con per logged step; right: the adaptive margin m and the lr."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (losses, margin) = plt.subplots(1, 2, figsize=(11, 4), dpi=110)
    for key in ("total", "ce1", "ce2", "con"):
        points = [(r["step"], r[key]) for r in records if key in r]
        if points:
            losses.plot(*zip(*points), label=key, linewidth=1.2)
    losses.set_xlabel("step")
    losses.set_ylabel("loss")
    losses.legend()
    losses.grid(alpha=0.3)
    steps = [r["step"] for r in records]
    margin.plot(steps, [r.get("margin", 0.0) for r in records], color="tab:red", label="margin m")
    margin.set_xlabel("step")
    margin.set_ylabel("adaptive margin m")
    lr = margin.twinx()
    lr.plot(steps, [r["lr"] for r in records], color="grey", linestyle=":", label="lr")
    lr.set_ylabel("learning rate")
    margin.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
