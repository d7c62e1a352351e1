"""The device and dtype names people type (`--device auto`, `--dtype bf16`), turned into torch
objects in one place, so every entry point and the pipeline accept and refuse the same words."""

from __future__ import annotations

import torch

from .config import ConfigError

# autocast dtypes by name; None: exact float32 (parity mode)
DTYPES: dict[str, torch.dtype | None] = {"fp32": None, "float32": None, "bf16": torch.bfloat16,
                                          "bfloat16": torch.bfloat16, "fp16": torch.float16, "float16": torch.float16}
DTYPE_CHOICES = ("fp32", "bf16", "fp16")


def parse_dtype(name: str | torch.dtype | None) -> torch.dtype | None:
    """A dtype from its name; None/fp32 means exact float32 (returned as None: no autocast)."""
    if name is None or isinstance(name, torch.dtype):
        return None if name in (None, torch.float32) else name
    if name not in DTYPES:
        raise ConfigError(f"unknown dtype {name!r}; use one of {', '.join(DTYPE_CHOICES)}")
    return DTYPES[name]


def dtype_name(dtype: torch.dtype | None) -> str:
    """The short name of an autocast dtype (None: fp32)."""
    return "fp32" if dtype in (None, torch.float32) else str(dtype).removeprefix("torch.")


def resolve_device(name: str | torch.device = "auto", local_rank: int = 0) -> str:
    """'auto' -> cuda (cuda:LOCAL_RANK under torchrun) when CUDA is there, else cpu; a bad name or
    a missing GPU is a one-line ConfigError."""
    name = str(name)
    cuda = torch.cuda.is_available()
    if name == "auto":
        name = "cuda" if cuda else "cpu"
    if name == "cuda" and local_rank:
        name = f"cuda:{local_rank}"
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"unknown device {name!r}; use cpu, cuda, cuda:N or auto") from None
    if device.type == "cuda" and not cuda:
        raise ConfigError(f"device {name} requested but CUDA is not available")
    return name


__all__ = ["DTYPES", "DTYPE_CHOICES", "parse_dtype", "dtype_name", "resolve_device"]
