"""The `varclip` command. Thin: it parses arguments and calls the pipeline, trainers and tools.

Bad input exits with status 2 and one line on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from . import __version__
from .config import ConfigError
from .errors import run_cli


# ---------------------------------------------------------------------------- generate


def cmd_generate(args: argparse.Namespace) -> int:
    """Conditions are checked by the pipeline; this only maps the arguments onto a call."""
    from .entry import pipeline_from_args, sampling_from_args
    from .grid import save_images
    pipe = pipeline_from_args(args)
    pipe.set_progress_bar_config(disable=args.quiet)
    prompts = [p for p in args.prompts if p.strip()] if args.unconditional else args.prompts  # "" = no caption
    t0 = time.perf_counter()
    out = pipe(prompts or None, class_labels=args.classes or None, negative_prompt=args.negative,
               unconditional=args.unconditional, num_images_per_prompt=args.n, sampling=sampling_from_args(args))
    dt = time.perf_counter() - t0
    if args.unconditional:
        captions = None
    elif pipe.is_text:
        captions = [p for p in args.prompts for _ in range(args.n)]
    else:
        captions = [f"class {int(c)}" for c in out.conditions]
    paths = save_images(out.images, args.out, captions)
    print(f"wrote {len(out.images)} images to {paths[0] if len(paths) == 1 else Path(args.out)} in {dt:.1f} s")
    return 0


def _box(text: str | None) -> list[float] | None:
    try:
        return [float(v) for v in text.split(",")] if text else None
    except ValueError:
        raise ConfigError(f"--box takes y0,x0,y1,x1 in [0,1], got {text!r}") from None


def cmd_edit(args: argparse.Namespace) -> int:
    from .entry import pipeline_from_args, sampling_from_args
    from .grid import make_grid, save_image_atomic
    pipe = pipeline_from_args(args)
    pipe.set_progress_bar_config(disable=args.quiet)
    out = pipe.edit(args.image, mask=args.mask, box=_box(args.box), mode=args.mode, extend=args.extend, prompt=args.prompt,
                    class_labels=args.classes or None, num_images_per_prompt=args.n, sampling=sampling_from_args(args))
    images = [out.source, out.mask, *out.images]
    captions = ["input", "mask (white = new)"] + [f"result {i}" for i in range(len(out.images))]
    path = save_image_atomic(make_grid(images, len(images), captions), args.out)
    print(f"wrote {path}")
    return 0


# ---------------------------------------------------------------------------- convert / parity


def cmd_convert(args: argparse.Namespace) -> int:
    from .checkpoints import (CheckpointError, check_compatible, export_official, extra_fields, kind_of, load_model_dir,
                              load_tokenizer, read_official, read_sidecar, save_model_dir, sidecar_extras,
                              tokenizer_from_official, transformer_from_official)
    src, dst = Path(args.src), Path(args.dst)
    if not src.exists():
        raise CheckpointError(f"not found: {src}")
    taken = [p for p in ("config.json", "vae.pth", "var.pth") if (dst / p).exists()]
    if taken and not args.force:
        raise CheckpointError(f"{dst} already holds a model ({taken[0]}); pass --force to replace it")
    if src.is_dir() and args.to == "native":  # native -> native, e.g. a half-precision copy to ship
        from .devices import parse_dtype
        tok, model, cfg = load_model_dir(src)
        save_model_dir(dst, tok, model, cfg.get("text_encoder"), extra_fields(cfg), dtype=parse_dtype(args.dtype))
        print(f"wrote native model directory {dst} ({args.dtype})")
        return 0
    if args.dtype != "fp32":
        raise CheckpointError("--dtype applies to native output (--to native)")
    if src.is_dir():  # native -> official, with sidecars for what the official layout cannot hold
        tok, model, cfg = load_model_dir(src)
        export_official(dst, tok, model, cfg.get("text_encoder"), extra_fields(cfg))
        print(f"wrote official checkpoints to {dst} (with .varclip.json sidecars: keep them beside the .pth files)")
        return 0
    sd, record = read_official(src), read_sidecar(src)
    extras = sidecar_extras(record)
    if kind_of(sd) == "tokenizer":
        save_model_dir(dst, tokenizer=tokenizer_from_official(sd, args.patch_nums, record), extra=extras)
    else:
        model = transformer_from_official(sd, args.resolution, args.patch_nums, record)
        if not args.vae:
            raise CheckpointError("converting a transformer needs its VQVAE too (--vae PATH)")
        if not Path(args.vae).exists():
            raise CheckpointError(f"VQVAE not found: {args.vae}")
        tok = load_tokenizer(args.vae, model.patch_nums)
        check_compatible(tok, model)
        spec = extras.pop("text_encoder", None)
        spec = args.text_encoder or spec
        save_model_dir(dst, tokenizer=tok, transformer=model, text_encoder=spec, extra=extras)
    print(f"wrote native model directory {dst}")
    return 0


def cmd_parity(args: argparse.Namespace) -> int:
    from .parity import run_case, run_layouts
    if args.layouts:
        report = run_layouts(args.layouts)
    elif args.case:
        report = run_case(args.case)
    else:
        raise ConfigError("give a case folder or --layouts FILE")
    print(json.dumps(report, indent=1))
    return 0 if report["ok"] else 1


# ---------------------------------------------------------------------------- misc


def cmd_bench(args: argparse.Namespace) -> int:
    from .bench import run_bench
    return run_bench(args)


def cmd_demo(args: argparse.Namespace) -> int:
    """A grid from the embedded model (the first row training captions, the second new wordings),
    or from the random demo model when none is installed."""
    from .embedded import DEMO_CAPTIONS
    from .entry import load_pipeline
    from .grid import save_images
    t0 = time.perf_counter()
    pipe = load_pipeline(device=args.device, demo_if_missing=True, fast=args.fast)
    pipe.set_progress_bar_config(disable=True)
    if getattr(pipe, "model_note", None):  # random weights: the machinery, not quality
        res = pipe(class_labels=list(range(8)), sampling=dict(cfg=1.5, top_k=0, top_p=0.0, seed=0))
        caps, ncol, title = [f"class {int(c)}" for c in res.conditions], None, pipe.model_note
    else:  # the model's own sampling settings
        res = pipe(DEMO_CAPTIONS, num_images_per_prompt=2, seed=0, per_sample_seeds=True)
        caps, ncol = [c for c in DEMO_CAPTIONS for _ in range(2)], 8
        title = "embedded emoji model: first row training captions, second row new wordings"
    paths = save_images(res.images, args.out, caps, title=title, ncol=ncol)
    print(f"wrote {paths[0]} ({time.perf_counter() - t0:.1f} s)")
    return 0


# Commands whose own parsers live with their modules: `varclip NAME ARGS...` -> fn(ARGS).
PASSTHROUGH: dict[str, tuple[str, str, str]] = {
    "prompt-inspect": (".text.inspect", "cli_prompt_inspect", "word-position analysis of a caption"),
    "data": (".data.emoji", "cli_data", "build data sets (emoji)"),
    "caption": (".caption", "cli_caption", "caption an image collection (BLIP-2/BLIP or class templates)"),
    "caption-stats": (".caption", "cli_caption_stats", "statistics of a caption manifest"),
    "serve": (".app", "cli_serve", "the web app (Gradio)"),
    "train": (".train", "cli_train", "train a generator (class or text) from a YAML recipe"),
    "cache": (".train", "cli_cache", "precompute token pyramids and text embeddings for training"),
    "train-tokenizer": (".train.tokenizer", "cli_train_tokenizer", "train or fine-tune the VQ tokenizer"),
    "eval": (".eval.cli", "cli_eval", "evaluate generators and tokenizers (`varclip eval --help` lists the commands)"),
    "scaling": (".eval.scaling", "cli_scaling", "train a ladder of small models and fit the scaling laws"),
    "sample-fid": (".eval.sample", "cli_sample_fid", "sample images for FID (sharded, resumable, .npz)"),
}


def _passthrough(module: str, fn: str):
    def run(args: argparse.Namespace) -> int:
        import importlib
        return getattr(importlib.import_module(module, __package__), fn)(args.rest)
    return run


def build_parser() -> argparse.ArgumentParser:
    from .entry import _schedule_arg, add_fast_arg, add_model_args, add_sampling_args
    ap = argparse.ArgumentParser(prog="varclip", description="Image generation by next-scale prediction (VAR, VAR-CLIP).")
    ap.add_argument("--version", action="version", version=f"varclip {__version__}")
    sub = ap.add_subparsers(dest="command", required=True)

    g = sub.add_parser("generate", help="generate images from class ids or captions")
    g.add_argument("prompts", nargs="*", help="captions (text models)")
    g.add_argument("--class", dest="classes", type=int, action="append", default=[], help="class id (repeatable)")
    g.add_argument("--n", type=int, default=1, help="images per caption / class")
    g.add_argument("--negative", help="negative prompt (text models)")
    g.add_argument("--unconditional", action="store_true", help="sample from the null condition")
    g.add_argument("--out", default="out/generated.png", help="a .png grid, or a directory of PNGs")
    g.add_argument("--quiet", action="store_true")
    add_model_args(g)
    add_sampling_args(g)
    g.set_defaults(fn=cmd_generate)

    e = sub.add_parser("edit", help="zero-shot in-painting, out-painting and editing")
    e.add_argument("image", help="the image to edit (any size, mode, orientation)")
    e.add_argument("prompt", nargs="?", help="caption (text models); none = unconditional")
    e.add_argument("--mask", help="black/white PNG of any size, white = regenerate")
    e.add_argument("--box", help="y0,x0,y1,x1 relative box")
    e.add_argument("--mode", default="inpaint", choices=["inpaint", "outpaint"],
                   help="inpaint: regenerate inside the box; outpaint: keep only the inside")
    e.add_argument("--extend", type=float, help="out-paint a border: canvas = image size x this factor")
    e.add_argument("--class", dest="classes", type=int, action="append", default=[], help="class id (class models)")
    e.add_argument("--n", type=int, default=4, help="results per condition")
    e.add_argument("--out", default="out/edit.png", help="side-by-side of input, mask and results")
    e.add_argument("--quiet", action="store_true")
    add_model_args(e)
    add_sampling_args(e)
    e.set_defaults(fn=cmd_edit)

    c = sub.add_parser("convert", help="official .pth <-> native model directory (bit-exact round trip)")
    c.add_argument("src", help="official .pth (transformer or VQVAE) or a native directory")
    c.add_argument("dst", help="native directory, or (from a native directory) a folder for vae.pth/var.pth")
    c.add_argument("--vae", help="the official VQVAE .pth that goes with a transformer")
    c.add_argument("--resolution", type=int, help="256 or 512 (default: inferred from the token count)")
    c.add_argument("--patch-nums", type=_schedule_arg, help="explicit schedule, e.g. 1,2,3,4")
    c.add_argument("--text-encoder", help="text encoder spec to record for text models")
    c.add_argument("--to", choices=["official", "native"], help="output format (default: the other one)")
    c.add_argument("--force", action="store_true", help="replace a model already in the destination")
    c.add_argument("--dtype", default="fp32", choices=["fp32", "fp16", "bf16"],
                   help="weights dtype of native output (loaded back as float32)")
    c.set_defaults(fn=cmd_convert)

    p = sub.add_parser("parity", help="check against golden outputs of the official code")
    p.add_argument("case", nargs="?", help="a case folder of shared/parity")
    p.add_argument("--layouts", help="official_layouts.json: check our exports' keys, shapes, dtypes")
    p.set_defaults(fn=cmd_parity)

    b = sub.add_parser("bench", help="time sampling and a training step")
    from .bench import add_bench_args
    add_bench_args(b)
    b.set_defaults(fn=cmd_bench)

    d = sub.add_parser("demo", help="generate a grid with the embedded model")
    d.add_argument("--out", default="out/demo.png")
    d.add_argument("--device", default="auto")
    add_fast_arg(d)
    d.set_defaults(fn=cmd_demo)

    for name, (module, fn, help_) in PASSTHROUGH.items():
        q = sub.add_parser(name, help=help_, add_help=False)
        q.add_argument("rest", nargs=argparse.REMAINDER)
        q.set_defaults(fn=_passthrough(module, fn))
    return ap


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    if argv and argv[0] in PASSTHROUGH:  # their own parsers handle everything, --help included
        args = argparse.Namespace(command=argv[0], rest=argv[1:], fn=_passthrough(*PASSTHROUGH[argv[0]][:2]))
    else:
        args, extra = parser.parse_known_args(argv)
        # `edit IMAGE --opts "caption"`: argparse gives a positional after options to `extra`
        if args.command == "edit" and args.prompt is None and len(extra) == 1 and not extra[0].startswith("-"):
            args.prompt = extra[0]
        elif extra:
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
    return run_cli(args.fn, args, f"varclip {args.command}")


if __name__ == "__main__":
    sys.exit(main())
