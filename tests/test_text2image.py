"""Text-to-image through the shared transformer and sampler."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from varclip.checkpoints import save_model_dir
from varclip.cli import main
from varclip.config import named_tokenizer, named_transformer
from varclip.model import Cond, VARTransformer
from varclip.pipeline import VARPipeline
from varclip.text.encoders import TextEmbedding
from varclip.tokenizer import VQTokenizer


class FakeEncoder:
    """Deterministic embeddings per text; counts calls."""

    identity, dim = "fake-encoder", 384

    def __init__(self):
        self.calls = 0

    def encode(self, texts, allow_empty=False):
        self.calls += 1
        rows, toks = [], []
        for t in texts:
            g = torch.Generator().manual_seed(sum(map(ord, t)) + len(t))
            rows.append(torch.randn(384, generator=g))
            toks.append(torch.randn(5, 384, generator=g))
        return TextEmbedding(torch.nn.functional.normalize(torch.stack(rows), dim=-1), torch.stack(toks),
                             torch.ones(len(texts), 5, dtype=torch.bool))


@pytest.fixture
def text_pipe():
    torch.manual_seed(0)
    return VARPipeline(VQTokenizer(named_tokenizer("tiny")), VARTransformer(named_transformer("tiny_text")),
                       FakeEncoder())


def test_class_and_text_models_share_one_transformer_class(text_pipe, tiny_pipeline):
    assert type(text_pipe.transformer) is type(tiny_pipeline.transformer)
    assert type(text_pipe.transformer.blocks[0]) is type(tiny_pipeline.transformer.blocks[0])


def test_negative_prompt_replaces_the_null_branch(text_pipe):
    kw = dict(num_images=2, seed=0, top_k=1, top_p=0.0, cfg=4.0, return_tokens=True)
    plain = text_pipe("red apple", **kw)
    neg = text_pipe("red apple", negative_prompt="blurry", **kw)
    assert not all(torch.equal(a, b) for a, b in zip(plain.tokens, neg.tokens))
    # negative == prompt: guidance cancels, same greedy tokens as no guidance
    same = text_pipe("red apple", negative_prompt="red apple", **kw)
    off = text_pipe("red apple", **{**kw, "cfg": 0.0})
    assert all(torch.equal(a, b) for a, b in zip(same.tokens, off.tokens))


def test_text_model_refuses_class_labels_and_missing_prompt(text_pipe):
    with pytest.raises(ValueError, match="text-to-image"):
        text_pipe(class_labels=[1])
    with pytest.raises(ValueError, match="give a caption"):
        text_pipe()
    assert len(text_pipe(unconditional=True, num_images=2, seed=0).images) == 2


def test_cross_attention_is_trainable_and_sampleable():
    cfg = dataclasses.replace(named_transformer("tiny_text"), cross_attn=True)
    torch.manual_seed(0)
    model = VARTransformer(cfg)
    assert model.blocks[0].cross is not None
    cond = Cond(torch.randn(2, 384), torch.randn(2, 5, 384), torch.tensor([[1, 1, 1, 0, 0], [1] * 5]).bool())
    logits = model(cond, torch.randn(2, 29, 8))
    logits.logsumexp(-1).mean().backward()
    assert model.blocks[0].cross.proj.weight.grad.abs().sum() > 0
    pipe = VARPipeline(VQTokenizer(named_tokenizer("tiny")), model, FakeEncoder())
    out = pipe("a blue heart", negative_prompt="x", num_images=2, seed=0, cfg=2.0)
    assert len(out.images) == 2


def test_generate_cli_with_minilm(text_pipe, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    d = save_model_dir(tmp_path / "t2i", text_pipe.tokenizer, text_pipe.transformer, text_encoder="minilm")
    out = tmp_path / "o.png"
    assert main(["generate", "a red apple", "a blue heart", "--model", str(d), "--n", "2", "--negative", "blurry",
                 "--cfg", "3", "--seed", "0", "--out", str(out), "--quiet"]) == 0
    assert out.is_file()
    assert main(["generate", "", "--model", str(d), "--out", str(out), "--quiet"]) == 2
    assert main(["generate", "--class", "1", "--model", str(d), "--out", str(out), "--quiet"]) == 2


def test_prompt_inspect_cli(monkeypatch, capsys):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert main(["prompt-inspect", "a red apple on a table"]) == 0
    out = capsys.readouterr().out
    assert "apple" in out and "table" in out


def test_unconditional_cli_for_text_models(text_pipe, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    d = save_model_dir(tmp_path / "t2i", text_pipe.tokenizer, text_pipe.transformer, text_encoder="minilm")
    out = tmp_path / "u.png"
    assert main(["generate", "--unconditional", "--n", "2", "--model", str(d), "--out", str(out), "--quiet"]) == 0
    assert main(["generate", "", "--unconditional", "--model", str(d), "--out", str(out), "--quiet"]) == 0
    assert out.is_file()
    assert main(["generate", "a cat", "--unconditional", "--model", str(d), "--out", str(out), "--quiet"]) == 2
    assert main(["generate", "a cat", "--negative", "", "--model", str(d), "--out", str(out), "--quiet"]) == 2


def test_text_norm_standardises_the_caption_embedding(tmp_path):
    """text_norm: the condition depends on the embedding's direction and shape, not its scale, and
    the option survives a save/load round trip (no new weights, so it lives in config.json)."""
    cfg = dataclasses.replace(named_transformer("tiny_text"), text_norm=True)
    torch.manual_seed(0)
    model = VARTransformer(cfg).eval()
    plain = VARTransformer(named_transformer("tiny_text")).eval()
    assert set(model.state_dict()) == set(plain.state_dict())
    e = torch.nn.functional.normalize(torch.randn(2, 384), dim=-1)
    with torch.no_grad():
        v1, v2 = model.cond(Cond(e)), model.cond(Cond(20 * e))
        assert torch.allclose(v1, v2, atol=1e-2)  # up to LayerNorm eps
        p1, p2 = plain.cond(Cond(e)), plain.cond(Cond(20 * e))
        assert not torch.allclose(p1, p2, atol=0.1)
    save_model_dir(tmp_path / "m", VQTokenizer(named_tokenizer("tiny")), model, text_encoder="x")
    from varclip.checkpoints import load_model_dir
    _, loaded, _ = load_model_dir(tmp_path / "m")
    assert loaded.cfg.text_norm
    x = torch.randn(2, 29, 8)
    with torch.no_grad():
        assert torch.allclose(loaded(Cond(e), x), model(Cond(e), x), atol=1e-5)
    with pytest.raises(ValueError, match="text_norm needs a text model"):
        dataclasses.replace(named_transformer("tiny"), text_norm=True)
