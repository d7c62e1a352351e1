"""Atomic file output: readers never see a half-written manifest, shard or image."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def temp_path_for(path: str | os.PathLike[str]) -> Path:
    """A fresh, hidden temporary file beside `path` (same file system, so rename is atomic)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    return Path(tmp_name)


def commit(tmp: Path, path: str | os.PathLike[str], mode: int = 0o644) -> None:
    """Flush `tmp` to disk and move it over `path` in one step."""
    with open(tmp, "rb+") as fh:
        os.fsync(fh.fileno())
    os.chmod(tmp, mode)  # mkstemp creates 0600 files
    os.replace(tmp, path)


@contextmanager
def atomic_output(path: str | os.PathLike[str], mode: int = 0o644) -> Iterator[Path]:
    """Yield a temporary path beside `path`; it replaces `path` only if the block succeeds."""
    tmp = temp_path_for(path)
    try:
        yield tmp
        commit(tmp, path, mode)
    finally:
        tmp.unlink(missing_ok=True)
