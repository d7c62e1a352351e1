"""Optimiser recipe, lr schedule, loss, condition dropout and progressive growth."""

from __future__ import annotations

import math

import pytest
import torch

from varclip.config import TransformerConfig, named_transformer
from varclip.model import VARTransformer
from varclip.train.config import OptimConfig, ScheduleConfig
from varclip.train.generator import CondDropNet
from varclip.train.losses import drop_mask, scale_index, scales_at, token_loss
from varclip.train.optim import LRSchedule, build_optimizer, clip_grad_norm, decay_split, lr_factor, peak_lr


def test_weight_decay_exclusions():
    cfg = TransformerConfig(depth=2, embed_dim=64, num_heads=2, patch_nums=(1, 2, 3), vocab_size=32,
                            z_channels=4, num_classes=5, shared_aln=True)
    model = VARTransformer(cfg)
    decay, no_decay = decay_split(model, OptimConfig().no_decay_keys)
    assert set(decay) | set(no_decay) == {n for n, _ in model.named_parameters()}
    for name in ("pos_start", "pos_1LC", "lvl_embed.weight", "blocks.0.ada_gss", "blocks.1.attn.scale_mul_1H11"):
        assert name in no_decay, name
    assert all(model.get_parameter(n).ndim > 1 for n in decay)
    assert all(n.endswith("bias") or model.get_parameter(n).ndim <= 1 or
               any(k in n for k in OptimConfig().no_decay_keys) for n in no_decay)
    for name in ("word_embed.weight", "cond.class_emb.weight", "head.weight", "blocks.0.attn.mat_qkv.weight",
                 "blocks.0.ffn.fc1.weight", "shared_ada_lin.1.weight"):
        assert name in decay, name
    assert "blocks.0.attn.q_bias" in no_decay and "head.bias" in no_decay
    # names inside the training wrapper are prefixed; the rule still applies
    opt = build_optimizer(CondDropNet(model), OptimConfig(), global_batch=512)
    groups = {g["weight_decay"]: g for g in opt.param_groups}
    assert set(groups) == {0.05, 0.0}
    assert len(groups[0.05]["params"]) == len(decay) and len(groups[0.0]["params"]) == len(no_decay)
    assert opt.defaults["betas"] == (0.9, 0.95) and opt.defaults["eps"] == 1e-8
    assert groups[0.05]["lr"] == pytest.approx(2e-4)  # 1e-4 * 512 / 256


def test_text_model_null_vector_is_decayed_like_official_2d_tensors():
    model = VARTransformer(named_transformer("tiny_text"))
    decay, no_decay = decay_split(model, OptimConfig().no_decay_keys)
    assert "cond.noise.weight" in decay and "cond.cond_proj.bias" in no_decay


def test_peak_lr_rule():
    assert peak_lr(OptimConfig(), 768) == pytest.approx(3e-4)
    assert peak_lr(OptimConfig(base_lr=8e-5), 1024) == pytest.approx(3.2e-4)
    assert peak_lr(OptimConfig(lr=1e-3), 768) == 1e-3


def test_lr_schedule_shape():
    total, warmup = 1000, 20
    f = [lr_factor(s, total, warmup, 0.005, 0.05, 0.1) for s in range(total)]
    assert f[0] == pytest.approx(0.005)
    assert all(b > a for a, b in zip(f[:warmup], f[1:warmup]))  # linear warm-up
    assert f[warmup - 1] < 1.0 and f[warmup] == 1.0
    flat_end = warmup + int(0.05 * (total - 1 - warmup))
    assert all(v == 1.0 for v in f[warmup:flat_end + 1])  # flat for 5 %
    assert all(b < a for a, b in zip(f[flat_end + 1:], f[flat_end + 2:]))  # then strictly decreasing
    assert f[-1] == pytest.approx(0.1)  # to the end factor at the last step
    # linear: constant decrements
    d = [a - b for a, b in zip(f[flat_end + 1:], f[flat_end + 2:])]
    assert max(d) - min(d) < 1e-9
    sched = LRSchedule.from_config(ScheduleConfig(warmup_fraction=0.02, end_factor=0.01), 500)
    assert sched.warmup == 10 and sched.factor(499) == pytest.approx(0.01)
    p = torch.nn.Parameter(torch.zeros(2, 2))
    opt = torch.optim.AdamW([p], lr=1.0)
    opt.param_groups[0]["peak_lr"] = 2.0
    sched.step = 0
    assert sched.apply(opt) == pytest.approx(2.0 * 0.005) and opt.param_groups[0]["lr"] == pytest.approx(0.01)
    state = sched.state_dict()
    other = LRSchedule.from_config(ScheduleConfig(), 500)
    other.load_state_dict(state)
    assert other.step == 0


def test_grad_clip():
    p = torch.nn.Parameter(torch.zeros(4))
    p.grad = torch.full((4,), 3.0)  # norm 6
    assert clip_grad_norm([p], 2.0) == pytest.approx(6.0)
    assert p.grad.norm().item() == pytest.approx(2.0, rel=1e-5)
    p.grad = torch.full((4,), 3.0)
    assert clip_grad_norm([p], 0.0) == pytest.approx(6.0) and p.grad.norm().item() == pytest.approx(6.0)


def test_token_loss_matches_official_and_weights():
    torch.manual_seed(0)
    pn = (1, 2, 3)
    lvl = scale_index(pn)
    logits = torch.randn(3, 14, 10)
    target = torch.randint(0, 10, (3, 14))
    out = token_loss(logits, target, lvl, 3)
    ref = torch.nn.functional.cross_entropy(logits.reshape(-1, 10), target.reshape(-1))
    assert out.loss.item() == pytest.approx(ref.item(), rel=1e-6)
    uniform = token_loss(logits, target, lvl, 3, scale_weights=torch.ones(3))
    assert uniform.loss.item() == pytest.approx(ref.item(), rel=1e-6)
    last_only = token_loss(logits, target, lvl, 3, scale_weights=torch.tensor([0.0, 0.0, 1.0]))
    assert last_only.loss.item() == pytest.approx(out.scale_loss[2].item(), rel=1e-5)
    ce = torch.nn.functional.cross_entropy(logits[:, 1:5].reshape(-1, 10), target[:, 1:5].reshape(-1))
    assert out.scale_loss[1].item() == pytest.approx(ce.item(), rel=1e-5)
    smooth = token_loss(logits, target, lvl, 3, label_smoothing=0.1)
    assert smooth.loss.item() != pytest.approx(ref.item())
    assert 0 <= out.acc.item() <= 1 and out.scale_acc.shape == (3,)


def test_drop_mask():
    exact = drop_mask(64, 0.1, "exact", seed=0, step=3)
    assert exact.sum().item() == math.floor(0.1 * 64) == 6
    assert torch.equal(exact, drop_mask(64, 0.1, "exact", seed=0, step=3))  # a pure function
    assert not torch.equal(exact, drop_mask(64, 0.1, "exact", seed=0, step=4))
    assert drop_mask(9, 0.1, "exact", 0, 0).sum().item() == 0
    rates = torch.stack([drop_mask(1000, 0.1, "bernoulli", 1, s) for s in range(20)]).float().mean()
    assert 0.08 < rates.item() < 0.12
    assert not drop_mask(16, 0.0, "bernoulli", 0, 0).any()


def test_cond_drop_net_uses_null_rows_and_keeps_null_in_graph():
    torch.manual_seed(0)
    model = VARTransformer(named_transformer("tiny_text"))
    net = CondDropNet(model)
    from varclip.model import Cond
    cond = Cond(torch.randn(3, 384))
    x_in = torch.randn(3, model.L - 1, 8)
    none = torch.zeros(3, dtype=torch.bool)
    net(cond, x_in, none).sum().backward()
    assert model.cond.noise.weight.grad is not None  # in the graph even with no dropped row
    assert model.cond.noise.weight.grad.abs().sum() == 0
    drop = torch.tensor([False, True, False])
    out = net(cond, x_in, drop)
    null = model(Cond(model.cond.noise.weight.expand(3, -1)), x_in)
    assert torch.allclose(out[1], null[1], atol=1e-6) and torch.allclose(out[0], model(cond, x_in)[0], atol=1e-6)


def test_progressive_scales():
    assert scales_at(0, 100, 10, 0, 0.5) == 10
    seq = [scales_at(s, 100, 10, 4, 0.5) for s in range(100)]
    assert seq[0] == 4 and seq[-1] == 10 and seq[50] == 10
    assert all(b >= a for a, b in zip(seq, seq[1:]))
    assert set(seq) == set(range(4, 11))
