"""Tokenizer training: the loop learns, the GAN switches on at disc_start, dead codes are
re-seeded alone, the perceptual loss behaves, fine-tuning the official VAE works, resume repeats
the uninterrupted run. Everything runs on the "tiny" tokenizer at 32 px on CPU."""

from __future__ import annotations

import logging
import math
import random
from pathlib import Path
from typing import Any

import pytest
import torch
from PIL import Image, ImageDraw
from safetensors.torch import load_file

from varclip.checkpoints import load_tokenizer
from varclip.config import ConfigError, from_dict
from varclip.tokenizer import MultiScaleQuantizer
from varclip.train import tokenizer_losses as tl
from varclip.train.config import TokenizerModelConfig, TokenizerTrainConfig
from varclip.train.logging import read_metrics
from varclip.train.tokenizer import build_tokenizer, cli_train_tokenizer, parse_tokenizer_args, train_tokenizer

ROOT = Path(__file__).resolve().parents[1]
PARITY = ROOT.parent / "shared" / "parity"
COLOURS = [(230, 30, 30), (30, 160, 40), (40, 60, 220), (250, 200, 20)]


def make_shapes(folder: Path, n: int, size: int, seed: int = 0) -> Path:
    """One coloured disc or square per image on white: spatial structure a tiny model can learn
    in a few dozen steps (random background colours would need many more)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    for i in range(n):
        im = Image.new("RGB", (size, size), (255, 255, 255))
        d = ImageDraw.Draw(im)
        x0, y0, s = rng.randrange(size // 2), rng.randrange(size // 2), rng.randrange(size // 4, size // 2)
        (d.ellipse if rng.random() < 0.5 else d.rectangle)([x0, y0, x0 + s, y0 + s], fill=COLOURS[rng.randrange(4)])
        im.save(folder / f"{i:03d}.png")
    return folder


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: one intra-op thread is fastest


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def make_cfg(out: Path, source: Path, **over: Any) -> TokenizerTrainConfig:
    base = {"out_dir": str(out), "device": "cpu", "batch_size": 8, "seed": 0,
            "data": {"source": str(source), "random_crop": False, "num_workers": 0},
            "tokenizer": {"config": "tiny", "perceptual_weights": "none"},
            "loss": {"perceptual": 0.0},
            "optim": {"lr": 2e-3},
            "schedule": {"steps": 6, "warmup_steps": 0, "flat_fraction": 1.0},
            "logging": {"log_every": 1, "progress": False, "tensorboard": False, "sample_count": 4},
            "checkpoint": {"every": 0}}
    return from_dict(TokenizerTrainConfig, _merge(base, over))


@pytest.fixture(scope="module")
def shapes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_shapes(tmp_path_factory.mktemp("shapes"), 64, 32)


@pytest.fixture(scope="module")
def random_vgg(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A randomly initialised VGG16 in torchvision's key layout (features.N), no LPIPS layers."""
    torch.manual_seed(0)
    loss = tl.PerceptualLoss()
    conv_index = [0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28]
    sd = {}
    for i, conv in zip(conv_index, loss.net.convs):
        torch.nn.init.kaiming_normal_(conv.weight)
        sd[f"features.{i}.weight"], sd[f"features.{i}.bias"] = conv.weight.detach(), conv.bias.detach()
    path = tmp_path_factory.mktemp("vgg") / "vgg16.pth"
    torch.save(sd, path)
    return path


# ---------------------------------------------------------------------------- training


def test_tiny_tokenizer_learns_and_exports(tmp_path: Path, shapes: Path) -> None:
    cfg = make_cfg(tmp_path / "run", shapes, batch_size=4, optim={"lr": 3e-3}, schedule={"steps": 24},
                   loss={"reseed_every": 8}, logging={"sample_count": 2})
    result = train_tokenizer(cfg)
    recs = read_metrics(tmp_path / "run" / "metrics.jsonl")
    assert [r["step"] for r in recs] == list(range(1, 25))
    first = sum(r["l1"] for r in recs[:5]) / 5
    last = sum(r["l1"] for r in recs[-8:]) / 8
    assert last < 0.7 * first, (first, last)
    for r in recs:
        for s in range(4):
            assert 0 < r[f"usage/s{s:02d}"] <= 1
        assert r["gan"] == 0 and "d_loss" not in r
    assert result.tokenizer_dir == tmp_path / "run" / "tokenizer"
    tok = load_tokenizer(result.tokenizer_dir)
    assert tok.patch_nums == (1, 2, 3, 4)
    x = torch.zeros(1, 3, 32, 32)
    assert tok.decode(tok.encode(x)).shape == (1, 3, 32, 32)
    assert (tmp_path / "run" / "samples" / "recon-00000024.png").is_file()


def test_gan_switches_on_at_disc_start(tmp_path: Path, shapes: Path, random_vgg: Path) -> None:
    cfg = make_cfg(tmp_path / "run", shapes, batch_size=2, schedule={"steps": 4}, logging={"sample_count": 0},
                   disc={"start": 2, "ch": 8, "n_layers": 2},
                   loss={"perceptual": 1.0}, tokenizer={"perceptual_weights": str(random_vgg)})
    train_tokenizer(cfg)
    recs = {r["step"]: r for r in read_metrics(tmp_path / "run" / "metrics.jsonl")}
    for step in (1, 2):  # steps 0 and 1 (0-based) are before disc_start
        assert recs[step]["gan"] == 0 and "gan_weight" not in recs[step]
    for step in (3, 4):
        r = recs[step]
        assert r["gan"] == 1
        assert math.isfinite(r["gan_weight"]) and 0 <= r["gan_weight"] <= 0.5 * 1e4
        assert math.isfinite(r["d_loss"]) and math.isfinite(r["g_loss"])
        assert "d_grad_norm" in r
    assert all(math.isfinite(r["perceptual"]) and r["perceptual"] > 0 for r in recs.values())


def test_adaptive_weight_is_gradient_norm_ratio() -> None:
    last = torch.nn.Parameter(torch.randn(3, 4))
    x = torch.randn(5, 4)
    rec = (x @ last.T).square().mean()
    g = -(x @ last.T).mean()
    w = tl.adaptive_gan_weight(rec, g, last, disc_weight=0.5)
    g_rec = torch.autograd.grad(rec, last, retain_graph=True)[0]
    g_g = torch.autograd.grad(g, last, retain_graph=True)[0]
    assert torch.allclose(w, 0.5 * g_rec.norm() / (g_g.norm() + 1e-4))
    assert not w.requires_grad
    flat = (last * 0).sum()  # no gradient at all from the GAN side: clamped, still finite
    assert float(tl.adaptive_gan_weight(rec, flat, last, 1.0, max_weight=10.0)) == 10.0
    assert not tl.gan_active(4, 5) and tl.gan_active(5, 5) and not tl.gan_active(10**6, -1)


def test_patch_discriminator_and_hinge() -> None:
    d = tl.PatchDiscriminator(3, 8, 3, "group")
    out = d(torch.randn(2, 3, 32, 32))
    assert out.shape == (2, 1, 2, 2)
    assert float(tl.hinge_d_loss(torch.full((4,), 2.0), torch.full((4,), -2.0))) == 0.0
    assert float(tl.hinge_d_loss(torch.zeros(4), torch.zeros(4))) == 1.0
    assert float(tl.hinge_g_loss(torch.full((4,), 3.0))) == -3.0


# ---------------------------------------------------------------------------- dead codes


def test_reseed_changes_only_dead_codes() -> None:
    torch.manual_seed(0)
    q = MultiScaleQuantizer(16, 4, 2)
    q.ema_vocab_hit_SV.zero_()
    q.ema_vocab_hit_SV[:, :12] = 1.0  # codes 12..15 never used
    q.ema_vocab_hit_SV[1, 3] = 0.01  # code 3: 1.01 summed, above 0.03 x mean
    before = q.embedding.weight.detach().clone()
    residuals = torch.randn(10, 4)
    dead = tl.reseed_dead_codes(q, residuals, threshold=0.03, generator=torch.Generator().manual_seed(1))
    assert dead.tolist() == [12, 13, 14, 15]
    after = q.embedding.weight.detach()
    assert torch.equal(after[:12], before[:12])
    for i in dead.tolist():
        assert not torch.equal(after[i], before[i])
        assert any(torch.equal(after[i], r) for r in residuals)
    assert not tl.dead_code_mask(q, 0.03).any()  # reset usage: a grace period
    assert tl.reseed_dead_codes(q, residuals, 0.03).numel() == 0


def test_no_usage_statistics_means_no_dead_codes() -> None:
    q = MultiScaleQuantizer(8, 4, 2)
    assert not tl.dead_code_mask(q, 0.5).any()


def test_quantizer_residuals() -> None:
    torch.manual_seed(0)
    q = MultiScaleQuantizer(8, 4, 2)
    f = torch.randn(2, 4, 2, 2)
    finest = tl.quantizer_residuals(q, f, (1, 2), "finest")
    _, fhats = q.encode(f, (1, 2))
    assert torch.allclose(finest, (f - fhats[0]).permute(0, 2, 3, 1).reshape(-1, 4))
    every = tl.quantizer_residuals(q, f, (1, 2), "all")
    assert every.shape == (2 * 1 + 2 * 4, 4)
    assert torch.allclose(every[:2], f.mean(dim=(2, 3)))
    with pytest.raises(ValueError):
        tl.quantizer_residuals(q, f, (1, 2), "middle")


# ---------------------------------------------------------------------------- perceptual


def test_perceptual_zero_for_identical_and_grows_with_noise(random_vgg: Path) -> None:
    loss = tl.build_perceptual_loss(str(random_vgg), lin_weights="none")
    assert loss is not None and not loss.net.antialias
    torch.manual_seed(0)
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    noise = torch.randn_like(x)
    with torch.no_grad():
        assert torch.equal(loss(x, x), torch.zeros(2))
        d = [float(loss(x, x + s * noise).mean()) for s in (0.02, 0.1, 0.3, 1.0)]
    assert all(a < b for a, b in zip(d, d[1:])), d
    assert not any(p.requires_grad for p in loss.parameters())
    loss.train()
    assert not loss.training  # a fixed metric: never in training mode


def test_perceptual_layouts_round_trip(tmp_path: Path, random_vgg: Path) -> None:
    """LPIPS-style linear layers from a second file; our own (anti-aliased) layout via safetensors."""
    lin = {f"lin{i}.model.1.weight": torch.rand(1, c, 1, 1) for i, c in enumerate(tl.VGG16_WIDTHS)}
    torch.save(lin, tmp_path / "lin.pth")
    loss = tl.build_perceptual_loss(str(random_vgg), lin_weights=str(tmp_path / "lin.pth"))
    assert torch.equal(loss.lins[2].weight, lin["lin2.model.1.weight"])

    from safetensors.torch import save_file
    torch.manual_seed(1)
    aa = tl.PerceptualLoss(antialias=True)
    for conv in aa.net.convs:
        torch.nn.init.kaiming_normal_(conv.weight)
    save_file({k: v.contiguous() for k, v in aa.state_dict().items()}, str(tmp_path / "aa.safetensors"))
    back = tl.build_perceptual_loss(str(tmp_path / "aa.safetensors"))
    assert back.net.antialias
    x, y = torch.rand(1, 3, 16, 16) * 2 - 1, torch.rand(1, 3, 16, 16) * 2 - 1
    with torch.no_grad():
        assert torch.allclose(back(x, y), aa(x, y))
        assert float(back(x, y)) > 0


def test_perceptual_bad_files(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        tl.build_perceptual_loss(str(tmp_path / "missing.pth"))
    torch.save({"features.0.weight": torch.zeros(64, 3, 3, 3), "features.0.bias": torch.zeros(64)},
               tmp_path / "short.pth")
    with pytest.raises(ValueError, match="13 convs"):
        tl.build_perceptual_loss(str(tmp_path / "short.pth"))


def test_perceptual_disabled_is_logged_once(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(tl, "_package_file", lambda package, parts: None)  # as if stlpips were not installed
    monkeypatch.setattr(tl, "_warned_disabled", False)
    with caplog.at_level(logging.WARNING, logger="varclip.train"):
        assert tl.build_perceptual_loss("auto") is None
        assert tl.build_perceptual_loss("auto") is None
        assert tl.build_perceptual_loss("none") is None
    hits = [r for r in caplog.records if r.getMessage() == tl.DISABLED_MESSAGE]
    assert len(hits) == 1
    assert "tokenizer.perceptual_weights=PATH" in tl.DISABLED_MESSAGE
    with pytest.raises(FileNotFoundError, match="stlpips"):
        tl.build_perceptual_loss("stlpips")


# ---------------------------------------------------------------------------- fine-tuning, resume, config


def test_finetune_official_vae_runs_a_step(tmp_path: Path) -> None:
    vae = PARITY / "c2i-small" / "vae.pth"
    if not vae.is_file():
        pytest.skip(f"parity VAE not found at {vae} (../shared/parity beside the repo)")
    src = make_shapes(tmp_path / "img64", 4, 64)
    cfg = make_cfg(tmp_path / "run", src, batch_size=2, schedule={"steps": 1}, logging={"sample_count": 2},
                   data={"image_size": 64}, tokenizer={"init_from": str(vae), "patch_nums": [1, 2, 3, 4]})
    result = train_tokenizer(cfg)
    tuned = load_tokenizer(result.tokenizer_dir)
    orig = load_tokenizer(vae, (1, 2, 3, 4))
    assert tuned.patch_nums == (1, 2, 3, 4)
    assert tuned.quantize.ema_vocab_hit_SV.shape == (4, 64)
    assert tuned.cfg.ch == orig.cfg.ch and tuned.cfg.ch_mult == orig.cfg.ch_mult
    assert not torch.equal(tuned.encoder.conv_in.weight, orig.encoder.conv_in.weight)


def test_resume_repeats_the_uninterrupted_run(tmp_path: Path, shapes: Path) -> None:
    over = dict(batch_size=4, ema_decay=0.9, disc={"start": 1, "ch": 8, "n_layers": 2}, loss={"reseed_every": 1},
                schedule={"steps": 4}, checkpoint={"every": 2}, logging={"sample_count": 0})
    train_tokenizer(make_cfg(tmp_path / "a", shapes, **over))
    train_tokenizer(make_cfg(tmp_path / "b", shapes, **_merge(over, {"schedule": {"steps": 2}})))
    with pytest.raises(ConfigError, match="--resume auto"):
        train_tokenizer(make_cfg(tmp_path / "b", shapes, **over))
    train_tokenizer(make_cfg(tmp_path / "b", shapes, **_merge(over, {"checkpoint": {"resume": "auto"}})))
    a = load_file(str(tmp_path / "a" / "tokenizer" / "tokenizer.safetensors"))
    b = load_file(str(tmp_path / "b" / "tokenizer" / "tokenizer.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        assert torch.allclose(a[k], b[k], atol=1e-6), k
    steps = [r["step"] for r in read_metrics(tmp_path / "b" / "metrics.jsonl")]
    assert steps == [1, 2, 3, 4]
    assert sum(r["reseeded"] for r in read_metrics(tmp_path / "a" / "metrics.jsonl")) > 0  # the path ran
    ra = read_metrics(tmp_path / "a" / "metrics.jsonl")[-1]
    rb = read_metrics(tmp_path / "b" / "metrics.jsonl")[-1]
    assert ra["loss"] == pytest.approx(rb["loss"], abs=1e-5)


def test_configs_and_cli(capsys: pytest.CaptureFixture[str]) -> None:
    for name in ("tokenizer_tiny.yaml", "tokenizer_emoji.yaml"):
        cfg, _ = parse_tokenizer_args([str(ROOT / "configs" / name)])
        build_tokenizer(cfg.tokenizer)  # the named config and arch exist
    cfg, _ = parse_tokenizer_args([str(ROOT / "configs" / "tokenizer_emoji.yaml")])
    assert cfg.tokenizer.config == "emoji" and cfg.data.image_size == 64 and cfg.disc.start > 0
    assert cli_train_tokenizer([str(ROOT / "configs" / "tokenizer_tiny.yaml"), "--print-config"]) == 0
    assert "perceptual_weights" in capsys.readouterr().out
    with pytest.raises(ConfigError, match="loss.nope"):
        parse_tokenizer_args([str(ROOT / "configs" / "tokenizer_tiny.yaml"), "loss.nope=1"])
    with pytest.raises(ConfigError, match="tokenizer.arch.bogus"):
        from_dict(TokenizerTrainConfig, {"tokenizer": {"arch": {"bogus": 1}}})


def test_fresh_codebook_is_near_the_origin() -> None:
    cfg = from_dict(TokenizerTrainConfig, {})
    tok = build_tokenizer(cfg.tokenizer)
    V = tok.cfg.vocab_size
    assert tok.quantize.embedding.weight.abs().max() <= 1.0 / V


def test_init_from_native_directory(tmp_path: Path) -> None:
    from varclip.checkpoints import save_model_dir
    torch.manual_seed(0)
    src = build_tokenizer(TokenizerModelConfig(config="tiny"))
    src.quantize.ema_vocab_hit_SV.fill_(1.0)
    save_model_dir(tmp_path / "tok", tokenizer=src)
    same = build_tokenizer(TokenizerModelConfig(init_from=str(tmp_path / "tok")))
    assert torch.equal(same.quantize.embedding.weight, src.quantize.embedding.weight)
    assert torch.equal(same.quantize.ema_vocab_hit_SV, src.quantize.ema_vocab_hit_SV)
    other = build_tokenizer(TokenizerModelConfig(init_from=str(tmp_path / "tok"), patch_nums=[1, 2, 4]))
    assert other.patch_nums == (1, 2, 4) and other.quantize.ema_vocab_hit_SV.shape == (3, 64)
    assert not other.quantize.ema_vocab_hit_SV.any()  # per-scale statistics of another schedule: reset
    assert torch.equal(other.decoder.conv_out.weight, src.decoder.conv_out.weight)
    with pytest.raises(ConfigError, match="arch"):
        build_tokenizer(TokenizerModelConfig(init_from=str(tmp_path / "tok"), arch={"ch": 64}))
    with pytest.raises(ConfigError, match="not found"):
        build_tokenizer(TokenizerModelConfig(init_from=str(tmp_path / "missing")))
