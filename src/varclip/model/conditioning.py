"""Conditioning: what the start token and the AdaLN modulation are computed from.

Class models embed a class id (`class_emb`, with index num_classes the null class); text models
project a text embedding (`cond_proj`) and learn a null vector in text space (`noise`), exactly
as VAR-CLIP. Both hand the transformer a (B, C) vector, so the transformer, the sampler, the
trainers and editing have one code path for both.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class Cond:
    """A batch of conditions: class ids (B,) int64, or text embeddings (B, D) with optional token
    states (B, T, Dt) and their mask (B, T) for cross-attention."""

    value: torch.Tensor
    tokens: torch.Tensor | None = None
    mask: torch.Tensor | None = None

    def __len__(self) -> int:
        return self.value.shape[0]

    @property
    def is_class(self) -> bool:
        return not self.value.is_floating_point()

    def to(self, device: torch.device | str) -> "Cond":
        def mv(t):
            return None if t is None else t.to(device)
        return Cond(mv(self.value), mv(self.tokens), mv(self.mask))

    def rows(self, idx: torch.Tensor | slice) -> "Cond":
        def pick(t):
            return None if t is None else t[idx]
        return Cond(pick(self.value), pick(self.tokens), pick(self.mask))

    def where(self, use_other: torch.Tensor, other: "Cond") -> "Cond":
        """Rows where `use_other` is True come from `other` (same batch size)."""
        m = use_other.to(self.value.device)
        value = torch.where(m.view(-1, *([1] * (self.value.ndim - 1))), other.value, self.value)
        if self.tokens is None:
            return replace(self, value=value)
        a, b = _pad_tokens(self, other)
        tokens = torch.where(m.view(-1, 1, 1), b.tokens, a.tokens)
        mask = torch.where(m.view(-1, 1), b.mask, a.mask)
        return Cond(value, tokens, mask)

    def repeat(self, n: int) -> "Cond":
        def rep(t):
            return None if t is None else t.repeat_interleave(n, dim=0)
        return Cond(rep(self.value), rep(self.tokens), rep(self.mask))


def _pad_tokens(a: Cond, b: Cond) -> tuple[Cond, Cond]:
    """Pad token states of two conditions to the same length (masked out)."""
    T = max(a.tokens.shape[1], b.tokens.shape[1])

    def pad(c: Cond) -> Cond:
        n = T - c.tokens.shape[1]
        mask = c.mask if c.mask is not None else torch.ones(c.tokens.shape[:2], dtype=torch.bool,
                                                             device=c.tokens.device)
        if n == 0:
            return Cond(c.value, c.tokens, mask.bool())
        return Cond(c.value, F.pad(c.tokens, (0, 0, 0, n)), F.pad(mask.bool(), (0, n), value=False))
    return pad(a), pad(b)


def cat_conds(a: Cond, b: Cond) -> Cond:
    """Concatenate two condition batches (e.g. conditional rows then unconditional rows)."""
    value = torch.cat((a.value, b.value.to(a.value.dtype)), dim=0)
    if a.tokens is None or b.tokens is None:
        return Cond(value)
    a, b = _pad_tokens(a, b)
    return Cond(value, torch.cat((a.tokens, b.tokens.to(a.tokens.dtype))), torch.cat((a.mask, b.mask)))


class ClassConditioning(nn.Module):
    def __init__(self, num_classes: int, dim: int):
        super().__init__()
        self.num_classes = num_classes
        self.class_emb = nn.Embedding(num_classes + 1, dim)

    def forward(self, cond: Cond) -> torch.Tensor:
        return self.class_emb(cond.value)

    def null(self, batch: int, device: torch.device | str) -> Cond:
        return Cond(torch.full((batch,), self.num_classes, dtype=torch.long, device=device))

    def random(self, batch: int, generator: torch.Generator | None, device: torch.device | str) -> Cond:
        """Classes drawn uniformly, consuming the generator exactly as the official sampler."""
        uniform = torch.full((1, self.num_classes), 1.0 / self.num_classes, device=device)
        return Cond(torch.multinomial(uniform, batch, replacement=True, generator=generator).reshape(batch))

    def validate(self, cond: Cond) -> None:
        v = cond.value
        if v.is_floating_point() or v.ndim != 1:
            raise ValueError("a class model is conditioned on class ids, not on text embeddings")
        bad = v[(v < 0) | (v > self.num_classes)]  # num_classes itself is the null class
        if bad.numel():
            raise ValueError(f"invalid class id {int(bad[0])}: this model has classes 0..{self.num_classes - 1} "
                             f"({self.num_classes} = null)")


class TextConditioning(nn.Module):
    """VAR-CLIP: cond = cond_proj(text embedding); the null condition is the learned `noise`."""

    def __init__(self, text_dim: int, dim: int, token_dim: int = 0, normalize: bool = False):
        super().__init__()
        self.text_dim, self.normalize = text_dim, normalize
        self.cond_proj = nn.Linear(text_dim, dim)
        self.noise = nn.Embedding(1, text_dim)
        # null token state for cross-attention models: one learned token
        self.null_tokens = nn.Parameter(torch.zeros(1, 1, token_dim)) if token_dim else None

    def forward(self, cond: Cond) -> torch.Tensor:
        value = cond.value.to(self.cond_proj.weight.dtype)
        if self.normalize:  # TransformerConfig.text_norm
            value = F.layer_norm(value, (self.text_dim,))
        return self.cond_proj(value)

    def null(self, batch: int, device: torch.device | str) -> Cond:
        value = self.noise.weight.expand(batch, -1)
        if self.null_tokens is None:
            return Cond(value)
        tokens = self.null_tokens.expand(batch, -1, -1)
        return Cond(value, tokens, torch.ones(batch, 1, dtype=torch.bool, device=tokens.device))

    def validate(self, cond: Cond) -> None:
        v = cond.value
        if not v.is_floating_point() or v.ndim != 2 or v.shape[1] != self.text_dim:
            raise ValueError(f"a text model needs text embeddings of shape (B, {self.text_dim}), "
                             f"got {tuple(v.shape)} {v.dtype}")


Conditioning = ClassConditioning | TextConditioning
