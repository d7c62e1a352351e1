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
               label_smoothing: float = 0.0, scale_weights: torch.Tensor | None = None,
               token_weights: torch.Tensor | None = None) -> TokenLoss:
    """Cross-entropy of logits (B, l, V) against token ids (B, l); `lvl` (l,) gives each token's scale.

    Without weights the loss is the mean over all B*l tokens (the official objective). With
    `scale_weights` (K,), token t weighs w[scale(t)] and the loss is sum(w*ce)/sum(w) per image,
    averaged over the batch, so uniform weights give back the official loss. `token_weights` (l,)
    (a progressive stage, see `Progressive.token_weights`) take precedence: sum(w*ce) per image,
    not renormalised, as the official code.
    """
    B, n, V = logits.shape
    logits = logits.float()
    ce = F.cross_entropy(logits.reshape(-1, V), target.reshape(-1), reduction="none",
                         label_smoothing=label_smoothing).view(B, n)
    if token_weights is not None:
        loss = ce.mul(token_weights.to(ce.device, ce.dtype)).sum(1).mean()
    elif scale_weights is None:
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


def scales_at(step: int, total_steps: int, num_scales: int, start_scales: int, fraction: float,
              warmup: float = 0.0) -> int:
    """Scales trained at iteration `step` of `total_steps` under progressive growth (0 or start 0:
    always all), the official stage rule: `start_scales` while step <= warmup (unrounded), all of
    them once step >= fraction * total, in between start + round(progress * scales to add) with
    progress = (step - warmup) / (fraction * total - warmup) and Python's half-to-even round."""
    if start_scales <= 0 or fraction <= 0 or start_scales >= num_scales:
        return num_scales
    if step <= warmup:
        return start_scales
    end = total_steps * fraction
    if step >= end:
        return num_scales
    progress = min(max((step - warmup) / (end - warmup), 0.0), 1.0)
    return start_scales + round(progress * (num_scales - start_scales))


@dataclass(frozen=True)
class Progressive:
    """Progressive training over `total` schedule iterations, as the official trainer.

    Why the details matter: the official loss weighs every token 1/L with L the FULL length, so
    a stage of few scales has a small loss (not renormalised) and clipping sees small gradients;
    a newly added scale's weight ramps in over `ramp` iterations (no ramp at the first stage,
    none once all scales train). Everything is a pure function of the iteration, so a resumed
    run continues the ramp where it was.
    """

    patch_nums: tuple[int, ...]
    total: int
    start_scales: int = 0
    fraction: float = 0.0
    warmup: float = 0.0  # unrounded warm-up iterations (the first stage is held through them)
    ramp: float = 0.0  # iterations over which a new scale's weight goes from 1/ramp to 1

    @property
    def enabled(self) -> bool:
        return self.scales(0) < len(self.patch_nums)

    def scales(self, it: int) -> int:
        return scales_at(it, self.total, len(self.patch_nums), self.start_scales, self.fraction, self.warmup)

    def ramp_weight(self, it: int) -> float:
        """Factor on the newest scale's token weights: max(min(n / ramp, 1), 0.01) at the n-th
        iteration (from 1) of a stage; 1 in the first stage and once all scales train."""
        k = self.scales(it)
        if k == len(self.patch_nums) or k == self.scales(0) or self.ramp <= 0:
            return 1.0
        lo, hi = 0, it  # first iteration of this stage (stages never shrink)
        while lo < hi:
            mid = (lo + hi) // 2
            lo, hi = (mid + 1, hi) if self.scales(mid) < k else (lo, mid)
        return max(min((it - lo + 1) / self.ramp, 1.0), 0.01)

    def token_weights(self, it: int, scale_weights: torch.Tensor | None = None) -> torch.Tensor | None:
        """(ed,) per-token loss weights of the tokens trained at `it`, or None once all scales
        train (the ordinary loss). Each token weighs 1/L (or its scale weight normalised over
        the full length); the newest scale's tokens are multiplied by `ramp_weight(it)`."""
        k, K = self.scales(it), len(self.patch_nums)
        if k == K:
            return None
        lvl = scale_index(self.patch_nums)
        w = torch.ones(len(lvl)) if scale_weights is None else scale_weights.float().cpu()[lvl]
        w = (w / w.sum())[: sum(p * p for p in self.patch_nums[:k])].clone()
        w[lvl[: len(w)] == k - 1] *= min(max(self.ramp_weight(it), 0.0), 1.0)
        return w


__all__ = ["scale_index", "TokenLoss", "token_loss", "drop_mask", "scales_at", "Progressive"]
