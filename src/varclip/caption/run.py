"""The captioning loop: list, shard, caption in batches, append, resume, merge.

- Images under IMAGES_DIR are listed recursively in sorted order; rank r of W takes
  every W-th image (`items[r::W]`), so the split is a pure function of the file list.
- Each rank appends to its own shard file `<out stem>.rank<r>.jsonl` beside the final
  manifest, one JSON line per image, flushed and fsync'ed after every batch.
- Resume: an image is skipped when any shard file (of any rank and any earlier world
  size) or the final manifest already has it. A kill can leave a half-written last line:
  the owner truncates it before appending and readers ignore it.
- Merge: the final manifest is the union of the existing manifest and all shard files,
  one row per image sorted by path, written atomically; then the shard files are
  removed (unless kept). Images that could not be read or got an empty caption are
  listed in `<out stem>.failed.jsonl` and are retried by the next run.

Paths in the manifest are relative to the manifest's folder (what `read_caption_manifest`
expects); the VAR-CLIP `image_captions.txt` has them relative to its folder's parent.
"""

from __future__ import annotations

import glob
import json
import logging
import os
import re
import sys
import time
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from ..data.atomic import atomic_output
from ..data.captions import write_jsonl_manifest
from ..data.images import is_image_file, load_image
from .captioners import Captioner, clean_caption
from .names import ClassName, is_wnid, resolve_class

log = logging.getLogger("varclip.caption")

_SHARD = re.compile(r"\.rank(\d+)\.jsonl$")
PREFIX_FORMAT = "{name}, {caption}"


@dataclass(frozen=True)
class ImageItem:
    """One image: its file, its key (path relative to the manifest's folder), its class."""

    __slots__ = ("path", "key", "cls")  # ImageNet has 1.28 million of them
    path: str
    key: str
    cls: ClassName | None


def shard_path(out: str | os.PathLike[str], rank: int) -> Path:
    out = Path(out)
    return out.with_name(f"{out.stem}.rank{rank}.jsonl")


def failed_path(out: str | os.PathLike[str]) -> Path:
    out = Path(out)
    return out.with_name(f"{out.stem}.failed.jsonl")


def shard_files(out: str | os.PathLike[str]) -> list[Path]:
    """Existing shard files of `out`, in rank order."""
    out = Path(out)
    found = []
    for name in glob.glob(os.path.join(glob.escape(str(out.parent)),
                                       glob.escape(out.stem) + ".rank*.jsonl")):
        match = _SHARD.search(name)
        if match and Path(name).name == f"{out.stem}.rank{match.group(1)}.jsonl":
            found.append((int(match.group(1)), Path(name)))
    return [p for _, p in sorted(found)]


def relative_key(path: Path, base: Path) -> str:
    """`path` relative to `base`, with forward slashes ('..' where it is outside)."""
    return Path(os.path.relpath(path, base)).as_posix()


def _class_folder(parts: Sequence[str]) -> str | None:
    """The nearest ImageNet synset folder above the file, else the top folder, else None."""
    folders = parts[:-1]
    for name in reversed(folders):
        if is_wnid(name):
            return name
    return folders[0] if folders else None


def list_images(images_dir: str | os.PathLike[str], manifest_dir: str | os.PathLike[str],
                class_names: dict[str, ClassName] | None = None,
                limit: int | None = None) -> list[ImageItem]:
    """Every image file under `images_dir` (hidden entries skipped), sorted by path."""
    root = Path(images_dir)
    if not root.is_dir():
        raise NotADirectoryError(f"not a folder of images: {root}")
    base = Path(os.path.abspath(manifest_dir))
    rels: list[tuple[str, ...]] = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        rel_dir = Path(dirpath).relative_to(root).parts
        rels.extend(rel_dir + (f,) for f in filenames
                    if not f.startswith(".") and is_image_file(f))
    rels.sort()
    if limit is not None:
        rels = rels[:limit]
    root_abs = os.path.abspath(root)  # not resolve(): keep the user's symlinked paths
    prefix = relative_key(Path(root_abs), base)
    prefix = "" if prefix == "." else prefix + "/"
    classes: dict[str, ClassName] = {}
    items = []
    for parts in rels:
        folder = _class_folder(parts)
        cls = None
        if folder is not None:
            cls = classes.get(folder) or classes.setdefault(folder, resolve_class(folder, class_names))
        rel = "/".join(parts)
        items.append(ImageItem(os.path.join(root_abs, *parts), prefix + rel, cls))
    return items


def read_rows(path: Path) -> tuple[list[dict], int]:
    """JSON objects of a JSONL file, and how many lines were unreadable (a torn last line)."""
    rows, bad = [], 0
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return rows, bad
    for raw in data.splitlines():
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError):
            bad += 1
            continue
        if isinstance(obj, dict) and isinstance(obj.get("image"), str):
            rows.append(obj)
        else:
            bad += 1
    return rows, bad


def repair_tail(path: Path) -> int:
    """Cut a half-written last line (no final newline) off a shard; returns bytes removed."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return 0
    if size == 0:
        return 0
    with open(path, "rb+") as fh:
        fh.seek(size - 1)
        if fh.read(1) == b"\n":
            return 0
        # scan back for the last newline
        chunk = 1 << 16
        pos = size
        keep = 0
        while pos > 0:
            start = max(0, pos - chunk)
            fh.seek(start)
            block = fh.read(pos - start)
            idx = block.rfind(b"\n")
            if idx >= 0:
                keep = start + idx + 1
                break
            pos = start
        fh.truncate(keep)
        fh.flush()
        os.fsync(fh.fileno())
    return size - keep


def _is_success(row: dict) -> bool:
    caption = row.get("caption")
    return isinstance(caption, str) and bool(caption.strip()) and "error" not in row


def done_keys(out: str | os.PathLike[str], retry_failed: bool = False) -> set[str]:
    """Images already handled: in the final manifest or any shard file.

    Failed rows (unreadable image, empty caption) count as handled unless `retry_failed`.
    """
    out = Path(out)
    done: set[str] = set()
    for path in [out, *shard_files(out)]:
        rows, _ = read_rows(path)
        done.update(r["image"] for r in rows if not retry_failed or _is_success(r))
    return done


def add_class_prefix(caption: str, cls: ClassName | None, fmt: str = PREFIX_FORMAT) -> str:
    """Put the class name first ('tench, a man holding a fish'); kept as is when the caption
    already starts with the name or the class is unknown."""
    if cls is None or not caption:
        return caption
    if caption.lower().startswith(cls.name.lower()):
        return caption
    return clean_caption(fmt.format(name=cls.name, caption=caption))


@dataclass
class CaptionSummary:
    rank: int
    world_size: int
    shard: Path
    total: int = 0          # images listed
    assigned: int = 0       # this rank's share
    skipped: int = 0        # already captioned
    captioned: int = 0
    failed: int = 0
    seconds: float = 0.0
    failures: list[tuple[str, str]] = field(default_factory=list)

    def line(self) -> str:
        rate = self.captioned / self.seconds if self.seconds > 0 else 0.0
        return (f"rank {self.rank}/{self.world_size}: captioned {self.captioned} of "
                f"{self.assigned} images ({self.skipped} already done, {self.failed} failed) in "
                f"{self.seconds:.1f} s ({rate:.1f} images/s) -> {self.shard}")


def _load(path: str) -> tuple[Image.Image | None, str | None]:
    try:
        return load_image(path), None
    except (ValueError, OSError) as err:
        return None, str(err).splitlines()[0]


def _batches(items: Sequence[ImageItem], size: int) -> Iterator[Sequence[ImageItem]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def _decoded(batches: Iterable[Sequence[ImageItem]], needs_images: bool, threads: int,
             ) -> Iterator[tuple[Sequence[ImageItem], list[Image.Image | None], list[str | None]]]:
    """Batches with their decoded images; the next batch decodes while this one is captioned."""
    if not needs_images:
        for batch in batches:
            yield batch, [None] * len(batch), [None] * len(batch)
        return
    pool = ThreadPoolExecutor(max_workers=max(1, threads), thread_name_prefix="caption-load")
    try:
        it = iter(batches)
        pending: deque[tuple[Sequence[ImageItem], list[Future]]] = deque()

        def submit() -> None:
            batch = next(it, None)
            if batch is not None:
                pending.append((batch, [pool.submit(_load, item.path) for item in batch]))

        submit()
        submit()
        while pending:
            batch, futures = pending.popleft()
            submit()
            results = [f.result() for f in futures]
            yield batch, [r[0] for r in results], [r[1] for r in results]
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


def _caption_batch(captioner: Captioner, images: list[Image.Image | None],
                   classes: list[ClassName | None]) -> list[tuple[str | None, str | None]]:
    """(caption, error) per image; a failing batch is retried one image at a time."""
    try:
        return [(c, None) for c in captioner.caption(images, classes)]
    except (KeyboardInterrupt, SystemExit):
        raise
    except Exception as err:  # noqa: BLE001 - one bad image must not stop the run
        if len(images) == 1:
            return [(None, f"captioner failed: {type(err).__name__}: {err}".splitlines()[0])]
        log.warning("a batch of %d failed (%s: %s); retrying its images one by one",
                    len(images), type(err).__name__, err)
        out = []
        for image, cls in zip(images, classes):
            out.extend(_caption_batch(captioner, [image], [cls]))
        return out


def caption_images(images_dir: str | os.PathLike[str], out: str | os.PathLike[str],
                   captioner: Captioner, *, batch_size: int = 16, rank: int = 0,
                   world_size: int = 1, prefix_class: bool = False,
                   prefix_format: str = PREFIX_FORMAT,
                   class_names: dict[str, ClassName] | None = None, limit: int | None = None,
                   loader_threads: int = 4, retry_failed: bool = False,
                   log_every: float | None = 30.0) -> CaptionSummary:
    """Caption this rank's share of the images not yet captioned, appending to its shard."""
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"need 0 <= rank < world size, got rank {rank} of {world_size}")
    if batch_size < 1:
        raise ValueError(f"batch size must be >= 1, got {batch_size}")
    out = Path(out)
    if out.suffix.lower() not in (".jsonl", ".json"):
        raise ValueError(f"the output manifest must be a .jsonl file, got {out}")
    out.parent.mkdir(parents=True, exist_ok=True)
    items = list_images(images_dir, out.parent, class_names, limit)
    if not items:
        raise ValueError(f"no image files under {images_dir}")
    if not captioner.needs_images:
        loose = [it.key for it in items if it.cls is None]
        if loose:
            raise ValueError(f"{len(loose)} images are not in class folders (e.g. {loose[0]}); "
                             f"the template captioner needs IMAGES_DIR/<class>/<image>")
    shard = shard_path(out, rank)
    summary = CaptionSummary(rank, world_size, shard, total=len(items))
    mine = items[rank::world_size]
    summary.assigned = len(mine)
    done = done_keys(out, retry_failed)
    todo = [it for it in mine if it.key not in done]
    summary.skipped = len(mine) - len(todo)
    cut = repair_tail(shard)
    if cut:
        log.warning("%s: removed a half-written last line (%d bytes) left by a kill", shard, cut)
    start = last_log = time.monotonic()
    with open(shard, "a", encoding="utf-8", newline="\n") as fh:
        for batch, images, errors in _decoded(_batches(todo, batch_size),
                                              captioner.needs_images, loader_threads):
            ok = [i for i, err in enumerate(errors) if err is None]
            results: list[tuple[str | None, str | None]] = [(None, e) for e in errors]
            if ok:
                captioned = _caption_batch(captioner, [images[i] for i in ok],
                                           [batch[i].cls for i in ok])
                for i, res in zip(ok, captioned):
                    results[i] = res
            lines = []
            for item, (caption, error) in zip(batch, results):
                if error is None:
                    caption = clean_caption(caption or "")
                    if prefix_class and captioner.needs_images:
                        caption = add_class_prefix(caption, item.cls, prefix_format)
                    if not caption:
                        error = "empty caption"
                if error is None:
                    lines.append({"image": item.key, "caption": caption})
                    summary.captioned += 1
                else:
                    lines.append({"image": item.key, "error": error})
                    summary.failed += 1
                    if len(summary.failures) < 20:
                        summary.failures.append((item.key, error))
            fh.write("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in lines))
            fh.flush()
            os.fsync(fh.fileno())
            for image in images:
                if image is not None:
                    image.close()
            now = time.monotonic()
            if log_every is not None and now - last_log >= log_every:
                last_log = now
                done_now = summary.captioned + summary.failed
                rate = done_now / (now - start)
                left = (len(todo) - done_now) / rate if rate > 0 else float("inf")
                print(f"rank {rank}: {done_now}/{len(todo)} images, {rate:.1f} images/s, "
                      f"about {left / 60:.0f} min left", file=sys.stderr, flush=True)
    summary.seconds = time.monotonic() - start
    return summary


@dataclass
class MergeSummary:
    out: Path
    rows: int = 0
    failed: int = 0
    shards: int = 0
    torn_lines: int = 0
    txt: Path | None = None
    colon_captions: int = 0

    def lines(self) -> list[str]:
        text = [f"wrote {self.rows} captions to {self.out} (merged {self.shards} shard files)"]
        if self.failed:
            text.append(f"  {self.failed} images failed (unreadable or empty caption): "
                        f"{failed_path(self.out)}; a new run retries them")
        if self.torn_lines:
            text.append(f"  ignored {self.torn_lines} unreadable lines (torn by a kill)")
        if self.txt is not None:
            text.append(f"wrote VAR-CLIP's layout to {self.txt}")
            if self.colon_captions:
                text.append(f"  note: {self.colon_captions} captions contain ':'; VAR-CLIP's own "
                            f"reader drops those lines (ours reads them)")
        return text


def write_varclip_txt(records: Iterable[tuple[Path, str]], txt_path: str | os.PathLike[str],
                      ) -> tuple[int, int]:
    """VAR-CLIP's `<image path>: <caption>` lines, paths relative to the file's folder's
    parent (`train/image_captions.txt` lists `train/n01440764/x.JPEG`). Atomic.

    Returns (lines written, captions containing ':').
    """
    txt_path = Path(txt_path)
    base = Path(os.path.abspath(txt_path)).parent.parent
    count = colons = 0
    with atomic_output(txt_path) as tmp, open(tmp, "w", encoding="utf-8", newline="\n") as fh:
        for path, caption in records:
            caption = clean_caption(caption)
            fh.write(f"{relative_key(Path(path), base)}: {caption}\n")
            count += 1
            colons += ":" in caption
    return count, colons


def merge_shards(out: str | os.PathLike[str], txt_path: str | os.PathLike[str] | None = None,
                 keep_shards: bool = False) -> MergeSummary:
    """Final manifest = existing manifest + all shard files, one row per image, sorted."""
    out = Path(out)
    shards = shard_files(out)
    summary = MergeSummary(out=out, shards=len(shards))
    captions: dict[str, str] = {}
    failures: dict[str, str] = {}
    for path in [out, *shards]:
        rows, bad = read_rows(path)
        summary.torn_lines += bad
        for row in rows:
            key = row["image"]
            if _is_success(row):
                captions.setdefault(key, clean_caption(row["caption"]))
                failures.pop(key, None)
            elif key not in captions:
                failures[key] = str(row.get("error") or "empty caption")
    keys = sorted(captions)
    summary.rows = write_jsonl_manifest(({"image": k, "caption": captions[k]} for k in keys), out)
    summary.failed = len(failures)
    fail_file = failed_path(out)
    if failures:
        write_jsonl_manifest(({"image": k, "error": failures[k]} for k in sorted(failures)),
                             fail_file)
    else:
        fail_file.unlink(missing_ok=True)
    if txt_path is not None:
        base = Path(os.path.abspath(out)).parent
        _, summary.colon_captions = write_varclip_txt(
            ((base / k, captions[k]) for k in keys), txt_path)
        summary.txt = Path(txt_path)
    if not keep_shards:
        for path in shards:
            path.unlink(missing_ok=True)
    return summary
