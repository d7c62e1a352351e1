"""The one config loader (`from_dict`) for model, sampling and training configs."""

from __future__ import annotations

import pytest

from varclip.config import (ConfigError, SamplingConfig, TokenizerConfig, TransformerConfig, from_dict,
                            named_transformer, parse_bool, to_dict)


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
