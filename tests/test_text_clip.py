"""CLIP text tower: golden outputs, loaders (OpenAI dict, wrapped dict, TorchScript), options."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from varclip.text.clip import ClipLoadError, load_clip_text_tower, read_state_dict
from varclip.text.encoders import ClipTextEncoder, PromptTruncatedWarning, load_text_encoder
from varclip.text.parity import check_clip_text

PARITY = Path(__file__).resolve().parents[1] / ".." / "shared" / "parity"
CASE = PARITY / "clip-text-small"
pytestmark = pytest.mark.skipif(not CASE.is_dir(), reason=f"golden parity data not found at {CASE}")


@pytest.fixture(scope="module")
def case() -> dict:
    cfg = json.loads((CASE / "config.json").read_text())
    return {"cfg": cfg, "inputs": load_file(str(CASE / "inputs.safetensors")),
            "expected": load_file(str(CASE / "expected.safetensors"))}


def test_parity_checks() -> None:
    checks = check_clip_text(CASE)
    assert [c.name for c in checks] == ["tokens", "pooled_gelu", "pooled_quickgelu", "pooled_gelu_norm",
                                        "pooled_quickgelu_norm"]
    assert all(c.ok for c in checks), [c for c in checks if not c.ok]


@pytest.mark.parametrize("act", ["gelu", "quickgelu"])
def test_encoder_matches_golden(case, act: str) -> None:
    """The full path: texts -> openai tokenizer -> tower -> normalised pooled vector."""
    cfg = case["cfg"]
    enc = load_text_encoder(f"clip:{CASE / 'clip.pth'}?variant=openai&act={act}&heads={cfg['transformer_heads']}")
    with pytest.warns(PromptTruncatedWarning, match=r"prompt truncated: \d+ tokens dropped"):
        out = enc.encode(cfg["texts"], allow_empty=True)  # the case includes "" on purpose
    assert enc.dim == cfg["embed_dim"]
    torch.testing.assert_close(out.pooled, case["expected"][f"pooled_{act}_norm"], atol=1e-5, rtol=0)
    assert out.tokens.shape == (len(cfg["texts"]), 77, cfg["transformer_width"])
    # mask covers start .. first end token
    assert out.mask.sum(1).tolist() == (case["inputs"]["tokens"].argmax(-1) + 1).tolist()


def test_heads_must_be_given_when_not_inferable() -> None:
    with pytest.raises(ClipLoadError, match="heads") as e:
        load_clip_text_tower(CASE / "clip.pth")
    assert "\n" not in str(e.value)


def test_wrapped_and_prefixed_state_dict(tmp_path: Path, case) -> None:
    sd = torch.load(CASE / "clip.pth", map_location="cpu", weights_only=True)
    wrapped = {"epoch": 3, "state_dict": {f"module.{k}": v for k, v in sd.items()}}
    torch.save(wrapped, tmp_path / "ckpt.pt")
    tower = load_clip_text_tower(tmp_path / "ckpt.pt", heads=2)
    with torch.no_grad():
        got = tower(case["inputs"]["tokens"])
    torch.testing.assert_close(got, case["expected"]["pooled_gelu"], atol=1e-5, rtol=0)


@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning", "ignore::DeprecationWarning")
def test_torchscript_archive(tmp_path: Path, case) -> None:
    """OpenAI ships TorchScript archives; weights_only refuses them, we read them via torch.jit."""
    tower = load_clip_text_tower(CASE / "clip.pth", heads=2, activation="quickgelu")
    tokens = case["inputs"]["tokens"]
    traced = torch.jit.trace(tower, (tokens,), check_trace=False)
    traced.save(str(tmp_path / "ViT-tiny.pt"))
    assert set(read_state_dict(tmp_path / "ViT-tiny.pt")) == set(tower.state_dict())
    again = load_clip_text_tower(tmp_path / "ViT-tiny.pt", heads=2, activation="quickgelu")
    with torch.no_grad():
        torch.testing.assert_close(again(tokens), case["expected"]["pooled_quickgelu"], atol=1e-5, rtol=0)


def test_identity_tracks_options() -> None:
    path = CASE / "clip.pth"
    ids = {ClipTextEncoder(path, variant=v, activation=a, normalize=n, heads=2).identity
           for v in ("openai", "varclip") for a in ("gelu", "quickgelu") for n in (True, False)}
    assert len(ids) == 8
    assert ClipTextEncoder(path, heads=2).identity == ClipTextEncoder(path, heads=2).identity


def test_defaults_are_varclip(case) -> None:
    enc = ClipTextEncoder(CASE / "clip.pth", heads=2)
    assert enc.tokenizer.variant == "varclip" and enc.tower.config.activation == "gelu" and enc.normalize
    out = enc.encode(["a sailboat with a sail at sunset"])
    torch.testing.assert_close(out.pooled.norm(dim=-1), torch.ones(1))
    torch.testing.assert_close(out.pooled, case["expected"]["pooled_gelu_norm"][:1], atol=1e-5, rtol=0)
