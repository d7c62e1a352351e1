"""Configuration dataclasses and the named model configs.

Every tunable number of the tokenizer and the transformer lives here. The scale schedules are
defined once (`SCHEDULES`) and referenced by name everywhere else. `from_dict` is the one loader
of every config dataclass (model, training, sampling): real type coercion, one-line errors.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeVar, Union

T = TypeVar("T")

# The one source of truth for the official scale schedules (side length of each token map).
SCHEDULES: dict[int, tuple[int, ...]] = {
    256: (1, 2, 3, 4, 5, 6, 8, 10, 13, 16),
    512: (1, 2, 3, 4, 6, 9, 13, 18, 24, 32),
}


def schedule_for(resolution: int) -> tuple[int, ...]:
    """The official patch_nums of a resolution (256 or 512)."""
    if resolution not in SCHEDULES:
        raise ValueError(f"no official scale schedule for resolution {resolution}; known: {sorted(SCHEDULES)}")
    return SCHEDULES[resolution]


def tokens_in(patch_nums: tuple[int, ...]) -> int:
    return sum(p * p for p in patch_nums)


class ConfigError(ValueError):
    """An invalid setting; the message is one line naming it."""


@dataclass
class TokenizerConfig:
    """The multi-scale residual VQ autoencoder (official values by default)."""

    vocab_size: int = 4096
    z_channels: int = 32  # Cvae
    ch: int = 160
    ch_mult: tuple[int, ...] = (1, 1, 2, 2, 4)
    num_res_blocks: int = 2
    attn: bool = True  # self-attention in the deepest level and the middle
    dropout: float = 0.0
    in_channels: int = 3
    quant_conv_ks: int = 3
    quant_resi: float = 0.5  # phi mixing ratio r in h*(1-r) + conv(h)*r
    share_quant_resi: int = 4  # 0: one phi per scale, 1: one for all, n>=2: n phis
    beta: float = 0.25
    patch_nums: tuple[int, ...] = SCHEDULES[256]
    norm_groups: int = 32

    def __post_init__(self) -> None:
        self.ch_mult = tuple(int(m) for m in self.ch_mult)
        self.patch_nums = tuple(int(p) for p in self.patch_nums)
        if not self.patch_nums or any(p <= 0 for p in self.patch_nums):
            raise ConfigError(f"patch_nums must be positive side lengths, got {self.patch_nums}")
        if list(self.patch_nums) != sorted(self.patch_nums):
            raise ConfigError(f"patch_nums must be increasing, got {self.patch_nums}")
        if self.share_quant_resi < 0:
            raise ConfigError(f"share_quant_resi must be >= 0, got {self.share_quant_resi}")
        for c in {self.ch * m for m in self.ch_mult}:
            if c % self.norm_groups:
                raise ConfigError(f"channel width {c} is not divisible by {self.norm_groups} GroupNorm groups")

    @property
    def downsample(self) -> int:
        return 2 ** (len(self.ch_mult) - 1)

    @property
    def latent_side(self) -> int:
        return self.patch_nums[-1]

    @property
    def image_size(self) -> int:
        return self.latent_side * self.downsample

    @property
    def num_phis(self) -> int:
        if self.share_quant_resi == 0:
            return len(self.patch_nums)
        return self.share_quant_resi

    def check_image_size(self, size: int) -> None:
        if size % self.downsample or size // self.downsample != self.latent_side:
            raise ConfigError(
                f"image size {size} gives a latent side of {size / self.downsample:g}, but the last "
                f"patch number is {self.latent_side} (patch_nums {self.patch_nums}, downsample {self.downsample})"
            )


@dataclass
class TransformerConfig:
    """The next-scale transformer. `num_classes` for class models, `text_dim` for text models."""

    depth: int = 16
    embed_dim: int = 0  # 0: 64 * depth
    num_heads: int = 0  # 0: depth
    mlp_ratio: float = 4.0
    norm_eps: float = 1e-6
    shared_aln: bool = False
    attn_l2_norm: bool = True
    patch_nums: tuple[int, ...] = SCHEDULES[256]
    vocab_size: int = 4096
    z_channels: int = 32
    num_classes: int = 1000  # used when text_dim == 0
    text_dim: int = 0  # > 0: VAR-CLIP text conditioning with this embedding width
    cross_attn: bool = False  # text models only: cross-attention to text tokens in every block
    text_token_dim: int = 0  # width of the text token states for cross-attention (0: text_dim)
    # text models only: standardise the pooled embedding (LayerNorm, no parameters) before cond_proj.
    # Unit-norm sentence embeddings (MiniLM) have components ~1/sqrt(d), about 20x smaller than
    # CLIP's pooled output; unscaled, the condition path learns too slowly to separate captions
    # that differ in one word. Off in the official VAR-CLIP layout.
    text_norm: bool = False
    drop_rate: float = 0.0
    attn_drop_rate: float = 0.0
    drop_path_rate: float = -1.0  # < 0: the official 0.1 * depth / 24
    init_std: float = -1.0  # < 0: sqrt(1 / (3C))
    init_adaln: float = 0.5
    init_adaln_gamma: float = -1.0  # < 0: the official recipe by depth
    init_head: float = 0.02

    def __post_init__(self) -> None:
        self.patch_nums = tuple(int(p) for p in self.patch_nums)
        if self.embed_dim <= 0:
            self.embed_dim = 64 * self.depth
        if self.num_heads <= 0:
            self.num_heads = self.depth
        if self.drop_path_rate < 0:
            self.drop_path_rate = 0.1 * self.depth / 24
        if self.init_adaln_gamma < 0:
            self.init_adaln_gamma = official_adaln_gamma(self.depth)
        if self.embed_dim % self.num_heads:
            raise ConfigError(f"embed_dim {self.embed_dim} is not divisible by num_heads {self.num_heads}")
        if self.text_dim <= 0 and self.num_classes <= 0:
            raise ConfigError("a transformer needs num_classes > 0 or text_dim > 0")
        if self.cross_attn and self.text_dim <= 0:
            raise ConfigError("cross_attn needs a text model (text_dim > 0)")
        if self.text_norm and self.text_dim <= 0:
            raise ConfigError("text_norm needs a text model (text_dim > 0)")
        if not self.text_token_dim:
            self.text_token_dim = self.text_dim

    @property
    def is_text(self) -> bool:
        return self.text_dim > 0

    @property
    def L(self) -> int:
        return tokens_in(self.patch_nums)


def official_adaln_gamma(depth: int) -> float:
    """init_adaln_gamma of the released recipes: 1e-3 (<=20), 1e-4 (24), 1e-5 (30), 5e-6 (36)."""
    if depth <= 20:
        return 1e-3
    if depth <= 24:
        return 1e-4
    if depth <= 30:
        return 1e-5
    return 5e-6


@dataclass
class SamplingConfig:
    """How to draw tokens: the only container of sampling settings, checked here and nowhere
    else. The defaults are the `interactive` preset: what a call uses when nobody says otherwise."""

    cfg: float = 4.0
    cfg_schedule: Any = "linear"  # "linear" | "constant" | list of per-scale values | ("off_from", k)
    top_k: int = 900
    top_p: float = 0.95
    temperature: float = 1.0
    smooth: bool = False  # Gumbel-softmax mixture of code vectors ("more_smooth")
    seed: int | None = None
    per_sample_seeds: bool = False  # each image its own stream: independent of batch position

    def __post_init__(self) -> None:
        if self.top_k < 0:
            raise ConfigError(f"top_k must be >= 0 (0 = off), got {self.top_k}")
        if not 0.0 <= self.top_p <= 1.0:
            raise ConfigError(f"top_p must be in [0, 1] (0 = off), got {self.top_p}")
        if not self.temperature > 0:
            raise ConfigError(f"temperature must be > 0, got {self.temperature}")
        if not (math.isfinite(self.cfg) and self.cfg >= self.CFG_MIN):
            raise ConfigError(f"cfg must be a finite number >= {self.CFG_MIN:g} (0 = no guidance), got {self.cfg}")

    CFG_MIN = 0.0  # guidance strength t in (1+t)*cond - t*uncond: below 0 it would push towards the null

    def replace(self, **overrides: Any) -> "SamplingConfig":
        """A copy with `overrides` applied; None means "not given". Unknown names are refused."""
        names = [f.name for f in dataclasses.fields(self)]
        unknown = sorted(set(overrides) - set(names))
        if unknown:
            raise ConfigError(f"unknown sampling setting(s) {', '.join(unknown)}; known: {', '.join(names)}")
        return dataclasses.replace(self, **{k: v for k, v in overrides.items() if v is not None})

    def recommended(self) -> dict[str, Any]:
        """The settings a model directory records as its recommendation (RECOMMENDED_KEYS)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()
                if k in RECOMMENDED_KEYS}


# Named presets. A model directory may add its own recommendation (config.json "sampling", like a
# diffusers generation config) on top of `interactive` for the settings in RECOMMENDED_KEYS.
SAMPLING_PRESETS: dict[str, SamplingConfig] = {
    "interactive": SamplingConfig(),
    "official_fid": SamplingConfig(cfg=1.5, top_k=900, top_p=0.96),  # the official FID protocol
}
RECOMMENDED_KEYS = ("cfg", "cfg_schedule", "top_k", "top_p", "temperature")


def sampling_preset(name: str) -> SamplingConfig:
    if name not in SAMPLING_PRESETS:
        raise ConfigError(f"unknown sampling preset {name!r}; known: {', '.join(SAMPLING_PRESETS)}")
    return dataclasses.replace(SAMPLING_PRESETS[name])


def recommended_sampling(d: Any, where: str = "sampling") -> dict[str, Any]:
    """Validate a model's recommended sampling settings: a mapping with keys of RECOMMENDED_KEYS."""
    if d is None:
        return {}
    if not isinstance(d, dict):
        raise ConfigError(f"{where} must be a mapping of sampling settings, got {type(d).__name__}")
    unknown = sorted(set(d) - set(RECOMMENDED_KEYS))
    if unknown:
        raise ConfigError(f"{where}: unknown keys {', '.join(unknown)} (known: {', '.join(RECOMMENDED_KEYS)})")
    try:
        from_dict(SamplingConfig, dict(d))  # type and range checks
    except ConfigError as e:
        raise ConfigError(f"{where}: {e}") from None
    return dict(d)


# ---------------------------------------------------------------- named configs (timm-style)


def _tok(**kw: Any) -> TokenizerConfig:
    return TokenizerConfig(**kw)


TOKENIZERS: dict[str, TokenizerConfig] = {
    "vae_ch160v4096z32": _tok(),
    "vae_ch160v4096z32_512": _tok(patch_nums=SCHEDULES[512]),
    # tiny models for tests and CPU experiments: 32 px, latent 4x4 (downsample 8)
    "tiny": _tok(vocab_size=64, z_channels=8, ch=32, ch_mult=(1, 2, 2, 2), num_res_blocks=1,
                 patch_nums=(1, 2, 3, 4)),
    # the embedded emoji model: 64 px, downsample 8
    # (8 GroupNorm groups: with 32 channels in 32 groups the norm would act per channel and wipe
    # out each image's colour, which is what captions like "red apple" vs "green apple" are about)
    "emoji": _tok(vocab_size=512, z_channels=16, ch=32, ch_mult=(1, 2, 2, 4), num_res_blocks=1,
                  patch_nums=(1, 2, 3, 4, 6, 8), norm_groups=8),
}


def _var(depth: int, res: int = 256, **kw: Any) -> TransformerConfig:
    return TransformerConfig(depth=depth, patch_nums=SCHEDULES[res], **kw)


TRANSFORMERS: dict[str, TransformerConfig] = {
    "d16": _var(16),
    "d20": _var(20),
    "d24": _var(24),
    "d30": _var(30),
    "d36": _var(36, 512, shared_aln=True),
    "varclip_d16": _var(16, text_dim=768),
    "tiny": TransformerConfig(depth=2, embed_dim=64, num_heads=2, patch_nums=(1, 2, 3, 4), vocab_size=64,
                              z_channels=8, num_classes=10, drop_path_rate=0.0),
    "tiny_text": TransformerConfig(depth=2, embed_dim=64, num_heads=2, patch_nums=(1, 2, 3, 4), vocab_size=64,
                                   z_channels=8, text_dim=384, drop_path_rate=0.0),
    "emoji": TransformerConfig(depth=6, embed_dim=256, num_heads=4, patch_nums=(1, 2, 3, 4, 6, 8),
                               vocab_size=512, z_channels=16, text_dim=384, drop_path_rate=0.0, text_norm=True),
}


def named_tokenizer(name: str) -> TokenizerConfig:
    if name not in TOKENIZERS:
        raise ConfigError(f"unknown tokenizer config {name!r}; known: {', '.join(TOKENIZERS)}")
    return dataclasses.replace(TOKENIZERS[name])


def named_transformer(name: str) -> TransformerConfig:
    if name not in TRANSFORMERS:
        raise ConfigError(f"unknown transformer config {name!r}; known: {', '.join(TRANSFORMERS)}")
    return dataclasses.replace(TRANSFORMERS[name])


# ---------------------------------------------------------------- the one config loader
# Model configs (config.json), training configs (YAML + overrides) and sampling settings all go
# through `from_dict`: values are coerced to the annotated types (a YAML "1e-4" becomes a float,
# "true" a bool, a list a tuple) and every problem is ONE line naming the key.

TRUE_WORDS = frozenset({"true", "yes", "on", "1"})
FALSE_WORDS = frozenset({"false", "no", "off", "0"})


def parse_bool(value: Any, where: str) -> bool:
    """A bool, or one of TRUE_WORDS / FALSE_WORDS in any case."""
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, str)) and str(value).strip().lower() in TRUE_WORDS | FALSE_WORDS:
        return str(value).strip().lower() in TRUE_WORDS
    raise ConfigError(f"{where}: expected true/false, got {value!r}")


def _as_int(value: Any, where: str) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, (float, str)) and not isinstance(value, bool):
        try:
            f = float(value)
        except ValueError:
            f = math.nan
        if math.isfinite(f) and f.is_integer():
            return int(f)
    raise ConfigError(f"{where}: expected an integer, got {value!r}")


def _as_float(value: Any, where: str) -> float:
    if isinstance(value, (int, float, str)) and not isinstance(value, bool):
        try:
            return float(value)
        except ValueError:
            pass
    raise ConfigError(f"{where}: expected a number, got {value!r}")


def _coerce_seq(value: Any, tp: Any, where: str) -> Any:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if isinstance(value, str):
        value = [v.strip() for v in value.split(",")] if value.strip() else []
    if not isinstance(value, (list, tuple)):
        raise ConfigError(f"{where}: expected a list, got {value!r}")
    if origin is tuple and args and not (len(args) == 2 and args[1] is Ellipsis):
        if len(value) != len(args):
            raise ConfigError(f"{where}: expected {len(args)} values, got {len(value)}")
        return tuple(coerce(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
    item = args[0] if args else Any
    out = [coerce(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
    return tuple(out) if tuple in (origin, tp) else out


def coerce(value: Any, tp: Any, where: str) -> Any:
    """`value` as the annotated type `tp`, or a one-line ConfigError naming `where`."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return coerce(value, arg, where)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0] if errors else f"{where}: invalid value {value!r}")
    if origin is Literal:
        if isinstance(value, bool) and value not in args:  # YAML reads on/off/yes/no as booleans
            words = ("on", "true", "yes") if value else ("off", "false", "no")
            value = next((a for a in args if a in words), value)
        if value not in args:
            raise ConfigError(f"{where}: {value!r} is not one of {', '.join(map(repr, args))}")
        return value
    if dataclasses.is_dataclass(tp):
        if isinstance(tp, type) and isinstance(value, tp):
            return value
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: expected a mapping of {tp.__name__} fields, got {value!r}")
        return from_dict(tp, value, where)
    if origin in (list, tuple, Sequence) or tp in (list, tuple):
        return _coerce_seq(value, tp, where)
    if origin is dict or tp is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return dict(value)
    simple = {bool: parse_bool, int: _as_int, float: _as_float}
    if tp in simple:
        return simple[tp](value, where)
    if tp is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        raise ConfigError(f"{where}: expected a string, got {value!r}")
    if isinstance(tp, type) and isinstance(value, tp):
        return value
    raise ConfigError(f"{where}: cannot use {value!r} as {getattr(tp, '__name__', tp)}")


def check_keys(cls: type, keys: Iterable[str], where: str = "") -> None:
    """Refuse keys that are not fields of the dataclass `cls`: one line naming the first."""
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = [k for k in keys if k not in names]
    if unknown:
        key = f"{where}.{unknown[0]}" if where else str(unknown[0])
        raise ConfigError(f"unknown config key {key!r}; {where or cls.__name__} has: {', '.join(names)}")


def from_dict(cls: type[T], data: Mapping[str, Any] | None, where: str = "") -> T:
    """The (nested) dataclass `cls` from a mapping; unknown keys and bad values are one-line errors."""
    data = dict(data or {})
    check_keys(cls, data, where)
    hints = typing.get_type_hints(cls)
    kwargs = {k: coerce(v, hints[k], f"{where}.{k}" if where else k) for k, v in data.items()}
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{where or cls.__name__}: {str(e).splitlines()[0]}") from None


def to_dict(cfg: Any) -> Any:
    """A dataclass config as plain JSON/YAML data (tuples become lists), recursively."""
    if dataclasses.is_dataclass(cfg) and not isinstance(cfg, type):
        return {f.name: to_dict(getattr(cfg, f.name)) for f in dataclasses.fields(cfg)}
    if isinstance(cfg, (list, tuple)):
        return [to_dict(v) for v in cfg]
    if isinstance(cfg, dict):
        return {k: to_dict(v) for k, v in cfg.items()}
    return cfg


__all__ = [
    "SCHEDULES", "schedule_for", "tokens_in", "ConfigError", "TokenizerConfig", "TransformerConfig",
    "SamplingConfig", "TOKENIZERS", "TRANSFORMERS", "named_tokenizer", "named_transformer",
    "to_dict", "from_dict", "coerce", "check_keys", "parse_bool", "TRUE_WORDS", "FALSE_WORDS",
    "official_adaln_gamma", "RECOMMENDED_KEYS", "SAMPLING_PRESETS", "sampling_preset", "recommended_sampling",
]
