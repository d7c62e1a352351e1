"""The official optimiser recipe: AdamW with weight-decay exclusions, batch-scaled lr, the
warm-up + decay lr schedules, the cosine weight-decay schedule, and gradient clipping.

Decay exclusions matter: decaying position/level embeddings, the AdaLN gammas or the attention
temperature (`scale_mul_1H11`) pulls them towards 0, which the official recipe avoids. The
exclusion is by name substring (the official rule) plus every tensor with ndim <= 1 (biases,
norms), so it applies unchanged to other models (the tokenizer trainer can pass its own keys).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..config import ConfigError
from .config import OptimConfig, ScheduleConfig

# flat part (fraction of the post-warm-up iterations) of the official schedules that have one
KIND_FLAT = {"lin": 0.15, "lin0": 0.05, "lin00": 0.0, "exp": 0.15}
LR_KINDS = (*KIND_FLAT, "cos")  # and lin<T>, e.g. lin0.6 (what progressive training uses)


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


def param_groups(model: nn.Module, weight_decay: float, no_decay_keys: Sequence[str],
                 weight_decay_end: float | None = None) -> list[dict[str, Any]]:
    """Two AdamW groups: decayed and not; an empty group is left out. `wd_start`/`wd_end` are the
    ends of each group's weight-decay schedule (LRSchedule.apply)."""
    end = weight_decay if weight_decay_end is None or weight_decay_end < 0 else weight_decay_end
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (no_decay if is_no_decay(name, p, no_decay_keys) else decay).append(p)
    groups = [{"params": decay, "weight_decay": weight_decay, "wd_start": weight_decay, "wd_end": end},
              {"params": no_decay, "weight_decay": 0.0, "wd_start": 0.0, "wd_end": 0.0}]
    return [g for g in groups if g["params"]]


def peak_lr(cfg: OptimConfig, global_batch: int) -> float:
    """`lr` if set, else base_lr * global_batch / lr_ref_batch (the official scaling rule)."""
    return cfg.lr if cfg.lr > 0 else cfg.base_lr * global_batch / cfg.lr_ref_batch


def use_fused(cfg: OptimConfig, model: nn.Module) -> bool:
    """The fused AdamW kernel: on/off, or auto = on when every parameter is on CUDA (the official
    default there; off on CPU, where it gains nothing)."""
    if cfg.fused != "auto":
        return cfg.fused == "on"
    params = list(model.parameters())
    return bool(params) and all(p.device.type == "cuda" for p in params)


def build_optimizer(model: nn.Module, cfg: OptimConfig, global_batch: int) -> torch.optim.AdamW:
    lr = peak_lr(cfg, global_batch)
    kw: dict[str, Any] = {"lr": lr, "betas": tuple(cfg.betas), "eps": cfg.eps}
    if use_fused(cfg, model):
        kw["fused"] = True
    groups = param_groups(model, cfg.weight_decay, cfg.no_decay_keys, cfg.weight_decay_end)
    opt = torch.optim.AdamW(groups, **kw)
    for g in opt.param_groups:
        g["peak_lr"] = lr
    return opt


def check_lr_kind(kind: str, end_factor: float = 0.1) -> None:
    """A one-line ConfigError unless `kind` names an lr schedule (auto, LR_KINDS or lin<T>)."""
    if kind in ("auto", *LR_KINDS):
        if kind == "exp" and end_factor <= 0:
            raise ConfigError("schedule.kind exp needs end_factor > 0")
        return
    try:
        ok = kind.startswith("lin") and 0 < float(kind[3:]) <= 1
    except ValueError:
        ok = False
    if not ok:
        raise ConfigError(f"schedule.kind {kind!r} is not one of auto, {', '.join(LR_KINDS)} or lin<T> with "
                          f"0 < T <= 1 (e.g. lin0.6)")


def resolve_lr_kind(kind: str, progressive_fraction: float = 0.0) -> str:
    """`auto`: lin<pg> under progressive training (the official code replaces its schedule so),
    else lin0."""
    if kind != "auto":
        return kind
    return f"lin{progressive_fraction:g}" if progressive_fraction > 0 else "lin0"


def lr_factor(step: int, total: int, warmup: int, warmup_start: float = 0.005, flat_fraction: float = 0.05,
              end_factor: float = 0.1, kind: str = "lin0") -> float:
    """Multiplier of the peak lr at iteration `step` (0-based) of `total`, as the official
    `lr_wd_annealing`.

    Warm-up: warmup_start -> 1 linearly over `warmup` iterations. Then, with p the progress
    through the remaining iterations (0 at the first, 1 at the last) and e = end_factor:
    lin/lin0/lin00: 1 while p < flat_fraction, then linear down to e at p = 1;
    exp: 1 while p < flat_fraction, then exponential down to e; cos: half cosine from 1 to e;
    lin<T>: linear from 1 to m = (1 + e + (1-e)(1-T))/2 at p = T, then linear to e (no flat top).
    """
    if warmup > 0 and step < warmup:
        return warmup_start + (1.0 - warmup_start) * step / warmup
    span = max(1, total - 1 - warmup)
    p = min(1.0, max(0.0, (step - warmup) / span))
    rest, e = 1.0 - p, end_factor
    if kind == "cos":
        return e + (1 - e) * (0.5 + 0.5 * math.cos(math.pi * p))
    if kind not in KIND_FLAT:  # lin<T>
        T = float(kind[3:])
        mid = (1 + (e + (1 - e) * (1 - T))) / 2
        if p < T or T >= 1.0:
            return 1 + (mid - 1) * p / T
        return e + (mid - e) * rest / (1 - T)
    if p < flat_fraction or flat_fraction >= 1.0:
        return 1.0
    if kind == "exp":
        return math.exp((p - flat_fraction) / (1 - flat_fraction) * math.log(e))
    return e + (1.0 - e) * rest / (1.0 - flat_fraction)


def wd_factor(step: int, total: int) -> float:
    """Weight of the START value in the official weight-decay cosine (1 at iteration 0, 0 at the
    last, no warm-up): wd = end + (start - end) * wd_factor."""
    return 0.5 + 0.5 * math.cos(math.pi * step / (total - 1)) if total > 1 else 1.0


@dataclass
class LRSchedule:
    """Sets every group's lr to its `peak_lr` x `lr_factor(it)` and its weight decay along the
    cosine from `wd_start` to `wd_end` (param_groups); its state is the optimizer step count.

    The schedules run over `total` iterations: optimizer steps, or micro-batches when
    `ticks` (micro-batches per step) > 1, as the official code counts them. `warmup_exact` is the
    unrounded warm-up length (the progressive stage rule uses it; the lr ramp rounds it)."""

    total: int
    warmup: int
    warmup_start: float = 0.005
    flat_fraction: float = 0.05
    end_factor: float = 0.1
    step: int = 0
    kind: str = "lin0"
    ticks: int = 1
    warmup_exact: float = -1.0

    def __post_init__(self) -> None:
        if self.warmup_exact < 0:
            self.warmup_exact = float(self.warmup)

    @classmethod
    def from_config(cls, cfg: ScheduleConfig, total_steps: int, ticks: int = 1,
                    progressive_fraction: float = 0.0) -> "LRSchedule":
        """`ticks`: micro-batches per optimizer step (only when cfg.count_micro_batches)."""
        ticks = ticks if cfg.count_micro_batches else 1
        total = total_steps * ticks
        wp = cfg.warmup_steps * ticks if cfg.warmup_steps >= 0 else cfg.warmup_fraction * total
        kind = resolve_lr_kind(cfg.kind, progressive_fraction)
        flat = cfg.flat_fraction if cfg.flat_fraction >= 0 else KIND_FLAT.get(kind, 0.0)
        return cls(total, min(round(wp), total), cfg.warmup_start, flat, cfg.end_factor, kind=kind, ticks=ticks,
                   warmup_exact=float(wp))

    def iteration(self, step: int, micro: int | None = None) -> int:
        """The schedule iteration of micro-batch `micro` of optimizer step `step` (default: the
        last one, whose values the optimizer step uses: ac*k + ac - 1 as in the official code)."""
        micro = self.ticks - 1 if micro is None else min(micro, self.ticks - 1)
        return step * self.ticks + micro

    def factor(self, step: int | None = None) -> float:
        """The lr factor at iteration `step` (default: that of the current optimizer step)."""
        it = self.iteration(self.step) if step is None else step
        return lr_factor(it, self.total, self.warmup, self.warmup_start, self.flat_fraction, self.end_factor,
                         self.kind)

    def apply(self, optimizer: torch.optim.Optimizer, it: int | None = None) -> float:
        """Set lr and weight decay of iteration `it` (default: the current step's; call before
        optimizer.step()); returns the lr."""
        it = self.iteration(self.step) if it is None else it
        f, c = self.factor(it), wd_factor(it, self.total)
        lr = 0.0
        for g in optimizer.param_groups:
            g["lr"] = lr = g.get("peak_lr", g["lr"]) * f
            if "wd_end" in g:
                g["weight_decay"] = g["wd_end"] + (g["wd_start"] - g["wd_end"]) * c
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


__all__ = ["KIND_FLAT", "LR_KINDS", "is_no_decay", "decay_split", "param_groups", "peak_lr", "use_fused",
           "build_optimizer", "check_lr_kind", "resolve_lr_kind", "lr_factor", "wd_factor", "LRSchedule",
           "clip_grad_norm"]
