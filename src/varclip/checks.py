"""The result record shared by every parity check (`varclip parity`)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch


@dataclass
class Check:
    """One comparison against a golden tensor; `ok` is the verdict."""

    name: str
    max_abs_diff: float | None
    tol: float
    ok: bool
    note: str = ""

    def to_dict(self) -> dict:
        d = asdict(self)
        if not d["note"]:
            d.pop("note")
        return d


def compare(name: str, got: torch.Tensor, want: torch.Tensor, tol: float) -> Check:
    """Max-abs-diff check; integer tensors must match exactly whatever `tol` says."""
    if tuple(got.shape) != tuple(want.shape):
        return Check(name, None, tol, False, f"shape {tuple(got.shape)} != expected {tuple(want.shape)}")
    if not want.is_floating_point():
        diff = float((got.long() != want.long()).sum())
        return Check(name, diff, 0.0, diff == 0, "" if diff == 0 else f"{int(diff)} indices differ")
    diff = float((got.double() - want.double()).abs().max()) if want.numel() else 0.0
    return Check(name, diff, tol, diff <= tol)


def not_implemented(name: str) -> Check:
    return Check(name, None, 0.0, False, "not implemented")
