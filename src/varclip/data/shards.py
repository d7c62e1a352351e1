"""WebDataset-style tar shards, read and written with Python's tarfile only.

For data that does not fit one disk (or is read from a network file system): many
.tar files, each a sequence of samples whose members share a key, e.g.
`000123.jpg` + `000123.txt`. Image members: .jpg/.jpeg/.png/.webp; target members:
.txt (caption), .cls (integer class id) or .json (an object with "caption" or
"label"/"cls"). Members of one sample must be adjacent, as the webdataset tools write
them.

Shards are split first across distributed ranks, then across DataLoader workers, so a
rank reads the same shards whatever its worker count; use at least world_size *
num_workers shards of similar size (a rank or worker left without a shard yields
nothing, with a warning). Order: shards are shuffled per epoch from (seed, epoch), and
samples go through a seeded shuffle buffer; the random crop of a sample depends only
on (seed, epoch, shard, key). Call `set_epoch` before each epoch (this reaches the
workers as long as `persistent_workers` is off). Unreadable shards, truncated tars,
samples without an image or target, and undecodable images are skipped and counted
in `stats` (per process); the first skip is logged as a warning, and each pass ends
with one summary warning if anything was skipped.
"""

from __future__ import annotations

import io
import json
import logging
import os
import posixpath
import random
import re
import tarfile
import zlib
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import torch
from PIL import Image
from torch.utils.data import IterableDataset, get_worker_info

from .atomic import commit, temp_path_for
from .images import ImageTransform, decode_image_bytes, item_generator, mix_seed

log = logging.getLogger("varclip.data")

IMAGE_KEYS: tuple[str, ...] = ("jpg", "jpeg", "png", "webp")
Target = Literal["auto", "caption", "class"]
_BRACE = re.compile(r"\{([^{}]*)\}")
_RANGE = re.compile(r"^(-?\d+)\.\.(-?\d+)$")


def expand_braces(pattern: str) -> list[str]:
    """Shell-like brace expansion: "s-{000..002}.tar" and "{a,b}" (several allowed)."""
    match = _BRACE.search(pattern)
    if match is None:
        return [pattern]
    body = match.group(1)
    rng = _RANGE.match(body)
    if rng:
        lo, hi = int(rng.group(1)), int(rng.group(2))
        width = len(rng.group(1).lstrip("-"))
        step = 1 if hi >= lo else -1
        choices = [str(i).zfill(width) for i in range(lo, hi + step, step)]
    else:
        choices = body.split(",")
    head, tail = pattern[: match.start()], pattern[match.end():]
    return [out for choice in choices for out in expand_braces(head + choice + tail)]


def expand_shards(spec: str | os.PathLike[str] | Sequence[str | os.PathLike[str]]) -> list[str]:
    """A brace pattern, or a list of paths/patterns, to the flat list of shard paths."""
    items = [spec] if isinstance(spec, (str, os.PathLike)) else list(spec)
    return [p for item in items for p in expand_braces(os.fspath(item))]


def _split_name(name: str) -> tuple[str, str] | None:
    """'dir/key.ext.gz' -> ('dir/key', 'ext.gz'): the key ends at the basename's first dot."""
    folder, base = posixpath.split(name)
    if base.startswith(".") or "." not in base:
        return None
    stem, ext = base.split(".", 1)
    return posixpath.join(folder, stem), ext.lower()


def iter_tar_groups(path: str, stats: Counter[str] | None = None) -> Iterator[dict[str, Any]]:
    """Samples of one shard as {'__key__', '__shard__', ext: bytes}; a corrupt tar ends early.

    The sample that was being read when the tar broke is dropped: it may be incomplete.
    """
    stats = stats if stats is not None else Counter()
    group: dict[str, Any] = {}
    try:
        with tarfile.open(path, mode="r|*") as tar:
            for member in tar:
                if not member.isfile():
                    continue
                parts = _split_name(member.name)
                if parts is None:
                    continue
                key, ext = parts
                fh = tar.extractfile(member)
                data = fh.read() if fh is not None else b""
                if group and group["__key__"] != key:
                    yield group
                    group = {}
                if not group:
                    group = {"__key__": key, "__shard__": path}
                group[ext] = data
    except (tarfile.TarError, OSError, EOFError, zlib.error) as err:
        stats["corrupt or unreadable shard"] += 1
        log.warning("shard %s: %s: %s; the rest of this shard is skipped", path,
                    type(err).__name__, " ".join(str(err).split()))
        return
    if group:
        yield group


def _decode_target(group: Mapping[str, Any], target: Target) -> str | int | None:
    meta: Any = None
    if "json" in group:
        try:
            meta = json.loads(group["json"].decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            meta = None
    meta = meta if isinstance(meta, dict) else {}
    if target in ("auto", "caption"):
        if "txt" in group:
            caption = group["txt"].decode("utf-8", "replace").strip()
            return caption or None
        if isinstance(meta.get("caption"), str) and meta["caption"].strip():
            return meta["caption"].strip()
    if target in ("auto", "class"):
        raw: Any = group["cls"].decode("ascii", "replace").strip() if "cls" in group else None
        if raw is None:
            raw = meta.get("label", meta.get("cls"))
        try:
            return int(raw) if raw is not None and not isinstance(raw, bool) else None
        except (TypeError, ValueError):
            return None
    return None


def _worker_split() -> tuple[int, int]:
    info = get_worker_info()
    return (0, 1) if info is None else (info.id, info.num_workers)


def _dist_split() -> tuple[int, int]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


class ShardDataset(IterableDataset):
    """(image tensor CHW in [-1, 1], caption or class id) streamed from tar shards.

    `target` "caption" wants .txt (or json "caption"), "class" wants .cls (or json
    "label"/"cls"), "auto" takes whichever a sample has. `shuffle_buffer=0` and
    `train=False` give a fixed order (shards in the given order, no shuffling).
    """

    def __init__(self, shards: str | Sequence[str], size: int, train: bool = True,
                 target: Target = "auto", hflip: bool = False, seed: int = 0,
                 shuffle_buffer: int = 1000, rank: int | None = None,
                 world_size: int | None = None) -> None:
        super().__init__()
        self.shards = expand_shards(shards)
        if not self.shards:
            raise ValueError("no shards given")
        if target not in ("auto", "caption", "class"):
            raise ValueError(f"target must be 'auto', 'caption' or 'class', not {target!r}")
        self.transform = ImageTransform(size, train=train, hflip=hflip)
        self.train = train
        self.target = target
        self.seed = seed
        self.shuffle_buffer = shuffle_buffer if train else 0
        self.rank, self.world_size = rank, world_size
        self.epoch = 0
        self.stats: Counter[str] = Counter()

    @property
    def num_skipped(self) -> int:
        return sum(v for k, v in self.stats.items() if k != "samples")

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def shards_for(self, rank: int, world_size: int, worker: int = 0,
                   num_workers: int = 1) -> list[str]:
        """The shards one (rank, worker) reads this epoch: a pure function of its arguments."""
        order = list(self.shards)
        if self.train:
            random.Random(mix_seed(self.seed, self.epoch)).shuffle(order)
        return order[rank::world_size][worker::num_workers]

    def _skip(self, reason: str, where: str) -> None:
        first = self.num_skipped == 0
        self.stats[reason] += 1
        if first:
            log.warning("%s: %s; skipped (further skips are counted in .stats)", where, reason)
        else:
            log.debug("%s: %s; skipped", where, reason)

    def _samples(self, shards: list[str]) -> Iterator[tuple[torch.Tensor, str | int]]:
        for shard in shards:
            for group in iter_tar_groups(shard, self.stats):
                where = f"{shard}:{group['__key__']}"
                image_key = next((k for k in IMAGE_KEYS if k in group), None)
                if image_key is None:
                    self._skip("sample without an image", where)
                    continue
                target = _decode_target(group, self.target)
                if target is None:
                    self._skip(f"sample without a usable {self.target} target", where)
                    continue
                try:
                    img = decode_image_bytes(group[image_key], where)
                except ValueError:
                    self._skip("unreadable image", where)
                    continue
                salt = zlib.crc32(where.encode("utf-8", "surrogateescape"))
                gen = item_generator(self.seed, self.epoch, salt)
                self.stats["samples"] += 1
                yield self.transform(img, gen), target

    def __iter__(self) -> Iterator[tuple[torch.Tensor, str | int]]:
        rank, world = _dist_split()
        rank = self.rank if self.rank is not None else rank
        world = self.world_size if self.world_size is not None else world
        worker, num_workers = _worker_split()
        shards = self.shards_for(rank, world, worker, num_workers)
        if not shards:
            log.warning("rank %d worker %d has no shard to read (%d shards for %d ranks x %d "
                        "workers)", rank, worker, len(self.shards), world, num_workers)
            return
        stream = self._samples(shards)
        if self.shuffle_buffer > 1:
            rng = random.Random(mix_seed(self.seed, self.epoch, rank, worker))
            stream = shuffle_buffered(stream, self.shuffle_buffer, rng)
        yield from stream
        if self.num_skipped:
            log.warning("rank %d worker %d: %d samples, %d skipped (%s)", rank, worker,
                        self.stats["samples"], self.num_skipped,
                        ", ".join(f"{k}: {v}" for k, v in sorted(self.stats.items())
                                  if k != "samples"))


def shuffle_buffered(items: Iterable[Any], size: int, rng: random.Random) -> Iterator[Any]:
    """Approximate shuffle with a buffer of `size` items (the webdataset way)."""
    buffer: list[Any] = []
    for item in items:
        if len(buffer) < size:
            buffer.append(item)
            continue
        j = rng.randrange(size)
        buffer[j], item = item, buffer[j]
        yield item
    rng.shuffle(buffer)
    yield from buffer


# ---------------------------------------------------------------- writing

def _encode(value: Any, ext: str) -> bytes:
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, bool):
        raise TypeError(f"cannot store a bool as .{ext}")
    if isinstance(value, int):
        return str(value).encode("ascii")
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False, sort_keys=True).encode("utf-8")
    if isinstance(value, Image.Image):
        fmt = {"jpg": "JPEG", "jpeg": "JPEG", "png": "PNG", "webp": "WEBP"}.get(ext)
        if fmt is None:
            raise ValueError(f"cannot encode an image as .{ext}")
        buf = io.BytesIO()
        img = value.convert("RGB") if fmt == "JPEG" else value
        img.save(buf, format=fmt, **({"quality": 95} if fmt != "PNG" else {}))
        return buf.getvalue()
    if isinstance(value, os.PathLike):
        return Path(value).read_bytes()
    raise TypeError(f"cannot store {type(value).__name__} as .{ext}")


def _shard_name(pattern: str, index: int) -> str:
    if "%" in pattern:
        return pattern % index
    if "{" in pattern:
        return pattern.format(index)
    raise ValueError(f"shard pattern {pattern!r} needs a %d-style or {{}}-style number field")


class ShardWriter:
    """Writes samples into numbered tars, `max_per_shard` each; every shard is atomic."""

    def __init__(self, pattern: str, max_per_shard: int = 1000) -> None:
        if max_per_shard < 1:
            raise ValueError("max_per_shard must be >= 1")
        self.pattern = pattern
        self.max_per_shard = max_per_shard
        self.paths: list[Path] = []
        self._count = 0
        self._in_shard = 0
        self._tmp: Path | None = None
        self._tar: tarfile.TarFile | None = None

    def _open(self) -> None:
        path = Path(_shard_name(self.pattern, len(self.paths)))
        self._tmp = temp_path_for(path)
        self._tar = tarfile.open(self._tmp, "w", format=tarfile.PAX_FORMAT)
        self.paths.append(path)
        self._in_shard = 0

    def _close(self, failed: bool = False) -> None:
        if self._tar is None or self._tmp is None:
            return
        tar, tmp = self._tar, self._tmp
        self._tar = self._tmp = None
        try:
            tar.close()
            if failed:
                self.paths.pop()
            else:
                commit(tmp, self.paths[-1])
        finally:
            tmp.unlink(missing_ok=True)

    def write(self, sample: Mapping[str, Any]) -> None:
        key = str(sample.get("__key__", f"{self._count:09d}"))
        if "." in posixpath.basename(key) or not key:
            raise ValueError(f"sample key {key!r} must be non-empty and contain no '.'")
        fields = {k: v for k, v in sample.items() if not k.startswith("__")}
        if not fields:
            raise ValueError(f"sample {key!r} has no fields")
        if self._tar is None or self._in_shard >= self.max_per_shard:
            self._close()
            self._open()
        assert self._tar is not None
        for ext in sorted(fields):
            data = _encode(fields[ext], ext.lower())
            info = tarfile.TarInfo(f"{key}.{ext}")
            info.size, info.mtime, info.mode = len(data), 0, 0o644
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            self._tar.addfile(info, io.BytesIO(data))
        self._in_shard += 1
        self._count += 1

    def close(self) -> None:
        self._close()

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        self._close(failed=exc_type is not None)


def write_shards(samples: Iterable[Mapping[str, Any]], pattern: str,
                 max_per_shard: int = 1000) -> list[Path]:
    """Write samples ({"__key__": ..., "jpg": PIL image or bytes, "txt": caption, ...}) to
    tar shards named by `pattern` ("out/shard-%06d.tar" or "out/shard-{:06d}.tar").

    Values may be bytes, str, int, dict/list (JSON), a PIL image (encoded by extension)
    or a path (its bytes). Output bytes are deterministic (zeroed tar metadata).
    Returns the shard paths written.
    """
    with ShardWriter(pattern, max_per_shard) as writer:
        for sample in samples:
            writer.write(sample)
    return writer.paths
