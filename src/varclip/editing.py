"""Zero-shot editing helpers: masks from boxes or pictures. The sampling itself is the one
sampler (`varclip.sampling.sample_scales` with an `EditSpec`)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F


def box_mask(box: Sequence[float], side: int, mode: str = "inpaint") -> torch.Tensor:
    """(side, side) keep-mask from a relative box [y0, x0, y1, x1].

    inpaint: regenerate inside the box (mask 0 there); outpaint: keep only the inside.
    """
    if len(box) != 4:
        raise ValueError(f"a box has 4 numbers y0,x0,y1,x1; got {len(box)}")
    y0, x0, y1, x1 = (float(v) for v in box)
    if not all(0.0 <= v <= 1.0 for v in (y0, x0, y1, x1)):
        raise ValueError(f"box coordinates must be in [0, 1], got {list(box)}")
    if y1 <= y0 or x1 <= x0:
        raise ValueError(f"box must have y1 > y0 and x1 > x0, got {list(box)}")
    if mode not in ("inpaint", "outpaint"):
        raise ValueError(f"mode must be inpaint or outpaint, got {mode!r}")
    inside = torch.zeros(side, side)
    inside[round(y0 * side): round(y1 * side), round(x0 * side): round(x1 * side)] = 1.0
    return 1.0 - inside if mode == "inpaint" else inside


def picture_mask(regenerate: torch.Tensor, side: int) -> torch.Tensor:
    """Keep-mask from a picture (H, W) in [0, 1] where white (1) means regenerate."""
    if regenerate.ndim != 2:
        raise ValueError(f"a mask picture must be one channel (H, W), got shape {tuple(regenerate.shape)}")
    small = F.interpolate(regenerate[None, None].float(), size=(side, side), mode="area")[0, 0]
    return (small <= 0.5).float()
