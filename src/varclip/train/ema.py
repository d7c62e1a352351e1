"""An exponential moving average of a model's parameters (not part of the official VAR recipe).

EMA weights usually sample better than the raw weights late in training and smooth out the
noise of small-batch runs. The shadow copies live beside the parameters with the same layout
(plain tensors, or DTensor shards under FSDP2), so updating is local and costs no
communication; only `state_dict` (checkpoints, export) gathers full tensors.
"""

from __future__ import annotations

import torch
from torch import nn

from .distributed import full_tensor


class EMA:
    """shadow <- decay * shadow + (1 - decay) * param, after every optimizer step."""

    def __init__(self, model: nn.Module, decay: float):
        if not 0.0 < decay < 1.0:
            raise ValueError(f"EMA decay must be in (0, 1), got {decay}")
        self.decay = decay
        named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        self.names = [n for n, _ in named]
        self.shadow = [p.detach().clone().float() for _, p in named]

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        params = dict(model.named_parameters())
        w = 1.0 - self.decay
        for name, s in zip(self.names, self.shadow):
            s.lerp_(params[name].detach().to(s.dtype), w)

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Full CPU tensors by parameter name (collective when parameters are sharded)."""
        return {n: full_tensor(s).detach().cpu() for n, s in zip(self.names, self.shadow)}

    @torch.no_grad()
    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        missing = [n for n in self.names if n not in state]
        if missing:
            raise ValueError(f"EMA state lacks {len(missing)} parameters, e.g. {missing[0]}")
        for i, (name, s) in enumerate(zip(self.names, self.shadow)):
            full = state[name].to(device=s.device, dtype=s.dtype)
            if hasattr(s, "device_mesh"):  # DTensor: keep only this rank's shard
                from torch.distributed.tensor import distribute_tensor
                self.shadow[i] = distribute_tensor(full, s.device_mesh, s.placements)
            else:
                s.copy_(full)


__all__ = ["EMA"]
