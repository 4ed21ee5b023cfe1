"""Embedders for evaluation: the raw-pixel baseline, flip augmentation, batched embedding."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Iterator

import cv2
import numpy as np
from rich.console import Console

from ..contract import CROP_SIZE
from ..errors import CorefaceError
from ..progress import progress_bar
from ..contract import Embedder
from .scores import l2_normalize

PIXELS = "pixels"
_GREY_BGR = np.array([0.114, 0.587, 0.299], dtype=np.float32)  # ITU-R BT.601 luma, BGR order


def pixel_embedder(crops: np.ndarray) -> np.ndarray:
    """Deliberately weak, real baseline: grey pixels, flattened, mean-removed, L2-normalised."""
    grey = crops.astype(np.float32) @ _GREY_BGR
    flat = grey.reshape(grey.shape[0], -1)
    flat -= flat.mean(axis=1, keepdims=True)
    return l2_normalize(flat)


def with_flip(embedder: Embedder) -> Embedder:
    """Test-time flip: embedding of each crop plus embedding of its horizontal mirror."""

    def embed(crops: np.ndarray) -> np.ndarray:
        mirrored = np.ascontiguousarray(crops[:, :, ::-1])
        return embedder(crops) + embedder(mirrored)

    return embed


def open_embedder(model: str, backend: str | None = None, **options: Any) -> tuple[Embedder, dict[str, Any]]:
    """``"pixels"`` or a model file (opened with ``runtime.open_backend``) -> (embedder, info).

    ``info`` describes the model for reports; ``info["flip_fused"]`` says the model already
    adds the mirror image's embedding itself.
    """
    if model == PIXELS:
        return pixel_embedder, {"model": PIXELS, "runtime": "numpy", "embedding": "grey pixels, mean-removed, L2", "flip_fused": False}
    from ..runtime import open_backend

    opened = open_backend(model, backend, **options)
    return opened.embed, {"model": model, **opened.info(), "flip_fused": opened.contract.flip_fused}


def read_aligned(paths: list[Path], batch_size: int) -> Iterator[np.ndarray]:
    """Batches of aligned 112x112 BGR crops read from ``paths`` (every file must be readable)."""
    for start in range(0, len(paths), batch_size):
        chunk = paths[start : start + batch_size]
        batch = np.empty((len(chunk), CROP_SIZE, CROP_SIZE, 3), np.uint8)
        for k, path in enumerate(chunk):
            image = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if image is None:
                raise CorefaceError(f"{path}: not a readable image")
            if image.shape[:2] != (CROP_SIZE, CROP_SIZE):
                raise CorefaceError(f"{path}: expected a {CROP_SIZE}x{CROP_SIZE} aligned crop, got {image.shape[1]}x{image.shape[0]}")
            batch[k] = image
        yield batch


def embed_batches(batches: Iterable[np.ndarray], total: int, embedder: Embedder, console: Console, label: str) -> np.ndarray:
    """Embed every batch (progress bar on ``console``) -> ``(total, D)`` L2-normalised float32."""
    parts = []
    with progress_bar(console) as progress:
        task = progress.add_task(label, total=total)
        for batch in batches:
            out = np.asarray(embedder(batch), dtype=np.float32)
            if out.ndim != 2 or out.shape[0] != batch.shape[0]:
                raise CorefaceError(f"embedder returned shape {out.shape} for a batch of {batch.shape[0]} crops (expected (N, D))")
            if not np.isfinite(out).all():
                raise CorefaceError(f"embedder returned NaN or inf for {int((~np.isfinite(out)).any(axis=1).sum())} of {batch.shape[0]} crops (a broken or overflowing model?)")
            parts.append(out)
            progress.advance(task, batch.shape[0])
    return l2_normalize(np.concatenate(parts)) if parts else np.zeros((0, 0), np.float32)
