"""Images without labels, from a folder or a caption manifest: what tokenizer training and
tokenizer evaluation read (they need pixels only, whatever layout the data comes in)."""

from __future__ import annotations

import os
from pathlib import Path

from .base import RobustImageDataset
from .captions import read_caption_manifest
from .images import ImageTransform, is_image_file


def image_source_dataset(source: str | os.PathLike[str], size: int, train: bool = False,
                         seed: int | None = None, hflip: bool = False) -> RobustImageDataset:
    """Images only, from a folder (searched recursively, flat or class sub-folders alike) or a
    caption manifest (.jsonl/.csv/.txt; captions ignored, an image listed with several captions
    counted once). Items are (CHW in [-1,1], 0). Unusable images are dropped up front (see
    `base.RobustImageDataset.scan`)."""
    src = Path(source)
    if src.is_dir():
        files = sorted(p for p in src.rglob("*")
                       if p.is_file() and is_image_file(p) and not any(part.startswith(".") for part in
                                                                          p.relative_to(src).parts))
        if not files:
            raise ValueError(f"no image files under {src}")
    elif src.is_file():
        manifest = read_caption_manifest(src)
        files = list(dict.fromkeys(path for path, _ in manifest.records))  # one row per image, not per caption
        if not files:
            raise ValueError(f"{src}: no usable lines ({manifest.summary()})")
    else:
        raise FileNotFoundError(f"data not found: {src} (give an image folder or a caption manifest)")
    dataset = RobustImageDataset([(p, 0) for p in files], ImageTransform(size, train=train, hflip=hflip),
                                 seed=seed, name=f"images({src})")
    if src.is_dir():  # a manifest's images were checked when it was read
        dataset.scan()
    return dataset


__all__ = ["image_source_dataset"]
