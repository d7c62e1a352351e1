"""The next-scale prediction transformer (VAR / VAR-CLIP).

Sequence = [cond + pos_start ; word_embed(teacher-forcing input)] + lvl_embed + pos_1LC, then
AdaLN blocks with a block-causal mask (a token sees its own scale and all coarser ones), then
the AdaLN head and a linear layer to codebook logits. Sampling runs the same blocks one scale at
a time with KV caches (see `varclip.sampling`).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..config import TransformerConfig
from .attention import KVCache
from .blocks import AdaLNBlock, AdaLNHead
from .conditioning import ClassConditioning, Cond, TextConditioning


class VARTransformer(nn.Module):
    def __init__(self, cfg: TransformerConfig, init: bool = True):
        """init=False skips the weight initialisation (loaders assign the weights right after)."""
        super().__init__()
        self.cfg = cfg
        C, K = cfg.embed_dim, len(cfg.patch_nums)
        self.C, self.L, self.first_l = C, cfg.L, cfg.patch_nums[0] ** 2
        self.word_embed = nn.Linear(cfg.z_channels, C)
        if cfg.is_text:
            self.cond = TextConditioning(cfg.text_dim, C, cfg.text_token_dim if cfg.cross_attn else 0, cfg.text_norm)
        else:
            self.cond = ClassConditioning(cfg.num_classes, C)
        self.pos_start = nn.Parameter(torch.zeros(1, self.first_l, C))
        self.pos_1LC = nn.Parameter(torch.zeros(1, self.L, C))
        self.lvl_embed = nn.Embedding(K, C)
        self.shared_ada_lin = nn.Sequential(nn.SiLU(), nn.Linear(C, 6 * C)) if cfg.shared_aln else None
        dpr = torch.linspace(0, cfg.drop_path_rate, cfg.depth, device="cpu").tolist()
        cross_dim = cfg.text_token_dim if cfg.cross_attn else 0
        self.blocks = nn.ModuleList([
            AdaLNBlock(C, cfg.num_heads, cfg.mlp_ratio, cfg.norm_eps, cfg.shared_aln, cfg.attn_l2_norm,
                       cfg.drop_rate, cfg.attn_drop_rate, dpr[i], cross_dim)
            for i in range(cfg.depth)
        ])
        self.head_nm = AdaLNHead(C, cfg.norm_eps)
        self.head = nn.Linear(C, cfg.vocab_size)
        self.register_buffer("lvl_1L", torch.empty(1, self.L, dtype=torch.long), persistent=False)
        self.register_buffer("attn_bias", torch.empty(1, 1, self.L, self.L), persistent=False)
        self.init_buffers()
        if init:
            init_weights(self)

    def init_buffers(self, device: torch.device | str | None = None) -> None:
        """Build the derived buffers (token levels, block-causal mask, zero key biases) on `device`
        (default: where they are), e.g. after a meta-device build whose weights were assigned."""
        device = torch.device(device) if device is not None else self.lvl_1L.device
        lvl = torch.cat([torch.full((p * p,), i, device=device) for i, p in enumerate(self.patch_nums)])
        self.lvl_1L = lvl.view(1, self.L)
        # 0 where scale(query) >= scale(key), else -inf; built once, not in every forward
        self.attn_bias = torch.where(lvl[:, None] >= lvl[None, :], 0.0, -torch.inf).view(1, 1, self.L, self.L)
        for b in self.blocks:
            b.attn.zero_k_bias = torch.zeros(self.C, device=device)

    @property
    def patch_nums(self) -> tuple[int, ...]:
        """The scale schedule: part of the architecture (positions, levels), held by `cfg`."""
        return self.cfg.patch_nums

    # ------------------------------------------------------------------ pieces
    def block_causal_mask(self, length: int | None = None) -> torch.Tensor:
        """(1,1,l,l) float mask: 0 where scale(query) >= scale(key), else -inf."""
        n = length or self.L
        return self.attn_bias if n == self.L else self.attn_bias[:, :, :n, :n]

    def lvl_pos(self) -> torch.Tensor:
        return self.lvl_embed(self.lvl_1L) + self.pos_1LC

    def modulation(self, cond_vec: torch.Tensor) -> torch.Tensor:
        """What the blocks receive: the condition itself, or the shared AdaLN output (B,1,6,C)."""
        if self.shared_ada_lin is None:
            return cond_vec
        return self.shared_ada_lin(cond_vec).view(-1, 1, 6, self.C)

    def adaln(self, cond_vec: torch.Tensor) -> list[torch.Tensor]:
        """Every block's AdaLN modulation (B,1,6,C) for these conditions (see `AdaLNBlock.ada`)."""
        mod = self.modulation(cond_vec)
        return [b.ada(mod) for b in self.blocks]

    def head_adaln(self, cond_vec: torch.Tensor) -> torch.Tensor:
        """The head's AdaLN modulation (B,1,2,C) for these conditions."""
        return self.head_nm.ada(cond_vec)

    def logits(self, x: torch.Tensor, cond_vec: torch.Tensor, ada: torch.Tensor | None = None) -> torch.Tensor:
        """Codebook logits; `ada` is `head_adaln(cond_vec)` when the caller has it already."""
        return self.head(self.head_nm(x.float(), cond_vec, ada).float()).float()

    def first_tokens(self, cond_vec: torch.Tensor, lvl_pos: torch.Tensor) -> torch.Tensor:
        B = cond_vec.shape[0]
        sos = cond_vec.unsqueeze(1).expand(B, self.first_l, -1) + self.pos_start.expand(B, self.first_l, -1)
        return sos + lvl_pos[:, : self.first_l]

    def next_tokens(self, x_in: torch.Tensor, start: int, lvl_pos: torch.Tensor) -> torch.Tensor:
        """Embed the next scale's input (B, l, Cvae) at token positions start..start+l."""
        return self.word_embed(x_in) + lvl_pos[:, start: start + x_in.shape[1]]

    def run_blocks(self, x: torch.Tensor, cond_vec: torch.Tensor, cond: Cond, mask: torch.Tensor | None = None,
                   caches: list[KVCache] | None = None, ada: list[torch.Tensor] | None = None) -> torch.Tensor:
        """All blocks. `ada`: `adaln(cond_vec)` computed once by the caller (sampling); without it
        each block computes its modulation inside its own forward (as sharded training needs)."""
        mod = self.modulation(cond_vec) if ada is None else None
        for i, block in enumerate(self.blocks):
            x = block(x, mod, mask, None if caches is None else caches[i], cond.tokens, cond.mask,
                      None if ada is None else ada[i])
        return x

    # ------------------------------------------------------------------ teacher forcing
    def forward(self, cond: Cond, x_in: torch.Tensor) -> torch.Tensor:
        """Logits (B, l, V) for every token given the teacher-forcing input (B, l-first_l, Cvae).

        The model never drops conditions on its own: the trainer's `CondDropNet` swaps in the null
        condition for the rows it draws.
        """
        B = x_in.shape[0]
        ed = self.first_l + x_in.shape[1]
        with torch.autocast(device_type=x_in.device.type, enabled=False):
            cond_vec = self.cond(cond).float()
            sos = cond_vec.unsqueeze(1).expand(B, self.first_l, -1) + self.pos_start.expand(B, self.first_l, -1)
            x = torch.cat((sos, self.word_embed(x_in.float())), dim=1)
            x = x + (self.lvl_embed(self.lvl_1L[:, :ed].expand(B, -1)) + self.pos_1LC[:, :ed])
        x = self.run_blocks(x, cond_vec, cond, self.block_causal_mask(ed).to(x.dtype))
        return self.logits(x, cond_vec)


def init_weights(model: VARTransformer) -> None:
    """The official initialisation recipe, applied to this model only (nothing global patched)."""
    cfg = model.cfg
    std = cfg.init_std if cfg.init_std >= 0 else math.sqrt(1 / model.C / 3)
    for m in model.modules():
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Embedding):
            nn.init.trunc_normal_(m.weight, std=std)
        elif isinstance(m, nn.LayerNorm) and m.elementwise_affine:
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
    for p in (model.pos_start, model.pos_1LC):
        nn.init.trunc_normal_(p, std=std)
    with torch.no_grad():
        if cfg.init_head >= 0:
            model.head.weight.mul_(cfg.init_head)
            model.head.bias.zero_()
        model.head_nm.ada_lin[-1].weight.mul_(cfg.init_adaln)
        model.head_nm.ada_lin[-1].bias.zero_()
        C = model.C
        for block in model.blocks:
            block.attn.proj.weight.div_(math.sqrt(2 * cfg.depth))
            block.ffn.fc2.weight.div_(math.sqrt(2 * cfg.depth))
            if block.shared_aln:
                block.ada_gss[:, :, 2:].mul_(cfg.init_adaln)
                block.ada_gss[:, :, :2].mul_(cfg.init_adaln_gamma)
            else:
                block.ada_lin[-1].weight[2 * C:].mul_(cfg.init_adaln)
                block.ada_lin[-1].weight[: 2 * C].mul_(cfg.init_adaln_gamma)
                block.ada_lin[-1].bias.zero_()
            if block.cross is not None:  # start as identity: zero output projection
                block.cross.proj.weight.zero_()
            if block.attn.l2_norm:
                block.attn.scale_mul_1H11.fill_(math.log(4.0))
