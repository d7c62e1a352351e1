"""The official optimiser recipe: AdamW with weight-decay exclusions, batch-scaled lr, the
warm-up / flat / linear-decay schedule, and gradient clipping.

Decay exclusions matter: decaying position/level embeddings, the AdaLN gammas or the attention
temperature (`scale_mul_1H11`) pulls them towards 0, which the official recipe avoids. The
exclusion is by name substring (the official rule) plus every tensor with ndim <= 1 (biases,
norms), so it applies unchanged to other models (the tokenizer trainer can pass its own keys).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from .config import OptimConfig, ScheduleConfig


def is_no_decay(name: str, param: torch.Tensor, no_decay_keys: Sequence[str]) -> bool:
    """True for tensors that get no weight decay: ndim <= 1, biases, and names with a key."""
    return param.ndim <= 1 or name.endswith("bias") or any(k in name for k in no_decay_keys)


def decay_split(model: nn.Module, no_decay_keys: Sequence[str]) -> tuple[list[str], list[str]]:
    """(names with weight decay, names without), trainable parameters only."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (no_decay if is_no_decay(name, p, no_decay_keys) else decay).append(name)
    return decay, no_decay


def param_groups(model: nn.Module, weight_decay: float, no_decay_keys: Sequence[str]) -> list[dict[str, Any]]:
    """Two AdamW groups: decayed and not; an empty group is left out."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (no_decay if is_no_decay(name, p, no_decay_keys) else decay).append(p)
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return [g for g in groups if g["params"]]


def peak_lr(cfg: OptimConfig, global_batch: int) -> float:
    """`lr` if set, else base_lr * global_batch / lr_ref_batch (the official scaling rule)."""
    return cfg.lr if cfg.lr > 0 else cfg.base_lr * global_batch / cfg.lr_ref_batch


def build_optimizer(model: nn.Module, cfg: OptimConfig, global_batch: int) -> torch.optim.AdamW:
    lr = peak_lr(cfg, global_batch)
    kw: dict[str, Any] = {"lr": lr, "betas": tuple(cfg.betas), "eps": cfg.eps}
    if cfg.fused:
        kw["fused"] = True
    opt = torch.optim.AdamW(param_groups(model, cfg.weight_decay, cfg.no_decay_keys), **kw)
    for g in opt.param_groups:
        g["peak_lr"] = lr
    return opt


def lr_factor(step: int, total: int, warmup: int, warmup_start: float = 0.005, flat_fraction: float = 0.05,
              end_factor: float = 0.1) -> float:
    """Multiplier of the peak lr at optimizer step `step` (0-based) of `total`.

    Warm-up: warmup_start -> 1 linearly over `warmup` steps. Then, with p the progress through
    the remaining steps (0 at the first, 1 at the last): 1 while p < flat_fraction, afterwards
    linear down to `end_factor` at p = 1.
    """
    if warmup > 0 and step < warmup:
        return warmup_start + (1.0 - warmup_start) * step / warmup
    span = max(1, total - 1 - warmup)
    p = min(1.0, max(0.0, (step - warmup) / span))
    if p < flat_fraction or flat_fraction >= 1.0:
        return 1.0
    return end_factor + (1.0 - end_factor) * (1.0 - p) / (1.0 - flat_fraction)


@dataclass
class LRSchedule:
    """Sets every group's lr to its `peak_lr` x `lr_factor(step)`; its state is the step count."""

    total: int
    warmup: int
    warmup_start: float = 0.005
    flat_fraction: float = 0.05
    end_factor: float = 0.1
    step: int = 0

    @classmethod
    def from_config(cls, cfg: ScheduleConfig, total: int) -> "LRSchedule":
        warmup = cfg.warmup_steps if cfg.warmup_steps >= 0 else round(cfg.warmup_fraction * total)
        return cls(total, min(warmup, total), cfg.warmup_start, cfg.flat_fraction, cfg.end_factor)

    def factor(self, step: int | None = None) -> float:
        return lr_factor(self.step if step is None else step, self.total, self.warmup, self.warmup_start,
                         self.flat_fraction, self.end_factor)

    def apply(self, optimizer: torch.optim.Optimizer) -> float:
        """Set the lr of the current step (call before optimizer.step()); returns it."""
        f = self.factor()
        lr = 0.0
        for g in optimizer.param_groups:
            g["lr"] = lr = g.get("peak_lr", g["lr"]) * f
        return lr

    def advance(self) -> None:
        self.step += 1

    def state_dict(self) -> dict[str, Any]:
        return {"step": self.step, "total": self.total, "warmup": self.warmup}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.step = int(state["step"])


def clip_grad_norm(params: Iterable[torch.Tensor], max_norm: float) -> float:
    """Clip the global gradient norm to `max_norm` (<= 0: measure only); returns the norm before
    clipping. Works for plain, DDP and FSDP2 (DTensor) parameters alike."""
    params = [p for p in params if p.grad is not None]
    if not params:
        return 0.0
    norm = torch.nn.utils.clip_grad_norm_(params, max_norm if max_norm > 0 else float("inf"))
    if hasattr(norm, "full_tensor"):
        norm = norm.full_tensor()
    return float(norm)


__all__ = ["is_no_decay", "decay_split", "param_groups", "peak_lr", "build_optimizer", "lr_factor", "LRSchedule",
           "clip_grad_norm"]
