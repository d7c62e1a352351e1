"""Zero-shot editing helpers: masks from boxes or pictures. The sampling itself is the one
sampler (`varclip.sampling.sample_scales` with an `EditSpec`)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from .data.images import center_crop, pil_to_tensor, resize_shorter_side, to_rgb


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


def fit_image(img: Image.Image, size: int) -> torch.Tensor:
    """Any RGB image -> (3, size, size) in [-1, 1]: shorter side to `size`, center crop."""
    return pil_to_tensor(center_crop(resize_shorter_side(to_rgb(img), size), size))


def extend_canvas(img: Image.Image, size: int, factor: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Out-painting beyond the borders: the image, fitted to size/factor, centred on a white
    canvas of `size`; returns (canvas (3,size,size) in [-1,1], inside (size,size) 1 = image)."""
    if not factor > 1.0:
        raise ValueError(f"--extend must be > 1 (canvas size / image size), got {factor}")
    inner = max(1, round(size / factor))
    small = fit_image(img, inner)
    canvas = torch.ones(3, size, size)
    off = (size - inner) // 2
    canvas[:, off: off + inner, off: off + inner] = small
    inside = torch.zeros(size, size)
    inside[off: off + inner, off: off + inner] = 1.0
    return canvas, inside


def keep_mask_from_pixels(inside: torch.Tensor, side: int) -> torch.Tensor:
    """Pixel-level keep map (1 = keep) -> grid keep-mask: a cell is kept only if fully kept."""
    small = F.interpolate(inside[None, None].float(), size=(side, side), mode="area")[0, 0]
    return (small >= 0.999).float()


def mask_preview(keep: torch.Tensor, size: int) -> Image.Image:
    """The keep-mask shown at image size: white = regenerated, black = kept."""
    up = F.interpolate((1 - keep)[None, None].float(), size=(size, size), mode="nearest")[0, 0]
    return Image.fromarray((up.numpy() * 255).astype(np.uint8), mode="L").convert("RGB")
