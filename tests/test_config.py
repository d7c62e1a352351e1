"""The one config loader (`from_dict`) for model, sampling and training configs, and the named
model configs (built on the meta device, checked against the official layouts)."""

from __future__ import annotations

import json

import pytest
import torch

from varclip.checkpoints import check_compatible, tokenizer_to_official, transformer_to_official
from varclip.config import (TOKENIZERS, TRANSFORMERS, ConfigError, SamplingConfig, TokenizerConfig,
                            TransformerConfig, from_dict, named_tokenizer, named_transformer, parse_bool, to_dict)
from varclip.model import VARTransformer
from varclip.tokenizer import VQTokenizer


def test_model_configs_get_real_coercion():
    cfg = from_dict(TransformerConfig, {"depth": "2", "embed_dim": 64.0, "num_heads": 2, "patch_nums": [1, 2],
                                        "shared_aln": "yes", "mlp_ratio": "4", "num_classes": 10})
    assert cfg.depth == 2 and cfg.embed_dim == 64 and cfg.shared_aln is True and cfg.mlp_ratio == 4.0
    assert cfg.patch_nums == (1, 2) and isinstance(cfg.patch_nums, tuple)
    assert from_dict(SamplingConfig, {"seed": None, "top_k": "5"}).top_k == 5
    tok = TokenizerConfig(ch_mult=(1, 2), patch_nums=(1, 2, 4))
    assert from_dict(TokenizerConfig, to_dict(tok)) == tok  # the config.json round trip


@pytest.mark.parametrize("cls, data, words", [
    (TransformerConfig, {"depth": "two"}, "transformer.depth: expected an integer"),
    (TransformerConfig, {"depth": 2.5}, "transformer.depth"),
    (TransformerConfig, {"shared_aln": "maybe"}, "transformer.shared_aln: expected true/false"),
    (TransformerConfig, {"patch_nums": [1, "x"]}, "transformer.patch_nums[1]"),
    (TransformerConfig, {"widht": 3}, "unknown config key 'transformer.widht'"),
    (TokenizerConfig, {"patch_nums": [2, 1]}, "increasing"),  # __post_init__'s own message
])
def test_bad_values_are_one_line_errors(cls, data, words):
    with pytest.raises(ConfigError) as e:
        from_dict(cls, data, "transformer")
    assert words in str(e.value) and "\n" not in str(e.value)


def test_bool_words():
    assert parse_bool("On", "x") is True and parse_bool("0", "x") is False and parse_bool(True, "x") is True
    with pytest.raises(ConfigError, match="x: expected true/false"):
        parse_bool("2", "x")


def test_to_dict_is_plain_data():
    d = to_dict(named_transformer("tiny"))
    assert d["patch_nums"] == [1, 2, 3, 4] and from_dict(TransformerConfig, d) == named_transformer("tiny")


# ---------------------------------------------------------------------------- named model configs

# named config -> its entry in ../shared/parity/official_layouts.json
OFFICIAL = {"vae_ch160v4096z32": "vae_ch160v4096z32", "vae_ch160v4096z32_512": "vae_ch160v4096z32",
            "d16": "var_d16", "d20": "var_d20", "d24": "var_d24", "d30": "var_d30", "d36": "var_d36_512",
            "varclip_d16": "varclip_d16"}


def _on_meta(kind: str, name: str) -> torch.nn.Module:
    """A named model on the meta device: no memory, so d36 (2.4 B parameters) costs nothing."""
    with torch.device("meta"):
        return VQTokenizer(named_tokenizer(name)) if kind == "tokenizer" else VARTransformer(named_transformer(name))


def _params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("name", sorted(TRANSFORMERS))
def test_every_named_transformer_builds_and_fits_a_named_tokenizer(name):
    model, cfg = _on_meta("transformer", name), named_transformer(name)
    # the blocks hold nearly all weights: attention 4C^2 + MLP 8C^2 (+ AdaLN 6C^2 unless shared)
    C = cfg.embed_dim
    blocks = cfg.depth * ((12 if cfg.shared_aln else 18) + (4 if cfg.cross_attn else 0)) * C * C
    assert 1.0 < _params(model) / blocks < 1.5, _params(model)
    fits = [t for t in TOKENIZERS if named_tokenizer(t).patch_nums == cfg.patch_nums]
    for t in fits:
        check_compatible(_on_meta("tokenizer", t), model)
    assert fits, f"no named tokenizer serves {name}'s schedule {cfg.patch_nums}"


@pytest.mark.parametrize("name", sorted(TOKENIZERS))
def test_every_named_tokenizer_builds(name):
    tok = _on_meta("tokenizer", name)
    assert tok.cfg.image_size == tok.patch_nums[-1] * tok.cfg.downsample
    assert tok.quantize.ema_vocab_hit_SV.shape == (len(tok.patch_nums), tok.cfg.vocab_size)
    assert 1e5 < _params(tok) < 2e8


@pytest.mark.parametrize("name", sorted(OFFICIAL))
def test_named_configs_match_the_official_layouts(name, parity_dir):
    entry = json.loads((parity_dir / "official_layouts.json").read_text())[OFFICIAL[name]]
    kind = "tokenizer" if name in TOKENIZERS else "transformer"
    model = _on_meta(kind, name)
    assert _params(model) == entry["params"]
    sd = tokenizer_to_official(model) if kind == "tokenizer" else transformer_to_official(model)
    ours = {k: [list(v.shape), str(v.dtype).removeprefix("torch.")] for k, v in sd.items()}
    assert ours == {k: [list(shape), dtype] for k, (shape, dtype) in entry["keys"].items()}
