"""The entry kit: what every entry point (cli, app, eval, bench) needs to turn what a person typed
into a pipeline call, written once. Model arguments and the one pipeline loader (embedded model,
random demo model), typed schedules, and the sampling flags, which travel as a `SamplingConfig`.

To add a sampling flag: a field of `SamplingConfig` and one row of `SAMPLING_FLAGS`; every
command that samples then accepts it.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from . import embedded
from .config import ConfigError, SamplingConfig, sampling_preset
from .devices import DTYPE_CHOICES, resolve_device

# ---------------------------------------------------------------------------- sampling flags


@dataclass(frozen=True)
class Flag:
    """One sampling flag: `--field-name`, a SamplingConfig field. type None: a switch."""

    field: str
    type: Callable[[str], Any] | None
    help: str
    default: Any = None  # None: not given, so the preset / the model's recommendation applies


SAMPLING_FLAGS: tuple[Flag, ...] = (
    Flag("cfg", float, "classifier-free guidance strength, >= 0 (0 = off)"),
    Flag("cfg_schedule", str, "linear (the official ramp) | constant | off_from:K | comma list of per-scale values"),
    Flag("top_k", int, "0 = off"),
    Flag("top_p", float, "0 = off"),
    Flag("temperature", float, "softmax temperature"),
    Flag("smooth", None, "Gumbel-softmax smoothing of code vectors (the official more_smooth)"),
    Flag("seed", int, "random seed", 0),
    Flag("per_sample_seeds", None, "image i uses seed+i: independent of the batch (differs from the official stream)"),
)
assert {f.field for f in SAMPLING_FLAGS} <= {f.name for f in fields(SamplingConfig)}


def add_sampling_args(p: argparse.ArgumentParser, preset: str | None = None, skip: tuple[str, ...] = ()) -> None:
    """The sampling flags. preset None: unset flags fall back to the model's recommended settings,
    then the `interactive` preset; a preset name (e.g. official_fid): to that preset."""
    base = sampling_preset(preset or "interactive")
    for f in SAMPLING_FLAGS:
        if f.field in skip:
            continue
        flag = "--" + f.field.replace("_", "-")
        if f.type is None:
            p.add_argument(flag, action="store_true", default=None, help=f.help)
            continue
        value = f.default if f.default is not None else getattr(base, f.field)
        where = f"{preset} preset: {value}" if preset else f"the model's, else {value}"
        p.add_argument(flag, type=f.type, default=f.default,
                       help=f"{f.help} (default: {value if f.default is not None else where})")


def sampling_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """The sampling settings given on the command line, as overrides (unset flags left out)."""
    return {f.field: getattr(args, f.field) for f in SAMPLING_FLAGS if getattr(args, f.field, None) is not None}


# ---------------------------------------------------------------------------- model arguments


def parse_schedule(text: str) -> tuple[int, ...]:
    """'1,2,3,4' -> (1, 2, 3, 4): a scale schedule (patch_nums) typed by a person."""
    try:
        out = tuple(int(v) for v in str(text).split(","))
    except ValueError:
        raise ConfigError(f"a schedule is comma-separated integers such as 1,2,3,4, got {text!r}") from None
    if not out or any(v <= 0 for v in out):
        raise ConfigError(f"a schedule is positive side lengths such as 1,2,3,4, got {text!r}")
    return out


def _schedule_arg(text: str) -> tuple[int, ...]:
    try:
        return parse_schedule(text)
    except ConfigError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def add_model_args(p: argparse.ArgumentParser, required: bool = False, official: bool = True, fast: bool = True
                   ) -> None:
    """--model, --vae, --text-encoder, (--resolution, --patch-nums,) --device, --dtype, (--fast)."""
    from .text.encoders import spec_help
    default = "" if required else " (default: the embedded model)"
    p.add_argument("--model", required=required, help=f"native model directory or official transformer .pth{default}")
    p.add_argument("--vae", help="VQVAE: official .pth or native directory (needed with an official transformer)")
    p.add_argument("--text-encoder", help=f"text models: {spec_help()}")
    if official:
        p.add_argument("--resolution", type=int, help="256 or 512: the schedule of an official checkpoint")
        p.add_argument("--patch-nums", type=_schedule_arg, help="explicit schedule of an official checkpoint, e.g. 1,2,3,4")
    p.add_argument("--device", default="auto", help="cpu | cuda | cuda:N | auto")
    p.add_argument("--dtype", default="fp32", help=f"{' | '.join(DTYPE_CHOICES)} (fp32: exact; others: autocast)")
    if fast:
        add_fast_arg(p)


def add_fast_arg(p: argparse.ArgumentParser) -> None:
    """--fast: the FastConfig preset (varclip.fast), for commands that load a pipeline."""
    p.add_argument("--fast", action="store_true",
                   help="the fast preset: faster for a small measured quality cost (figures: docs/benchmarks.md); "
                        "default: exact mode")


# ---------------------------------------------------------------------------- loading


DEMO_NOTE = ("No embedded model is installed with this copy of varclip: this is a RANDOMLY INITIALISED tiny "
             "demo model (untrained), so the images are noise. Use --model PATH for real images.")


def demo_pipeline(device: str = "cpu") -> Any:
    """A tiny RANDOMLY INITIALISED class model, labelled by `model_note`: shows the machinery, not
    quality. Used when no embedded model is installed. The global RNG is left untouched."""
    import torch

    from .config import named_tokenizer, named_transformer
    from .model import VARTransformer
    from .pipeline import VARPipeline
    from .tokenizer import VQTokenizer

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        pipe = VARPipeline(VQTokenizer(named_tokenizer("tiny")), VARTransformer(named_transformer("tiny")))
    pipe = pipe.to(resolve_device(device))
    pipe.model_note, pipe.model_name = DEMO_NOTE, "random tiny demo model"
    return pipe


def load_pipeline(model: str | Path | None = None, vae: str | Path | None = None, text_encoder: str | None = None,
                  resolution: int | None = None, patch_nums: tuple[int, ...] | None = None, device: str = "auto",
                  dtype: str | None = None, demo_if_missing: bool = False, local_rank: int = 0,
                  fast: bool = False) -> Any:
    """The pipeline of an entry point: `model`, else the embedded model, else (demo_if_missing)
    the random demo model. Missing files are one-line errors naming them. fast: `enable_fast()`
    with the weights cast in place (an entry point runs one mode: no second copy of them)."""
    from .pipeline import VARPipeline
    for what, path in (("model", model), ("VQVAE", vae)):
        if path is not None and not Path(path).expanduser().exists():
            raise ConfigError(f"{what} not found: {path}")
    device = resolve_device(device, local_rank)
    if model is None:
        try:
            model = embedded.embedded_model_dir()
        except ConfigError:
            if not demo_if_missing:
                raise
            return demo_pipeline(device).enable_fast(fast, keep_exact=not fast)
    pipe = VARPipeline.from_pretrained(model, vae=vae, text_encoder=text_encoder, resolution=resolution,
                                       patch_nums=patch_nums, device=device, dtype=dtype)
    pipe.model_name = str(model)
    return pipe.enable_fast(fast, keep_exact=not fast)


def pipeline_from_args(args: argparse.Namespace, demo_if_missing: bool = False, local_rank: int = 0) -> Any:
    """`load_pipeline` from the arguments of `add_model_args`."""
    return load_pipeline(args.model, args.vae, args.text_encoder, getattr(args, "resolution", None),
                         getattr(args, "patch_nums", None), args.device, args.dtype, demo_if_missing, local_rank,
                         getattr(args, "fast", False))


__all__ = ["Flag", "SAMPLING_FLAGS", "add_sampling_args", "sampling_from_args", "parse_schedule", "add_model_args", "add_fast_arg",
           "DEMO_NOTE", "demo_pipeline", "load_pipeline", "pipeline_from_args"]
