"""Transformer building blocks: FFN, the AdaLN self-attention block, the AdaLN head."""

from __future__ import annotations

import torch
from torch import nn

from .attention import CrossAttention, KVCache, SelfAttention


class DropPath(nn.Module):
    """Stochastic depth per sample (training only)."""

    def __init__(self, p: float):
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        keep = x.new_empty(x.shape[0], *([1] * (x.ndim - 1))).bernoulli_(1 - self.p)
        return x * keep.div_(1 - self.p)


class FFN(nn.Module):
    def __init__(self, dim: int, hidden: int, drop: float = 0.0):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU(approximate="tanh")
        self.fc2 = nn.Linear(hidden, dim)
        self.drop = nn.Dropout(drop) if drop > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.fc2(self.act(self.fc1(x))))


class AdaLNBlock(nn.Module):
    """x += attn(LN(x)*(1+scale1)+shift1)*gamma1;  x += ffn(LN(x)*(1+scale2)+shift2)*gamma2.

    The six modulation vectors come from the condition: per block (`ada_lin`) or, with shared
    AdaLN, from the model's `shared_ada_lin` output plus this block's `ada_gss`.
    """

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, norm_eps: float, shared_aln: bool,
                 l2_norm: bool, drop: float = 0.0, attn_drop: float = 0.0, drop_path: float = 0.0,
                 cross_dim: int = 0):
        super().__init__()
        self.dim, self.shared_aln = dim, shared_aln
        self.attn = SelfAttention(dim, num_heads, l2_norm, attn_drop, drop)
        self.ffn = FFN(dim, round(dim * mlp_ratio), drop)
        self.ln_wo_grad = nn.LayerNorm(dim, eps=norm_eps, elementwise_affine=False)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        if shared_aln:
            self.ada_gss = nn.Parameter(torch.randn(1, 1, 6, dim) / dim ** 0.5)
        else:
            self.ada_lin = nn.Sequential(nn.SiLU(), nn.Linear(dim, 6 * dim))
        self.cross = None
        if cross_dim:
            self.cross_norm = nn.LayerNorm(dim, eps=norm_eps)
            self.cross = CrossAttention(dim, cross_dim, num_heads)

    def ada(self, cond: torch.Tensor) -> torch.Tensor:
        """The six modulation vectors (B,1,6,C): gamma1, gamma2, scale1, scale2, shift1, shift2.

        They depend on the condition only, so the sampler computes them once per call and
        passes them to every scale (`ada=`) instead of re-reading `ada_lin` at each scale.
        """
        if self.shared_aln:  # cond is already (B,1,6,C)
            return self.ada_gss + cond
        return self.ada_lin(cond).view(-1, 1, 6, self.dim)

    def forward(self, x: torch.Tensor, cond: torch.Tensor, mask: torch.Tensor | None = None,
                cache: KVCache | None = None, context: torch.Tensor | None = None,
                context_mask: torch.Tensor | None = None, ada: torch.Tensor | None = None) -> torch.Tensor:
        gamma1, gamma2, scale1, scale2, shift1, shift2 = (self.ada(cond) if ada is None else ada).unbind(2)
        h = self.ln_wo_grad(x).mul(scale1.add(1)).add_(shift1)
        x = x + self.drop_path(self.attn(h, mask, cache).mul_(gamma1))
        if self.cross is not None and context is not None:
            x = x + self.drop_path(self.cross(self.cross_norm(x), context, context_mask))
        h = self.ln_wo_grad(x).mul(scale2.add(1)).add_(shift2)
        return x + self.drop_path(self.ffn(h).mul(gamma2))


class AdaLNHead(nn.Module):
    """LN(x)*(1+scale)+shift with (scale, shift) from the condition; precedes the linear head."""

    def __init__(self, dim: int, norm_eps: float):
        super().__init__()
        self.dim = dim
        self.ln_wo_grad = nn.LayerNorm(dim, eps=norm_eps, elementwise_affine=False)
        self.ada_lin = nn.Sequential(nn.SiLU(), nn.Linear(dim, 2 * dim))

    def ada(self, cond: torch.Tensor) -> torch.Tensor:
        """(scale, shift) as (B,1,2,C); like `AdaLNBlock.ada`, computed once per sampling call."""
        return self.ada_lin(cond).view(-1, 1, 2, self.dim)

    def forward(self, x: torch.Tensor, cond: torch.Tensor, ada: torch.Tensor | None = None) -> torch.Tensor:
        scale, shift = (self.ada(cond) if ada is None else ada).unbind(2)
        return self.ln_wo_grad(x).mul(scale.add(1)).add_(shift)
