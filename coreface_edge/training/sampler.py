"""A distributed, resumable sampler whose order and flips are pure functions of (seed, epoch).

Every epoch draws one permutation and one flip bit per position from ``torch.Generator(seed +
epoch)``; rank ``r`` of ``w`` takes positions ``r, r + w, ...`` like ``DistributedSampler``, so the
union of the ranks' step-``s`` batches is the same global batch a single process would see.
Resuming sets ``(epoch, batch)`` and the stream continues exactly where it stopped, whatever
the number of loader workers.
"""

from __future__ import annotations

from typing import Iterator

import torch
from torch.utils.data import Sampler


class ResumableSampler(Sampler[tuple[int, bool]]):
    """Yields ``(sample_index, flip)`` pairs; incomplete global batches are dropped.

    ``max_steps > 0`` caps an epoch at that many batches (a fresh permutation each epoch).
    """

    def __init__(
        self, num_samples: int, batch_size: int, rank: int = 0, world_size: int = 1, seed: int = 0, flip: bool = True, max_steps: int = 0
    ) -> None:
        self.num_samples = num_samples
        self.batch_size = batch_size
        self.rank = rank
        self.world_size = world_size
        self.seed = seed
        self.flip = flip
        self.steps_per_epoch = num_samples // (batch_size * world_size)
        if max_steps > 0:  # short epochs: the first max_steps batches of each epoch's permutation
            self.steps_per_epoch = min(self.steps_per_epoch, max_steps)
        self.epoch = 0
        self.start_batch = 0

    def set_position(self, epoch: int, batch: int = 0) -> None:
        """Start the next iteration at batch ``batch`` of epoch ``epoch``."""
        self.epoch = epoch
        self.start_batch = batch

    def epoch_order(self, epoch: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The global ``(permutation, flip bits)`` of an epoch."""
        g = torch.Generator()
        g.manual_seed(self.seed * 100_003 + epoch)
        perm = torch.randperm(self.num_samples, generator=g)
        flips = torch.rand(self.num_samples, generator=g) < 0.5
        return perm, flips if self.flip else torch.zeros_like(flips)

    def __iter__(self) -> Iterator[tuple[int, bool]]:
        perm, flips = self.epoch_order(self.epoch)
        used = self.steps_per_epoch * self.batch_size * self.world_size
        mine = torch.arange(self.rank, used, self.world_size)[self.start_batch * self.batch_size :]
        for pos in mine.tolist():
            yield int(perm[pos]), bool(flips[pos])

    def __len__(self) -> int:
        return (self.steps_per_epoch - self.start_batch) * self.batch_size
