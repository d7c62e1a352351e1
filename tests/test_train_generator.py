"""Generator training in this process: class and text models learn, the exported directory
generates, the token cache is used transparently, and bad setups fail with one line."""

from __future__ import annotations

import json

import pytest
import torch
from PIL import Image
from test_train_fixtures import CONFIGS, class_overrides, losses, make_data, text_overrides

from varclip.checkpoints import load_model_dir
from varclip.cli import main as varclip_main
from varclip.config import RECOMMENDED_KEYS, ConfigError, SamplingConfig
from varclip.train.cache import cli_cache, read_index
from varclip.train.config import TrainConfig, load_config
from varclip.train.generator import cli_train, train

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_data(tmp_path_factory.mktemp("train_data"))


def _cfg(name: str, overrides: list[str]) -> TrainConfig:
    return load_config(TrainConfig, CONFIGS / f"{name}.yaml", overrides)


def _falls(values: list[float]) -> bool:
    head, tail = sum(values[:3]) / 3, sum(values[-3:]) / 3
    return tail < 0.6 * head


def test_class_model_learns_and_exports(data, tmp_path):
    out = tmp_path / "run"
    result = train(_cfg("tiny_class", class_overrides(data, out, steps=40)))
    curve = losses(out)
    assert len(curve) == 40 and _falls(curve), curve
    rec = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])
    for key in ("lr", "grad_norm", "images_per_s", "acc", "scale_loss/00", "scale_acc/03"):
        assert key in rec
    assert result.model_dir == out / "model"
    tok, model, cfg = load_model_dir(result.model_dir)
    assert model.cfg.num_classes == 10 and tok is not None and cfg["training"]["steps"] == 40
    lc = cfg["training"]["config"]["logging"]  # preview settings become the recommended ones
    assert cfg["sampling"] == {k: v for k, v in lc["sample"].items() if k in RECOMMENDED_KEYS}
    assert cfg["sampling"]["cfg"] == SamplingConfig().cfg
    assert (out / "samples" / "step-00000040.png").is_file() and (out / "config.yaml").is_file()
    grid = tmp_path / "gen.png"
    assert varclip_main(["generate", "--model", str(result.model_dir), "--class", "1", "--n", "2",
                         "--out", str(grid), "--quiet", "--device", "cpu"]) == 0
    assert Image.open(grid).size[0] > 64


def test_text_model_learns_exports_and_cache_is_transparent(data, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    out = tmp_path / "text"
    train(_cfg("tiny_text", text_overrides(data, out, steps=30)))
    plain = losses(out)
    assert _falls(plain), plain
    _, model, cfg = load_model_dir(out / "model")
    assert model.cfg.is_text and cfg["text_encoder"] == "minilm"
    grid = tmp_path / "t.png"
    assert varclip_main(["generate", "a red square", "--model", str(out / "model"), "--out", str(grid),
                         "--quiet", "--device", "cpu"]) == 0

    # the cache holds ids and MiniLM embeddings: training from it never runs the VAE or MiniLM
    cache = tmp_path / "cache"
    over = text_overrides(data, tmp_path / "cached", steps=30) + [f"data.cache_dir={cache}"]
    assert cli_cache([str(CONFIGS / "tiny_text.yaml"), *over, "--shard-size", "10"]) == 0
    index = read_index(cache)
    assert index.num_samples == 32 and len(index.info["shards"]) == 4 and index.kind == "text"

    def refuse(*a, **k):
        raise AssertionError("the tokenizer encoder / text encoder must not run with a cache")
    monkeypatch.setattr("varclip.tokenizer.VQTokenizer.encode", refuse)
    monkeypatch.setattr("varclip.text.load_text_encoder", refuse)
    train(_cfg("tiny_text", over))
    cached = losses(tmp_path / "cached")
    assert cached == pytest.approx(plain, rel=1e-4, abs=1e-5)
    assert (tmp_path / "cached" / "model" / "transformer.safetensors").is_file()


def test_class_cache_gives_the_same_losses(data, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    over = class_overrides(data, tmp_path / "a", steps=10) + [f"data.cache_dir={cache}", "logging.sample_count=0"]
    train(_cfg("tiny_class", over))  # no cache yet: use_cache auto reads images
    assert cli_cache([str(CONFIGS / "tiny_class.yaml"), *over]) == 0
    assert cli_cache([str(CONFIGS / "tiny_class.yaml"), *over]) == 0  # a rerun keeps the complete shards
    monkeypatch.setattr("varclip.tokenizer.VQTokenizer.encode",
                        lambda *a, **k: (_ for _ in ()).throw(AssertionError("VAE used")))
    over_b = [o.replace(str(tmp_path / "a"), str(tmp_path / "b")) for o in over]
    train(_cfg("tiny_class", over_b))
    assert losses(tmp_path / "b") == pytest.approx(losses(tmp_path / "a"), rel=1e-5, abs=1e-6)
    with pytest.raises(ConfigError, match="patch_nums"):
        train(_cfg("tiny_class", over_b + ["model.arch.patch_nums=[1,2,4]", "out_dir=" + str(tmp_path / "c")]))


def test_accumulation_bf16_ema_progressive_smoke(data, tmp_path):
    """Accumulation gives the loss of the full batch; bf16 + EMA + label smoothing + scale weights
    + progressive growth run and export."""
    ref = tmp_path / "ref"
    train(_cfg("tiny_class", class_overrides(data, ref, steps=4) + ["logging.sample_count=0"]))
    acc = tmp_path / "acc"
    train(_cfg("tiny_class", class_overrides(data, acc, steps=4) + ["logging.sample_count=0", "grad_accum=2"]))
    assert losses(acc) == pytest.approx(losses(ref), rel=1e-5)
    out = tmp_path / "mix"
    over = class_overrides(data, out, steps=6) + [
        "precision=bf16", "ema_decay=0.9", "loss.label_smoothing=0.1", "loss.scale_weights=[1,1,2,2]",
        "loss.progressive_start_scales=2", "loss.progressive_fraction=0.5", "logging.sample_every=3",
        "schedule.warmup_steps=1"]  # the first stage is held through the warm-up (official rule)
    train(_cfg("tiny_class", over))
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert rows[0]["scales"] == 2 and "scales" not in rows[-1]
    assert all(torch.isfinite(torch.tensor(r["loss"])) for r in rows)
    assert (out / "samples" / "step-00000003.png").is_file()
    _, model, cfg = load_model_dir(out / "model")
    assert cfg["training"]["ema"] is True


def test_setup_errors_are_one_line(data, tmp_path):
    base = class_overrides(data, tmp_path / "e", steps=2)
    cases = [
        (base + ["batch_size=6", "grad_accum=4"], "grad_accum"),
        (base + [f"model.tokenizer={tmp_path / 'nope'}"], "tokenizer not found"),
        (base + ["data.image_size=64"], "image_size"),
        (base + ["model.arch.num_classes=2"], "classes"),
        (base + ["data.kind=text", f"data.manifest={data['manifest']}"], "class-conditional"),
        (base + ["loss.scale_weights=[1,2]"], "scale_weights"),
        (base + [f"data.cache_dir={tmp_path / 'none'}", "data.use_cache=on"], "varclip cache"),
    ]
    for over, words in cases:
        with pytest.raises(ValueError) as e:
            train(_cfg("tiny_class", over))
        assert words in str(e.value) and "\n" not in str(e.value), str(e.value)
    # a finished run refuses to start over unless told to resume
    train(_cfg("tiny_class", base + ["logging.sample_count=0"]))
    with pytest.raises(ConfigError, match="--resume auto"):
        train(_cfg("tiny_class", base))
    assert cli_train([str(CONFIGS / "tiny_class.yaml"), *base, "--resume", "auto", "--print-config"]) == 0
