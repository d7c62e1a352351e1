"""The map-style image data sets' handling of unusable files: drop them, count them, say so.

Two checks, because decoding every file up front does not scale to ImageNet:

* `scan()` (what `check_files` turns on) opens every file's header (no pixel decode, a few
  threads) and DROPS those that cannot be read or are smaller than `min_size` pixels, with one
  summary warning. This catches the usual garbage: empty files, HTML saved as .jpg, tracking
  pixels, missing files. Cost: ~0.2 ms a file, against ~5.5 ms to decode a 256 px JPEG
  (measured on a busy 2-core machine): minutes for ImageNet, so it can be turned off.
* What the header does not show (a truncated body) is found when the item is decoded. Then
  `try_item` reports it (what `varclip cache` uses: the row is dropped), while `__getitem__`,
  which must give a training batch its full size, stands in the next usable image. Such files
  are flagged in a shared-memory mask, so DataLoader workers' findings are counted too.

`skip_summary()` gives the "N of M images skipped" line the commands print at the end.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Generic, TypeVar

import torch
from PIL import Image
from torch.utils.data import Dataset

from .images import ImageTransform, item_generator, load_image

log = logging.getLogger("varclip.data")

T = TypeVar("T")

MIN_IMAGE_SIZE = 8  # px, shorter side: below this a file is a placeholder, not a picture
_SHOWN = 5  # problems quoted in a summary warning
_SCAN_THREADS = 8  # header reads are I/O bound


def skip_line(name: str, skipped: int, total: int, unit: str = "images") -> str:
    """The end-of-command line: 'NAME: N of M images skipped as unusable'."""
    return f"{name}: {skipped} of {total} {unit} skipped as unusable"


def too_small(width: int, height: int, min_size: int) -> str | None:
    return f"image too small ({width}x{height} < {min_size} px)" if min(width, height) < min_size else None


def probe_image(path: str | Path, min_size: int = MIN_IMAGE_SIZE) -> str | None:
    """Why the image file cannot be used (None: it can), from its header alone; the reason
    does not repeat the path."""
    try:
        with Image.open(path) as img:
            w, h = img.size
    except Exception as err:  # what PIL raises for non-images varies by plug-in
        msg = " ".join(str(err).replace(repr(str(path)), "").replace(str(path), "").split()).rstrip(": ")
        return f"unreadable image ({type(err).__name__}{': ' + msg if msg else ''})"
    return too_small(w, h, min_size)


def probe_images(paths: list[Path], min_size: int = MIN_IMAGE_SIZE) -> list[str | None]:
    """`probe_image` of each path (in order), a few at a time."""
    if len(paths) < 2 * _SCAN_THREADS:
        return [probe_image(p, min_size) for p in paths]
    with ThreadPoolExecutor(_SCAN_THREADS) as pool:
        return list(pool.map(lambda p: probe_image(p, min_size), paths, chunksize=64))


class RobustImageDataset(Dataset, Generic[T]):
    """(image tensor CHW in [-1, 1], target) over `samples`, a list of (path, target).

    `seed` makes the random crop/flip a pure function of (seed, epoch, index) (call
    `set_epoch` each epoch); with `seed=None` torch's global RNG is used instead. Images
    whose shorter side is below `min_size` pixels count as unusable.
    """

    unit = "images"  # what one sample is, in messages

    def __init__(self, samples: list[tuple[Path, T]], transform: ImageTransform,
                 seed: int | None = None, name: str = "dataset", min_size: int = MIN_IMAGE_SIZE) -> None:
        self.transform = transform
        self.seed = seed
        self.epoch = 0
        self.name = name
        self.min_size = min_size
        self.dropped: list[str] = []  # why each sample removed before training was removed
        self.skipped: dict[Path, str] = {}  # unusable files met while loading (this process)
        self.samples = samples

    @property
    def samples(self) -> list[tuple[Path, T]]:
        return self._samples

    @samples.setter
    def samples(self, value: list[tuple[Path, T]]) -> None:
        self._samples = value
        self._bad = torch.zeros(len(value), dtype=torch.bool).share_memory_()  # seen by all workers

    @property
    def num_skipped(self) -> int:
        """Samples dropped up front plus files found unusable while loading (in any worker)."""
        return len(self.dropped) + int(self._bad.sum())

    @property
    def num_total(self) -> int:
        return len(self.samples) + len(self.dropped)

    def skip_summary(self) -> str:
        """'NAME: N of M images skipped (...)', or '' when none was."""
        n = self.num_skipped
        if not n:
            return ""
        return skip_line(self.name, n, self.num_total, self.unit)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.samples)

    def _drop(self, keep: list[bool], reasons: list[str]) -> int:
        """Remove the samples not kept; one warning quoting the first reasons."""
        if not reasons:
            return 0
        total = len(self.samples)
        self.dropped.extend(reasons)
        self.samples = [s for s, k in zip(self.samples, keep) if k]
        more = f"; ... and {len(reasons) - _SHOWN} more" if len(reasons) > _SHOWN else ""
        log.warning("%s: %d of %d %s unusable and dropped: %s%s", self.name, len(reasons), total, self.unit,
                    "; ".join(reasons[:_SHOWN]), more)
        if not self.samples:
            raise ValueError(f"{self.name}: no usable image ({reasons[0]})")
        return len(reasons)

    def scan(self) -> int:
        """Drop the samples whose file header is unreadable or too small; returns how many."""
        found = probe_images([p for p, _ in self.samples], self.min_size)
        return self._drop([r is None for r in found],
                          [f"{p}: {r}" for (p, _), r in zip(self.samples, found) if r is not None])

    def verify(self) -> int:
        """Decode every file now and drop the unusable ones; returns how many were dropped."""
        found = [self.try_item(i) for i in range(len(self.samples))]
        return self._drop([not isinstance(r, str) for r in found], [r for r in found if isinstance(r, str)])

    def _record_skip(self, index: int, reason: str) -> None:
        path = self.samples[index][0]
        self._bad[index] = True
        if path in self.skipped:
            return
        self.skipped[path] = reason
        if len(self.skipped) == 1:
            log.warning("%s: %s; skipped (further unusable images are logged at debug level and counted)",
                        self.name, reason)
        else:
            log.debug("%s: %s; skipped (%d so far)", self.name, reason, len(self.skipped))

    def try_item(self, index: int) -> tuple[torch.Tensor, T] | str:
        """Item `index`, or why it is unusable (recorded); never a stand-in."""
        path, target = self.samples[index]
        if bool(self._bad[index]):
            return self.skipped.get(path, f"image {str(path)!r} is unusable")
        try:
            img = load_image(path)
        except ValueError as err:
            self._record_skip(index, str(err))
            return str(err)
        small = too_small(img.width, img.height, self.min_size)
        if small:
            reason = f"{path}: {small}"
            self._record_skip(index, reason)
            return reason
        gen = None if self.seed is None else item_generator(self.seed, self.epoch, index)
        return self.transform_for(index)(img, gen), target

    def transform_for(self, index: int) -> ImageTransform:
        """The transform of sample `index` (subclasses may vary it per sample)."""
        return self.transform

    def __getitem__(self, index: int) -> tuple[torch.Tensor, T]:
        """Item `index`; an unusable one is replaced by the next usable item, as a training batch
        must keep its size (`try_item` does not substitute)."""
        n = len(self.samples)
        if not -n <= index < n:
            raise IndexError(f"index {index} out of range for {n} samples")
        index %= n
        for attempt in range(n):
            item = self.try_item((index + attempt) % n)
            if not isinstance(item, str):
                return item
        raise RuntimeError(f"{self.name}: no readable image left ({n} files, all unusable)")
