"""Image reconstruction metrics on [0, 1] images, and codebook usage counters.

PSNR and SSIM are computed per image and then averaged over the data set (the usual
convention in tokenizer papers), so one badly reconstructed image cannot hide behind a
large, well reconstructed one. SSIM follows Wang et al. (2004): an 11x11 Gaussian window
with sigma 1.5, K1 = 0.01, K2 = 0.03, data range 1, only "valid" window positions (no
padding, so borders do not bias the score), averaged over channels and positions.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_K1 = 0.01
SSIM_K2 = 0.03


class Record:
    """`to_dict` / `to_json` of a result dataclass (nested dataclasses become dicts)."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)  # type: ignore[call-overload]

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1)


def _check_pair(a: torch.Tensor, b: torch.Tensor) -> None:
    if a.shape != b.shape or a.ndim != 4:
        raise ValueError(f"expected two image batches (B,C,H,W) of the same shape, got {tuple(a.shape)} "
                         f"and {tuple(b.shape)}")


def psnr(a: torch.Tensor, b: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """Per-image PSNR in dB (B,) of [0, data_range] images; +inf where the images are identical."""
    _check_pair(a, b)
    mse = (a.double() - b.double()).square().flatten(1).mean(1)
    return (10 * torch.log10(data_range ** 2 / mse)).float()  # x/0 -> inf, which is what we want


def gaussian_window(size: int = SSIM_WINDOW, sigma: float = SSIM_SIGMA) -> torch.Tensor:
    """The normalised 1-D Gaussian (size,) in float64."""
    x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-x.square() / (2 * sigma ** 2))
    return g / g.sum()


def _blur(x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """Separable valid Gaussian filtering of every channel of (B,C,H,W)."""
    C, k = x.shape[1], g.numel()
    gh = g.view(1, 1, k, 1).expand(C, 1, k, 1)
    gw = g.view(1, 1, 1, k).expand(C, 1, 1, k)
    return F.conv2d(F.conv2d(x, gh, groups=C), gw, groups=C)


def ssim(a: torch.Tensor, b: torch.Tensor, data_range: float = 1.0, window: int = SSIM_WINDOW,
         sigma: float = SSIM_SIGMA) -> torch.Tensor:
    """Per-image SSIM (B,) of [0, data_range] images (1.0 for identical images).

    Images smaller than the window use a window as large as the image (with a proportionally
    smaller sigma) rather than failing: tiny test images still get a meaningful number.
    """
    _check_pair(a, b)
    side = min(a.shape[-2:])
    if side < window:
        sigma = sigma * side / window
        window = side if side % 2 else side - 1
        window = max(window, 1)
    g = gaussian_window(window, sigma).to(a.device)
    x, y = a.double(), b.double()
    c1, c2 = (SSIM_K1 * data_range) ** 2, (SSIM_K2 * data_range) ** 2
    mu_x, mu_y = _blur(x, g), _blur(y, g)
    sxx = _blur(x * x, g) - mu_x.square()
    syy = _blur(y * y, g) - mu_y.square()
    sxy = _blur(x * y, g) - mu_x * mu_y
    num = (2 * mu_x * mu_y + c1) * (2 * sxy + c2)
    den = (mu_x.square() + mu_y.square() + c1) * (sxx + syy + c2)
    return (num / den).flatten(1).mean(1).float()


@dataclass
class MeanMeter:
    """A running mean that tolerates +inf (identical images have infinite PSNR)."""

    total: float = 0.0
    count: int = 0

    def update(self, values: torch.Tensor) -> None:
        self.total += float(values.double().sum())
        self.count += values.numel()

    @property
    def mean(self) -> float:
        return self.total / self.count if self.count else math.nan


@dataclass
class CodebookUsage:
    """Counts of code hits per scale; answers "which fraction of the codebook is used"."""

    num_scales: int
    vocab_size: int
    counts: torch.Tensor = field(init=False)

    def __post_init__(self) -> None:
        self.counts = torch.zeros(self.num_scales, self.vocab_size, dtype=torch.int64)

    def update(self, ids: list[torch.Tensor]) -> None:
        """ids: one (B, p_s^2) tensor of code indices per scale."""
        if len(ids) != self.num_scales:
            raise ValueError(f"expected {self.num_scales} scales of ids, got {len(ids)}")
        for s, idx in enumerate(ids):
            self.counts[s] += torch.bincount(idx.flatten().cpu(), minlength=self.vocab_size)

    def fraction_used(self) -> list[float]:
        """Per scale: the fraction of codes hit at least once."""
        return [(row > 0).float().mean().item() for row in self.counts]

    def fraction_used_any(self) -> float:
        """The fraction of codes hit at least once at any scale."""
        return (self.counts.sum(0) > 0).float().mean().item()

    def perplexity(self) -> list[float]:
        """Per scale: exp(entropy of the code distribution); V means perfectly uniform use."""
        out = []
        for row in self.counts.double():
            total = row.sum()
            if total == 0:
                out.append(0.0)
                continue
            p = row[row > 0] / total
            out.append(float(torch.exp(-(p * p.log()).sum())))
        return out


__all__ = ["psnr", "ssim", "gaussian_window", "MeanMeter", "CodebookUsage", "Record"]
