"""Training checkpoints: everything an exact resume needs, written atomically."""

from __future__ import annotations

import os
import random
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..atomic import atomic_path
from ..errors import CorefaceError

CHECKPOINT_NAME = "last.pt"
FORMAT = "coreface_edge.training/1"


def rng_state() -> dict[str, Any]:
    """Python, NumPy and torch (CPU and CUDA) random states."""
    state: dict[str, Any] = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    """Write ``state`` (plus the format tag and RNG states) to ``path`` atomically (fsync before the rename)."""
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        torch.save({"format": FORMAT, "rng": rng_state(), **state}, fh)
        fh.flush()
        os.fsync(fh.fileno())


def remove_stale_temporaries(folder: Path) -> list[Path]:
    """Delete the half-written checkpoints a killed run left in ``folder``; returns them."""
    stale = sorted(folder.glob(f".{CHECKPOINT_NAME}.*.tmp"))
    for path in stale:
        path.unlink(missing_ok=True)
    return stale


def first_non_finite(named: Iterable[tuple[str, torch.Tensor]]) -> str | None:
    """Name of the first floating tensor holding NaN or inf (one host read when all are finite);
    entries that are not tensors (a module's extra state) are skipped."""
    tensors = [(name, t) for name, t in named if isinstance(t, torch.Tensor) and t.is_floating_point() and t.numel()]
    if not tensors or bool(torch.stack([torch.isfinite(t).all() for _, t in tensors]).all()):
        return None
    return next(name for name, t in tensors if not bool(torch.isfinite(t).all()))


def state_dict_mismatch(expected: Mapping[str, torch.Tensor], found: Mapping[str, Any]) -> str:
    """The first difference between a model's ``state_dict`` and a stored one, in words."""
    for key, tensor in expected.items():
        if key not in found:
            return f"missing {key}"
        shape = getattr(found[key], "shape", None)
        if shape is not None and tuple(shape) != tuple(tensor.shape):
            return f"{key} has shape {tuple(shape)}, the model needs {tuple(tensor.shape)}"
    extra = sorted(set(found) - set(expected))
    return f"unexpected {extra[0]}" if extra else "no difference in keys or shapes"


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint`; anything else is a one-line error."""
    path = Path(path)
    if not path.is_file():
        raise CorefaceError(f"{path}: checkpoint not found")
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # pickle/zip errors of a truncated or foreign file
        raise CorefaceError(f"{path}: not a readable checkpoint ({str(exc).splitlines()[0]})") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CorefaceError(f"{path}: not a coreface-edge training checkpoint")
    return state
