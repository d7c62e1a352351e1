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


class UsageError(ValueError):
    pass


def _device(name: str) -> str:
    import torch
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UsageError(f"unknown device {name!r}; use cpu, cuda, cuda:N or auto") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"device {name} requested but CUDA is not available")
    return name


def _sampling_args(p: argparse.ArgumentParser) -> None:
    # None: the model's recommended setting (config.json "sampling"), else the interactive default
    p.add_argument("--cfg", type=float, help="classifier-free guidance strength (default: the model's, else 4)")
    p.add_argument("--cfg-schedule",
                   help="linear (official ramp, default) | constant | off_from:K | comma list of per-scale values")
    p.add_argument("--top-k", type=int, help="0 = off (default: the model's, else 900)")
    p.add_argument("--top-p", type=float, help="0 = off (default: the model's, else 0.95)")
    p.add_argument("--temperature", type=float, help="(default: the model's, else 1)")
    p.add_argument("--smooth", action="store_true", help="Gumbel-softmax smoothing of code vectors (more_smooth)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--per-sample-seeds", action="store_true",
                   help="image i uses seed+i: independent of batch size (differs from the official stream)")
    p.add_argument("--device", default="auto", help="cpu | cuda | auto")
    p.add_argument("--dtype", default="fp32", help="fp32 (exact) | bf16 | fp16 autocast")


def _patch_nums(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"patch nums are comma-separated integers, got {text!r}") from None


def _model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", help="native model directory or official transformer .pth (default: the embedded model)")
    p.add_argument("--vae", help="VQVAE: official .pth or native directory (needed with an official transformer)")
    p.add_argument("--text-encoder", help="clip:PATH | minilm | hf:PATH (text models)")
    p.add_argument("--resolution", type=int, help="256 or 512: the schedule of an official checkpoint")
    p.add_argument("--patch-nums", type=_patch_nums, help="explicit schedule of an official checkpoint, e.g. 1,2,3,4")


def _load_pipeline(args: argparse.Namespace):
    from .pipeline import VARPipeline
    model = args.model
    if model is None:
        from .embedded import embedded_model_dir
        model = embedded_model_dir()
    for what, path in (("model", model), ("VQVAE", args.vae)):
        if path is not None and not Path(path).exists():
            raise UsageError(f"{what} not found: {path}")
    return VARPipeline.from_pretrained(model, vae=args.vae, text_encoder=args.text_encoder,
                                       resolution=args.resolution, patch_nums=args.patch_nums,
                                       device=_device(args.device), dtype=args.dtype)


# ---------------------------------------------------------------------------- generate


def cmd_generate(args: argparse.Namespace) -> int:
    from .grid import save_images
    pipe = _load_pipeline(args)
    kw = dict(cfg=args.cfg, cfg_schedule=args.cfg_schedule, top_k=args.top_k, top_p=args.top_p,
              temperature=args.temperature, smooth=args.smooth, seed=args.seed, per_sample_seeds=args.per_sample_seeds)
    if args.n < 1:
        raise UsageError(f"--n must be >= 1, got {args.n}")
    if args.unconditional:
        if args.classes or any(p.strip() for p in args.prompts) or args.negative:
            raise UsageError("--unconditional samples from the null condition: give no caption, class or negative")
        call = dict(unconditional=True, num_images=args.n)
        captions = None
    elif pipe.is_text:
        if args.classes:
            raise UsageError("this is a text-to-image model: give captions, not --class")
        if not args.prompts:
            raise UsageError("give at least one caption (this is a text-to-image model)")
        if any(not p.strip() for p in args.prompts):
            raise UsageError("empty caption; use --unconditional for unconditional samples")
        if args.negative is not None and not args.negative.strip():
            raise UsageError("empty --negative; leave it out to use the learned null condition")
        captions = [p for p in args.prompts for _ in range(args.n)]
        call = dict(prompt=args.prompts, negative_prompt=args.negative, num_images=args.n)
    else:
        if args.prompts:
            raise UsageError("this is a class-conditional model: use --class N, not captions")
        if args.negative:
            raise UsageError("--negative needs a text-to-image model")
        call = dict(class_labels=args.classes or None, num_images=args.n)
        captions = None
    t0 = time.perf_counter()
    bar = _progress(len(pipe.transformer.patch_nums), args.quiet)
    out = pipe(**call, **kw, callback_on_scale=(lambda s, k, imgs: bar.update(1)) if bar else None)
    if bar:
        bar.close()
    dt = time.perf_counter() - t0
    if captions is None and not args.unconditional:
        captions = [f"class {int(c)}" for c in out.conditions]
    paths = save_images(out.images, args.out, captions)
    print(f"wrote {len(out.images)} images to {paths[0] if len(paths) == 1 else Path(args.out)} in {dt:.1f} s")
    return 0


def cmd_edit(args: argparse.Namespace) -> int:
    from .grid import make_grid, save_image_atomic
    pipe = _load_pipeline(args)
    box = None
    if args.box:
        try:
            box = [float(v) for v in args.box.split(",")]
        except ValueError:
            raise UsageError(f"--box takes y0,x0,y1,x1 in [0,1], got {args.box!r}") from None
    if args.n < 1:
        raise UsageError(f"--n must be >= 1, got {args.n}")
    prompt = args.prompt
    if prompt is not None and not prompt.strip():
        raise UsageError("empty caption; leave it out for unconditional in/out-painting")
    if prompt is not None and not pipe.is_text:
        raise UsageError("this is a class-conditional model: use --class N, not a caption")
    if args.classes and pipe.is_text:
        raise UsageError("this is a text-to-image model: give a caption, not --class")
    out = pipe.edit(args.image, mask=args.mask, box=box, mode=args.mode, extend=args.extend, prompt=prompt,
                    class_labels=args.classes or None, num_images=args.n, cfg=args.cfg, cfg_schedule=args.cfg_schedule,
                    top_k=args.top_k, top_p=args.top_p, temperature=args.temperature, smooth=args.smooth,
                    seed=args.seed, per_sample_seeds=args.per_sample_seeds)
    images = [out.source, out.mask, *out.images]
    captions = ["input", "mask (white = new)"] + [f"result {i}" for i in range(len(out.images))]
    path = save_image_atomic(make_grid(images, len(images), captions), args.out)
    print(f"wrote {path}")
    return 0


def _progress(total: int, quiet: bool):
    if quiet:
        return None
    from tqdm import tqdm
    return tqdm(total=total, desc="scales", leave=False)


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
        import torch
        tok, model, cfg = load_model_dir(src)
        dtype = {"fp32": None, "fp16": torch.float16, "bf16": torch.bfloat16}[args.dtype]
        save_model_dir(dst, tok, model, cfg.get("text_encoder"), extra_fields(cfg), dtype=dtype)
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
        raise UsageError("give a case folder or --layouts FILE")
    print(json.dumps(report, indent=1))
    return 0 if report["ok"] else 1


# ---------------------------------------------------------------------------- misc


def cmd_bench(args: argparse.Namespace) -> int:
    from .bench import run_bench
    return run_bench(args)


def cmd_demo(args: argparse.Namespace) -> int:
    from .embedded import run_demo
    return run_demo(args.out, device=_device(args.device))


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
    "eval": (".eval.cli", "cli_eval", "evaluate: fid, fid-stats, clip-score, caption-bench, tokens, recon"),
    "scaling": (".eval.scaling", "cli_scaling", "train a ladder of small models and fit the scaling laws"),
    "sample-fid": (".eval.sample", "cli_sample_fid", "sample images for FID (sharded, resumable, .npz)"),
}


def _passthrough(module: str, fn: str):
    def run(args: argparse.Namespace) -> int:
        import importlib
        return getattr(importlib.import_module(module, __package__), fn)(args.rest)
    return run


def build_parser() -> argparse.ArgumentParser:
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
    _model_args(g)
    _sampling_args(g)
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
    _model_args(e)
    _sampling_args(e)
    e.set_defaults(fn=cmd_edit)

    c = sub.add_parser("convert", help="official .pth <-> native model directory (bit-exact round trip)")
    c.add_argument("src", help="official .pth (transformer or VQVAE) or a native directory")
    c.add_argument("dst", help="native directory, or (from a native directory) a folder for vae.pth/var.pth")
    c.add_argument("--vae", help="the official VQVAE .pth that goes with a transformer")
    c.add_argument("--resolution", type=int, help="256 or 512 (default: inferred from the token count)")
    c.add_argument("--patch-nums", type=_patch_nums, help="explicit schedule, e.g. 1,2,3,4")
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
