"""The training input pipeline: a face source (aligned ImageFolder or RecordIO) -> flipped,
normalised tensors in DataLoader worker processes, ordered by a :class:`ResumableSampler`."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Iterator, Protocol

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, get_worker_info

from ..contract import preprocess_crops
from ..errors import CorefaceError
from .config import DataConfig
from .sampler import ResumableSampler
from .sources import open_face_source, reopen_in_worker


class FaceSource(Protocol):
    """Labelled aligned faces: ``source[i] -> (uint8 BGR (112, 112, 3), label in 0..num_classes-1)``."""

    num_classes: int

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> tuple[np.ndarray, int]: ...


class FlipDataset(Dataset):
    """Items are ``(index, flip)`` from the sampler; returns the training-contract tensor and label."""

    def __init__(self, source: FaceSource) -> None:
        self.source = source

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, item: tuple[int, bool]) -> tuple[torch.Tensor, int]:
        index, flip = item
        image, label = self.source[index]
        if flip:
            image = image[:, ::-1]
        return torch.from_numpy(preprocess_crops(image[None])[0]), label


@dataclass
class TrainData:
    source: FaceSource
    sampler: ResumableSampler
    num_classes: int
    fingerprint: str
    workers: int

    def loader(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """A fresh DataLoader over the sampler's current position."""
        return iter(
            DataLoader(
                FlipDataset(self.source),
                batch_size=self.sampler.batch_size,
                sampler=self.sampler,
                num_workers=self.workers,
                drop_last=True,
                pin_memory=torch.cuda.is_available(),
                persistent_workers=False,
                prefetch_factor=4 if self.workers else None,
                worker_init_fn=_init_worker,
            )
        )


def _init_worker(worker_id: int) -> None:
    reopen_in_worker(get_worker_info().dataset.source)


def open_training_data(cfg: DataConfig, batch_size: int, rank: int, world_size: int, seed: int, max_steps: int = 0) -> TrainData:
    """Source + sampler for one rank; at least one full global batch and two identities."""
    source, fingerprint = open_face_source(cfg.format, cfg.root, cfg.identities)
    sampler = ResumableSampler(len(source), batch_size, rank, world_size, seed, cfg.flip, max_steps)
    if sampler.steps_per_epoch < 1:
        raise CorefaceError(f"{cfg.root}: {len(source)} images, fewer than one global batch of {batch_size * world_size}")
    return TrainData(source, sampler, source.num_classes, fingerprint, cfg.workers)


def loader_throughput(data: TrainData, batches: int) -> dict[str, Any]:
    """Images per second the loader alone delivers (decode + flip + normalise, in its workers)."""
    data.sampler.set_position(0, 0)
    it = data.loader()
    next(it)  # worker start-up is not throughput
    start, n = time.perf_counter(), 0
    for _, (images, _) in zip(range(batches), it):
        n += images.shape[0]
    return {"images": n, "seconds": time.perf_counter() - start, "img_s": n / max(time.perf_counter() - start, 1e-9)}
