"""Configuration dataclasses and the named model configs.

Every tunable number of the tokenizer and the transformer lives here. The scale schedules are
defined once (`SCHEDULES`) and referenced by name everywhere else.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

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
    """How to draw tokens. Defaults are the official FID-evaluation settings."""

    cfg: float = 1.5
    cfg_schedule: Any = "linear"  # "linear" | "constant" | list of per-scale values | ("off_from", k)
    top_k: int = 900
    top_p: float = 0.96
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
        if not math.isfinite(self.cfg):
            raise ConfigError(f"cfg must be finite, got {self.cfg}")


# Settings a model directory may recommend (config.json "sampling"), like a diffusers generation
# config; what an interactive call uses when neither the caller nor the model says otherwise.
INTERACTIVE_SAMPLING: dict[str, Any] = {"cfg": 4.0, "cfg_schedule": "linear", "top_k": 900, "top_p": 0.95,
                                        "temperature": 1.0}
RECOMMENDED_KEYS = tuple(INTERACTIVE_SAMPLING)


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


def to_dict(cfg: Any) -> dict[str, Any]:
    d = dataclasses.asdict(cfg)
    return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}


def _check_type(owner: str, name: str, annotation: str, value: Any) -> None:
    """Refuse a wrongly typed value from a config file before it reaches PyTorch."""
    base = annotation.replace(" | None", "")
    if value is None and "None" in annotation:
        return
    ok = {
        "int": isinstance(value, int) and not isinstance(value, bool),
        "float": isinstance(value, (int, float)) and not isinstance(value, bool),
        "bool": isinstance(value, bool),
        "str": isinstance(value, str),
        "tuple[int, ...]": isinstance(value, (list, tuple))
        and all(isinstance(v, int) and not isinstance(v, bool) for v in value),
    }.get(base, True)
    if not ok:
        raise ConfigError(f"invalid {owner} value: {name} must be {base}, got {value!r}")


def from_dict(cls: type, d: dict[str, Any]) -> Any:
    """Build a config from a dict, refusing unknown keys with one clear line."""
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - names)
    if unknown:
        raise ConfigError(f"unknown {cls.__name__} keys: {', '.join(unknown)}")
    for f in dataclasses.fields(cls):
        if f.name in d:
            _check_type(cls.__name__, f.name, str(f.type), d[f.name])
    try:
        return cls(**d)
    except (TypeError, ValueError) as e:
        if isinstance(e, ConfigError):
            raise
        raise ConfigError(f"invalid {cls.__name__} values: {str(e).splitlines()[0]}") from None


__all__ = [
    "SCHEDULES", "schedule_for", "tokens_in", "ConfigError", "TokenizerConfig", "TransformerConfig",
    "SamplingConfig", "TOKENIZERS", "TRANSFORMERS", "named_tokenizer", "named_transformer",
    "to_dict", "from_dict", "official_adaln_gamma", "RECOMMENDED_KEYS", "INTERACTIVE_SAMPLING",
    "recommended_sampling",
]
