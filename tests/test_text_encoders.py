"""Text encoders: spec parsing, one-line errors, empty prompts, minilm offline, local HF folders."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
import torch

from varclip.text.encoders import (
    EmptyPromptError,
    PromptTruncatedWarning,
    TextEmbedding,
    TextEncoder,
    TextEncoderError,
    load_text_encoder,
    parse_spec,
)
from varclip.text.normalize import spell_emoji

PARITY = Path(__file__).resolve().parents[1] / ".." / "shared" / "parity"
CLIP_PTH = PARITY / "clip-text-small" / "clip.pth"


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Offline semantics, enforced: the hub is switched off and any socket connect fails."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")

    def refuse(*args, **kwargs):
        raise OSError("network access attempted during a test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def _one_line_value_error(spec: str) -> str:
    with pytest.raises(ValueError) as e:
        load_text_encoder(spec)
    msg = str(e.value)
    assert msg and "\n" not in msg, msg
    return msg


class _Tiny(TextEncoder):
    identity, dim = "tiny", 2

    def _encode(self, texts: list[str]) -> TextEmbedding:
        return TextEmbedding(torch.ones(len(texts), 2))


def test_empty_prompt_refused_unless_asked() -> None:
    enc = _Tiny()
    for bad in ([""], ["ok", "   "]):
        with pytest.raises(EmptyPromptError, match="empty"):
            enc.encode(bad)
    assert issubclass(EmptyPromptError, ValueError)
    assert enc.encode(["", "x"], allow_empty=True).pooled.shape == (2, 2)
    with pytest.raises(ValueError):
        enc.encode("a single string")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        enc.encode([])


def test_spec_parsing() -> None:
    assert parse_spec("minilm") == ("minilm", "", {})
    assert parse_spec("clip:/x/ViT-L-14.pt?variant=openai&act=quickgelu") == (
        "clip", "/x/ViT-L-14.pt", {"variant": "openai", "act": "quickgelu"})
    assert parse_spec("hf:/models/t5") == ("hf", "/models/t5", {})


def test_bad_specs_and_paths(tmp_path: Path) -> None:
    assert "unknown text encoder" in _one_line_value_error("bert:/x")
    assert "not found" in _one_line_value_error(f"clip:{tmp_path / 'missing.pt'}")
    assert "not found" in _one_line_value_error(f"hf:{tmp_path / 'missing'}")
    assert "needs a path" in _one_line_value_error("clip:")
    (tmp_path / "empty").mkdir()
    assert "config.json" in _one_line_value_error(f"hf:{tmp_path / 'empty'}")
    assert "not a CLIP model folder" in _one_line_value_error(f"clip:{tmp_path / 'empty'}")
    torch.save({"weight": torch.zeros(3)}, tmp_path / "other.pt")
    assert "no CLIP text tower" in _one_line_value_error(f"clip:{tmp_path / 'other.pt'}")
    (tmp_path / "junk.pth").write_bytes(b"this is not a checkpoint\n" * 10)
    assert "cannot read" in _one_line_value_error(f"clip:{tmp_path / 'junk.pth'}")
    (tmp_path / "vision").mkdir()
    (tmp_path / "vision" / "config.json").write_text('{"model_type": "clip_vision_model"}')
    assert "vision model" in _one_line_value_error(f"hf:{tmp_path / 'vision'}")
    if CLIP_PTH.is_file():
        assert "unknown option" in _one_line_value_error(f"clip:{CLIP_PTH}?colour=red")
        assert "variant" in _one_line_value_error(f"clip:{CLIP_PTH}?variant=gpt2&heads=2")
        assert "activation" in _one_line_value_error(f"clip:{CLIP_PTH}?act=relu&heads=2")


@pytest.fixture(scope="module")
def minilm():
    mp = pytest.MonkeyPatch()
    mp.setenv("HF_HUB_OFFLINE", "1")
    mp.setattr(socket.socket, "connect", lambda *a, **k: (_ for _ in ()).throw(OSError("network attempted")))
    try:
        yield load_text_encoder("minilm")
    finally:
        mp.undo()


def test_minilm_offline(minilm, no_network) -> None:
    texts = ["a dog runs across the park", "a puppy running on the grass", "the quarterly tax report is late"]
    out = minilm.encode(texts)
    assert minilm.dim == 384 and out.pooled.shape == (3, 384) and out.pooled.dtype == torch.float32
    torch.testing.assert_close(out.pooled.norm(dim=-1), torch.ones(3))
    sim = out.pooled @ out.pooled.T
    assert sim[0, 1] > sim[0, 2] + 0.2 and sim[0, 1] > sim[1, 2] + 0.2
    assert out.tokens.shape[:2] == out.mask.shape and out.tokens.shape[0] == 3 and out.mask.dtype == torch.bool
    assert minilm.identity.startswith("minilm:")


def test_minilm_truncation_warns(minilm, no_network) -> None:
    with pytest.warns(PromptTruncatedWarning, match=r"prompt truncated: \d+ tokens dropped"):
        out = minilm.encode(["cat " * 300])
    assert out.pooled.shape == (1, 384)


def test_minilm_reads_emoji_by_name(minilm, no_network) -> None:
    """Its word-piece vocabulary maps every emoji to [UNK]: without spelling them out, an apple
    and a rocket had cosine 1.000."""
    out = minilm.encode(["\N{RED APPLE}", "\N{ROCKET}", "red apple", "a \N{ROCKET} over the moon"]).pooled
    assert out[0] @ out[1] < 0.6
    torch.testing.assert_close(out[0], out[2])  # read as its name
    assert minilm.identity.endswith(":emoji=names")  # embeddings cached before the change are not reused
    assert spell_emoji("a \N{ROCKET} over  the moon\N{THUMBS UP SIGN}") == "a rocket over the moon thumbs up"
    assert spell_emoji("caf\u00e9 \u732b") == "caf\u00e9 \u732b"  # text without emoji is left alone


@pytest.fixture(scope="module")
def tiny_hf_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from transformers import CLIPTextConfig, CLIPTextModelWithProjection

    torch.manual_seed(0)
    cfg = CLIPTextConfig(vocab_size=49408, hidden_size=32, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=2, projection_dim=16, max_position_embeddings=77, hidden_act="gelu")
    model = CLIPTextModelWithProjection(cfg).eval()
    folder = tmp_path_factory.mktemp("tiny_clip")
    model.save_pretrained(folder)
    return folder


def test_hf_clip_folder(tiny_hf_clip: Path, no_network) -> None:
    texts = ["a sailboat with a sail at sunset", "a <|endoftext|> b"]
    hf = load_text_encoder(f"hf:{tiny_hf_clip}")
    out = hf.encode(texts)
    assert hf.dim == 16 and out.pooled.shape == (2, 16) and out.tokens.shape == (2, 77, 32)
    # The same HF-layout weights through our tower (q/k/v packed, projection transposed).
    ours = load_text_encoder(f"clip:{tiny_hf_clip}?variant=openai&norm=0").encode(texts)
    torch.testing.assert_close(ours.pooled, out.pooled, atol=1e-5, rtol=0)
    normed = load_text_encoder(f"hf:{tiny_hf_clip}?norm=1").encode(texts).pooled
    torch.testing.assert_close(normed.norm(dim=-1), torch.ones(2))
    with pytest.warns(PromptTruncatedWarning, match="prompt truncated: 25 tokens dropped"):
        hf.encode([" ".join(["cat"] * 100)])


def test_hf_wrong_kind_of_folder(tmp_path: Path, no_network) -> None:
    from transformers import BertConfig, BertModel

    BertModel(BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=32)).save_pretrained(tmp_path)
    (tmp_path / "config.json").write_text((tmp_path / "config.json").read_text().replace('"bert"', '"clip_text_model"'))
    msg = _one_line_value_error(f"hf:{tmp_path}")
    assert str(tmp_path) in msg


def test_every_registered_kind_follows_the_one_spec_grammar(tmp_path: Path) -> None:
    """Adding a kind to TEXT_ENCODERS is enough: help, parser and option checks follow from it,
    and the CLIP scorer reads the same grammar."""
    from varclip.eval.clip_score import ClipScoreError, load_clip_scorer
    from varclip.text.encoders import SPEC_HELP, TEXT_ENCODERS
    for name, kind in TEXT_ENCODERS.items():
        assert kind.usage in SPEC_HELP and kind.usage.startswith(name)
        spec = f"{name}:{tmp_path / 'x'}" if kind.path else name
        assert parse_spec(spec)[:2] == (name, str(tmp_path / "x") if kind.path else "")
        assert "unknown option" in _one_line_value_error(f"{spec}?nonsense=1")
        assert ("needs a path" if kind.path else "takes no path") in \
            _one_line_value_error(name if kind.path else f"{name}:{tmp_path}")
        for opt in kind.options:  # every option refuses a value of the wrong kind in one line
            bad = "not-a-number" if opt in ("heads", "maxlen") else "maybe"
            if opt in ("norm", "heads", "maxlen"):
                assert opt in _one_line_value_error(f"{spec}?{opt}={bad}")
        if not kind.path:
            with pytest.raises(ClipScoreError, match="text-only"):
                load_clip_scorer(name)
