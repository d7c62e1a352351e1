"""Resumable training checkpoints, written atomically, the last N kept.

Layout of one checkpoint (a directory `step-00001234` under the run's checkpoint folder):

    <name>.safetensors   full (unsharded) weights, one file per entry of `tensors` (model, ema)
    trainer.pt           optimizer, lr schedule, grad scaler, data position, anything small
    rng-rank<r>.pt       each process's python / numpy / torch / cuda RNG states
    meta.json            written last: {"step": ..., "complete": true, "files": {name: sha256}, ...}

Everything is first written into a hidden temporary directory beside it and then renamed in one
step, so a run killed at any moment (SIGKILL included) leaves either the previous complete
checkpoints or the new complete one, never a torn one; `latest()` only considers directories
with a meta.json, and stale temporary directories are removed on start. All files load with
`torch.load(weights_only=True)`: resuming runs no pickled code.

Files can still rot after the rename (a truncated copy, a flipped bit, a full disk on another
tool's write), so `meta.json` records the SHA-256 of every file and `Checkpoint.verify()` checks
them before a resume trusts a checkpoint; `--resume auto` then falls back to the newest intact
one (`keep_last` keeps the older ones for exactly this). Hashing reads each file once more at
save time: 1.2-1.5 s per 256 MB against 3-5 s to write and sync it, measured on a busy 2-core
machine (SHA-256 runs at GB/s on CPUs with SHA instructions). A failed write (ENOSPC) removes its
temporary directory and raises a one-line `CheckpointError`: the previous checkpoints stay.

Multi-process runs need the checkpoint folder on a file system every rank sees.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import random
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from .distributed import DistEnv, barrier, broadcast_object

_NAME = re.compile(r"^step-(\d+)$")
DIR_MODE, FILE_MODE = 0o755, 0o644  # checkpoints are ordinary files (mkdtemp would leave 0700)


class CheckpointError(ValueError):
    """A checkpoint that cannot be written or trusted; the message is one line."""


def write_error(err: BaseException, what: str) -> CheckpointError:
    """A failed write as one line: "disk full" named as such, else the error's first line."""
    text = " ".join(str(err).split())
    full = getattr(err, "errno", None) == errno.ENOSPC or "No space left" in text or "StorageFull" in text
    if full:
        return CheckpointError(f"cannot write {what}: the disk is full (No space left on device)")
    return CheckpointError(f"cannot write {what}: {type(err).__name__}: {text}"[:400])


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


# ---------------------------------------------------------------------------- RNG states


def capture_rng() -> dict[str, Any]:
    """This process's RNG states in a weights_only-loadable form."""
    version, state, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    out: dict[str, Any] = {
        "python": [version, list(state), gauss],
        "numpy": [kind, torch.from_numpy(np.asarray(keys, dtype=np.int64)), int(pos), int(has_gauss), float(cached)],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        out["cuda"] = torch.cuda.get_rng_state_all()
    return out


def restore_rng(state: dict[str, Any]) -> None:
    version, values, gauss = state["python"]
    random.setstate((version, tuple(values), gauss))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        cuda = state["cuda"]
        if len(cuda) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


# ---------------------------------------------------------------------------- atomic files


def atomic_write_text(path: str | Path, text: str) -> None:
    from ..data.atomic import atomic_output
    with atomic_output(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _host_tensors(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().contiguous() for k, v in tensors.items()}


# ---------------------------------------------------------------------------- the manager


@dataclass
class Checkpoint:
    """A complete checkpoint on disk; read its parts on demand."""

    path: Path
    step: int
    meta: dict[str, Any]

    def tensors(self, name: str) -> dict[str, torch.Tensor]:
        return load_file(str(self.path / f"{name}.safetensors"))

    def has(self, name: str) -> bool:
        return (self.path / f"{name}.safetensors").is_file()

    def trainer_state(self) -> dict[str, Any]:
        return torch.load(self.path / "trainer.pt", map_location="cpu", weights_only=True)

    def rng_state(self, rank: int) -> dict[str, Any] | None:
        f = self.path / f"rng-rank{rank}.pt"
        return torch.load(f, map_location="cpu", weights_only=True) if f.is_file() else None

    def verify(self) -> None:
        """Raise a one-line CheckpointError unless every file is as it was saved: checksums when
        meta.json has them (checkpoints of older versions: every file must at least load)."""
        sums = self.meta.get("files")
        try:
            if isinstance(sums, dict):
                for name, digest in sums.items():
                    f = self.path / name
                    if not f.is_file():
                        raise CheckpointError(f"{name} is missing")
                    if file_sha256(f) != digest:
                        raise CheckpointError(f"{name} does not match its checksum")
                return
            for f in sorted(self.path.iterdir()):
                if f.suffix == ".safetensors":
                    load_file(str(f))
                elif f.suffix == ".pt":
                    torch.load(f, map_location="cpu", weights_only=True)
        except CheckpointError as e:
            raise CheckpointError(f"checkpoint {self.path} is corrupt: {e}") from None
        except Exception as e:  # what a torn file raises: SafetensorError, UnpicklingError, EOFError...
            msg = " ".join(str(e).split())[:200]
            raise CheckpointError(f"checkpoint {self.path} is corrupt: {type(e).__name__}: {msg}") from None


class CheckpointManager:
    """Saves and finds checkpoints in `root`. Every rank calls `save` (it synchronises); rank 0
    writes the shared files, each rank its own RNG file."""

    def __init__(self, root: str | Path, keep_last: int = 3, env: DistEnv | None = None):
        self.root = Path(root)
        self.keep_last = max(1, keep_last)
        self.env = env or DistEnv()
        self.problems: dict[Path, str] = {}  # step directories skipped by `checkpoints()`, and why
        if self.env.is_main:
            self.root.mkdir(parents=True, exist_ok=True)
            for old in self.root.glob(".tmp-old-*"):  # killed mid-swap: the old checkpoint comes back
                final = self.root / old.name.removeprefix(".tmp-old-")
                if not final.exists():
                    os.replace(old, final)
            for stale in self.root.glob(".tmp-*"):  # half-written by a killed run
                shutil.rmtree(stale, ignore_errors=True)
        barrier(self.env)

    def checkpoints(self) -> list[Checkpoint]:
        """Complete checkpoints, oldest first."""
        found = []
        if not self.root.is_dir():
            return found
        for d in self.root.iterdir():
            m = _NAME.match(d.name)
            meta_file = d / "meta.json"
            if not m or not meta_file.is_file():
                continue
            try:
                meta = json.loads(meta_file.read_text())
                if not isinstance(meta, dict):
                    raise ValueError("not a JSON object")
            except (OSError, UnicodeDecodeError, ValueError) as e:
                self.problems[d] = f"unreadable meta.json ({type(e).__name__})"
                continue
            if meta.get("complete"):
                found.append(Checkpoint(d, int(m.group(1)), meta))
        return sorted(found, key=lambda c: c.step)

    def newest_intact(self) -> tuple[Checkpoint | None, list[str]]:
        """The newest checkpoint that passes `verify()`, and a warning for each newer one that
        does not (or whose meta.json is unreadable)."""
        notes = []
        ckpts = self.checkpoints()
        for path, why in sorted(self.problems.items()):
            notes.append(f"warning: ignoring checkpoint {path}: {why}")
        for ck in reversed(ckpts):
            try:
                ck.verify()
                return ck, notes
            except CheckpointError as e:
                notes.append(f"warning: {e}; falling back to an older checkpoint")
        return None, notes

    def latest(self) -> Checkpoint | None:
        ckpts = self.checkpoints()
        return ckpts[-1] if ckpts else None

    def save(self, step: int, tensors: dict[str, dict[str, torch.Tensor]], trainer_state: dict[str, Any],
             meta: dict[str, Any] | None = None) -> Path:
        """Write checkpoint `step`. `tensors` (name -> state dict, on rank 0) become safetensors
        files; `trainer_state` (rank 0) goes to trainer.pt; every rank adds its RNG states."""
        final = self.root / f"step-{step:08d}"
        what = f"checkpoint {final}"
        tmp_name = None
        if self.env.is_main:
            tmp_name = tempfile.mkdtemp(dir=self.root, prefix=f".tmp-step-{step:08d}-")
            os.chmod(tmp_name, DIR_MODE)
        tmp = Path(broadcast_object(tmp_name, self.env))
        try:
            torch.save(capture_rng(), tmp / f"rng-rank{self.env.rank}.pt")
        except Exception as e:
            shutil.rmtree(tmp, ignore_errors=True)
            raise write_error(e, what) from None
        barrier(self.env)
        if self.env.is_main:
            try:
                self._write(tmp, step, tensors, trainer_state, meta)
            except Exception as e:  # ENOSPC and friends: drop the partial copy, keep the old ones
                shutil.rmtree(tmp, ignore_errors=True)
                raise write_error(e, what) from None
            if final.exists():  # re-saving a step (after a resume): swap, then drop the old one
                old = self.root / f".tmp-old-{final.name}"
                os.replace(final, old)
                os.replace(tmp, final)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.replace(tmp, final)
            _fsync_dir(self.root)
            self.prune()
        barrier(self.env)
        return final

    def _write(self, tmp: Path, step: int, tensors: dict[str, dict[str, torch.Tensor]],
               trainer_state: dict[str, Any], meta: dict[str, Any] | None) -> None:
        """Rank 0's files of a checkpoint into `tmp`, meta.json (with the checksums) last, synced."""
        for name, sd in tensors.items():
            save_file(_host_tensors(sd), str(tmp / f"{name}.safetensors"))
        torch.save(trainer_state, tmp / "trainer.pt")
        files = {f.name: file_sha256(f) for f in sorted(tmp.iterdir())}
        info = {"step": step, "world_size": self.env.world_size, **(meta or {}), "files": files, "complete": True}
        (tmp / "meta.json").write_text(json.dumps(info, indent=1) + "\n")
        for f in tmp.iterdir():
            os.chmod(f, FILE_MODE)
            with open(f, "rb") as fh:
                os.fsync(fh.fileno())
        _fsync_dir(tmp)

    def prune(self) -> None:
        for old in self.checkpoints()[: -self.keep_last]:
            shutil.rmtree(old.path, ignore_errors=True)

    def resolve(self, resume: str) -> Checkpoint | None:
        """`resume` "" -> None, "auto" -> the latest (None if there is none), else that path."""
        if not resume:
            return None
        if resume == "auto":
            return self.latest()
        path = Path(resume)
        m = _NAME.match(path.name)
        meta_file = path / "meta.json"
        if not m or not meta_file.is_file():
            raise CheckpointError(f"not a complete checkpoint directory: {path}")
        try:
            meta = json.loads(meta_file.read_text())
        except (OSError, UnicodeDecodeError, ValueError) as e:
            raise CheckpointError(f"checkpoint {path} is corrupt: unreadable meta.json ({type(e).__name__})") from None
        if not isinstance(meta, dict) or not meta.get("complete"):
            raise CheckpointError(f"not a complete checkpoint directory: {path}")
        return Checkpoint(path, int(m.group(1)), meta)


__all__ = ["capture_rng", "restore_rng", "seed_everything", "atomic_write_text", "Checkpoint", "CheckpointManager",
           "CheckpointError", "write_error", "file_sha256"]
