"""Class-conditional data in ImageNet's layout: root/<class name>/**/<image>.

Class ids are the positions of the sorted sub-folder names (as torchvision's
ImageFolder, so ImageNet ids match the official checkpoints). Unusable images (unreadable,
or smaller than `min_size` px) are dropped and counted: see `base.RobustImageDataset`.
"""

from __future__ import annotations

import os
from pathlib import Path

from .base import MIN_IMAGE_SIZE, RobustImageDataset
from .images import ImageTransform, is_image_file


def find_classes(root: Path) -> list[str]:
    """Sorted names of the visible sub-folders: their order defines the class ids."""
    return sorted(e.name for e in os.scandir(root) if e.is_dir() and not e.name.startswith("."))


def list_class_images(root: Path, classes: list[str]) -> list[tuple[Path, int]]:
    """(path, class id) for every image file, in a deterministic (sorted) order."""
    samples: list[tuple[Path, int]] = []
    for idx, name in enumerate(classes):
        for dirpath, dirnames, filenames in os.walk(root / name, followlinks=True):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            for fname in sorted(filenames):
                if not fname.startswith(".") and is_image_file(fname):
                    samples.append((Path(dirpath) / fname, idx))
    return samples


class ImageFolderDataset(RobustImageDataset[int]):
    """(image tensor CHW in [-1, 1], class id) from root/<class>/...; `classes` names the ids.
    `check_files` reads every file's header up front and drops the unusable ones."""

    def __init__(self, root: str | os.PathLike[str], size: int, train: bool = True,
                 hflip: bool = False, seed: int | None = None, check_files: bool = True,
                 min_size: int = MIN_IMAGE_SIZE) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"image folder not found: {self.root}")
        self.classes: list[str] = find_classes(self.root)
        if not self.classes:
            raise ValueError(f"no class sub-folders in {self.root}")
        self.class_to_idx: dict[str, int] = {c: i for i, c in enumerate(self.classes)}
        samples = list_class_images(self.root, self.classes)
        if not samples:
            raise ValueError(f"no image files under {self.root}")
        super().__init__(samples, ImageTransform(size, train=train, hflip=hflip), seed=seed,
                         name=f"ImageFolderDataset({self.root})", min_size=min_size)
        if check_files:
            self.scan()

    @property
    def targets(self) -> list[int]:
        return [label for _, label in self.samples]
