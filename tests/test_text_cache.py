"""On-disk embedding cache: hits are bitwise identical and never run the encoder."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from varclip.text.cache import CachedTextEncoder, EmbeddingCache, cache_key
from varclip.text.encoders import EmptyPromptError, TextEmbedding, TextEncoder


class CountingEncoder(TextEncoder):
    """Deterministic fake: a text's vector depends only on the text; token count = word count."""

    def __init__(self, identity: str = "fake:v1", with_tokens: bool = True) -> None:
        self.identity, self.dim, self.with_tokens = identity, 8, with_tokens
        self.calls: list[list[str]] = []

    def _encode(self, texts: list[str]) -> TextEmbedding:
        self.calls.append(list(texts))
        gens = [torch.Generator().manual_seed(sum(map(ord, t)) * 7919 + len(t)) for t in texts]
        pooled = torch.stack([torch.randn(8, generator=g) for g in gens])
        if not self.with_tokens:
            return TextEmbedding(pooled)
        t_max = max(max(len(t.split()), 1) for t in texts)
        tokens = torch.zeros(len(texts), t_max, 4)
        mask = torch.zeros(len(texts), t_max, dtype=torch.bool)
        for i, (t, g) in enumerate(zip(texts, gens)):
            n = max(len(t.split()), 1)
            tokens[i, :n] = torch.randn(n, 4, generator=g)
            mask[i, :n] = True
        return TextEmbedding(pooled, tokens, mask)


def _same(a: TextEmbedding, b: TextEmbedding) -> bool:
    ok = torch.equal(a.pooled, b.pooled)
    if a.tokens is None or b.tokens is None:
        return ok and a.tokens is None and b.tokens is None
    return ok and torch.equal(a.tokens, b.tokens) and torch.equal(a.mask, b.mask)


def test_hit_is_identical_and_skips_encoder(tmp_path: Path) -> None:
    inner = CountingEncoder()
    enc = CachedTextEncoder(inner, tmp_path)
    texts = ["a red apple", "a cat", "a dog on a skateboard"]
    first = enc.encode(texts)
    assert inner.calls == [texts]
    second = enc.encode(texts)
    assert inner.calls == [texts], "a full hit must not run the encoder"
    assert _same(first, second)
    # A new process (new wrapper, same folder) sees the same entries.
    inner2 = CountingEncoder()
    third = CachedTextEncoder(inner2, tmp_path).encode(texts)
    assert inner2.calls == [] and _same(first, third)


def test_only_misses_are_encoded(tmp_path: Path) -> None:
    inner = CountingEncoder()
    enc = CachedTextEncoder(inner, tmp_path)
    enc.encode(["a cat"])
    out = enc.encode(["a cat", "a new caption here", "a cat", "a new caption here"])
    assert inner.calls == [["a cat"], ["a new caption here"]]  # misses once, de-duplicated
    assert torch.equal(out.pooled[0], out.pooled[2]) and out.pooled.shape == (4, 8)
    assert out.tokens.shape == (4, 4, 4) and out.mask.sum(1).tolist() == [2, 4, 2, 4]
    assert (enc.hits, enc.misses) == (1, 2)  # unique texts: 'a cat' hit in call 2


def test_identity_is_part_of_the_key(tmp_path: Path) -> None:
    a, b = CountingEncoder("fake:v1"), CountingEncoder("fake:v2")
    CachedTextEncoder(a, tmp_path).encode(["same text"])
    CachedTextEncoder(b, tmp_path).encode(["same text"])
    assert a.calls and b.calls
    assert cache_key("fake:v1", "same text") != cache_key("fake:v2", "same text")
    assert cache_key("ab", "c") != cache_key("a", "bc")


def test_pooled_only_encoders_and_atomic_files(tmp_path: Path) -> None:
    inner = CountingEncoder(with_tokens=False)
    enc = CachedTextEncoder(inner, tmp_path)
    first = enc.encode(["x y", "z"])
    again = enc.encode(["x y", "z"])
    assert len(inner.calls) == 1 and _same(first, again) and again.tokens is None
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert len(files) == 2 and all(p.suffix == ".safetensors" for p in files)  # no temp files left


def test_damaged_entry_is_a_miss(tmp_path: Path) -> None:
    inner = CountingEncoder()
    enc = CachedTextEncoder(inner, tmp_path)
    first = enc.encode(["broken soon"])
    EmbeddingCache(tmp_path).path(cache_key(inner.identity, "broken soon")).write_bytes(b"garbage")
    again = enc.encode(["broken soon"])
    assert len(inner.calls) == 2 and _same(first, again)


def test_empty_prompt_rules_pass_through(tmp_path: Path) -> None:
    inner = CountingEncoder()
    enc = CachedTextEncoder(inner, tmp_path)
    with pytest.raises(EmptyPromptError):
        enc.encode(["fine", ""])
    assert inner.calls == []
    assert enc.encode([""], allow_empty=True).pooled.shape == (1, 8)
