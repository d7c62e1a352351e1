"""The official training recipe around the step: lr schedule kinds, the weight-decay cosine, the
micro-batch clock, progressive stages and ramps, the fp16 scaler, fused AdamW, TF32, fill_last."""

from __future__ import annotations

import math

import pytest
import torch

from varclip.config import ConfigError, TransformerConfig
from varclip.model import VARTransformer
from varclip.train.amp import GROWTH_INTERVAL, INIT_SCALE, MAX_SCALE, make_grad_scaler, scaler_step, set_tf32
from varclip.train.batches import TrainData
from varclip.train.config import OptimConfig, ScheduleConfig, TrainConfig, load_config
from varclip.train.distributed import DistEnv
from varclip.train.losses import Progressive, scale_index, scales_at, token_loss
from varclip.train.optim import LRSchedule, build_optimizer, check_lr_kind, lr_factor, resolve_lr_kind, use_fused


def _tiny_model() -> VARTransformer:
    return VARTransformer(TransformerConfig(depth=1, embed_dim=16, num_heads=1, patch_nums=(1, 2), vocab_size=8,
                                            z_channels=4, num_classes=3))


@pytest.mark.parametrize("kind", ["lin0", "lin", "lin00", "cos", "exp", "lin0.6"])
def test_lr_kinds(kind):
    e, total = 0.01, 101  # no warm-up: p = step / 100
    f = [lr_factor(s, total, 0, 0.005, {"lin": 0.15, "lin0": 0.05, "lin00": 0.0, "exp": 0.15}.get(kind, 0.0), e,
                   kind) for s in range(total)]
    assert f[0] == 1.0 and f[-1] == pytest.approx(e)
    assert all(b <= a for a, b in zip(f, f[1:]))  # never increases
    if kind == "lin0":
        assert f[5] == 1.0 and f[6] < 1.0  # flat for 5 %
    elif kind == "lin":
        assert f[15] == 1.0 and f[16] < 1.0
    elif kind in ("lin00", "cos"):
        assert f[1] < 1.0 and f[50] == pytest.approx(e + (1 - e) * 0.5)
    elif kind == "exp":
        assert f[15] == 1.0 and f[16] < 1.0  # then log-linear down to e
        assert math.log(f[40] / f[30]) == pytest.approx(math.log(f[90] / f[80]))
    else:  # lin<T>: no flat top, the bend at T
        T, mid = 0.6, (1 + e + (1 - e) * 0.4) / 2
        assert f[1] < 1.0 and f[60] == pytest.approx(mid)
        assert f[30] == pytest.approx(1 + (mid - 1) * 0.5) and f[80] == pytest.approx(e + (mid - e) * 0.5)
    assert lr_factor(0, total, 10, 0.005, 0.05, e, kind) == 0.005  # the warm-up comes first


def test_lr_kind_names():
    assert resolve_lr_kind("auto") == "lin0" and resolve_lr_kind("auto", 0.6) == "lin0.6"
    assert resolve_lr_kind("cos", 0.6) == "cos"  # an explicit kind wins
    for bad in ("linear", "lin2", "lin-0.1", "cosine"):
        with pytest.raises(ConfigError, match="schedule.kind"):
            check_lr_kind(bad)
    with pytest.raises(ConfigError, match="end_factor"):
        ScheduleConfig(kind="exp", end_factor=0.0)
    assert ScheduleConfig().kind == "auto" and LRSchedule.from_config(ScheduleConfig(), 10).flat_fraction == 0.05
    sched = LRSchedule.from_config(ScheduleConfig(kind="lin"), 10)
    assert sched.kind == "lin" and sched.flat_fraction == 0.15
    assert LRSchedule.from_config(ScheduleConfig(kind="lin", flat_fraction=0.4), 10).flat_fraction == 0.4


def test_weight_decay_cosine_on_the_decayed_group_only():
    model = _tiny_model()
    opt = build_optimizer(model, OptimConfig(lr=1e-3, weight_decay=0.05, weight_decay_end=0.08), 8)
    sched = LRSchedule.from_config(ScheduleConfig(warmup_steps=0), 11)

    def wds(it):
        sched.apply(opt, it)
        return sorted(g["weight_decay"] for g in opt.param_groups)
    assert wds(0) == [0.0, pytest.approx(0.05)] and wds(10) == [0.0, pytest.approx(0.08)]
    assert wds(5)[1] == pytest.approx(0.065) and wds(2)[1] < wds(5)[1] < wds(8)[1]
    const = build_optimizer(model, OptimConfig(lr=1e-3, weight_decay=0.05), 8)  # end < 0: constant
    sched.apply(const, 7)
    assert sorted(g["weight_decay"] for g in const.param_groups) == [0.0, 0.05]


def test_micro_batch_clock():
    """With count_micro_batches every schedule runs over micro-batches and a step takes the values
    of its last one (ac*k + ac - 1); otherwise over optimizer steps."""
    micro = LRSchedule.from_config(ScheduleConfig(count_micro_batches=True, warmup_steps=2), 10, ticks=4)
    assert (micro.total, micro.warmup, micro.ticks) == (40, 8, 4)
    assert [micro.iteration(k) for k in range(3)] == [3, 7, 11] and micro.iteration(2, 0) == 8
    micro.step = 0
    assert micro.factor() == pytest.approx(0.005 + 0.995 * 3 / 8)
    steps = LRSchedule.from_config(ScheduleConfig(warmup_steps=2), 10, ticks=4)
    assert (steps.total, steps.warmup, steps.iteration(2, 3)) == (10, 2, 2)
    half = LRSchedule.from_config(ScheduleConfig(warmup_fraction=0.0625), 40)  # 2.5 iterations
    assert half.warmup == 2 and half.warmup_exact == 2.5  # Python rounds halves to even


def test_progressive_stage_rule_and_ramp():
    # half-to-even rounding of the stage: round(0.5) = 0 at it 2, round(1.5) = 2 at it 6
    assert [scales_at(it, 8, 3, 1, 1.0) for it in range(8)] == [1, 1, 1, 2, 2, 2, 3, 3]
    assert scales_at(1, 40, 4, 2, 0.6, warmup=0.8) == 2 and scales_at(1, 40, 4, 2, 0.6, warmup=1.6) == 2
    assert scales_at(24, 40, 4, 2, 0.6, warmup=0.8) == 4 and scales_at(0, 40, 4, 0, 0.6) == 4
    prog = Progressive((1, 2, 3, 4), 40, 2, 0.6, 0.8, ramp=4.0)
    k = [prog.scales(it) for it in range(40)]
    assert k[0] == 2 and all(b >= a for a, b in zip(k, k[1:])) and k[24:] == [4] * 16
    first3 = k.index(3)
    assert [prog.ramp_weight(it) for it in range(first3, first3 + 5)] == [0.25, 0.5, 0.75, 1.0, 1.0]
    assert prog.ramp_weight(0) == 1.0 and prog.ramp_weight(39) == 1.0  # first and final stage: no ramp
    assert prog.enabled and not Progressive((1, 2, 3, 4), 40).enabled
    # token weights: 1/L over the FULL length, the newest scale times the ramp, None once all train
    w = prog.token_weights(first3)
    assert w.shape == (14,) and torch.allclose(w[:5], torch.full((5,), 1 / 30))
    assert torch.allclose(w[5:], torch.full((9,), 0.25 / 30)) and prog.token_weights(30) is None
    sw = prog.token_weights(0, torch.tensor([1.0, 1.0, 2.0, 2.0]))
    assert torch.allclose(sw, torch.full((5,), 1 / (1 + 4 + 18 + 32)))


def test_progressive_loss_is_not_renormalised():
    torch.manual_seed(0)
    pn, lvl = (1, 2, 3), scale_index((1, 2, 3))
    logits, target = torch.randn(4, 5, 7), torch.randint(0, 7, (4, 5))
    w = Progressive(pn, 10, 2, 0.5).token_weights(0)
    out = token_loss(logits, target, lvl[:5], 3, token_weights=w)
    ce = torch.nn.functional.cross_entropy(logits.reshape(-1, 7), target.reshape(-1))
    assert out.loss.item() == pytest.approx(ce.item() * 5 / 14, rel=1e-5)  # ed / L of the mean


def test_fp16_scaler_has_the_official_settings_and_cap():
    scaler = make_grad_scaler("cpu")
    assert scaler.get_scale() == INIT_SCALE == 2048 and scaler.get_growth_interval() == GROWTH_INTERVAL == 1000
    p = torch.nn.Parameter(torch.ones(3))
    opt = torch.optim.SGD([p], lr=0.1)
    scaler.scale(p.sum()).backward()
    scaler_step(scaler, opt)
    assert scaler.get_scale() == INIT_SCALE  # no growth before 1000 clean steps
    scaler.update(new_scale=2 * MAX_SCALE)  # above the cap, as growth can leave it
    opt.zero_grad()
    scaler.scale(p.sum()).backward()
    scaler_step(scaler, opt)
    assert scaler.get_scale() == MAX_SCALE and torch.allclose(p.detach(), torch.full((3,), 0.8))


def test_fused_adamw_auto_and_tf32():
    model = _tiny_model()
    assert not use_fused(OptimConfig(), model)  # auto: CPU parameters -> off
    assert use_fused(OptimConfig(fused="on"), model) and OptimConfig(fused=True).fused == "on"
    assert build_optimizer(model, OptimConfig(fused="on"), 8).defaults["fused"] is True
    before = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    try:
        set_tf32(True)
        assert torch.backends.cuda.matmul.allow_tf32 and torch.backends.cudnn.allow_tf32
        set_tf32(False)
        assert not torch.backends.cuda.matmul.allow_tf32
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before


def test_fill_last_keeps_the_last_partial_batch():
    env = DistEnv(0, 1, 0, torch.device("cpu"), None)
    assert TrainData(10, 4, env, 0).steps_per_epoch == 2
    filled = TrainData(10, 4, env, 0, fill_last=True)
    assert filled.steps_per_epoch == 3 and len(filled.sampler.batch(0, 2)) == 4
    assert load_config(TrainConfig, None, ["data.fill_last=true"]).data.fill_last
