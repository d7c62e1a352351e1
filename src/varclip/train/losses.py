"""The generator's training objective: cross-entropy over every token of the pyramid, plus the
condition-dropout draw and the progressive scale schedule that decide what a step sees.

Per-scale numbers are reported because the total hides what matters: the 1x1 scale is nearly
solved early while the finest scales carry most tokens and stay near chance (a token accuracy of
a few percent is normal for VAR).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F

from ..data.images import mix_seed

_DROP_SALT = 0xD409


def scale_index(patch_nums: tuple[int, ...]) -> torch.Tensor:
    """(L,) scale id of every token."""
    return torch.cat([torch.full((p * p,), s, dtype=torch.long) for s, p in enumerate(patch_nums)])


@dataclass
class TokenLoss:
    loss: torch.Tensor  # scalar, the optimised value
    scale_loss: torch.Tensor  # (K,) mean CE per scale (NaN for scales not trained at this step)
    scale_acc: torch.Tensor  # (K,) token accuracy per scale
    acc: torch.Tensor  # scalar, accuracy over all trained tokens


def token_loss(logits: torch.Tensor, target: torch.Tensor, lvl: torch.Tensor, num_scales: int,
               label_smoothing: float = 0.0, scale_weights: torch.Tensor | None = None) -> TokenLoss:
    """Cross-entropy of logits (B, l, V) against token ids (B, l); `lvl` (l,) gives each token's scale.

    Without weights the loss is the mean over all B*l tokens (the official objective). With
    `scale_weights` (K,), token t weighs w[scale(t)] and the loss is sum(w*ce)/sum(w) per image,
    averaged over the batch, so uniform weights give back the official loss.
    """
    B, n, V = logits.shape
    logits = logits.float()
    ce = F.cross_entropy(logits.reshape(-1, V), target.reshape(-1), reduction="none",
                         label_smoothing=label_smoothing).view(B, n)
    if scale_weights is None:
        loss = ce.mean()
    else:
        w = scale_weights.to(ce.device, ce.dtype)[lvl]
        loss = (ce * w).sum(1).div(w.sum().clamp_min(1e-12)).mean()
    with torch.no_grad():
        hit = (logits.argmax(-1) == target).float()
        lvl = lvl.to(ce.device)
        count = torch.zeros(num_scales, device=ce.device).index_add_(0, lvl, torch.ones_like(lvl, dtype=torch.float))
        count = count * B
        s_loss = torch.zeros(num_scales, device=ce.device).index_add_(0, lvl, ce.detach().sum(0)) / count
        s_acc = torch.zeros(num_scales, device=ce.device).index_add_(0, lvl, hit.sum(0)) / count
    return TokenLoss(loss, s_loss, s_acc, hit.mean())


def drop_mask(global_batch: int, rate: float, mode: Literal["bernoulli", "exact"], seed: int, step: int
              ) -> torch.Tensor:
    """(global_batch,) bool: which rows of a step's GLOBAL batch get the null condition.

    A pure function of (seed, step), drawn over the global batch (rank-major, then accumulation
    micro-batches): every process computes the same mask and takes its own rows, so 1 and N
    processes, with or without accumulation, train on the same conditions, and a resumed run
    draws the same masks. bernoulli: each row with probability `rate` (VAR);
    exact: exactly floor(rate * B) random rows (VAR-CLIP).
    """
    if rate <= 0:
        return torch.zeros(global_batch, dtype=torch.bool)
    gen = torch.Generator().manual_seed(mix_seed(seed, _DROP_SALT, step))
    if mode == "bernoulli":
        return torch.rand(global_batch, generator=gen) < rate
    n = math.floor(rate * global_batch)
    mask = torch.zeros(global_batch, dtype=torch.bool)
    mask[torch.randperm(global_batch, generator=gen)[:n]] = True
    return mask


def scales_at(step: int, total_steps: int, num_scales: int, start_scales: int, fraction: float) -> int:
    """Scales trained at `step` under progressive growth: `start_scales` at step 0, one more at
    even intervals, all of them from `fraction` of training on (0 or start 0: always all)."""
    if start_scales <= 0 or fraction <= 0 or start_scales >= num_scales:
        return num_scales
    grow_steps = max(1, round(fraction * total_steps))
    if step >= grow_steps:
        return num_scales
    return min(num_scales, start_scales + (num_scales - start_scales + 1) * step // grow_steps)


__all__ = ["scale_index", "TokenLoss", "token_loss", "drop_mask", "scales_at"]
