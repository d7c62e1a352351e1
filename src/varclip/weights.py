"""Reading third-party weight files (CLIP, the FID Inception): TorchScript archives, the usual
checkpoint containers, and memoised file digests for cache keys.

A TorchScript archive is read with ``torch.jit.load(map_location="cpu").state_dict()``: the C++
loader rebuilds TorchScript types and tensors only and never calls Python globals, so it is as
safe as ``torch.load(weights_only=True)``, which refuses such archives.
"""

from __future__ import annotations

import hashlib
import warnings
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch


def is_torchscript(path: Path) -> bool:
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as z:
        return any(n.endswith("constants.pkl") or "/code/" in n for n in z.namelist())


def torchscript_state(path: Path) -> dict[str, torch.Tensor]:
    """The state dict of a TorchScript archive (see the module docstring)."""
    with warnings.catch_warnings():  # torch.jit.load is deprecated in favour of torch.export
        warnings.simplefilter("ignore")
        return dict(torch.jit.load(str(path), map_location="cpu").state_dict())


def unwrap_state_dict(obj: Any, path: Path, error: type[Exception],
                      containers: Sequence[str] = ("state_dict", "model", "module")) -> dict[str, torch.Tensor]:
    """The tensors of a loaded file, out of the usual training-checkpoint containers."""
    while isinstance(obj, dict) and not any(isinstance(v, torch.Tensor) for v in obj.values()):
        inner = next((obj[k] for k in containers if isinstance(obj.get(k), dict)), None)
        if inner is None:
            break
        obj = inner
    if not isinstance(obj, dict):
        raise error(f"{path} does not hold a state dict (found {type(obj).__name__})")
    return {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}


_DIGESTS: dict[tuple[str, str, int, int], str] = {}


def file_digest(path: Path, algorithm: str = "sha256") -> str:
    """Hex digest of a file, memoised per (path, size, mtime)."""
    st = path.stat()
    key = (algorithm, str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _DIGESTS:
        h = hashlib.new(algorithm)
        with path.open("rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        _DIGESTS[key] = h.hexdigest()
    return _DIGESTS[key]


__all__ = ["file_digest", "is_torchscript", "torchscript_state", "unwrap_state_dict"]
