"""Where a generator training step's rows come from: images (read and augmented each epoch) or
a token cache (ids and conditions in memory). Both expose the same `batches(epoch, step)`, so
the trainer does not know which one it has ("transparent" cache use).

Order: `DistributedResumableSampler` with this rank's rows per optimizer step; a batch is a
pure function of (seed, epoch, step, rank, world size), and the concatenation over ranks is
the same global batch for every world size. `fill_last` (official) completes the last batch of
an epoch from the epoch's start instead of dropping the rest. Resuming is `batches(epoch, step)`
from the saved step: no sampler state to save.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.utils.data import DataLoader

from ..data import DistributedResumableSampler
from ..data.images import mix_seed
from .cache import TokenCache
from .config import TrainConfig
from .distributed import DistEnv


@dataclass
class Batch:
    """Rows of one step on one rank. Exactly one of `images`/`ids` is set, and `labels` (class
    data), `captions` (text data read from images) or `text` (cached caption embeddings)."""

    images: torch.Tensor | None = None  # (B,3,H,W) in [-1,1]
    ids: torch.Tensor | None = None  # (B,L) token ids of all scales
    labels: torch.Tensor | None = None  # (B,)
    captions: list[str] | None = None
    text: dict[str, torch.Tensor | None] = field(default_factory=dict)  # pooled, tokens, mask

    def __len__(self) -> int:
        return (self.images if self.images is not None else self.ids).shape[0]

    def rows(self, lo: int, hi: int) -> "Batch":
        def cut(t: Any) -> Any:
            return None if t is None else t[lo:hi]
        return Batch(cut(self.images), cut(self.ids), cut(self.labels), cut(self.captions),
                     {k: cut(v) for k, v in self.text.items()})


class TrainData:
    """Common part: the sampler and the schedule arithmetic."""

    kind: str
    num_classes: int = 0

    def __init__(self, num_samples: int, rows_per_rank: int, env: DistEnv, seed: int, fill_last: bool = False):
        self.num_samples = num_samples
        self.sampler = DistributedResumableSampler(num_samples, rows_per_rank, env.world_size, env.rank, seed=seed,
                                                   drop_last=not fill_last, shuffle=True)

    @property
    def steps_per_epoch(self) -> int:
        return self.sampler.steps_per_epoch

    def batches(self, epoch: int, step: int) -> Iterator[Batch]:
        raise NotImplementedError

    def stream(self, start_step: int) -> Iterator[Batch]:
        """Batches from global step `start_step` on, across epoch boundaries, forever."""
        step = start_step
        while True:
            epoch, pos = divmod(step, self.steps_per_epoch)
            for b in self.batches(epoch, pos):
                yield b
                step += 1

    def sample_captions(self, n: int) -> list[str]:
        return []


class ImageData(TrainData):
    """Images through a DataLoader; the tokenizer (and text encoder) run in the training step."""

    def __init__(self, dataset: Any, kind: str, rows_per_rank: int, env: DistEnv, seed: int, num_workers: int,
                 fill_last: bool = False):
        super().__init__(len(dataset), rows_per_rank, env, seed, fill_last)
        self.dataset, self.kind, self.num_workers, self.seed = dataset, kind, num_workers, seed
        self.pin = env.device.type == "cuda"
        self.num_classes = len(getattr(dataset, "classes", []))

    def batches(self, epoch: int, step: int) -> Iterator[Batch]:
        self.dataset.set_epoch(epoch)  # crops are a function of (seed, epoch, index)
        self.sampler.set_position(epoch, step)
        # an own generator: creating the iterator must not consume the global torch RNG (it
        # would differ between a resumed and an uninterrupted run)
        gen = torch.Generator().manual_seed(mix_seed(self.seed, epoch))
        loader = DataLoader(self.dataset, batch_sampler=self.sampler, num_workers=self.num_workers,
                            pin_memory=self.pin, persistent_workers=False, generator=gen)
        for images, targets in loader:
            if self.kind == "class":
                yield Batch(images=images, labels=torch.as_tensor(targets, dtype=torch.long))
            else:
                yield Batch(images=images, captions=list(targets))

    def sample_captions(self, n: int) -> list[str]:
        caps = getattr(self.dataset, "captions", [])
        return list(dict.fromkeys(caps))[:n]


class CachedData(TrainData):
    """Rows of a TokenCache: no image decoding, no VAE, no text encoder."""

    def __init__(self, cache: TokenCache, rows_per_rank: int, env: DistEnv, seed: int, fill_last: bool = False):
        super().__init__(len(cache), rows_per_rank, env, seed, fill_last)
        self.cache = cache
        self.kind = cache.index.kind
        self.num_classes = len(cache.index.info.get("classes", []))

    def batches(self, epoch: int, step: int) -> Iterator[Batch]:
        self.sampler.set_position(epoch, step)
        c = self.cache
        for idx in self.sampler:
            idx_t = torch.as_tensor(idx, dtype=torch.long)
            ids = c.ids[idx_t].long()
            if self.kind == "class":
                yield Batch(ids=ids, labels=c.labels[idx_t])
            else:
                yield Batch(ids=ids, text={
                    "pooled": c.text_pooled[idx_t].float(),
                    "tokens": None if c.text_tokens is None else c.text_tokens[idx_t].float(),
                    "mask": None if c.text_mask is None else c.text_mask[idx_t]})

    def sample_text(self, n: int) -> tuple[dict[str, torch.Tensor | None], list[str]]:
        """The first n distinct captions and their cached embeddings."""
        caps = self.cache.captions(min(self.num_samples, 100 * n))
        first: dict[str, int] = {}
        for i, c in enumerate(caps):
            first.setdefault(c, i)
            if len(first) >= n:
                break
        idx = torch.as_tensor(list(first.values()), dtype=torch.long)
        c = self.cache
        return ({"pooled": c.text_pooled[idx].float(),
                 "tokens": None if c.text_tokens is None else c.text_tokens[idx].float(),
                 "mask": None if c.text_mask is None else c.text_mask[idx]}, list(first))


def rows_per_rank(cfg: TrainConfig, env: DistEnv) -> tuple[int, int]:
    """(rows per rank per optimizer step, rows per micro-batch) from the global batch size."""
    per_step = cfg.batch_size * 1.0 / env.world_size
    if cfg.batch_size % env.world_size:
        raise ValueError(f"batch_size {cfg.batch_size} is not divisible by the {env.world_size} processes")
    rows = int(per_step)
    if rows % cfg.grad_accum:
        raise ValueError(f"batch_size {cfg.batch_size} / {env.world_size} processes = {rows} rows per process is not "
                         f"divisible by grad_accum {cfg.grad_accum}")
    return rows, rows // cfg.grad_accum


__all__ = ["Batch", "TrainData", "ImageData", "CachedData", "rows_per_rank"]
