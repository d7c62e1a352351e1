"""The multi-scale VQ tokenizer: image <-> token pyramid."""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from ..config import ConfigError, TokenizerConfig
from .autoencoder import Decoder, Encoder
from .quantizer import MultiScaleQuantizer


class VQTokenizer(nn.Module):
    """Encoder -> quant_conv -> multi-scale quantizer -> post_quant_conv -> decoder.

    Images are float (B,3,H,W) in [-1,1]. The tokenizer holds its scale schedule as state
    (`cfg.patch_nums`, saved with it); `set_schedule` is the one way to change it, so one set of
    weights can serve several schedules (the official VAE serves 256 and 512 px).
    """

    def __init__(self, cfg: TokenizerConfig):
        super().__init__()
        self.cfg = cfg
        self.encoder = Encoder(cfg)
        self.decoder = Decoder(cfg)
        self.quantize = MultiScaleQuantizer(cfg.vocab_size, cfg.z_channels, len(cfg.patch_nums),
                                            cfg.share_quant_resi, cfg.quant_resi, cfg.beta)
        ks = cfg.quant_conv_ks
        self.quant_conv = nn.Conv2d(cfg.z_channels, cfg.z_channels, ks, 1, ks // 2)
        self.post_quant_conv = nn.Conv2d(cfg.z_channels, cfg.z_channels, ks, 1, ks // 2)

    @property
    def patch_nums(self) -> tuple[int, ...]:
        return self.cfg.patch_nums

    def set_schedule(self, patch_nums: tuple[int, ...]) -> "VQTokenizer":
        """Serve another scale schedule with the same weights. Usage statistics restart when the
        number of scales changes (they are per scale)."""
        cfg = dataclasses.replace(self.cfg, patch_nums=tuple(patch_nums))  # validates the schedule
        K = len(cfg.patch_nums)
        if self.cfg.share_quant_resi == 0 and K != len(self.patch_nums):
            raise ConfigError(f"this tokenizer has one phi per scale for {len(self.patch_nums)} scales; it cannot "
                              f"serve a schedule of {K} scales")
        self.cfg = cfg
        ema = self.quantize.ema_vocab_hit_SV
        if ema.shape[0] != K:
            self.quantize.ema_vocab_hit_SV = ema.new_zeros(K, ema.shape[1])
        return self

    def _check_image(self, img: torch.Tensor) -> None:
        side, f = self.patch_nums[-1], self.cfg.downsample
        if img.ndim != 4 or img.shape[1] != self.cfg.in_channels:
            raise ValueError(f"expected images of shape (B,{self.cfg.in_channels},H,W), got {tuple(img.shape)}")
        if img.shape[-1] != img.shape[-2] or img.shape[-1] != side * f:
            raise ValueError(f"image size {tuple(img.shape[-2:])} does not match this tokenizer: expected "
                             f"{side * f} px (last patch number {side} x downsample {f})")

    def latent(self, img: torch.Tensor) -> torch.Tensor:
        """image -> continuous latent f (B, Cvae, P, P)."""
        self._check_image(img)
        return self.quant_conv(self.encoder(img))

    @torch.no_grad()
    def encode(self, img: torch.Tensor) -> list[torch.Tensor]:
        """image -> token pyramid [(B, p_s^2)] coarse to fine."""
        return self.quantize.encode(self.latent(img), self.patch_nums)[0]

    @torch.no_grad()
    def encode_fhat(self, img: torch.Tensor) -> torch.Tensor:
        """image -> quantised latent f_hat after the last scale."""
        return self.quantize.encode(self.latent(img), self.patch_nums)[1][-1]

    def fhat_to_img(self, f_hat: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.post_quant_conv(f_hat)).clamp_(-1, 1)

    def decode(self, ids: list[torch.Tensor]) -> torch.Tensor:
        """token pyramid -> image in [-1, 1]."""
        return self.fhat_to_img(self.quantize.decode(ids, self.patch_nums))

    def forward(self, img: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
        """Training pass: (reconstruction, quantizer loss, token ids)."""
        f_hat, vq_loss, ids = self.quantize(self.latent(img), self.patch_nums)
        return self.decoder(self.post_quant_conv(f_hat)), vq_loss, ids
