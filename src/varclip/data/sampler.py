"""A distributed batch sampler that resumes mid-epoch exactly.

The global order of an epoch is one permutation drawn from (seed, epoch) with a
torch.Generator. Step s takes the global batch perm[s*G:(s+1)*G] (G = batch size per
rank x world size) and rank r takes the r-th slice of it. Hence:
- the concatenation of all ranks' batches at a step is exactly the batch a single
  process with batch size G sees at that step (runs are comparable across world sizes);
- a batch is a pure function of (seed, epoch, step, rank, world size), so resuming is
  `set_position(epoch, step)` with the number of steps already taken: no RNG state to
  save, and a run may even resume on another world size with the same global batch.
The trainer owns the step count (DataLoader prefetching runs the sampler ahead of it).

Use it as `DataLoader(dataset, batch_sampler=sampler)`. Without `drop_last` the last
global batch is completed by wrapping around to the start of the permutation, so every
rank gets full batches and the same number of steps (DDP needs that).
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch
from torch.utils.data import Sampler

from .images import mix_seed


class DistributedResumableSampler(Sampler[list[int]]):
    """Yields this rank's index batches from the current (epoch, step) to the epoch's end."""

    def __init__(self, dataset_len: int, batch_size_per_rank: int, world_size: int = 1,
                 rank: int = 0, seed: int = 0, drop_last: bool = True,
                 shuffle: bool = True) -> None:
        if batch_size_per_rank < 1 or world_size < 1:
            raise ValueError("batch_size_per_rank and world_size must be >= 1")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is outside [0, {world_size})")
        if dataset_len < 1:
            raise ValueError("dataset_len must be >= 1")
        self.dataset_len = dataset_len
        self.batch_size = batch_size_per_rank
        self.world_size = world_size
        self.rank = rank
        self.seed = seed
        self.drop_last = drop_last
        self.shuffle = shuffle
        if self.steps_per_epoch == 0:
            raise ValueError(f"{dataset_len} samples make no full global batch of "
                             f"{self.global_batch_size}; use drop_last=False or a smaller batch")
        self.epoch = 0
        self.step = 0

    @property
    def global_batch_size(self) -> int:
        return self.batch_size * self.world_size

    @property
    def steps_per_epoch(self) -> int:
        div = self.dataset_len / self.global_batch_size
        return math.floor(div) if self.drop_last else math.ceil(div)

    def set_epoch(self, epoch: int) -> None:
        """Start of `epoch` (as DistributedSampler.set_epoch)."""
        self.set_position(epoch, 0)

    def set_position(self, epoch: int, step: int) -> None:
        """Resume at `step` (batches already taken) of `epoch`; the next iteration starts there."""
        if epoch < 0 or not 0 <= step <= self.steps_per_epoch:
            raise ValueError(f"position ({epoch}, {step}) is outside an epoch of "
                             f"{self.steps_per_epoch} steps")
        self.epoch, self.step = epoch, step

    def permutation(self, epoch: int) -> torch.Tensor:
        """The global order of `epoch` (identity without shuffle)."""
        if not self.shuffle:
            return torch.arange(self.dataset_len)
        gen = torch.Generator().manual_seed(mix_seed(self.seed, epoch))
        return torch.randperm(self.dataset_len, generator=gen)

    def _global_batch(self, perm: torch.Tensor, step: int) -> torch.Tensor:
        g = self.global_batch_size
        idx = torch.arange(step * g, (step + 1) * g) % self.dataset_len  # wraps only w/o drop_last
        return perm[idx]

    def global_batch(self, epoch: int, step: int) -> list[int]:
        """All ranks' indices at (epoch, step), concatenated in rank order."""
        return self._global_batch(self.permutation(epoch), step).tolist()

    def batch(self, epoch: int, step: int) -> list[int]:
        """This rank's indices at (epoch, step)."""
        b = self.batch_size
        return self.global_batch(epoch, step)[self.rank * b:(self.rank + 1) * b]

    def __iter__(self) -> Iterator[list[int]]:
        epoch, start = self.epoch, self.step
        self.step = 0  # a resume position applies to one pass only
        perm = self.permutation(epoch)
        b = self.batch_size
        for step in range(start, self.steps_per_epoch):
            yield self._global_batch(perm, step)[self.rank * b:(self.rank + 1) * b].tolist()

    def __len__(self) -> int:
        """Batches left in the pass that the next iteration makes."""
        return self.steps_per_epoch - self.step
