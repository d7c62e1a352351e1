"""A small pure-PyTorch BERT encoder (last hidden states) and a WordPiece tokenizer.

Why: loading all-MiniLM-L6-v2 through ``transformers`` costs ~3 CPU s of imports (torch._dynamo,
sympy, scipy) per process, most of a fresh ``varclip generate``. This module runs the same
weights with the same ops as transformers' ``BertModel`` (SDPA attention, boolean padding mask
skipped when nothing is padded, exact GELU, LayerNorm eps from the config), so its outputs are
bit-identical (tests/test_text_bert.py checks it against transformers), and tokenises with the
Rust ``tokenizers`` package from the model's own ``tokenizer.json``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F


class BertLoadError(ValueError):
    """A BERT folder cannot be loaded (one-line message)."""


@dataclass(frozen=True)
class BertConfig:
    """The few config.json fields the encoder forward needs."""

    hidden: int
    heads: int
    layers: int
    eps: float
    max_positions: int

    @staticmethod
    def from_json(path: Path) -> "BertConfig":
        try:
            cfg = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise BertLoadError(f"unreadable {path}: {str(e).splitlines()[0]}") from None
        if cfg.get("model_type") != "bert" or cfg.get("hidden_act", "gelu") != "gelu":
            raise BertLoadError(f"{path} is not a BERT model with exact GELU")
        if cfg.get("position_embedding_type", "absolute") != "absolute" or cfg.get("is_decoder"):
            raise BertLoadError(f"{path}: only absolute positions and encoder-only BERT are supported")
        try:
            return BertConfig(int(cfg["hidden_size"]), int(cfg["num_attention_heads"]),
                              int(cfg["num_hidden_layers"]), float(cfg.get("layer_norm_eps", 1e-12)),
                              int(cfg.get("max_position_embeddings", 512)))
        except (KeyError, TypeError, ValueError) as e:
            raise BertLoadError(f"{path} lacks a BERT field: {e}") from None


class BertEncoderModel:
    """BERT without pooler: ids (B, T) + padding mask (B, T) -> last hidden states (B, T, D).

    Plain functions over a weight dict (no nn.Module init: random initialisation of weights
    that are overwritten anyway would cost load time). Inference only.
    """

    def __init__(self, config: BertConfig, weights: dict[str, torch.Tensor]) -> None:
        self.config = config
        self.w = weights
        needed = ["embeddings.word_embeddings.weight", "embeddings.position_embeddings.weight",
                  "embeddings.token_type_embeddings.weight", "embeddings.LayerNorm.weight"]
        needed += [f"encoder.layer.{i}.output.LayerNorm.bias" for i in range(config.layers)]
        missing = [k for k in needed if k not in weights]
        if missing:
            raise BertLoadError(f"BERT weights lack {len(missing)} tensors (e.g. {missing[0]})")

    @staticmethod
    def load(folder: Path) -> "BertEncoderModel":
        """From a transformers BERT folder with config.json and model.safetensors."""
        from safetensors.torch import load_file

        st = folder / "model.safetensors"
        if not st.is_file():
            raise BertLoadError(f"{folder} has no model.safetensors")
        weights = {k.removeprefix("bert."): v for k, v in load_file(str(st)).items()}
        return BertEncoderModel(BertConfig.from_json(folder / "config.json"), weights)

    def to(self, device: torch.device) -> "BertEncoderModel":
        self.w = {k: v.to(device) for k, v in self.w.items()}
        return self

    def _ln(self, x: torch.Tensor, name: str) -> torch.Tensor:
        return F.layer_norm(x, (x.shape[-1],), self.w[name + ".weight"], self.w[name + ".bias"], self.config.eps)

    def _lin(self, x: torch.Tensor, name: str) -> torch.Tensor:
        return F.linear(x, self.w[name + ".weight"], self.w[name + ".bias"])

    def __call__(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Last hidden states; `mask` is bool (B, T), True at real tokens."""
        b, t = ids.shape
        if t > self.config.max_positions:
            raise BertLoadError(f"{t} tokens exceed the model's {self.config.max_positions} positions")
        w, cfg = self.w, self.config
        # same order of additions as transformers: (word + token type 0) + position
        x = F.embedding(ids, w["embeddings.word_embeddings.weight"])
        x = x + F.embedding(torch.zeros_like(ids), w["embeddings.token_type_embeddings.weight"])
        x = x + F.embedding(torch.arange(t, device=ids.device)[None, :], w["embeddings.position_embeddings.weight"])
        x = self._ln(x, "embeddings.LayerNorm")
        # transformers skips the SDPA mask when nothing is padded; otherwise a bool (B, 1, T, T) mask
        attn_mask = None if bool(mask.all()) else mask[:, None, None, :].expand(b, 1, t, t).contiguous()
        head = cfg.hidden // cfg.heads
        scale = head ** -0.5
        for i in range(cfg.layers):
            p = f"encoder.layer.{i}."
            q, k, v = (self._lin(x, p + "attention.self." + n).view(b, t, -1, head).transpose(1, 2)
                       for n in ("query", "key", "value"))
            a = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, dropout_p=0.0, scale=scale,
                                               is_causal=False)
            a = a.transpose(1, 2).contiguous().reshape(b, t, -1).contiguous()
            x = self._ln(self._lin(a, p + "attention.output.dense") + x, p + "attention.output.LayerNorm")
            h = F.gelu(self._lin(x, p + "intermediate.dense"))
            x = self._ln(self._lin(h, p + "output.dense") + x, p + "output.LayerNorm")
        return x


class WordPieceTokenizer:
    """The model's tokenizer.json through the Rust ``tokenizers`` package, with truncation to
    ``max_length`` (keeping [CLS] ... [SEP] like transformers' longest_first) and right padding
    to the batch's longest row done here, so the number of dropped tokens is known."""

    def __init__(self, path: Path, max_length: int) -> None:
        from tokenizers import Tokenizer

        try:
            self.tok = Tokenizer.from_file(str(path))
        except Exception as e:  # tokenizers raises its own Exception type
            raise BertLoadError(f"cannot read the tokenizer {path}: {str(e).splitlines()[0]}") from None
        self.tok.no_truncation()
        self.tok.no_padding()
        pad = self.tok.token_to_id("[PAD]")
        self.pad_id = 0 if pad is None else pad
        self.max_length = max_length

    def __call__(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor, list[int]]:
        """(ids (B, T) long, mask (B, T) bool, tokens dropped per text)."""
        rows, dropped = [], []
        for enc in self.tok.encode_batch(texts, add_special_tokens=True):
            ids = enc.ids
            dropped.append(max(0, len(ids) - self.max_length))
            if len(ids) > self.max_length:
                ids = ids[: self.max_length - 1] + ids[-1:]  # keep the final [SEP]
            rows.append(ids)
        t = max(len(r) for r in rows)
        ids_t = torch.full((len(rows), t), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), t), dtype=torch.bool)
        for i, r in enumerate(rows):
            ids_t[i, : len(r)] = torch.tensor(r, dtype=torch.long)
            mask[i, : len(r)] = True
        return ids_t, mask, dropped


__all__ = ["BertConfig", "BertEncoderModel", "BertLoadError", "WordPieceTokenizer"]
