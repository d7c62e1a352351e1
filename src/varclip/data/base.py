"""The shared skip-and-substitute logic of the map-style image data sets.

Unreadable files are handled lazily (the choice that scales to ImageNet: no start-up
scan of 1.28M files): `__getitem__` tries the requested file and, if it cannot be
decoded, substitutes the next readable one (index + 1, wrapping), so a run never
crashes on one bad JPEG and every epoch still yields `len(dataset)` items. Bad files
are remembered and counted in `num_skipped`; the first one is logged as a warning on
the "varclip.data" logger, later ones at debug level. With DataLoader workers each
worker holds its own copy of the count: call `verify()` once up front for an exact
count (it decodes every file, drops the bad ones and logs one warning with the count).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Generic, TypeVar

import torch
from torch.utils.data import Dataset

from .images import ImageTransform, item_generator, load_image

log = logging.getLogger("varclip.data")

T = TypeVar("T")


class RobustImageDataset(Dataset, Generic[T]):
    """(image tensor CHW in [-1, 1], target) over `samples`, a list of (path, target).

    `seed` makes the random crop/flip a pure function of (seed, epoch, index) (call
    `set_epoch` each epoch); with `seed=None` torch's global RNG is used instead.
    """

    def __init__(self, samples: list[tuple[Path, T]], transform: ImageTransform,
                 seed: int | None = None, name: str = "dataset") -> None:
        self.samples = samples
        self.transform = transform
        self.seed = seed
        self.epoch = 0
        self.name = name
        self.skipped: dict[Path, str] = {}

    @property
    def num_skipped(self) -> int:
        """Distinct unreadable files met so far (in this process)."""
        return len(self.skipped)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.samples)

    def _record_skip(self, path: Path, reason: str) -> None:
        if path in self.skipped:
            return
        self.skipped[path] = reason
        if len(self.skipped) == 1:
            log.warning("%s: %s; skipped, the next readable image is used instead (further "
                        "unreadable images are logged at debug level and counted in "
                        ".num_skipped)", self.name, reason)
        else:
            log.debug("%s: %s; skipped (%d so far)", self.name, reason, len(self.skipped))

    def __getitem__(self, index: int) -> tuple[torch.Tensor, T]:
        n = len(self.samples)
        if not -n <= index < n:
            raise IndexError(f"index {index} out of range for {n} samples")
        index %= n
        for attempt in range(n):
            path, target = self.samples[(index + attempt) % n]
            if path in self.skipped:
                continue
            try:
                img = load_image(path)
            except ValueError as err:
                self._record_skip(path, str(err))
                continue
            gen = None if self.seed is None else item_generator(self.seed, self.epoch, index)
            return self.transform(img, gen), target
        raise RuntimeError(f"{self.name}: no readable image left ({n} files, all unreadable)")

    def verify(self) -> int:
        """Decode every file now and drop the unreadable ones; returns how many were dropped."""
        good: list[tuple[Path, T]] = []
        bad: list[str] = []
        for path, target in self.samples:
            try:
                load_image(path)
            except ValueError as err:
                self.skipped.setdefault(path, str(err))
                bad.append(str(err))
                continue
            good.append((path, target))
        if bad:
            log.warning("%s: %d of %d images are unreadable and were dropped (first: %s)",
                        self.name, len(bad), len(self.samples), bad[0])
        if not good:
            raise ValueError(f"{self.name}: no readable image")
        self.samples = good
        return len(bad)
