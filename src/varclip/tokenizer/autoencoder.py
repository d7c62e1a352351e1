"""Encoder and decoder of the VQ autoencoder (the LDM "vq-f16" conv nets, configurable).

Module names follow the official layout (`down.<i>.block.<j>`, `mid.attn_1`, ...) so that
official state dicts load without renaming.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..config import TokenizerConfig


def _norm(channels: int, groups: int) -> nn.GroupNorm:
    return nn.GroupNorm(groups, channels, eps=1e-6, affine=True)


def _silu(x: torch.Tensor) -> torch.Tensor:
    """SiLU in place when no gradient flows: `x` is always a fresh temporary here, and
    overwriting it saves a full-resolution allocation per call (the same bits either way)."""
    return F.silu(x, inplace=not (torch.is_grad_enabled() and x.requires_grad))


class ResBlock(nn.Module):
    def __init__(self, cin: int, cout: int, dropout: float, groups: int):
        super().__init__()
        self.norm1 = _norm(cin, groups)
        self.conv1 = nn.Conv2d(cin, cout, 3, 1, 1)
        self.norm2 = _norm(cout, groups)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1)
        self.nin_shortcut = nn.Conv2d(cin, cout, 1, 1, 0) if cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(_silu(self.norm1(x)))
        h = self.conv2(self.dropout(_silu(self.norm2(h))))
        return h.add_(self.nin_shortcut(x))  # = shortcut + h, into conv2's fresh output


class AttnBlock(nn.Module):
    """Single-head self-attention over all H*W positions."""

    def __init__(self, channels: int, groups: int):
        super().__init__()
        self.norm = _norm(channels, groups)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1, 1, 0)
        self.proj_out = nn.Conv2d(channels, channels, 1, 1, 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, C, H, W = x.shape
        q, k, v = self.qkv(self.norm(x)).view(B, 3, C, H * W).transpose(2, 3).unbind(1)  # each B,HW,C
        h = F.scaled_dot_product_attention(q.unsqueeze(1), k.unsqueeze(1), v.unsqueeze(1), scale=C ** -0.5)
        # not in place: proj_out's output is channels-last here, and `x + out` keeps x's layout,
        # which decides the next GroupNorm's summation order (its bits)
        return x + self.proj_out(h.squeeze(1).transpose(1, 2).reshape(B, C, H, W))


class Downsample(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, 2, 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(x, (0, 1, 0, 1)))


class Upsample(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2, mode="nearest"))


class _Mid(nn.Module):
    """ResBlock, attention (when the config has it), ResBlock at the lowest resolution."""

    def __init__(self, channels: int, cfg: TokenizerConfig):
        super().__init__()
        self.block_1 = ResBlock(channels, channels, cfg.dropout, cfg.norm_groups)
        self.attn_1 = AttnBlock(channels, cfg.norm_groups) if cfg.attn else nn.Identity()
        self.block_2 = ResBlock(channels, channels, cfg.dropout, cfg.norm_groups)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.block_2(self.attn_1(self.block_1(h)))


class _Level(nn.Module):
    """`count` ResBlocks (`block.<j>`) at one resolution, each followed by `attn.<j>` when `attn`;
    the caller adds the `downsample` / `upsample` and runs it after the blocks."""

    def __init__(self, cin: int, cout: int, count: int, attn: bool, cfg: TokenizerConfig):
        super().__init__()
        blocks, attns = [], []
        for _ in range(count):
            blocks.append(ResBlock(cin, cout, cfg.dropout, cfg.norm_groups))
            cin = cout
            if attn:
                attns.append(AttnBlock(cin, cfg.norm_groups))
        self.block = nn.ModuleList(blocks)
        self.attn = nn.ModuleList(attns)
        self.channels = cin  # of the output

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        for j, block in enumerate(self.block):
            h = block(h)
            if len(self.attn):
                h = self.attn[j](h)
        return h


class Encoder(nn.Module):
    """image (B,3,H,W) in [-1,1] -> latent (B,Cvae,H/f,W/f)."""

    def __init__(self, cfg: TokenizerConfig):
        super().__init__()
        g, n = cfg.norm_groups, len(cfg.ch_mult)
        self.conv_in = nn.Conv2d(cfg.in_channels, cfg.ch, 3, 1, 1)
        cin = cfg.ch
        self.down = nn.ModuleList()
        for i, mult in enumerate(cfg.ch_mult):
            level = _Level(cin, cfg.ch * mult, cfg.num_res_blocks, i == n - 1 and cfg.attn, cfg)
            cin = level.channels
            if i != n - 1:
                level.downsample = Downsample(cin)
            self.down.append(level)
        self.mid = _Mid(cin, cfg)
        self.norm_out = _norm(cin, g)
        self.conv_out = nn.Conv2d(cin, cfg.z_channels, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(x)
        for level in self.down:
            h = level(h)
            if hasattr(level, "downsample"):
                h = level.downsample(h)
        h = self.mid(h)
        return self.conv_out(_silu(self.norm_out(h)))


class Decoder(nn.Module):
    """latent (B,Cvae,h,w) -> image (B,3,h*f,w*f), unclamped."""

    def __init__(self, cfg: TokenizerConfig):
        super().__init__()
        g, n = cfg.norm_groups, len(cfg.ch_mult)
        cin = cfg.ch * cfg.ch_mult[-1]
        self.conv_in = nn.Conv2d(cfg.z_channels, cin, 3, 1, 1)
        self.mid = _Mid(cin, cfg)
        levels: list[nn.Module] = []
        for i in reversed(range(n)):  # deepest first; stored finest-first as `up.<i>`
            level = _Level(cin, cfg.ch * cfg.ch_mult[i], cfg.num_res_blocks + 1, i == n - 1 and cfg.attn, cfg)
            cin = level.channels
            if i != 0:
                level.upsample = Upsample(cin)
            levels.insert(0, level)
        self.up = nn.ModuleList(levels)
        self.norm_out = _norm(cin, g)
        self.conv_out = nn.Conv2d(cin, cfg.in_channels, 3, 1, 1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.mid(self.conv_in(z))
        for level in reversed(self.up):
            h = level(h)
            if hasattr(level, "upsample"):
                h = level.upsample(h)
        return self.conv_out(_silu(self.norm_out(h)))
