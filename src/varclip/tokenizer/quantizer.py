"""Multi-scale residual vector quantizer with the phi refinement convs.

A latent map f (B, Cvae, P, P) becomes a pyramid of token maps, coarse to fine: at scale s the
remaining residual is area-downsampled to p_s x p_s, snapped to the nearest codes, and the code
map, bicubic-upsampled back to P x P and refined by phi_s, is added to f_hat and removed from
the residual. Every path below (encode, decode, teacher-forcing input, one inference step) goes
through `_upsample_phi`, so they cannot drift apart.

The quantizer holds no schedule: every method takes `pn` (patch_nums) from its caller, the
tokenizer or the transformer, so there is no second copy to fall out of step. Its weights fix only
the number of scales that usage statistics (and, with one phi per scale, phis) are kept for.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..config import ConfigError


class Phi(nn.Conv2d):
    """h*(1-r) + conv3x3(h)*r."""

    def __init__(self, channels: int, ratio: float):
        super().__init__(channels, channels, 3, 1, 1)
        self.ratio = abs(ratio)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h.mul(1 - self.ratio) + super().forward(h).mul_(self.ratio)


def phi_index(scale: int, num_scales: int, num_phis: int) -> int:
    """Which of `num_phis` convs serves `scale`: the nearest tick, decided in float64 as upstream."""
    if num_phis == 1:
        return 0
    n = num_phis
    ticks = np.linspace(1 / 3 / n, 1 - 1 / 3 / n, n) if n == 4 else np.linspace(1 / 2 / n, 1 - 1 / 2 / n, n)
    t = scale / (num_scales - 1) if num_scales > 1 else 0.0
    return int(np.argmin(np.abs(ticks - t)).item())


class PhiSet(nn.Module):
    """The phi convs in one of the three sharing modes; `get(s, K)` is the conv of scale s of K.

    Parameter names match the official layout: mode 1 `qresi`, mode 0 `<i>`, mode n `qresi_ls.<i>`.
    """

    def __init__(self, channels: int, ratio: float, share: int, num_scales: int):
        super().__init__()
        self.share = share
        make = (lambda: Phi(channels, ratio)) if abs(ratio) > 1e-6 else nn.Identity
        if share == 1:
            self.qresi = make()
        elif share == 0:
            for i in range(num_scales):
                self.add_module(str(i), make())
        else:
            self.qresi_ls = nn.ModuleList([make() for _ in range(share)])

    def get(self, scale: int, num_scales: int) -> nn.Module:
        if self.share == 1:
            return self.qresi
        phis = list(self.qresi_ls) if self.share > 1 else [m for n, m in self.named_children()]
        return phis[phi_index(scale, num_scales, len(phis))]


class MultiScaleQuantizer(nn.Module):
    def __init__(self, vocab_size: int, channels: int, num_scales: int, share: int = 4,
                 ratio: float = 0.5, beta: float = 0.25):
        super().__init__()
        self.vocab_size, self.channels, self.beta = vocab_size, channels, beta
        # registration order gives the official state-dict order
        self.quant_resi = PhiSet(channels, ratio, share, num_scales)
        self.embedding = nn.Embedding(vocab_size, channels)
        # codebook usage per scale, an EMA of hit counts (saved in official checkpoints)
        self.register_buffer("ema_vocab_hit_SV", torch.zeros(num_scales, vocab_size))

    # ------------------------------------------------------------------ helpers
    def _upsample_phi(self, h: torch.Tensor, s: int, pn: tuple[int, ...]) -> torch.Tensor:
        """Code map of scale s (B,C,p,p) -> its contribution to f_hat (B,C,P,P)."""
        P, K = pn[-1], len(pn)
        if s != K - 1:
            h = F.interpolate(h, size=(P, P), mode="bicubic")
        return self.quant_resi.get(s, K)(h)

    def nearest(self, z: torch.Tensor) -> torch.Tensor:
        """(N, C) -> nearest code ids by squared L2 distance."""
        w = self.embedding.weight
        d = torch.sum(z.square(), dim=1, keepdim=True) + torch.sum(w.square(), dim=1)
        d.addmm_(z, w.T, alpha=-2, beta=1)
        return d.argmin(dim=1)

    def lookup(self, idx: torch.Tensor, side: int) -> torch.Tensor:
        """(B, side*side) ids -> (B, C, side, side) code vectors."""
        return self.embedding(idx).transpose(1, 2).reshape(idx.shape[0], self.channels, side, side)

    def check_latent(self, f: torch.Tensor, pn: tuple[int, ...]) -> None:
        if f.shape[-1] != pn[-1] or f.shape[-2] != pn[-1]:
            raise ConfigError(f"latent side {tuple(f.shape[-2:])} does not equal the last patch number "
                              f"{pn[-1]} of patch_nums {tuple(pn)}")

    # ------------------------------------------------------------------ image side
    @torch.no_grad()
    def encode(self, f: torch.Tensor, pn: tuple[int, ...]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """latent -> (token ids per scale [(B, p_s^2)], cumulative f_hat after each scale)."""
        self.check_latent(f, pn)
        B, C, H, W = f.shape
        f_rest = f.detach().float().clone()
        f_hat = torch.zeros_like(f_rest)
        ids, fhats = [], []
        for s, p in enumerate(pn):
            z = F.interpolate(f_rest, size=(p, p), mode="area") if s != len(pn) - 1 else f_rest
            idx = self.nearest(z.permute(0, 2, 3, 1).reshape(-1, C)).view(B, p * p)
            h = self._upsample_phi(self.lookup(idx, p), s, pn)
            f_hat.add_(h)
            f_rest.sub_(h)
            ids.append(idx)
            fhats.append(f_hat.clone())
        return ids, fhats

    def decode(self, ids: list[torch.Tensor], pn: tuple[int, ...]) -> torch.Tensor:
        """token pyramid -> f_hat (B, C, P, P)."""
        return self.codes_to_fhat([self.lookup(i, p) for i, p in zip(ids, pn)], pn)

    def codes_to_fhat(self, codes: list[torch.Tensor], pn: tuple[int, ...]) -> torch.Tensor:
        B, P = codes[0].shape[0], pn[-1]
        f_hat = codes[0].new_zeros(B, self.channels, P, P, dtype=torch.float32)
        for s, h in enumerate(codes):
            f_hat.add_(self._upsample_phi(h.float(), s, pn))
        return f_hat

    # ------------------------------------------------------------------ transformer side
    def teacher_forcing_input(self, ids: list[torch.Tensor], pn: tuple[int, ...]) -> torch.Tensor:
        """(B, L - p_1^2, C): for scale s+1, the area-downsampled cumulative f_hat after scale s."""
        B, P = ids[0].shape[0], pn[-1]
        f_hat = torch.zeros(B, self.channels, P, P, device=ids[0].device)
        inputs = []
        for s in range(len(pn) - 1):
            f_hat.add_(self._upsample_phi(self.lookup(ids[s], pn[s]), s, pn))
            inputs.append(F.interpolate(f_hat, size=(pn[s + 1], pn[s + 1]), mode="area").flatten(2).transpose(1, 2))
        return torch.cat(inputs, dim=1) if inputs else f_hat.new_zeros(B, 0, self.channels)

    def next_input(self, s: int, f_hat: torch.Tensor, h: torch.Tensor, pn: tuple[int, ...]
                   ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Inference step: add scale s's code map h (B,C,p,p) to f_hat in place and return
        (f_hat, next scale's input (B, p_{s+1}^2, C), or None after the last scale)."""
        f_hat.add_(self._upsample_phi(h, s, pn))
        if s == len(pn) - 1:
            return f_hat, None
        nxt = pn[s + 1]
        return f_hat, F.interpolate(f_hat, size=(nxt, nxt), mode="area").flatten(2).transpose(1, 2)

    # ------------------------------------------------------------------ training
    def forward(self, f: torch.Tensor, pn: tuple[int, ...], ema_decay: float = 0.99
                ) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
        """Training pass: (straight-through f_hat, quantizer loss, token ids per scale).

        Loss per scale: beta*mse(f_hat.detach(), f) + mse(f_hat, f.detach()), averaged over scales.
        """
        self.check_latent(f, pn)
        if len(pn) != self.ema_vocab_hit_SV.shape[0]:
            raise ConfigError(f"{len(pn)} scales, but usage statistics for {self.ema_vocab_hit_SV.shape[0]}: "
                              f"re-schedule through VQTokenizer.set_schedule")
        B, C, H, W = f.shape
        f_nograd = f.detach()
        f_rest = f_nograd.clone()
        f_hat = torch.zeros_like(f_rest)
        loss = f.new_zeros(())
        ids = []
        for s, p in enumerate(pn):
            z = F.interpolate(f_rest, size=(p, p), mode="area") if s != len(pn) - 1 else f_rest
            with torch.no_grad():
                idx = self.nearest(z.permute(0, 2, 3, 1).reshape(-1, C).float())
            if self.training:
                hits = torch.bincount(idx, minlength=self.vocab_size).float()
                self.ema_vocab_hit_SV[s].mul_(ema_decay).add_(hits, alpha=1 - ema_decay)
            h = self._upsample_phi(self.lookup(idx.view(B, p * p), p), s, pn)
            f_hat = f_hat + h
            f_rest = f_rest - h.detach()
            loss = loss + F.mse_loss(f_hat, f_nograd) + F.mse_loss(f_hat.detach(), f).mul(self.beta)
            ids.append(idx.view(B, p * p))
        loss = loss / len(pn)
        f_hat_st = (f_hat.detach() - f_nograd).add_(f)
        return f_hat_st, loss, ids
