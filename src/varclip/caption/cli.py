"""`varclip caption` and `varclip caption-stats` (wired by varclip.cli as pass-through commands).

Both exit 0 on success and 2 with one line on stderr for bad input, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from datetime import timedelta
from pathlib import Path

from ..errors import report_error, run_cli
from .captioners import DEFAULT_MAX_NEW_TOKENS, DEFAULT_TEMPLATE, make_captioner
from .names import load_class_names
from .run import PREFIX_FORMAT, caption_images, merge_shards

_ERRORS = (ValueError, OSError, ImportError, json.JSONDecodeError)

CAPTION_EPILOG = """\
examples:
  varclip caption train/ --out captions.jsonl                      # 'a photo of a tench' per class
  varclip caption train/ --captioner blip2:/models/blip2-opt-2.7b --out captions.jsonl
  torchrun --nproc-per-node 8 -m varclip.caption train/ --captioner blip2:DIR --out captions.jsonl
  varclip caption train/ --out captions.jsonl --merge-only --format varclip-txt

A run appends to <out stem>.rank<r>.jsonl as it goes; a new run skips images already
captioned, so a killed run is resumed by running the same command again.
"""


def _generate_arg(text: str) -> tuple[str, object]:
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        parsed: object = json.loads(value)
    except json.JSONDecodeError:
        parsed = value
    return key.strip(), parsed


def build_caption_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="varclip caption", epilog=CAPTION_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Caption a folder of images into a JSONL manifest ({'image', 'caption'} per "
                    "line, paths relative to the manifest's folder).")
    p.add_argument("images_dir", metavar="IMAGES_DIR",
                   help="folder of images, searched recursively (class folders for the template)")
    p.add_argument("--out", required=True, help="the manifest to write, e.g. captions.jsonl")
    g = p.add_argument_group("captioner")
    g.add_argument("--captioner", default="template",
                   help="template (default) | blip2:DIR | blip:DIR | hf:DIR: a local "
                        "transformers checkpoint with its processor (never downloaded)")
    g.add_argument("--template", default=DEFAULT_TEMPLATE,
                   help="template captions: {name}, {a_name} ('an otter'), {article}, {folder} "
                        f"(default {DEFAULT_TEMPLATE!r})")
    g.add_argument("--class-names", metavar="FILE",
                   help="folder -> name mapping (JSON, TSV or CSV) over the shipped ImageNet list")
    g.add_argument("--prefix-class", action="store_true",
                   help="put the class name first in model captions ('tench, a man holding ...'): "
                        "early words dominate the CLIP embedding")
    g.add_argument("--prefix-format", default=PREFIX_FORMAT,
                   help=f"how --prefix-class joins them (default {PREFIX_FORMAT!r})")
    g.add_argument("--prompt", default="",
                   help="text that conditions the model caption (removed from the output)")
    g.add_argument("--keep-prompt", action="store_true",
                   help="start every caption with the prompt")
    d = p.add_argument_group("decoding")
    d.add_argument("--num-beams", type=int, default=1, help="1 = greedy (default), >1 = beam search")
    d.add_argument("--max-new-tokens", type=int, default=DEFAULT_MAX_NEW_TOKENS)
    d.add_argument("--min-new-tokens", type=int, default=0)
    d.add_argument("--repetition-penalty", type=float, default=1.0)
    d.add_argument("--generate", type=_generate_arg, action="append", default=[],
                   metavar="KEY=VALUE", help="any other generate() argument (value read as JSON)")
    r = p.add_argument_group("running")
    r.add_argument("--batch-size", type=int,
                   help="images per batch (default 16 with a model, 4096 for the template)")
    r.add_argument("--device", default="auto", help="auto (cuda:LOCAL_RANK or cpu) | cpu | cuda:N")
    r.add_argument("--dtype", default="auto",
                   help="auto (bf16 or fp16 on GPU, fp32 on CPU) | fp32 | fp16 | bf16")
    r.add_argument("--loader-threads", type=int, default=4, help="image decoding threads")
    r.add_argument("--rank", type=int, help="this process's shard (default: $RANK, else 0)")
    r.add_argument("--world-size", type=int, help="number of shards (default: $WORLD_SIZE, else 1)")
    r.add_argument("--limit", type=int, help="only the first N images (sorted), to try settings")
    r.add_argument("--retry-failed", action="store_true",
                   help="caption again images that failed in the shard files")
    r.add_argument("--dist-timeout-hours", type=float, default=24.0,
                   help="under torchrun: how long rank 0 waits for the others before merging")
    r.add_argument("--quiet", action="store_true", help="no progress lines")
    o = p.add_argument_group("output")
    o.add_argument("--format", choices=("jsonl", "varclip-txt"), default="jsonl",
                   help="varclip-txt also writes VAR-CLIP's image_captions.txt")
    o.add_argument("--txt-out", metavar="PATH",
                   help="where the .txt goes (default IMAGES_DIR/image_captions.txt; its paths "
                        "are relative to its folder's parent, as VAR-CLIP's)")
    o.add_argument("--merge-only", action="store_true",
                   help="only merge the shard files into --out (after a sharded run)")
    o.add_argument("--no-merge", action="store_true", help="leave the shard files unmerged")
    o.add_argument("--keep-shards", action="store_true", help="keep the shard files after merging")
    return p


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "")
    try:
        return int(value) if value.strip() else default
    except ValueError:
        raise ValueError(f"${name} is not an integer: {value!r}") from None


def _merge(args: argparse.Namespace) -> None:
    txt = None
    if args.format == "varclip-txt" or args.txt_out:
        txt = Path(args.txt_out) if args.txt_out else Path(args.images_dir) / "image_captions.txt"
    summary = merge_shards(args.out, txt_path=txt, keep_shards=args.keep_shards)
    for line in summary.lines():
        print(line)


def _init_distributed(args: argparse.Namespace, world_size: int) -> bool:
    """Under torchrun (several processes, no explicit --rank): a gloo group for the final
    barrier, so that rank 0 merges once every rank is done."""
    if world_size <= 1 or args.rank is not None or args.no_merge:
        return False
    if not (os.environ.get("MASTER_ADDR") and os.environ.get("MASTER_PORT")):
        return False
    import torch.distributed as dist

    if not dist.is_available():
        return False
    if not dist.is_initialized():
        dist.init_process_group("gloo", timeout=timedelta(hours=args.dist_timeout_hours))
    return True


def cli_caption(argv: list[str]) -> int:
    """`varclip caption IMAGES_DIR --out captions.jsonl [--captioner blip2:DIR] ...`"""
    args = build_caption_parser().parse_args(argv)
    return run_cli(_caption, args, "varclip caption", _ERRORS,
                   "interrupted (the shard files are kept: run again to resume)")


def _caption(args: argparse.Namespace) -> int:
    """The work of `varclip caption` (cli_caption reports its errors)."""
    rank = args.rank if args.rank is not None else _env_int("RANK", 0)
    world = args.world_size if args.world_size is not None else _env_int("WORLD_SIZE", 1)
    if not Path(args.images_dir).is_dir():
        raise NotADirectoryError(f"not a folder of images: {args.images_dir}")
    if Path(args.out).suffix.lower() not in (".jsonl", ".json"):
        raise ValueError(f"--out must be a .jsonl manifest, got {args.out}")
    if args.merge_only:
        _merge(args)
        return 0
    distributed = _init_distributed(args, world)
    class_names = load_class_names(args.class_names) if args.class_names else None
    captioner = make_captioner(
        args.captioner, template=args.template, prompt=args.prompt,
        num_beams=args.num_beams, max_new_tokens=args.max_new_tokens,
        min_new_tokens=args.min_new_tokens, repetition_penalty=args.repetition_penalty,
        device=args.device, dtype=args.dtype, keep_prompt=args.keep_prompt,
        generate_kwargs=dict(args.generate))
    batch_size = args.batch_size or (16 if captioner.needs_images else 4096)
    if not args.quiet and rank == 0:
        print(f"captioner: {json.dumps(captioner.describe())}", file=sys.stderr)
    summary = caption_images(
        args.images_dir, args.out, captioner, batch_size=batch_size, rank=rank,
        world_size=world, prefix_class=args.prefix_class, prefix_format=args.prefix_format,
        class_names=class_names, limit=args.limit, loader_threads=args.loader_threads,
        retry_failed=args.retry_failed, log_every=None if args.quiet else 30.0)
    print(summary.line())
    for key, error in summary.failures[:5]:
        print(f"  failed: {key}: {error}", file=sys.stderr)
    if args.no_merge:
        return 0
    if world == 1:
        _merge(args)
    elif distributed:
        import torch.distributed as dist

        dist.barrier()
        if rank == 0:
            _merge(args)
        dist.destroy_process_group()
    else:
        print(f"rank {rank} of {world} done; when all ranks are, merge with: varclip caption "
              f"{args.images_dir} --out {args.out} --merge-only", file=sys.stderr)
    return 0


def cli_caption_stats(argv: list[str]) -> int:
    """`varclip caption-stats captions.jsonl [--json] [--top 20]`"""
    from .stats import caption_stats, format_stats

    p = argparse.ArgumentParser(
        prog="varclip caption-stats",
        description="Caption lengths, vocabulary, duplicates and class-name mentions of a "
                    "manifest (.jsonl, .csv, or VAR-CLIP's .txt).")
    p.add_argument("manifest", metavar="MANIFEST")
    p.add_argument("--class-names", metavar="FILE",
                   help="folder -> name mapping (JSON, TSV or CSV) over the shipped ImageNet list")
    p.add_argument("--top", type=int, default=15, help="how many frequent words/captions to show")
    p.add_argument("--json", action="store_true", help="print the statistics as JSON")
    args = p.parse_args(argv)
    try:
        class_names = load_class_names(args.class_names) if args.class_names else None
        stats = caption_stats(args.manifest, class_names=class_names, top=args.top)
    except _ERRORS as err:
        return report_error("varclip caption-stats", err)
    if args.json:
        print(json.dumps(stats, indent=2, ensure_ascii=False))
    else:
        print(format_stats(stats))
    return 0
