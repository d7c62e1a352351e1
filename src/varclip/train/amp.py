"""Mixed-precision settings of the official trainer: the fp16 loss scaler and TF32.

The official fp16 scaler starts at 2^11 (not GradScaler's 2^16, which overflows the first
steps of a fresh model) and grows every 1000 clean steps, and its scale is capped at 32768:
fp16 overflows at 65504, so gradients scaled by 65536 would be at risk. bf16 needs no scaler.
"""

from __future__ import annotations

from typing import Any

import torch

INIT_SCALE = 2.0 ** 11
GROWTH_INTERVAL = 1000
MAX_SCALE = 32768.0


def make_grad_scaler(device_type: str, sharded: bool = False) -> Any:
    """A GradScaler (ShardedGradScaler under FSDP) with the official fp16 settings."""
    kw = {"init_scale": INIT_SCALE, "growth_interval": GROWTH_INTERVAL}
    if sharded:
        from torch.distributed.fsdp.sharded_grad_scaler import ShardedGradScaler
        return ShardedGradScaler(device_type, **kw)
    return torch.amp.GradScaler(device_type, **kw)


def scaler_step(scaler: Any, optimizer: torch.optim.Optimizer) -> None:
    """optimizer.step() through the scaler, then its update with the official cap: a scale
    above MAX_SCALE (as read before the update) is set back to MAX_SCALE."""
    scaler.step(optimizer)
    if scaler.get_scale() > MAX_SCALE:
        scaler.update(new_scale=MAX_SCALE)
    else:
        scaler.update()


def set_tf32(enabled: bool) -> None:
    """TF32 matmuls and cuDNN convolutions on CUDA (the official code turns both on)."""
    # the flags API that eval/inception.py's cudnn.flags(...) also uses: torch refuses to mix it
    # with the newer fp32_precision settings in one process
    torch.backends.cuda.matmul.allow_tf32 = enabled
    torch.backends.cudnn.allow_tf32 = enabled


__all__ = ["INIT_SCALE", "GROWTH_INTERVAL", "MAX_SCALE", "make_grad_scaler", "scaler_step", "set_tf32"]
