from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from varclip.config import ConfigError, TransformerConfig, named_transformer
from varclip.model import Cond, VARTransformer
from varclip.train.generator import CondDropNet


def test_init_recipe_without_global_patching():
    before = nn.Linear.reset_parameters
    cfg = TransformerConfig(depth=2, embed_dim=64, num_heads=2, patch_nums=(1, 2), vocab_size=16, z_channels=4,
                            num_classes=3, init_adaln_gamma=1e-3)
    m = VARTransformer(cfg)
    assert nn.Linear.reset_parameters is before
    C = 64
    w = m.blocks[0].ada_lin[-1].weight
    assert w[: 2 * C].abs().max() < 1e-2 * w[2 * C:].abs().max()  # gammas scaled by init_adaln_gamma
    assert m.head.bias.abs().sum() == 0
    std = math.sqrt(1 / C / 3)
    assert m.head.weight.std() < 0.05 * std
    assert torch.allclose(m.blocks[1].attn.scale_mul_1H11.exp(), torch.full((1, 2, 1, 1), 4.0))


def test_block_causal_mask():
    m = VARTransformer(named_transformer("tiny"))
    mask = m.block_causal_mask()[0, 0]
    assert mask.shape == (30, 30)
    assert mask[0, 0] == 0 and torch.isinf(mask[0, 1])  # 1x1 scale sees only itself
    assert (mask[1:5, :5] == 0).all() and torch.isinf(mask[1:5, 5:]).all()
    assert (mask[-1] == 0).all()


def test_block_causal_mask_is_a_buffer_rebuilt_after_loading():
    from varclip.checkpoints import transformer_from_official, transformer_to_official
    m = VARTransformer(named_transformer("tiny")).eval()
    assert m.block_causal_mask() is m.block_causal_mask()  # built once, not in every forward
    assert torch.equal(m.block_causal_mask(14), m.block_causal_mask()[:, :, :14, :14])
    assert "attn_bias" not in m.state_dict()  # derived, never saved
    loaded = transformer_from_official(transformer_to_official(m), patch_nums=m.patch_nums)
    assert torch.equal(loaded.block_causal_mask(), m.block_causal_mask())
    x, cond = torch.randn(2, 29, 8), Cond(torch.tensor([1, 2]))
    with torch.no_grad():
        assert torch.equal(loaded(cond, x), m(cond, x))


@pytest.mark.parametrize("schedule,calls", [("linear", 1), ("off_from:2", 2)])
def test_sampling_computes_adaln_once_per_call(schedule, calls):
    """The AdaLN projections depend on the condition only: one pass per call (and one more
    when guidance stops and the rows halve), not one per scale, with the same bits."""
    from varclip.config import SamplingConfig, named_tokenizer
    from varclip.sampling import generate
    from varclip.tokenizer import VQTokenizer
    torch.manual_seed(0)
    m, tok = VARTransformer(named_transformer("tiny")).eval(), VQTokenizer(named_tokenizer("tiny")).eval()
    seen = []
    for mod in (m.blocks[0].ada_lin, m.head_nm.ada_lin):
        mod.register_forward_hook(lambda mod, inp, out: seen.append(mod))
    cond = Cond(torch.tensor([1, 2]))
    generate(m, tok, cond, 2, SamplingConfig(cfg=2.0, cfg_schedule=schedule, top_k=0, top_p=0.0, seed=0))
    assert len(seen) == 2 * calls
    with torch.no_grad():  # precomputed modulations give the blocks' own results bit for bit
        cv, x = m.cond(cond), torch.randn(2, 5, 64)
        assert torch.equal(m.run_blocks(x, cv, cond, None, None, m.adaln(cv)), m.run_blocks(x, cv, cond))
        assert torch.equal(m.logits(x, cv, m.head_adaln(cv)), m.logits(x, cv))


def test_condition_dropout_only_when_asked():
    m = VARTransformer(named_transformer("tiny")).train()
    x = torch.randn(2, 29, 8)
    cond = Cond(torch.tensor([1, 2]))
    a = m(cond, x)
    b = m(cond, x)
    assert torch.equal(a, b)  # no hidden dropout inside forward
    dropped = CondDropNet(m)(cond, x, torch.tensor([True, False]))  # training's one route
    null = m(Cond(torch.tensor([10, 2])), x)
    assert torch.allclose(dropped, null)


def test_shared_adaln_and_plain_attention_forward():
    cfg = TransformerConfig(depth=2, embed_dim=64, num_heads=2, patch_nums=(1, 2, 3), vocab_size=16, z_channels=4,
                            num_classes=3, shared_aln=True, attn_l2_norm=False)
    m = VARTransformer(cfg)
    assert m.shared_ada_lin is not None and hasattr(m.blocks[0], "ada_gss")
    out = m(Cond(torch.tensor([0])), torch.randn(1, 13, 4))
    assert out.shape == (1, 14, 16)


def test_config_errors():
    with pytest.raises(ConfigError):
        TransformerConfig(depth=2, embed_dim=100, num_heads=3)
    with pytest.raises(ConfigError):
        TransformerConfig(depth=2, cross_attn=True)


def test_text_conditioning_null_and_negative():
    m = VARTransformer(named_transformer("tiny_text"))
    null = m.cond.null(2, "cpu")
    assert null.value.shape == (2, 384) and torch.equal(null.value[0], m.cond.noise.weight[0])
    with pytest.raises(ValueError, match="text embeddings"):
        m.cond.validate(Cond(torch.tensor([1])))
