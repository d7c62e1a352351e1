"""The multi-scale VQ tokenizer: image <-> token pyramid."""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from ..config import TokenizerConfig
from .autoencoder import Decoder, Encoder
from .quantizer import MultiScaleQuantizer


class VQTokenizer(nn.Module):
    """Encoder -> quant_conv -> multi-scale quantizer -> post_quant_conv -> decoder.

    Images are float (B,3,H,W) in [-1,1]. Every method takes an optional `patch_nums` so one
    set of weights serves several schedules (the official VAE serves 256 and 512 px).
    """

    def __init__(self, cfg: TokenizerConfig):
        super().__init__()
        self.cfg = cfg
        self.encoder = Encoder(cfg)
        self.decoder = Decoder(cfg)
        self.quantize = MultiScaleQuantizer(cfg.vocab_size, cfg.z_channels, cfg.patch_nums,
                                            cfg.share_quant_resi, cfg.quant_resi, cfg.beta)
        ks = cfg.quant_conv_ks
        self.quant_conv = nn.Conv2d(cfg.z_channels, cfg.z_channels, ks, 1, ks // 2)
        self.post_quant_conv = nn.Conv2d(cfg.z_channels, cfg.z_channels, ks, 1, ks // 2)

    @property
    def patch_nums(self) -> tuple[int, ...]:
        return self.cfg.patch_nums

    def set_schedule(self, patch_nums: tuple[int, ...]) -> "VQTokenizer":
        """Serve another scale schedule with the same weights (the official VAE serves 256 and
        512 px). Usage statistics restart when the number of scales changes."""
        patch_nums = tuple(patch_nums)
        if patch_nums == tuple(self.patch_nums):
            return self
        if self.cfg.share_quant_resi == 0 and len(patch_nums) != len(self.patch_nums):
            raise ValueError(f"this tokenizer has one phi per scale for {len(self.patch_nums)} scales; it cannot "
                             f"serve a schedule of {len(patch_nums)} scales")
        self.cfg = dataclasses.replace(self.cfg, patch_nums=patch_nums)
        self.quantize.patch_nums = patch_nums
        ema = self.quantize.ema_vocab_hit_SV
        if ema.shape[0] != len(patch_nums):
            self.quantize.ema_vocab_hit_SV = ema.new_zeros(len(patch_nums), ema.shape[1])
        return self

    def _check_image(self, img: torch.Tensor, patch_nums: tuple[int, ...] | None) -> None:
        pn = patch_nums or self.patch_nums
        if img.ndim != 4 or img.shape[1] != self.cfg.in_channels:
            raise ValueError(f"expected images of shape (B,{self.cfg.in_channels},H,W), got {tuple(img.shape)}")
        if img.shape[-1] != img.shape[-2] or img.shape[-1] != pn[-1] * self.cfg.downsample:
            raise ValueError(f"image size {tuple(img.shape[-2:])} does not match this tokenizer: expected "
                             f"{pn[-1] * self.cfg.downsample} px (last patch number {pn[-1]} x downsample "
                             f"{self.cfg.downsample})")

    def latent(self, img: torch.Tensor, patch_nums: tuple[int, ...] | None = None) -> torch.Tensor:
        """image -> continuous latent f (B, Cvae, P, P)."""
        self._check_image(img, patch_nums)
        return self.quant_conv(self.encoder(img))

    @torch.no_grad()
    def encode(self, img: torch.Tensor, patch_nums: tuple[int, ...] | None = None) -> list[torch.Tensor]:
        """image -> token pyramid [(B, p_s^2)] coarse to fine."""
        return self.quantize.encode(self.latent(img, patch_nums), patch_nums)[0]

    @torch.no_grad()
    def encode_fhat(self, img: torch.Tensor, patch_nums: tuple[int, ...] | None = None) -> torch.Tensor:
        """image -> quantised latent f_hat after the last scale."""
        return self.quantize.encode(self.latent(img, patch_nums), patch_nums)[1][-1]

    def fhat_to_img(self, f_hat: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.post_quant_conv(f_hat)).clamp_(-1, 1)

    def decode(self, ids: list[torch.Tensor], patch_nums: tuple[int, ...] | None = None) -> torch.Tensor:
        """token pyramid -> image in [-1, 1]."""
        return self.fhat_to_img(self.quantize.decode(ids, patch_nums))

    def forward(self, img: torch.Tensor, patch_nums: tuple[int, ...] | None = None
                ) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
        """Training pass: (reconstruction, quantizer loss, token ids)."""
        f_hat, vq_loss, ids = self.quantize(self.latent(img, patch_nums), patch_nums)
        return self.decoder(self.post_quant_conv(f_hat)), vq_loss, ids
