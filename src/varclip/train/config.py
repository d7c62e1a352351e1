"""Typed training configs: dataclasses loaded from YAML and overridden from the command line.

The one home of the training config dataclasses, in two layers:

* YAML and overrides: `apply_overrides` applies dotted `key.sub=value` strings (values parsed as
  YAML, so `[1, 2]`, `null`, `true` work); `load_config(cls, path, overrides)` reads a file,
  applies them and builds `cls` with `varclip.config.from_dict`, the one loader of every config
  (type coercion: `1e-4` becomes a float because the field says so; one-line errors).
* Sections: reusable ones (`OptimConfig`, `ScheduleConfig`, `LoggingConfig`, `CheckpointConfig`,
  `DistConfig`), the generator's `TrainConfig` with its `DataConfig`, `ModelConfig`,
  `LossConfig`, and the tokenizer trainer's `TokenizerTrainConfig` with its sections.

Why dataclasses rather than a free-form dict: a typo in a 200-epoch recipe must fail at start,
not silently train with a default.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar, Union

import yaml

from ..config import (ConfigError, SamplingConfig, TokenizerConfig, TransformerConfig, check_keys, from_dict,
                      to_dict)

T = TypeVar("T")

# ---------------------------------------------------------------------------- YAML and overrides


def parse_override(text: str) -> tuple[str, Any]:
    """'optim.lr=1e-4' -> ('optim.lr', '1e-4' parsed as YAML)."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"an override must look like key.sub=value, got {text!r}")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key, value


def _check_key(cls: type, parts: list[str]) -> None:
    """Refuse a dotted key that does not name a field (dict-typed fields accept any sub key)."""
    tp: Any = cls
    for i, part in enumerate(parts):
        if not (dataclasses.is_dataclass(tp) and isinstance(tp, type)):
            origin = typing.get_origin(tp)
            if origin is dict or tp is dict or tp is Any:
                return
            raise ConfigError(f"unknown config key {'.'.join(parts)!r}: {'.'.join(parts[:i])!r} has no sub keys")
        check_keys(tp, [part], ".".join(parts[:i]))
        tp = typing.get_type_hints(tp)[part]
        if typing.get_origin(tp) in (Union, types.UnionType):
            non_none = [a for a in typing.get_args(tp) if a is not type(None)]
            tp = non_none[0] if len(non_none) == 1 else Any


def apply_overrides(cls: type, data: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Set dotted keys in the plain mapping `data` (checked against `cls`); returns `data`."""
    for text in overrides:
        key, value = parse_override(text)
        parts = key.split(".")
        _check_key(cls, parts)
        node = data
        for part in parts[:-1]:
            nxt = node.get(part)
            if not isinstance(nxt, dict):
                nxt = node[part] = {}
            node = nxt
        node[parts[-1]] = value
    return data


def read_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{path}: invalid YAML{where}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level of a config must be a mapping")
    return data


def load_config(cls: type[T], path: str | Path | None = None, overrides: Sequence[str] = ()) -> T:
    """Defaults <- YAML file <- dotted overrides, as a typed `cls`."""
    data = read_yaml(path) if path else {}
    return from_dict(cls, apply_overrides(cls, data, overrides))


def save_config(cfg: Any, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False), encoding="utf-8")


# ---------------------------------------------------------------------------- reusable sections


@dataclass
class OptimConfig:
    """AdamW as in the official recipe. Peak lr = base_lr * global_batch / lr_ref_batch unless
    `lr` > 0 gives it directly. Weight decay only on tensors with ndim > 1 whose name contains
    none of `no_decay_keys` (positions, levels, start token, gammas, ada_gss, scale_mul)."""

    base_lr: float = 1e-4
    lr: float = 0.0
    lr_ref_batch: int = 256
    betas: tuple[float, float] = (0.9, 0.95)
    eps: float = 1e-8
    weight_decay: float = 0.05
    no_decay_keys: list[str] = field(default_factory=lambda: [
        "pos_start", "pos_1LC", "lvl_embed", "gamma", "ada_gss", "scale_mul"])
    # decayed to weight_decay_end by a cosine over training (official --twde); < 0: constant
    weight_decay_end: float = -1.0
    grad_clip: float = 2.0  # <= 0: off (the norm is still measured and logged)
    # a step with a non-finite loss or gradient norm is skipped; this many in a row stop the run
    # with an error (0: never stop). Read from the run's `optim` section only.
    max_nonfinite_steps: int = 10
    fused: Literal["auto", "on", "off"] = "auto"  # fused AdamW kernel; auto: on CUDA (official), off on CPU

    def __post_init__(self) -> None:
        if isinstance(self.fused, bool):
            self.fused = "on" if self.fused else "off"
        if self.base_lr <= 0 and self.lr <= 0:
            raise ConfigError("optim: base_lr or lr must be > 0")
        if self.lr_ref_batch < 1:
            raise ConfigError("optim.lr_ref_batch must be >= 1")
        if self.max_nonfinite_steps < 0:
            raise ConfigError("optim.max_nonfinite_steps must be >= 0")
        if not all(0 <= b < 1 for b in self.betas):
            raise ConfigError(f"optim.betas must be in [0, 1), got {self.betas}")


@dataclass
class ScheduleConfig:
    """Length of training and the lr factor: linear warm-up from `warmup_start`, then the
    official schedule `kind` down to `end_factor` at the last iteration (see train/optim.py).
    Official: warm-up epochs/50 (= 2 % of training), lin0 (flat 5 %, then linear), end 0.1
    (d16/d20) or 0.01; with progressive training the official code switches to lin<pg>."""

    steps: int = 0  # optimizer steps; 0: from epochs
    epochs: float = 0.0
    warmup_steps: int = -1  # < 0: warmup_fraction of the steps
    warmup_fraction: float = 0.02
    warmup_start: float = 0.005
    kind: str = "auto"  # lin0 | lin | lin00 | cos | exp | lin<T>; auto: lin<pg> when progressive, else lin0
    flat_fraction: float = -1.0  # flat part of lin/lin0/lin00/exp; < 0: the kind's own (0.15/0.05/0/0.15)
    end_factor: float = 0.1
    # official: every schedule (lr, weight decay, progressive stages) advances per micro-batch, and
    # a step uses the values of its last micro-batch; false: per optimizer step
    count_micro_batches: bool = False

    def __post_init__(self) -> None:
        from .optim import check_lr_kind
        if self.steps < 0 or self.epochs < 0:
            raise ConfigError("schedule: steps and epochs must be >= 0")
        if self.flat_fraction > 1 or not 0 <= self.warmup_fraction < 1:
            raise ConfigError("schedule: flat_fraction and warmup_fraction must be in [0, 1]")
        check_lr_kind(self.kind, self.end_factor)


@dataclass
class LoggingConfig:
    """Progress bar, JSONL metrics, tensorboard scalars and periodic sample grids (rank 0)."""

    log_every: int = 10  # steps between metric records
    progress: bool = True
    tensorboard: bool = True  # when the tensorboard package is importable
    sample_every: int = 0  # steps between sample grids; 0: only at the end (if sample_count > 0)
    sample_count: int = 8
    # preview settings; also written to the exported model as its recommended "sampling"
    sample: SamplingConfig = field(default_factory=SamplingConfig)  # seed None: previews use seed 0
    sample_classes: list[int] = field(default_factory=list)  # class models (default: 0..n-1)
    sample_prompts: list[str] = field(default_factory=list)  # text models (default: data captions)

    def __post_init__(self) -> None:
        if self.log_every < 1:
            raise ConfigError("logging.log_every must be >= 1")


@dataclass
class CheckpointConfig:
    """Resumable checkpoints under OUT/checkpoints (atomic, the last `keep_last` kept)."""

    every: int = 1000  # steps; 0: only at the end
    keep_last: int = 3
    resume: str = ""  # "" (fresh; refuses a non-empty run dir), "auto" (latest if any) or a path

    def __post_init__(self) -> None:
        if self.keep_last < 1:
            raise ConfigError("checkpoint.keep_last must be >= 1")


@dataclass
class DistConfig:
    """Data parallelism under torchrun. `strategy` auto: ddp with > 1 process, else none."""

    strategy: Literal["auto", "none", "ddp", "fsdp"] = "auto"
    backend: str = "auto"  # auto: nccl on CUDA, gloo on CPU
    fsdp_reshard_after_forward: bool = True
    timeout_minutes: float = 30.0


# ---------------------------------------------------------------------------- generator training


@dataclass
class DataConfig:
    """Where images and conditions come from.

    kind "class": an ImageNet-layout folder `root/<class>/<image>`; kind "text": a caption
    manifest (JSONL/CSV/VAR-CLIP txt). `cache_dir` holds precomputed token pyramids (and text
    embeddings, see `varclip cache`); `use_cache` auto reads it when its index exists.
    """

    kind: Literal["class", "text"] = "class"
    root: str = ""
    manifest: str = ""
    manifest_root: str = ""  # relative image paths resolve here ("" = the manifest's default)
    image_size: int = 256
    random_crop: bool = True  # official train transform; False: center crop (what a cache holds)
    hflip: bool = False  # except images a manifest marks "flip": false
    scale_jitter: float = 0.0  # with random_crop: resize target drawn from mid * U(1-j, 1+j); 0 = official
    num_workers: int = 4
    check_files: bool = True  # open every image's header up front: unreadable / too small ones are dropped
    min_image_size: int = 8  # px, shorter side: smaller images are skipped as unusable
    cache_dir: str = ""
    use_cache: Literal["auto", "on", "off"] = "auto"
    fill_last: bool = False  # official: pad the last batch of an epoch from its start instead of dropping it
    text_memo_size: int = 100_000  # distinct caption embeddings kept in memory when reading images

    def __post_init__(self) -> None:
        if self.image_size < 8:
            raise ConfigError(f"data.image_size must be >= 8, got {self.image_size}")
        if self.num_workers < 0:
            raise ConfigError("data.num_workers must be >= 0")
        if self.min_image_size < 1:
            raise ConfigError("data.min_image_size must be >= 1")
        if not 0.0 <= self.scale_jitter < 1.0:
            raise ConfigError(f"data.scale_jitter must be in [0, 1), got {self.scale_jitter}")


@dataclass
class ModelConfig:
    """The transformer (a named config plus field overrides), the frozen tokenizer, the text
    encoder of text models, and an optional checkpoint to start from (fine-tuning)."""

    transformer: str = "d16"
    arch: dict[str, Any] = field(default_factory=dict)  # TransformerConfig fields, e.g. num_classes
    tokenizer: str = ""  # native model/tokenizer directory or official VQVAE .pth
    text_encoder: str = ""  # spec, e.g. "minilm" or "clip:/path/ViT-L-14.pt"
    init_from: str = ""  # native model directory or official transformer .pth

    def __post_init__(self) -> None:
        check_keys(TransformerConfig, self.arch, "model.arch")


@dataclass
class LossConfig:
    """Cross-entropy over all tokens (official: uniform weights, no smoothing), condition dropout
    for classifier-free guidance, and progressive growth of the scale count."""

    label_smoothing: float = 0.0
    scale_weights: list[float] = field(default_factory=list)  # one per scale; [] = uniform per token
    cond_drop_rate: float = 0.1
    # bernoulli: each row independently (VAR); exact: floor(rate*B) random rows (VAR-CLIP);
    # auto: bernoulli for class models, exact for text models
    cond_drop_mode: Literal["auto", "bernoulli", "exact"] = "auto"
    # progressive training as the official code (train/losses.py): the first `start_scales` scales
    # (official pg0 + 1) through the warm-up, one more at even intervals until `fraction` of training
    # (official pg); each new scale's loss weight ramps in over `ramp_fraction` of training (pgwp/ep)
    progressive_start_scales: int = 0  # > 0: train on this many scales first, growing to all
    progressive_fraction: float = 0.0  # fraction of training over which growth happens
    progressive_ramp_fraction: float = 1 / 300

    def __post_init__(self) -> None:
        if not 0 <= self.label_smoothing < 1:
            raise ConfigError("loss.label_smoothing must be in [0, 1)")
        if not 0 <= self.cond_drop_rate <= 1:
            raise ConfigError("loss.cond_drop_rate must be in [0, 1]")
        if any(w < 0 for w in self.scale_weights):
            raise ConfigError("loss.scale_weights must be >= 0")
        if not 0 <= self.progressive_fraction <= 1:
            raise ConfigError("loss.progressive_fraction must be in [0, 1]")
        if self.progressive_ramp_fraction < 0:
            raise ConfigError("loss.progressive_ramp_fraction must be >= 0")


@dataclass
class HeldoutConfig:
    """Held-out evaluation of a text generator during training (train/heldout.py): the token loss
    on `manifest` (captions never trained on) with and without the caption every `every` steps;
    the best weights by captioned loss go to OUT/best; `patience` evaluations without an
    improvement of `min_delta` stop the run (0: never)."""

    manifest: str = ""  # "" = off
    every: int = 0  # steps between evaluations; 0 = off
    limit: int = 256  # rows used, spread evenly over the manifest
    batch_size: int = 64
    patience: int = 0
    min_delta: float = 0.0

    def __post_init__(self) -> None:
        if self.every < 0 or self.limit < 1 or self.batch_size < 1 or self.patience < 0:
            raise ConfigError("heldout: every and patience must be >= 0, limit and batch_size >= 1")
        if bool(self.manifest) != bool(self.every):
            raise ConfigError("heldout: set both manifest and every (or neither)")


@dataclass
class RunConfig:
    """What every trainer's run has: where it writes, its seed and device, the global batch, the
    EMA, and the schedule, logging, checkpoint and distributed sections (the trainers share the
    loop that reads them, train/runner.py)."""

    out_dir: str = "runs/run"
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda
    batch_size: int = 16
    ema_decay: float = 0.0  # > 0: keep an EMA of the weights (not in the official recipe)
    export_ema: bool = True  # the exported model uses the EMA weights when there are any
    step_sleep_s: float = 0.0  # testing aid: sleep after each step (to interrupt a run mid-way)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    dist: DistConfig = field(default_factory=DistConfig)

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ConfigError("batch_size must be >= 1")
        if not 0 <= self.ema_decay < 1:
            raise ConfigError("ema_decay must be in [0, 1)")


@dataclass
class TrainConfig(RunConfig):
    """Everything `varclip train` needs. `batch_size` is the GLOBAL batch of one optimizer step
    (all processes x accumulation), as the official recipes state it: the same config gives the
    same optimisation on 1 or N processes."""

    out_dir: str = "runs/var"
    batch_size: int = 768
    grad_accum: int = 1
    precision: Literal["fp32", "bf16", "fp16"] = "bf16"
    compile: bool = False
    tf32: bool = True  # CUDA: TF32 matmuls and convolutions, as the official code
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    heldout: HeldoutConfig = field(default_factory=HeldoutConfig)

    def __post_init__(self) -> None:
        if self.batch_size < 1 or self.grad_accum < 1:
            raise ConfigError("batch_size and grad_accum must be >= 1")
        super().__post_init__()


# ---------------------------------------------------------------------------- tokenizer training


@dataclass
class TokenizerOptimConfig(OptimConfig):
    """AdamW for the autoencoder: lr given directly (tokenizer batches are small), no decay on
    the codebook (decay would pull unused codes to 0, where they then stay dead)."""

    lr: float = 1e-4
    no_decay_keys: list[str] = field(default_factory=lambda: ["quantize.embedding"])
    grad_clip: float = 1.0


@dataclass
class DiscOptimConfig(OptimConfig):
    """AdamW for the discriminator."""

    lr: float = 1e-4
    no_decay_keys: list[str] = field(default_factory=list)
    grad_clip: float = 1.0


@dataclass
class TokenizerDataConfig:
    """Images only: a folder (searched recursively) or a caption manifest (captions ignored)."""

    source: str = ""
    image_size: int = 0  # 0: the tokenizer's native size (last patch number x downsample)
    random_crop: bool = True  # VAR's train transform; False: center crop
    hflip: bool = False
    num_workers: int = 2

    def __post_init__(self) -> None:
        if self.image_size < 0 or self.num_workers < 0:
            raise ConfigError("data.image_size and data.num_workers must be >= 0")


@dataclass
class TokenizerModelConfig:
    """Which tokenizer to train, where to start from, and the perceptual network's weights."""

    config: str = "tiny"  # a named TokenizerConfig (varclip.config.TOKENIZERS)
    arch: dict[str, Any] = field(default_factory=dict)  # TokenizerConfig field overrides
    patch_nums: list[int] = field(default_factory=list)  # [] = the config's / checkpoint's schedule
    init_from: str = ""  # official VQVAE .pth or native directory: fine-tune it
    perceptual_weights: str = "auto"  # PATH | auto | stlpips | none (see tokenizer_losses)
    perceptual_lin_weights: str = "auto"  # PATH | auto (the lpips package's, if installed) | none
    # fresh tokenizers only: "uniform" U(-1/V, 1/V) (VQGAN's), "keep" (the module's N(0, 1))
    codebook_init: Literal["uniform", "keep"] = "uniform"

    def __post_init__(self) -> None:
        check_keys(TokenizerConfig, self.arch, "tokenizer.arch")


@dataclass
class TokenizerLossConfig:
    """Weights of the loss terms, and dead-code re-seeding."""

    l1: float = 1.0
    l2: float = 0.0
    vq: float = 1.0
    perceptual: float = 1.0  # 0: never build the perceptual network
    reseed_every: int = 0  # steps between dead-code re-seeding; 0: off
    reseed_threshold: float = 0.03  # dead: usage EMA < threshold x the mean usage of all codes
    reseed_source: Literal["finest", "all"] = "finest"  # residuals of the finest scale, or of all scales

    def __post_init__(self) -> None:
        if min(self.l1, self.l2, self.vq, self.perceptual) < 0:
            raise ConfigError("loss weights must be >= 0")
        if self.reseed_every < 0 or self.reseed_threshold < 0:
            raise ConfigError("loss.reseed_every and loss.reseed_threshold must be >= 0")


@dataclass
class DiscConfig:
    """PatchGAN with hinge loss, switched on at step `start` (< 0: never)."""

    start: int = -1
    weight: float = 0.5
    adaptive: bool = True  # VQGAN's gradient-norm balancing; False: the constant `weight`
    max_adaptive: float = 1e4
    ch: int = 64
    n_layers: int = 3
    norm: Literal["group", "batch", "instance", "none"] = "group"
    optim: DiscOptimConfig = field(default_factory=DiscOptimConfig)

    def __post_init__(self) -> None:
        if self.n_layers < 1 or self.ch < 1:
            raise ConfigError("disc.n_layers and disc.ch must be >= 1")


@dataclass
class TokenizerTrainConfig(RunConfig):
    """Everything `varclip train-tokenizer` needs; `batch_size` is the GLOBAL batch per step."""

    out_dir: str = "runs/tokenizer"
    precision: Literal["fp32", "bf16"] = "fp32"
    data: TokenizerDataConfig = field(default_factory=TokenizerDataConfig)
    tokenizer: TokenizerModelConfig = field(default_factory=TokenizerModelConfig)
    loss: TokenizerLossConfig = field(default_factory=TokenizerLossConfig)
    disc: DiscConfig = field(default_factory=DiscConfig)
    optim: TokenizerOptimConfig = field(default_factory=TokenizerOptimConfig)


__all__ = [
    "ConfigError", "parse_override", "apply_overrides", "read_yaml", "load_config", "save_config",
    "OptimConfig", "ScheduleConfig", "LoggingConfig", "CheckpointConfig", "DistConfig", "DataConfig",
    "ModelConfig", "LossConfig", "HeldoutConfig", "RunConfig", "TrainConfig", "TokenizerOptimConfig",
    "DiscOptimConfig", "TokenizerDataConfig", "TokenizerModelConfig", "TokenizerLossConfig", "DiscConfig",
    "TokenizerTrainConfig",
]
