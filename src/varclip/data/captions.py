"""Image-caption manifests: JSON lines, CSV, and VAR-CLIP's `image_captions.txt`.

Formats (picked from the extension, or forced with `fmt`):
- "jsonl" (.jsonl, .json): one object per line, {"image": path, "caption": text}; an optional
  "flip": false marks an image that a horizontal flip would make untrue (text, arrows).
- "csv" (.csv): a header row with columns `image` and `caption`.
- "txt" (.txt): VAR-CLIP's `<image path>: <caption>` per line. The line is split on the
  FIRST ': ' only, because the reference splits on every colon and so silently loses
  every caption that contains one.

Relative paths resolve against `root`: by default the manifest's folder for JSONL/CSV,
and the folder's parent for .txt (VAR-CLIP keeps `train/image_captions.txt` beside
`train/`, with paths such as `train/n01440764/x.JPEG`). Blank lines are ignored; every
other line that cannot be used (malformed, empty caption, missing, unreadable or too small
image) is kept in `Manifest.problems` with its line number and reason and reported in ONE
warning, never dropped silently; the data set is exactly the usable pairs.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import logging
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from .atomic import atomic_output
from .base import MIN_IMAGE_SIZE, RobustImageDataset, probe_images
from .images import ImageTransform

log = logging.getLogger("varclip.data")

ManifestFormat = Literal["jsonl", "csv", "txt"]
_EXTENSIONS: dict[str, ManifestFormat] = {".jsonl": "jsonl", ".json": "jsonl",
                                          ".csv": "csv", ".txt": "txt"}
CAPTION_SEPARATOR = ": "
_SHOWN_PROBLEMS = 50


@dataclass(frozen=True)
class ManifestProblem:
    """One unusable line: 1-based line number, why, and (the start of) its text."""

    line: int
    reason: str
    text: str = ""

    def __str__(self) -> str:
        return f"line {self.line}: {self.reason}"


@dataclass
class Manifest:
    """The usable (image path, caption) records of a manifest plus what was rejected."""

    path: Path
    format: ManifestFormat
    root: Path
    records: list[tuple[Path, str]] = field(default_factory=list)
    problems: list[ManifestProblem] = field(default_factory=list)
    no_flip: set[Path] = field(default_factory=set)  # images a horizontal flip would falsify (text, direction)

    @property
    def num_lines(self) -> int:
        """Non-blank data lines seen (records + problems)."""
        return len(self.records) + len(self.problems)

    def summary(self) -> str:
        """One line: counts and the first few problems with their line numbers."""
        head = (f"{self.path}: {len(self.problems)} of {self.num_lines} lines unusable and "
                f"skipped")
        if not self.problems:
            return f"{self.path}: all {self.num_lines} lines usable"
        shown = "; ".join(str(p) for p in self.problems[:_SHOWN_PROBLEMS])
        more = len(self.problems) - _SHOWN_PROBLEMS
        tail = f"; ... and {more} more (see Manifest.problems)" if more > 0 else ""
        return f"{head}: {shown}{tail}"


def detect_format(path: str | os.PathLike[str]) -> ManifestFormat:
    """Manifest format from the file extension; a ValueError for anything else."""
    suffix = Path(path).suffix.lower()
    if suffix not in _EXTENSIONS:
        raise ValueError(f"cannot tell the manifest format of {os.fspath(path)!r} from its "
                         f"extension; use one of {sorted(_EXTENSIONS)} or pass fmt=")
    return _EXTENSIONS[suffix]


def default_root(path: str | os.PathLike[str], fmt: ManifestFormat) -> Path:
    """Where relative image paths resolve by default (see the module docstring)."""
    folder = Path(path).resolve().parent
    return folder.parent if fmt == "txt" else folder


def split_caption_line(line: str) -> tuple[str, str] | None:
    """'<path>: <caption>' -> (path, caption), split on the first ': '; None if absent. A line
    ending in ':' (trailing blanks stripped, as editors do) is a path with an empty caption."""
    path, sep, caption = line.partition(CAPTION_SEPARATOR)
    if not sep:
        text = line.rstrip()
        return (text[:-1].strip(), "") if text.endswith(":") else None
    return path.strip(), caption.strip()


def _short(text: str, limit: int = 80) -> str:
    text = text.strip()
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _iter_lines(data: bytes) -> Iterable[tuple[int, str | None, str]]:
    """(line number, decoded text or None if not UTF-8, raw preview) for non-blank lines."""
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    for number, raw in enumerate(data.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            yield number, raw.decode("utf-8"), ""
        except UnicodeDecodeError:
            yield number, None, raw.decode("utf-8", "replace")


def _parse_jsonl(data: bytes, path: Path) -> Iterable[tuple[int, str, str, bool] | ManifestProblem]:
    if data.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"["):
        raise ValueError(f"{path} holds a JSON array; a manifest must be JSON lines "
                         f"(one object per line)")
    for number, text, raw in _iter_lines(data):
        if text is None:
            yield ManifestProblem(number, "not valid UTF-8", _short(raw))
            continue
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as err:
            yield ManifestProblem(number, f"invalid JSON ({err.msg})", _short(text))
            continue
        if not isinstance(obj, dict):
            yield ManifestProblem(number, "not a JSON object", _short(text))
            continue
        image, caption = obj.get("image"), obj.get("caption")
        if not isinstance(image, str) or not isinstance(caption, str):
            yield ManifestProblem(number, "needs string fields 'image' and 'caption'",
                                  _short(text))
            continue
        flip = obj.get("flip", True)
        if not isinstance(flip, bool):
            yield ManifestProblem(number, "field 'flip' must be true or false", _short(text))
            continue
        yield number, image, caption, flip


def _parse_csv(data: bytes, path: Path) -> Iterable[tuple[int, str, str, bool] | ManifestProblem]:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise ValueError(f"{path} is not valid UTF-8 (byte {err.start})") from err
    reader = csv.DictReader(io.StringIO(text, newline=""))
    fields = [f.strip() for f in reader.fieldnames or []]
    if "image" not in fields or "caption" not in fields:
        raise ValueError(f"{path}: the CSV header must name the columns 'image' and "
                         f"'caption' (found {fields})")
    reader.fieldnames = fields
    for row in reader:
        number = reader.line_num
        image, caption = row.get("image"), row.get("caption")
        if not any((v or "").strip() for v in row.values() if isinstance(v, str)):
            continue  # a blank row
        if image is None or caption is None:
            yield ManifestProblem(number, "too few columns", _short(",".join(
                v for v in row.values() if isinstance(v, str))))
            continue
        yield number, image, caption, True


def _parse_txt(data: bytes, path: Path) -> Iterable[tuple[int, str, str, bool] | ManifestProblem]:
    for number, text, raw in _iter_lines(data):
        if text is None:
            yield ManifestProblem(number, "not valid UTF-8", _short(raw))
            continue
        parts = split_caption_line(text)
        if parts is None:
            yield ManifestProblem(number, "no ': ' between image path and caption",
                                  _short(text))
            continue
        yield number, parts[0], parts[1], True


_PARSERS = {"jsonl": _parse_jsonl, "csv": _parse_csv, "txt": _parse_txt}


def read_caption_manifest(path: str | os.PathLike[str], root: str | os.PathLike[str] | None = None,
                          fmt: ManifestFormat | None = None,
                          check_files: bool = True, min_size: int = MIN_IMAGE_SIZE) -> Manifest:
    """Parse a manifest; bad lines are collected (with line numbers) and warned about once.

    `check_files` opens each image's header (once per file): missing, unreadable and images
    smaller than `min_size` px become problems of their lines. Turn it off for very large
    manifests on slow file systems: such files are then skipped later, when loaded.
    """
    path = Path(path)
    fmt = fmt or detect_format(path)
    if fmt not in _PARSERS:
        raise ValueError(f"unknown manifest format {fmt!r}; use one of {sorted(_PARSERS)}")
    base = Path(root) if root is not None else default_root(path, fmt)
    manifest = Manifest(path=path, format=fmt, root=base)
    candidates: list[tuple[int, Path, str, str]] = []  # well-formed lines, their images still to check
    data = path.read_bytes()
    for item in _PARSERS[fmt](data, path):
        if isinstance(item, ManifestProblem):
            manifest.problems.append(item)
            continue
        number, image, caption, flip = item
        image, caption = image.strip(), caption.strip()
        preview = _short(f"{image}: {caption}")
        if not image:
            manifest.problems.append(ManifestProblem(number, "empty image path", preview))
            continue
        if not caption:
            manifest.problems.append(ManifestProblem(number, "empty caption", preview))
            continue
        file = base / image  # an absolute `image` replaces `base`
        if check_files and not file.is_file():
            manifest.problems.append(ManifestProblem(number, f"image not found: {file}", preview))
            continue
        candidates.append((number, file, caption, preview))
        if not flip:
            manifest.no_flip.add(file)
    files = list(dict.fromkeys(file for _, file, _, _ in candidates))
    why = dict(zip(files, probe_images(files, min_size))) if check_files else {}
    for number, file, caption, preview in candidates:
        if why.get(file):
            manifest.problems.append(ManifestProblem(number, why[file], preview))
        else:
            manifest.records.append((file, caption))
    manifest.problems.sort(key=lambda p: p.line)
    if manifest.problems:
        log.warning("%s", manifest.summary())
    return manifest


class CaptionDataset(RobustImageDataset[str]):
    """(image tensor CHW in [-1, 1], caption) from a manifest; see `read_caption_manifest`.

    Its samples are exactly the usable lines: bad ones are reported when the manifest is read
    (`manifest.problems`, counted in `num_skipped`); an image whose body turns out undecodable
    is skipped at load time (see `base.RobustImageDataset`).
    """

    unit = "image-caption pairs"

    def __init__(self, manifest: str | os.PathLike[str], size: int, train: bool = True,
                 root: str | os.PathLike[str] | None = None, hflip: bool = False,
                 seed: int | None = None, fmt: ManifestFormat | None = None,
                 check_files: bool = True, min_size: int = MIN_IMAGE_SIZE,
                 scale_jitter: float = 0.0) -> None:
        self.manifest = read_caption_manifest(manifest, root=root, fmt=fmt,
                                              check_files=check_files, min_size=min_size)
        if not self.manifest.records:
            raise ValueError(f"{manifest}: no usable lines ({self.manifest.summary()})")
        transform = ImageTransform(size, train, hflip, scale_jitter=scale_jitter)
        super().__init__(list(self.manifest.records), transform,
                         seed=seed, name=f"CaptionDataset({manifest})", min_size=min_size)
        self._unflipped = dataclasses.replace(transform, hflip=False)
        self.dropped = [str(p) for p in self.manifest.problems]

    def transform_for(self, index: int) -> ImageTransform:
        """Images marked "flip": false in the manifest are never flipped."""
        return self._unflipped if self.samples[index][0] in self.manifest.no_flip else self.transform

    @property
    def captions(self) -> list[str]:
        return [caption for _, caption in self.samples]

    @property
    def num_bad_lines(self) -> int:
        return len(self.manifest.problems)


def _json_default(value: Any) -> Any:
    if isinstance(value, os.PathLike):
        return Path(value).as_posix()
    raise TypeError(f"cannot write {type(value).__name__} to a JSON manifest")


def write_jsonl_manifest(rows: Iterable[Mapping[str, Any]], path: str | os.PathLike[str]) -> int:
    """Write rows as JSON lines atomically (temp file + rename); returns the row count.

    A reader never sees a half-written manifest, even if the writer is killed.
    """
    count = 0
    with atomic_output(path) as tmp, open(tmp, "w", encoding="utf-8", newline="\n") as fh:
        for row in rows:
            fh.write(json.dumps(dict(row), ensure_ascii=False, default=_json_default))
            fh.write("\n")
            count += 1
    return count
