"""Typed training configs: YAML, dotted overrides, one-line errors, the shipped recipes."""

from __future__ import annotations

import pytest
from test_train_fixtures import CONFIGS

from varclip.config import ConfigError, from_dict, named_tokenizer, to_dict
from varclip.train.components import transformer_config
from varclip.train.config import (
    OptimConfig,
    TrainConfig,
    apply_overrides,
    load_config,
    save_config,
)
from varclip.train.generator import parse_train_args


def test_yaml_and_overrides(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("batch_size: 16\noptim:\n  base_lr: 2.0e-4\nschedule:\n  steps: 5\n")
    cfg = load_config(TrainConfig, f, ["optim.lr=1e-4", "optim.betas=[0.8, 0.9]", "loss.scale_weights=1,2,3,4",
                                       "data.hflip=true", "model.arch.num_classes=5", "precision=fp32"])
    assert cfg.batch_size == 16 and cfg.optim.base_lr == 2e-4
    assert cfg.optim.lr == 1e-4 and isinstance(cfg.optim.lr, float)  # YAML reads 1e-4 as text
    assert cfg.optim.betas == (0.8, 0.9)
    assert cfg.loss.scale_weights == [1.0, 2.0, 3.0, 4.0]
    assert cfg.data.hflip is True and cfg.model.arch == {"num_classes": 5}
    # round trip through YAML
    save_config(cfg, tmp_path / "out.yaml")
    assert to_dict(load_config(TrainConfig, tmp_path / "out.yaml")) == to_dict(cfg)


@pytest.mark.parametrize("override, words", [
    ("optim.lrr=1", "optim.lrr"),
    ("nonsense=1", "nonsense"),
    ("optim.lr.x=1", "optim.lr.x"),
    ("batch_size=abc", "batch_size"),
    ("precision=fp8", "precision"),
    ("model.arch.widht=3", "model.arch.widht"),
    ("no_equals_sign", "key.sub=value"),
])
def test_bad_overrides_are_one_line_errors(override, words):
    with pytest.raises(ConfigError) as e:
        load_config(TrainConfig, None, [override])
    msg = str(e.value)
    assert words in msg and "\n" not in msg


def test_unknown_yaml_key(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("optim:\n  weight_decai: 0.1\n")
    with pytest.raises(ConfigError, match="optim.weight_decai"):
        load_config(TrainConfig, f)


def test_build_and_apply_are_generic():
    data = apply_overrides(OptimConfig, {}, ["weight_decay=0", "no_decay_keys=[a, b]"])
    cfg = from_dict(OptimConfig, data)
    assert cfg.weight_decay == 0.0 and cfg.no_decay_keys == ["a", "b"]


def test_cli_arguments(tmp_path):
    cfg, _ = parse_train_args([str(CONFIGS / "tiny_class.yaml"), "optim.lr=5e-3", "--set", "seed=3",
                               "--resume", "auto", "--out-dir", str(tmp_path)])
    assert cfg.optim.lr == 5e-3 and cfg.seed == 3 and cfg.checkpoint.resume == "auto"
    assert cfg.out_dir == str(tmp_path)


RECIPES = ["var_d16", "var_d20", "var_d24", "var_d30", "varclip_d16", "tiny_class", "tiny_text", "emoji"]


@pytest.mark.parametrize("name", RECIPES)
def test_shipped_recipes_load(name):
    cfg = load_config(TrainConfig, CONFIGS / f"{name}.yaml")
    tcfg = transformer_config(cfg.model)
    if cfg.data.kind == "text":
        assert tcfg.is_text and cfg.model.text_encoder
    else:
        assert not tcfg.is_text
    assert cfg.schedule.steps or cfg.schedule.epochs
    if name == "emoji":
        tok = named_tokenizer("emoji")
        assert tcfg.patch_nums == tok.patch_nums and cfg.data.image_size == tok.image_size == 64
        assert tcfg.depth == 6 and tcfg.embed_dim == 256 and tcfg.text_dim == 384


def test_official_recipe_numbers():
    d16 = load_config(TrainConfig, CONFIGS / "var_d16.yaml")
    assert d16.batch_size == 768 and d16.optim.base_lr == 1e-4 and d16.optim.betas == (0.9, 0.95)
    assert d16.optim.weight_decay == 0.05 and d16.optim.grad_clip == 2.0 and d16.schedule.end_factor == 0.1
    assert d16.loss.cond_drop_rate == 0.1 and d16.loss.label_smoothing == 0.0 and d16.ema_decay == 0.0
    assert d16.precision == "fp16" and d16.tf32 and d16.optim.fused == "auto" and d16.data.fill_last
    assert d16.schedule.kind == "lin0" and d16.schedule.count_micro_batches and d16.optim.weight_decay_end < 0
    d30 = load_config(TrainConfig, CONFIGS / "var_d30.yaml")
    assert d30.batch_size == 1024 and d30.optim.base_lr == 8e-5 and d30.schedule.end_factor == 0.01
    assert d30.optim.weight_decay_end == 0.08 and d30.precision == "fp16"  # --twde=0.08 --fp16=1
    clip = load_config(TrainConfig, CONFIGS / "varclip_d16.yaml")
    assert clip.loss.cond_drop_mode in ("exact", "auto") and clip.data.kind == "text"
