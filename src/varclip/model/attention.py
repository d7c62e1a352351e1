"""Attention for the next-scale transformer: block-causal in training, KV-cached in sampling."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class KVCache:
    """Keys and values of every token seen so far, in buffers allocated once per sampling call.

    The buffers are created on the first `append` (so they take the dtype autocast gives k/v)
    with room for `max_len` tokens; each scale writes its slice in place instead of growing a
    tensor by concatenation.
    """

    def __init__(self, max_len: int):
        self.max_len = max_len
        self.k: torch.Tensor | None = None
        self.v: torch.Tensor | None = None
        self.len = 0

    def append(self, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        B, H, n, D = k.shape
        if self.k is None:
            self.k = k.new_empty(B, H, self.max_len, D)
            self.v = v.new_empty(B, H, self.max_len, D)
        end = self.len + n
        if end > self.max_len:
            raise RuntimeError(f"KV cache overflow: {end} tokens > {self.max_len}")
        self.k[:, :, self.len:end] = k
        self.v[:, :, self.len:end] = v
        self.len = end
        return self.k[:, :, :end], self.v[:, :, :end]

    def keep_rows(self, n: int) -> None:
        """Keep the first n batch rows (e.g. drop the unconditional half once guidance is off)."""
        if self.k is not None:
            self.k, self.v = self.k[:n], self.v[:n]


class SelfAttention(nn.Module):
    """Multi-head self-attention with the official parameterisation.

    `mat_qkv` has no bias of its own; its bias is [q_bias, 0, v_bias]. With `l2_norm`, q and k
    are unit vectors per head and q is scaled by a learned, clamped temperature (softmax scale 1).
    """

    def __init__(self, dim: int, num_heads: int, l2_norm: bool = True, attn_drop: float = 0.0,
                 proj_drop: float = 0.0):
        super().__init__()
        self.num_heads, self.head_dim = num_heads, dim // num_heads
        self.l2_norm = l2_norm
        if l2_norm:
            self.scale = 1.0
            self.scale_mul_1H11 = nn.Parameter(torch.full((1, num_heads, 1, 1), 4.0).log())
            # ln(100) rounded to float32, as upstream computes it
            self.max_scale_mul = float(torch.tensor(100.0, device="cpu").log())
        else:
            self.scale = 0.25 / math.sqrt(self.head_dim)
        self.mat_qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.q_bias = nn.Parameter(torch.zeros(dim))
        self.v_bias = nn.Parameter(torch.zeros(dim))
        self.register_buffer("zero_k_bias", torch.zeros(dim), persistent=False)
        self.proj = nn.Linear(dim, dim)
        self.attn_drop = attn_drop
        self.proj_drop = nn.Dropout(proj_drop) if proj_drop > 0 else nn.Identity()

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None, cache: KVCache | None = None
                ) -> torch.Tensor:
        B, L, C = x.shape
        bias = torch.cat((self.q_bias, self.zero_k_bias, self.v_bias))
        qkv = F.linear(x, self.mat_qkv.weight, bias).view(B, L, 3, self.num_heads, self.head_dim)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each B,H,L,c
        if self.l2_norm:
            q = F.normalize(q, dim=-1).mul(self.scale_mul_1H11.clamp_max(self.max_scale_mul).exp())
            k = F.normalize(k, dim=-1)
        if cache is not None:
            k, v = cache.append(k, v)
        drop = self.attn_drop if self.training else 0.0
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=drop, scale=self.scale)
        return self.proj_drop(self.proj(out.transpose(1, 2).reshape(B, L, C)))


class CrossAttention(nn.Module):
    """Attention from image tokens to text token states (beyond VAR-CLIP; off by default)."""

    def __init__(self, dim: int, context_dim: int, num_heads: int):
        super().__init__()
        self.num_heads, self.head_dim = num_heads, dim // num_heads
        self.to_q = nn.Linear(dim, dim)
        self.to_kv = nn.Linear(context_dim, 2 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, context: torch.Tensor, context_mask: torch.Tensor | None) -> torch.Tensor:
        B, L, C = x.shape
        T = context.shape[1]
        q = self.to_q(x).view(B, L, self.num_heads, self.head_dim).transpose(1, 2)
        k, v = self.to_kv(context).view(B, T, 2, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        mask = None if context_mask is None else context_mask[:, None, None, :].to(torch.bool)
        out = F.scaled_dot_product_attention(q, k.to(q.dtype), v.to(q.dtype), attn_mask=mask)
        return self.proj(out.transpose(1, 2).reshape(B, L, C))
