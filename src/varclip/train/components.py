"""The pieces both `varclip train` and `varclip cache` build from a TrainConfig: the transformer's
config, the frozen tokenizer, the frozen text encoder and the image data set.

Kept in one place so the cache and the trainer cannot disagree on, e.g., the crop or the scale
schedule: a cache is only valid for the exact pipeline the trainer would run itself.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ..checkpoints import (
    check_compatible,
    load_tokenizer,
    read_model_config,
    read_official,
    transformer_config_from_state,
)
from ..config import ConfigError, TransformerConfig, from_dict, named_transformer, to_dict
from ..tokenizer import VQTokenizer
from .config import DataConfig, ModelConfig


def transformer_config(model: ModelConfig) -> TransformerConfig:
    """The named config, or the config of the `init_from` checkpoint, with `arch` overrides."""
    if model.init_from:
        path = Path(model.init_from)
        if path.is_dir():
            base = from_dict(TransformerConfig, read_model_config(path).get("transformer"), "transformer")
        else:
            base = transformer_config_from_state(read_official(path))
    else:
        base = named_transformer(model.transformer)
    return from_dict(TransformerConfig, {**to_dict(base), **model.arch}, "model.arch") if model.arch else base


def tokenizer_dir(path: str | Path) -> Path:
    """Where the tokenizer of `path` is: the path itself (a native directory or an official
    .pth), or, for the run directory of `varclip train-tokenizer` (or `varclip train`), the
    model it exported (RUN/tokenizer or RUN/model), so a config may name either."""
    p = Path(path)
    if not p.is_dir() or (p / "config.json").is_file():
        return p
    for sub in ("tokenizer", "model"):
        if (p / sub / "config.json").is_file():
            return p / sub
    if (p / "checkpoints").is_dir():
        raise ConfigError(f"{p} is a training run that has not exported its tokenizer yet (no {p / 'tokenizer'}): "
                          f"let it finish, or name a native tokenizer directory")
    return p


def load_frozen_tokenizer(path: str, tcfg: TransformerConfig, image_size: int,
                          device: torch.device | str = "cpu") -> VQTokenizer:
    """The VQVAE in eval mode without gradients, checked against the transformer and image size."""
    if not path:
        raise ConfigError("model.tokenizer is not set: give a native tokenizer directory or an official VQVAE .pth")
    if not Path(path).exists():
        raise ConfigError(f"tokenizer not found: {path}")
    path = str(tokenizer_dir(path))
    tok = load_tokenizer(path, tcfg.patch_nums)  # re-scheduled to the transformer's scales
    check_compatible(tok, tcfg, f"tokenizer {path}")
    expected = tcfg.patch_nums[-1] * tok.cfg.downsample
    if image_size != expected:
        raise ConfigError(f"data.image_size {image_size} does not fit the scale schedule: the last patch number "
                          f"{tcfg.patch_nums[-1]} x tokenizer downsample {tok.cfg.downsample} = {expected}")
    tok.requires_grad_(False)
    return tok.to(device).eval()


def load_frozen_text_encoder(spec: str, dim: int, device: torch.device | str = "cpu") -> Any:
    """The text encoder of a text model, checked against the transformer's text width."""
    if not spec:
        raise ConfigError("model.text_encoder is not set: a text model needs a spec such as 'minilm' or 'clip:PATH'")
    from ..text import load_text_encoder
    enc = load_text_encoder(spec, device=str(device))
    if enc.dim != dim:
        raise ConfigError(f"text encoder {spec!r} gives {enc.dim}-d embeddings but the transformer expects "
                          f"text_dim {dim}")
    return enc


def make_image_dataset(data: DataConfig, seed: int, augment: bool) -> Any:
    """ImageFolderDataset (class) or CaptionDataset (text). `augment` False: center crop, no flip
    (what a cache stores); True: the configured train transform."""
    from ..data import CaptionDataset, ImageFolderDataset
    train = augment and data.random_crop
    hflip = augment and data.hflip
    if data.kind == "class":
        if not data.root:
            raise ConfigError("data.root is not set: class models read an image folder root/<class>/<image>")
        return ImageFolderDataset(data.root, data.image_size, train=train, hflip=hflip, seed=seed,
                                  check_files=data.check_files, min_size=data.min_image_size)
    if not data.manifest:
        raise ConfigError("data.manifest is not set: text models read a caption manifest (jsonl, csv or txt)")
    if not Path(data.manifest).is_file():
        raise ConfigError(f"caption manifest not found: {data.manifest}")
    return CaptionDataset(data.manifest, data.image_size, train=train, root=data.manifest_root or None,
                          hflip=hflip, seed=seed, check_files=data.check_files, min_size=data.min_image_size,
                          scale_jitter=data.scale_jitter if train else 0.0)


def check_model_data(tcfg: TransformerConfig, kind: str, num_classes: int = 0) -> None:
    """One-line errors for a model that cannot learn from this data."""
    if kind == "text" and not tcfg.is_text:
        raise ConfigError("data.kind is text but the transformer is class-conditional (set model.transformer to a "
                          "text config or model.arch.text_dim)")
    if kind == "class" and tcfg.is_text:
        raise ConfigError("data.kind is class but the transformer is a text model")
    if kind == "class" and num_classes > tcfg.num_classes:
        raise ConfigError(f"the data has {num_classes} classes but the transformer only {tcfg.num_classes} "
                          f"(set model.arch.num_classes)")


__all__ = ["transformer_config", "tokenizer_dir", "load_frozen_tokenizer", "load_frozen_text_encoder", "make_image_dataset",
           "check_model_data"]
