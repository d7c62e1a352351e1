"""CLIP BPE tokenizer: golden ids of both variants, truncation, vocabulary checks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from varclip.text.bpe import EOT_ID, SOT_ID, VOCAB_SHA256, ClipTokenizer, find_vocab_file
from varclip.text.parity import check_clip_tokenizer

PARITY = Path(__file__).resolve().parents[1] / ".." / "shared" / "parity"
CASE_DIR = PARITY / "clip-tokenizer"


def _cases() -> list[dict]:
    if not (CASE_DIR / "cases.json").is_file():
        return []
    return json.loads((CASE_DIR / "cases.json").read_text())["cases"]


needs_parity = pytest.mark.skipif(not CASE_DIR.is_dir(), reason=f"golden parity data not found at {CASE_DIR}")


@pytest.fixture(scope="module")
def tokenizers() -> dict[str, ClipTokenizer]:
    return {v: ClipTokenizer(v) for v in ("openai", "varclip")}


@needs_parity
@pytest.mark.parametrize("variant", ["openai", "varclip"])
@pytest.mark.parametrize("index", range(len(_cases()) or 1))
def test_golden_ids(tokenizers, variant: str, index: int) -> None:
    case = _cases()[index]
    got = tokenizers[variant]([case["text"]])[0].tolist()
    assert got == case[f"ids_{variant}"], case["text"]


@needs_parity
def test_parity_check_function() -> None:
    checks = check_clip_tokenizer(CASE_DIR)
    assert len(checks) == 2 * len(_cases())
    assert len({c.name for c in checks}) == len(checks)
    assert all(c.ok for c in checks), [c for c in checks if not c.ok]


def test_vocab_file_is_verified() -> None:
    import hashlib

    path = find_vocab_file()
    assert hashlib.sha256(path.read_bytes()).hexdigest() == VOCAB_SHA256


def test_clip_package_not_imported(tokenizers) -> None:
    import sys

    assert "clip" not in sys.modules  # located with find_spec only (importing it needs torchvision)


def test_frame_and_truncation(tokenizers) -> None:
    tok = tokenizers["varclip"]
    ids, dropped = tok.frame("a cat")
    assert ids[0] == SOT_ID and ids[3] == EOT_ID and ids[4:] == [0] * 73 and dropped == 0
    long_text = " ".join(["cat"] * 100)  # 'cat' is one token: 102 framed tokens
    ids, dropped = tok.frame(long_text)
    assert len(ids) == 77 and ids[-1] == EOT_ID and ids[0] == SOT_ID and dropped == 100 - 75
    batch = tok.tokenize(["a cat", long_text])
    assert batch.ids.shape == (2, 77) and batch.ids.dtype == torch.long and batch.dropped == [0, 25]


def test_variants_differ_on_literals(tokenizers) -> None:
    assert tokenizers["openai"].encode("<|endoftext|>") == [EOT_ID]
    assert EOT_ID not in tokenizers["varclip"].encode("<|endoftext|>")
    assert tokenizers["varclip"].encode("<end_of_text>") == [EOT_ID]


def test_decode_round_trip(tokenizers) -> None:
    tok = tokenizers["openai"]
    assert tok.decode(tok.encode("A Sailboat, at  sunset!")) == "a sailboat , at sunset !"


def test_bad_variant() -> None:
    with pytest.raises(ValueError, match="variant"):
        ClipTokenizer("gpt2")  # type: ignore[arg-type]
