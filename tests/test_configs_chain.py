"""Every recipe in configs/ chains: the tokenizer a generator config names is what a tokenizer
config in configs/ exports (a run directory counts), `cache` and `train` read it from there and
agree with it (vocabulary, channels, image size), a fine-tuning recipe starts from what another
recipe exports, and recipes that share a token cache directory would write the same cache."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from varclip.checkpoints import save_model_dir
from varclip.model import VARTransformer
from varclip.train.components import load_frozen_tokenizer, tokenizer_dir, transformer_config
from varclip.train.config import TokenizerTrainConfig, TrainConfig, load_config, read_yaml
from varclip.train.tokenizer import build_tokenizer

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.yaml"))
PLACEHOLDER = "/path/to/"  # recipes for data and weights the user supplies

pytestmark = pytest.mark.usefixtures("one_thread")


def _split() -> tuple[dict[str, TokenizerTrainConfig], dict[str, TrainConfig]]:
    toks, gens = {}, {}
    for path in CONFIGS:
        if "tokenizer" in read_yaml(path) and "model" not in read_yaml(path):
            toks[path.name] = load_config(TokenizerTrainConfig, path)
        else:
            gens[path.name] = load_config(TrainConfig, path)
    return toks, gens


def test_every_config_resolves_its_paths_in_a_chain(tmp_path, monkeypatch):
    toks, gens = _split()
    assert toks and gens
    monkeypatch.chdir(tmp_path)
    with torch.random.fork_rng(devices=[]):
        for cfg in toks.values():  # what each `varclip train-tokenizer` run leaves behind
            save_model_dir(Path(cfg.out_dir) / "tokenizer", tokenizer=build_tokenizer(cfg.tokenizer))
    pending = dict(gens)
    while pending:  # fine-tuning recipes after the recipe they start from
        ready = {n: c for n, c in pending.items() if not c.model.init_from or Path(c.model.init_from).is_dir()}
        assert ready, f"{sorted(pending)}: model.init_from is no recipe's exported model"
        for name, cfg in ready.items():
            del pending[name]
            if cfg.model.tokenizer.startswith(PLACEHOLDER):
                assert Path(cfg.data.root or cfg.data.manifest).is_absolute(), name
                continue
            assert not Path(cfg.model.tokenizer).is_absolute(), f"{name}: an absolute machine path"
            tcfg = transformer_config(cfg.model)
            tok = load_frozen_tokenizer(cfg.model.tokenizer, tcfg, cfg.data.image_size)  # cache and train
            assert tokenizer_dir(cfg.model.tokenizer).parent in {Path(t.out_dir) for t in toks.values()}, name
            with torch.random.fork_rng(devices=[]):
                save_model_dir(Path(cfg.out_dir) / "model", tokenizer=tok, transformer=VARTransformer(tcfg))
    caches: dict[str, tuple] = {}
    for name, cfg in gens.items():
        if cfg.data.cache_dir:
            what = (cfg.data.kind, cfg.data.root, cfg.data.manifest, cfg.data.image_size,
                    str(tokenizer_dir(cfg.model.tokenizer)), tuple(transformer_config(cfg.model).patch_nums))
            other = caches.setdefault(cfg.data.cache_dir, what)
            assert other == what, f"{name}: data.cache_dir {cfg.data.cache_dir} is another recipe's cache"


def test_a_run_directory_stands_for_its_tokenizer(tmp_path):
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    from varclip.config import ConfigError
    with pytest.raises(ConfigError, match="has not exported its tokenizer yet"):
        tokenizer_dir(run)
    (run / "tokenizer").mkdir()
    (run / "tokenizer" / "config.json").write_text("{}")
    assert tokenizer_dir(run) == run / "tokenizer" and tokenizer_dir(run / "tokenizer") == run / "tokenizer"
