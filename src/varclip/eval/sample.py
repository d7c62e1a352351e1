"""`varclip sample-fid`: the sample set for FID/IS/precision/recall, sharded, resumable, deterministic.

Work list: class models get `per_class` images of every class (class c, copy j is item
c * per_class + j; the official protocol is 50 x 1000 = 50,000 images at cfg 1.5, top-p 0.96,
top-k 900, no smoothing); text models get `per_caption` images of every caption. Item i is
written as ``OUT/{i:06d}.png`` and drawn with its own random stream seeded ``seed + i``
(`per_sample_seeds`), so an image is a function of its index alone.

Sharding: the list is cut into fixed blocks of `batch_size` items and block b goes to rank
b % world_size. A block is always generated as the same batch whatever the number of processes,
so the images do not depend on how many processes ran (not even in the last floating-point bit).
Under ``torchrun`` the rank and world size come from the environment; ``--rank/--world-size``
simulate them (or split the work over machines by hand).

Resuming: a block whose images all exist is skipped; a partly written block is generated again
(as the same batch) and only its missing files are written. Files are written atomically, so an
interrupted run leaves no half-written PNG. ``sample_fid.json`` records the protocol; resuming
with different settings is refused.

When every image exists, ``samples_NxHxWx3.npz`` is written (``arr_0`` uint8 N x H x W x 3 in
index order, ``arr_1`` the class labels for class models), the batch OpenAI's evaluator reads; it
is streamed image by image, so 50,000 images never sit in memory. ``samples.jsonl`` lists every
item (image, seed, class or caption): for text models it is a caption manifest that
`varclip eval clip-score` reads.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..config import SamplingConfig, sampling_preset
from ..devices import dtype_name
from .metrics import Record

SETTINGS_FILE = "sample_fid.json"
ITEMS_FILE = "samples.jsonl"


@dataclass(frozen=True)
class WorkItem:
    index: int
    seed: int
    label: int | None = None
    caption: str | None = None


def class_work_list(num_classes: int, per_class: int, seed: int = 0,
                    classes: list[int] | None = None) -> list[WorkItem]:
    if per_class < 1:
        raise ValueError(f"--per-class must be >= 1, got {per_class}")
    from ..pipeline import check_class_ids
    labels = list(range(num_classes)) if classes is None else check_class_ids(classes, num_classes)
    return [WorkItem(i * per_class + j, seed + i * per_class + j, label=c)
            for i, c in enumerate(labels) for j in range(per_class)]


def caption_work_list(captions: list[str], per_caption: int = 1, seed: int = 0) -> list[WorkItem]:
    if per_caption < 1:
        raise ValueError(f"--per-caption must be >= 1, got {per_caption}")
    if not captions:
        raise ValueError("no captions")
    for i, c in enumerate(captions):
        if not c.strip():
            raise ValueError(f"caption {i} is empty")
    return [WorkItem(i * per_caption + j, seed + i * per_caption + j, caption=c)
            for i, c in enumerate(captions) for j in range(per_caption)]


def read_captions(path: str | os.PathLike[str], prompts: bool = False) -> list[str]:
    """Captions of a manifest (.jsonl/.csv/.txt, its images need not exist), or of a plain
    prompts file (one caption per line) when `prompts`."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"captions file not found: {path}")
    if prompts:
        lines = [ln.strip() for ln in path.read_text(encoding="utf-8").splitlines()]
        caps = [ln for ln in lines if ln]
        if not caps:
            raise ValueError(f"{path}: no captions")
        return caps
    from ..data.captions import read_caption_manifest
    man = read_caption_manifest(path, check_files=False)
    if not man.records:
        raise ValueError(f"{path}: no usable lines ({man.summary()})")
    return [c for _, c in man.records]


def image_name(index: int, total: int) -> str:
    return f"{index:0{max(6, len(str(max(total - 1, 0))))}d}.png"


def shard_blocks(num_items: int, batch_size: int, rank: int, world_size: int) -> list[tuple[int, int]]:
    """The [start, end) item blocks of `rank`: fixed blocks of batch_size, dealt round-robin."""
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} is not in 0..{world_size - 1}")
    if batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, got {batch_size}")
    blocks = [(s, min(num_items, s + batch_size)) for s in range(0, num_items, batch_size)]
    return [b for k, b in enumerate(blocks) if k % world_size == rank]


def _work_hash(items: list[WorkItem]) -> str:
    h = hashlib.sha256()
    for it in items:
        h.update(json.dumps([it.index, it.seed, it.label, it.caption], ensure_ascii=False).encode() + b"\n")
    return h.hexdigest()[:16]


def _write_json_atomic(path: Path, obj: Any) -> None:
    from ..data.atomic import atomic_output
    with atomic_output(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


def _check_settings(out: Path, record: dict[str, Any]) -> list[str]:
    """Write the protocol record, or compare it with the one already there."""
    path = out / SETTINGS_FILE
    notes = []
    if path.is_file():
        try:
            old = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            old = None
        if old is not None:
            diff = [k for k in record if k != "batch_size" and old.get(k) != record[k]]
            if diff:
                k = diff[0]
                raise ValueError(f"{out} was sampled with different settings ({k}: {old.get(k)!r} there, "
                                 f"{record[k]!r} now); use another --out")
            if old.get("batch_size") != record["batch_size"]:
                notes.append(f"batch size {record['batch_size']} differs from the first run's "
                             f"{old.get('batch_size')}: blocks regenerated now may differ in the last bits")
            return notes
    _write_json_atomic(path, record)
    return notes


def _write_items(out: Path, items: list[WorkItem], total: int) -> None:
    from ..data.atomic import atomic_output
    path = out / ITEMS_FILE
    if path.is_file():
        return
    with atomic_output(path) as tmp, open(tmp, "w", encoding="utf-8", newline="\n") as fh:
        for it in items:
            row: dict[str, Any] = {"image": image_name(it.index, total), "seed": it.seed}
            if it.caption is not None:
                row["caption"] = it.caption
            else:
                row["class"] = it.label
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")


def npz_name(n: int, size: int) -> str:
    return f"samples_{n}x{size}x{size}x3.npz"


def pack_npz(out: str | os.PathLike[str], items: list[WorkItem], size: int, progress: bool = False) -> Path:
    """Stream the images of `items` into OUT/samples_NxHxWx3.npz (arr_0, and arr_1 = labels)."""
    from ..data.images import load_image
    from .fid import NpzWriter
    out = Path(out)
    n = len(items)
    path = out / npz_name(n, size)

    def rows():
        bar = None
        if progress:
            from tqdm import tqdm
            bar = tqdm(total=n, desc="npz", unit="img", leave=False)
        try:
            for it in items:
                arr = np.asarray(load_image(out / image_name(it.index, n)), dtype=np.uint8)
                if arr.shape != (size, size, 3):
                    raise ValueError(f"{image_name(it.index, n)} is {arr.shape[1]}x{arr.shape[0]}, "
                                     f"expected {size}x{size}")
                if bar is not None:
                    bar.update(1)
                yield arr[None]
        finally:
            if bar is not None:
                bar.close()

    with NpzWriter(path) as w:
        w.add_stream("arr_0", (n, size, size, 3), np.uint8, rows())
        if items and items[0].label is not None:
            w.add("arr_1", np.array([it.label for it in items], dtype=np.int64))
    return path


def _npz_ok(path: Path, n: int, size: int) -> bool:
    if not path.is_file():
        return False
    try:
        from .fid import NpzImages
        return NpzImages(path).shape == (n, size, size, 3)
    except (ValueError, KeyError, OSError):
        return False


@dataclass
class SampleReport(Record):
    out: str
    total: int
    rank: int
    world_size: int
    written: int = 0
    skipped: int = 0
    npz: str | None = None
    complete: bool = False
    notes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        head = (f"rank {self.rank}/{self.world_size}: wrote {self.written} images, {self.skipped} already there "
                f"({self.total} in the work list) in {self.out}")
        tail = [f"wrote {self.npz}" if self.npz else
                ("all images present" if self.complete else "npz: waiting for the other ranks' images")]
        return "\n".join([head, *tail, *[f"note: {n}" for n in self.notes]])


def sample_to_folder(pipe: Any, items: list[WorkItem], out: str | os.PathLike[str], settings: SamplingConfig,
                     batch_size: int = 25, rank: int = 0, world_size: int = 1, model_id: str = "",
                     write_npz: bool = True, progress: bool = True, barrier: Any = None) -> SampleReport:
    """Generate this rank's share of `items` into `out` (see the module docstring).

    `barrier`: a callable that waits for every rank (torch.distributed); with it rank 0 packs the
    .npz after all ranks finished, without it whichever rank finds the set complete does.
    """
    from ..grid import save_image_atomic
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    n = len(items)
    if any(it.index != i or it.seed != items[0].seed + i for i, it in enumerate(items)):
        raise ValueError("work items must be numbered 0..N-1 with seeds seed+i")
    is_text = pipe.is_text
    if is_text and any(it.caption is None for it in items):
        raise ValueError("this is a text-to-image model: sample from captions (--captions), not classes")
    if not is_text and any(it.label is None for it in items):
        raise ValueError("this is a class-conditional model: sample classes (--per-class), not captions")
    size = pipe.image_size
    record = {"model": model_id, "kind": "text" if is_text else "class", "num_images": n,
              "work_list": _work_hash(items), "image_size": size, **asdict(settings),
              "dtype": dtype_name(getattr(pipe, "autocast_dtype", None)), "batch_size": batch_size,
              "per_sample_seeds": True}
    report = SampleReport(str(out), n, rank, world_size)
    report.notes += _check_settings(out, record)
    _write_items(out, items, n)
    blocks = shard_blocks(n, batch_size, rank, world_size)
    mine = sum(e - s for s, e in blocks)
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=mine, desc=f"sampling (rank {rank})" if world_size > 1 else "sampling", unit="img")
    try:
        for start, end in blocks:
            block = items[start:end]
            missing = [it for it in block if not (out / image_name(it.index, n)).is_file()]
            if not missing:
                report.skipped += len(block)
                if bar is not None:
                    bar.update(len(block))
                continue
            cond = dict(prompt=[it.caption for it in block]) if is_text else \
                dict(class_labels=[int(it.label) for it in block])
            res = pipe(**cond, sampling=settings, seed=block[0].seed, per_sample_seeds=True)
            todo = {it.index for it in missing}
            for it, img in zip(block, res.images):
                if it.index in todo:
                    save_image_atomic(img, out / image_name(it.index, n))
            report.written += len(missing)
            report.skipped += len(block) - len(missing)
            if bar is not None:
                bar.update(len(block))
    finally:
        if bar is not None:
            bar.close()
    if barrier is not None:
        barrier()
    report.complete = all((out / image_name(it.index, n)).is_file() for it in items)
    if write_npz and report.complete and (barrier is None or rank == 0):
        path = out / npz_name(n, size)
        if not _npz_ok(path, n, size):
            report.npz = str(pack_npz(out, items, size, progress))
    return report


# ---------------------------------------------------------------------------- command line


def settings_from_args(args: argparse.Namespace) -> SamplingConfig:
    """The official FID protocol, with what the command line changed."""
    from ..entry import sampling_from_args
    return sampling_preset("official_fid").replace(**sampling_from_args(args))


def _parse_classes(text: str | None) -> list[int] | None:
    if not text:
        return None
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"--classes takes comma-separated class ids, got {text!r}") from None


def _dist_setup(args: argparse.Namespace) -> tuple[int, int, int, Any]:
    """(rank, world size, local rank, barrier or None) from --rank/--world-size or torchrun's env."""
    if args.rank is not None or args.world_size is not None:
        world = args.world_size if args.world_size is not None else 1
        rank = args.rank if args.rank is not None else 0
        return rank, world, 0, None
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1, 0, None
    rank, local = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    barrier = None
    try:
        import torch.distributed as dist
        if dist.is_available():
            if not dist.is_initialized():
                use_cuda = torch.cuda.is_available() and args.device in ("auto", "cuda")
                if use_cuda:
                    torch.cuda.set_device(local)
                dist.init_process_group("nccl" if use_cuda else "gloo")
            barrier = dist.barrier
    except (RuntimeError, ValueError) as e:  # no rendezvous: carry on, the last rank packs the npz
        print(f"sample-fid: torch.distributed unavailable ({str(e).splitlines()[0]}); ranks run independently",
              file=sys.stderr)
    return rank, world, local, barrier


def _parser() -> argparse.ArgumentParser:
    from ..entry import add_model_args, add_sampling_args
    p = argparse.ArgumentParser(prog="varclip sample-fid",
                                description="generate the sample set for FID (sharded, resumable) and its .npz")
    add_model_args(p, required=True)
    src = p.add_mutually_exclusive_group()
    src.add_argument("--per-class", type=int, help="images per class (class models; official: 50)")
    src.add_argument("--captions", help="caption manifest (.jsonl/.csv/.txt) for text models")
    src.add_argument("--prompts", help="a plain text file with one caption per line (text models)")
    p.add_argument("--classes", help="comma-separated subset of classes (default: all)")
    p.add_argument("--per-caption", type=int, default=1, help="images per caption (text models)")
    p.add_argument("--limit", type=int, help="only the first N captions")
    p.add_argument("--out", required=True, help="output folder (resumable)")
    p.add_argument("--batch-size", type=int, default=25, help="images per forward pass (keep it fixed across resumes)")
    add_sampling_args(p, "official_fid", skip=("per_sample_seeds",))  # always per-sample: see above
    p.add_argument("--rank", type=int, help="this process's shard (default: torchrun's RANK)")
    p.add_argument("--world-size", type=int, help="number of shards (default: torchrun's WORLD_SIZE)")
    p.add_argument("--no-npz", action="store_true", help="do not write the .npz sample batch")
    p.add_argument("--json", dest="json_out", help="write the report as JSON to this file ('-' = stdout)")
    p.add_argument("--quiet", action="store_true")
    return p


def build_items(pipe: Any, args: argparse.Namespace) -> list[WorkItem]:
    if pipe.is_text:
        if args.per_class is not None:
            raise ValueError("this is a text-to-image model: give --captions or --prompts, not --per-class")
        if not (args.captions or args.prompts):
            raise ValueError("this is a text-to-image model: give --captions FILE or --prompts FILE")
        caps = read_captions(args.captions or args.prompts, prompts=bool(args.prompts))
        if args.limit is not None:
            caps = caps[: args.limit]
        return caption_work_list(caps, args.per_caption, args.seed)
    if args.captions or args.prompts:
        raise ValueError("this is a class-conditional model: use --per-class N, not captions")
    per_class = 50 if args.per_class is None else args.per_class
    return class_work_list(pipe.transformer.cfg.num_classes, per_class, args.seed, _parse_classes(args.classes))


def cli_sample_fid(argv: list[str]) -> int:
    """`varclip sample-fid ...`; errors are one-line ValueErrors."""
    from ..entry import pipeline_from_args
    args = _parser().parse_args(argv)
    rank, world, local, barrier = _dist_setup(args)
    settings = settings_from_args(args)
    pipe = pipeline_from_args(args, local_rank=local)
    pipe.set_progress_bar_config(disable=True)
    items = build_items(pipe, args)
    model_id = str(Path(args.model).expanduser().resolve())
    try:
        report = sample_to_folder(pipe, items, args.out, settings, args.batch_size, rank, world, model_id,
                                  write_npz=not args.no_npz, progress=not args.quiet and rank == 0, barrier=barrier)
    finally:
        if barrier is not None:
            import torch.distributed as dist
            dist.destroy_process_group()
    if args.json_out == "-":
        print(json.dumps(report.to_dict(), indent=1))
    else:
        print(report.summary())
        if args.json_out:
            Path(args.json_out).write_text(json.dumps(report.to_dict(), indent=1) + "\n")
    return 0


__all__ = ["WorkItem", "SampleReport", "settings_from_args", "class_work_list", "caption_work_list", "read_captions",
           "image_name", "shard_blocks", "npz_name", "pack_npz", "sample_to_folder", "cli_sample_fid"]


if __name__ == "__main__":  # torchrun --nproc_per_node N -m varclip.eval.sample ...
    import sys

    from ..errors import run_cli
    sys.exit(run_cli(cli_sample_fid, sys.argv[1:], "varclip sample-fid"))
