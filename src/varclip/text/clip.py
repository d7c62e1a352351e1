"""The CLIP text tower and loaders for the weight files it comes in.

The module names follow OpenAI's layout (``token_embedding``, ``positional_embedding``,
``transformer.resblocks.{i}.attn.in_proj_weight`` ...), so an OpenAI or open_clip state dict
loads with ``load_state_dict`` as is; Hugging Face ``CLIPTextModel(WithProjection)`` weights are
renamed into that layout (q/k/v packed, projection transposed).

File formats and why they are read the way they are:

* ``.safetensors``: read with safetensors (no code execution possible).
* OpenAI's TorchScript archives (``ViT-L-14.pt`` ...): ``torch.load(weights_only=True)``
  refuses them, and plain ``torch.load`` would run a full Python unpickler. We use
  ``torch.jit.load(map_location="cpu").state_dict()`` (`varclip.weights`): TorchScript
  deserialisation is done by the C++ loader, which only rebuilds TorchScript types and tensors
  and never calls Python globals, so it is as safe as ``weights_only`` for our purpose.
* Any other ``.pt``/``.pth``/``.bin``: ``torch.load(map_location="cpu", weights_only=True)``.
"""

from __future__ import annotations

import json
import pickle
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import first_line
from ..weights import is_torchscript, torchscript_state, unwrap_state_dict

Activation = Literal["gelu", "quickgelu"]
ACTIVATIONS: tuple[str, ...] = ("gelu", "quickgelu")


class ClipLoadError(ValueError):
    """A weight file or folder that is missing, unreadable, or holds no CLIP text tower."""


@dataclass(frozen=True)
class ClipTextConfig:
    """Shape of a CLIP text tower; everything but the activation is read off the tensors."""

    width: int
    layers: int
    heads: int
    embed_dim: int
    context_length: int = 77
    vocab_size: int = 49408
    activation: Activation = "gelu"
    eps: float = 1e-5


class _SelfAttention(nn.Module):
    """Multi-head self-attention with OpenAI's packed ``in_proj`` (rows q, k, v); causal in the
    text tower, bidirectional in the image tower (`varclip.eval.clip_score`)."""

    def __init__(self, width: int, heads: int, causal: bool = True) -> None:
        super().__init__()
        if width % heads:
            raise ClipLoadError(f"width {width} is not divisible by {heads} heads")
        self.heads = heads
        self.causal = causal
        self.in_proj_weight = nn.Parameter(torch.empty(3 * width, width))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * width))
        self.out_proj = nn.Linear(width, width)
        nn.init.normal_(self.in_proj_weight, std=width**-0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, c = x.shape
        q, k, v = F.linear(x, self.in_proj_weight, self.in_proj_bias).split(c, dim=-1)
        q, k, v = (y.view(b, t, self.heads, c // self.heads).transpose(1, 2) for y in (q, k, v))
        # causal (text): position i attends to 0..i only. The default scale is 1/sqrt(head_dim), as in CLIP.
        y = F.scaled_dot_product_attention(q, k, v, is_causal=self.causal)
        return self.out_proj(y.transpose(1, 2).reshape(b, t, c))


class _Mlp(nn.Module):
    def __init__(self, width: int, activation: Activation) -> None:
        super().__init__()
        self.c_fc = nn.Linear(width, 4 * width)
        self.c_proj = nn.Linear(4 * width, width)
        self.activation = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.c_fc(x)
        h = h * torch.sigmoid(1.702 * h) if self.activation == "quickgelu" else F.gelu(h)
        return self.c_proj(h)


class ResidualAttentionBlock(nn.Module):
    """A pre-LN CLIP block; `cfg` is any tower config with width, heads, activation and eps
    (`ClipTextConfig`, or the image tower's `ClipVisionConfig`)."""

    def __init__(self, cfg: Any, causal: bool = True) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(cfg.width, eps=cfg.eps)
        self.attn = _SelfAttention(cfg.width, cfg.heads, causal)
        self.ln_2 = nn.LayerNorm(cfg.width, eps=cfg.eps)
        self.mlp = _Mlp(cfg.width, cfg.activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class ClipTransformer(nn.Module):
    """`cfg.layers` blocks under OpenAI's names (``resblocks.{i}``), shared by both CLIP towers."""

    def __init__(self, cfg: Any, causal: bool = True) -> None:
        super().__init__()
        self.resblocks = nn.ModuleList(ResidualAttentionBlock(cfg, causal) for _ in range(cfg.layers))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.resblocks:
            x = block(x)
        return x


@dataclass
class ClipTextOutput:
    pooled: torch.Tensor  # [B, embed_dim], projected (and L2-normalised if asked)
    hidden: torch.Tensor  # [B, T, width] after ln_final
    eot_index: torch.Tensor  # [B] position that was pooled


class ClipTextTower(nn.Module):
    """CLIP's text transformer: pre-LN causal blocks, pooled at the end token, projected."""

    def __init__(self, cfg: ClipTextConfig) -> None:
        super().__init__()
        if cfg.activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {cfg.activation!r}: use 'gelu' or 'quickgelu'")
        self.config = cfg
        self.token_embedding = nn.Embedding(cfg.vocab_size, cfg.width)
        self.positional_embedding = nn.Parameter(torch.randn(cfg.context_length, cfg.width) * 0.01)
        self.transformer = ClipTransformer(cfg)
        self.ln_final = nn.LayerNorm(cfg.width, eps=cfg.eps)
        self.text_projection = nn.Parameter(torch.randn(cfg.width, cfg.embed_dim) * cfg.width**-0.5)

    def encode(self, tokens: torch.Tensor, normalize: bool = False) -> ClipTextOutput:
        if tokens.shape[-1] > self.config.context_length:
            raise ValueError(f"{tokens.shape[-1]} tokens exceed the context length {self.config.context_length}")
        t = tokens.shape[-1]
        x = self.token_embedding(tokens) + self.positional_embedding[:t]
        x = self.ln_final(self.transformer(x))
        # The end token has the highest id; argmax returns its FIRST occurrence, as CLIP does.
        eot = tokens.argmax(dim=-1)
        pooled = x[torch.arange(x.shape[0], device=x.device), eot] @ self.text_projection
        if normalize:
            pooled = F.normalize(pooled, dim=-1)
        return ClipTextOutput(pooled, x, eot)

    def forward(self, tokens: torch.Tensor, normalize: bool = False) -> torch.Tensor:
        return self.encode(tokens, normalize).pooled


# ---------------------------------------------------------------------------- loading


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Tensors of one weight file, whatever its container (see the module docstring)."""
    path = Path(path)
    if not path.is_file():
        raise ClipLoadError(f"weight file not found: {path}")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        if is_torchscript(path):
            return torchscript_state(path)
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except ClipLoadError:
        raise
    except pickle.UnpicklingError:
        # torch's weights_only refusal; its text suggests weights_only=False, which we never do.
        raise ClipLoadError(f"cannot read weights from {path}: not a tensor file, or it holds Python objects "
                            "that safe loading refuses (re-save its state_dict)") from None
    except Exception as e:  # noqa: BLE001 - any reader failure means "not a weight file we can read"
        raise ClipLoadError(f"cannot read weights from {path}: {first_line(e)}") from None
    return unwrap_state_dict(obj, path, ClipLoadError)


_HF_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


def _hf_dir_weights(folder: Path) -> tuple[dict[str, torch.Tensor], dict]:
    cfg_path = folder / "config.json"
    weights = next((folder / n for n in _HF_WEIGHT_FILES if (folder / n).is_file()), None)
    if weights is None:
        shards = sorted(folder.glob("model-*.safetensors"))
        if not shards:
            raise ClipLoadError(f"{folder} has no model.safetensors or pytorch_model.bin: not a CLIP model folder")
        sd: dict[str, torch.Tensor] = {}
        for s in shards:
            sd.update(read_state_dict(s))
    else:
        sd = read_state_dict(weights)
    cfg = json.loads(cfg_path.read_text()) if cfg_path.is_file() else {}
    return sd, cfg


def _find_prefix(sd: dict[str, torch.Tensor], suffix: str) -> str | None:
    hits = sorted((k[: -len(suffix)] for k in sd if k.endswith(suffix)), key=len)
    return hits[0] if hits else None


def _from_hf(sd: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """Rename HF ``CLIPTextModel(WithProjection)`` keys to OpenAI's layout."""
    p = prefix + "text_model."
    out = {
        "token_embedding.weight": sd[p + "embeddings.token_embedding.weight"],
        "positional_embedding": sd[p + "embeddings.position_embedding.weight"],
        "ln_final.weight": sd[p + "final_layer_norm.weight"],
        "ln_final.bias": sd[p + "final_layer_norm.bias"],
    }
    i = 0
    while f"{p}encoder.layers.{i}.layer_norm1.weight" in sd:
        s, d = f"{p}encoder.layers.{i}.", f"transformer.resblocks.{i}."
        for kind in ("weight", "bias"):
            out[d + f"attn.in_proj_{kind}"] = torch.cat([sd[s + f"self_attn.{n}_proj.{kind}"] for n in "qkv"])
            for src, dst in (("self_attn.out_proj", "attn.out_proj"), ("layer_norm1", "ln_1"),
                             ("layer_norm2", "ln_2"), ("mlp.fc1", "mlp.c_fc"), ("mlp.fc2", "mlp.c_proj")):
                out[d + f"{dst}.{kind}"] = sd[s + f"{src}.{kind}"]
        i += 1
    proj = sd.get(prefix + "text_projection.weight")
    width = out["token_embedding.weight"].shape[1]
    # CLIPTextModel without projection: its pooled output is the raw feature (identity projection).
    out["text_projection"] = proj.t().contiguous() if proj is not None else torch.eye(width)
    return out


def extract_text_tower(sd: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], str]:
    """The text-tower tensors of a full CLIP state dict in OpenAI layout, and the source layout."""
    hf = _find_prefix(sd, "text_model.embeddings.token_embedding.weight")
    if hf is not None:
        return _from_hf(sd, hf), "hf"
    prefix = _find_prefix(sd, "token_embedding.weight")
    if prefix is None or prefix + "text_projection" not in sd:
        raise ClipLoadError("no CLIP text tower in the weights (no token_embedding.weight / text_projection)")
    keep = ("token_embedding.", "positional_embedding", "transformer.", "ln_final.", "text_projection")
    out = {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix) and k[len(prefix):].startswith(keep)}
    return out, "openai"


def infer_config(sd: dict[str, torch.Tensor], *, heads: int | None = None,
                 activation: Activation = "gelu", eps: float = 1e-5) -> ClipTextConfig:
    """Read the tower's shape off an OpenAI-layout text state dict.

    Heads cannot be seen in the tensors; CLIP itself uses width // 64, which is the default.
    """
    vocab, width = sd["token_embedding.weight"].shape
    if heads is None:
        heads = default_heads(int(width), "head count", "pass heads (spec option ?heads=N)")
    return ClipTextConfig(
        width=int(width), layers=count_blocks(sd), heads=int(heads), embed_dim=int(sd["text_projection"].shape[1]),
        context_length=int(sd["positional_embedding"].shape[0]), vocab_size=int(vocab),
        activation=activation, eps=eps,
    )


def count_blocks(sd: dict[str, torch.Tensor]) -> int:
    """How many ``transformer.resblocks.{i}`` an OpenAI-layout tower state dict holds."""
    return len({k.split(".")[2] for k in sd if k.startswith("transformer.resblocks.")})


def default_heads(width: int, what: str, hint: str, error: type[Exception] = ClipLoadError) -> int:
    """CLIP's head count, width // 64 (heads cannot be seen in the tensors); `hint` says how to
    pass another count when the width is no multiple of 64."""
    if width < 64 or width % 64:
        raise error(f"cannot infer the {what} of width {width} (CLIP uses width // 64): {hint}")
    return width // 64


def load_tower(tower: nn.Module, sd: dict[str, torch.Tensor], what: str,
               error: type[Exception] = ClipLoadError) -> nn.Module:
    """`tower` holding exactly the tensors of `sd` (as float32), frozen in eval mode."""
    missing, unexpected = tower.load_state_dict({k: v.float() for k, v in sd.items()}, strict=False)
    if missing or unexpected:
        raise error(f"CLIP {what} weights do not fit: missing {missing[:3]}, unexpected {unexpected[:3]}")
    return tower.eval().requires_grad_(False)


def build_tower(sd: dict[str, torch.Tensor], cfg: ClipTextConfig) -> ClipTextTower:
    return load_tower(ClipTextTower(cfg), sd, "text")


def load_clip_text_tower(path: str | Path, *, activation: Activation = "gelu",
                         heads: int | None = None) -> ClipTextTower:
    """Load the text tower from an OpenAI/open_clip file, a TorchScript archive, or an HF folder.

    ``activation`` is a choice, not read from the file: OpenAI trained with QuickGELU, but
    VAR-CLIP ran the same weights with exact GELU and its generators expect those embeddings.
    """
    path = Path(path)
    eps = 1e-5
    if path.is_dir():
        raw, hf_cfg = _hf_dir_weights(path)
        text_cfg = hf_cfg.get("text_config", hf_cfg)
        heads = heads or text_cfg.get("num_attention_heads")
        eps = float(text_cfg.get("layer_norm_eps", eps))
    elif path.exists():
        raw = read_state_dict(path)
    else:
        raise ClipLoadError(f"CLIP weights not found: {path}")
    try:
        sd, _layout = extract_text_tower(raw)
    except KeyError as e:
        raise ClipLoadError(f"incomplete CLIP text weights in {path}: missing {e.args[0]}") from None
    except ClipLoadError as e:
        raise ClipLoadError(f"{path}: {e}") from None
    try:
        cfg = infer_config(sd, heads=heads, activation=activation, eps=eps)
        return build_tower(sd, cfg)
    except ClipLoadError as e:
        raise ClipLoadError(f"{path}: {e}") from None


def with_activation(tower: ClipTextTower, activation: Activation) -> ClipTextTower:
    """Same weights, other activation (cheap: the MLPs only read the flag)."""
    cfg = replace(tower.config, activation=activation)
    out = build_tower(tower.state_dict(), cfg)
    return out


__all__ = [
    "ACTIVATIONS", "Activation", "ClipLoadError", "ClipTextConfig", "ClipTextOutput", "ClipTextTower",
    "ClipTransformer", "ResidualAttentionBlock", "build_tower", "count_blocks", "default_heads",
    "extract_text_tower", "infer_config", "load_clip_text_tower", "load_tower", "read_state_dict", "with_activation",
]
