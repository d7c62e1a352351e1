from __future__ import annotations

import pytest
import torch

from varclip.checkpoints import (CheckpointError, load_model_dir, read_official, save_model_dir, save_official,
                                 tokenizer_from_official, tokenizer_to_official, transformer_from_official,
                                 transformer_to_official)
from varclip.cli import main


def _equal(a: dict, b: dict) -> None:
    assert list(a) == list(b)
    for k in a:
        assert a[k].dtype == b[k].dtype and torch.equal(a[k], b[k]), k


@pytest.mark.parametrize("case", ["c2i-small", "t2i-small"])
def test_official_native_official_round_trip_is_bit_exact(parity_dir, tmp_path, case):
    src = parity_dir / case
    native, back = tmp_path / "native", tmp_path / "back"
    assert main(["convert", str(src / "var.pth"), str(native), "--vae", str(src / "vae.pth"),
                 "--patch-nums", "1,2,3,4"]) == 0
    assert (native / "config.json").is_file() and (native / "transformer.safetensors").is_file()
    assert main(["convert", str(native), str(back)]) == 0
    _equal(read_official(src / "vae.pth"), read_official(back / "vae.pth"))
    _equal(read_official(src / "var.pth"), read_official(back / "var.pth"))
    if case == "t2i-small":  # exported in VAR-CLIP's wrapper
        raw = torch.load(back / "var.pth", weights_only=True)
        assert "var_wo_ddp" in raw["trainer"]


def test_native_directory_round_trip(tiny_pipeline, tmp_path):
    save_model_dir(tmp_path / "m", tiny_pipeline.tokenizer, tiny_pipeline.transformer)
    tok, model, cfg = load_model_dir(tmp_path / "m")
    _equal(tiny_pipeline.transformer.state_dict(), model.state_dict())
    _equal(tiny_pipeline.tokenizer.state_dict(), tok.state_dict())
    assert cfg["format"] == "varclip"


def test_inferred_configs(parity_dir):
    model = transformer_from_official(parity_dir / "c2i-small" / "var.pth", patch_nums=(1, 2, 3, 4))
    assert model.cfg.depth == 2 and model.cfg.num_classes == 10 and model.cfg.num_heads == 2
    text = transformer_from_official(parity_dir / "t2i-small" / "var.pth", patch_nums=(1, 2, 3, 4))
    assert text.cfg.text_dim == 16
    tok = tokenizer_from_official(parity_dir / "c2i-small" / "vae.pth", (1, 2, 3, 4))
    assert tok.cfg.share_quant_resi == 4 and tok.cfg.ch == 32


def test_wrong_and_corrupt_checkpoints(parity_dir, tmp_path):
    with pytest.raises(CheckpointError, match="tokenizer"):
        transformer_from_official(parity_dir / "c2i-small" / "vae.pth")
    with pytest.raises(CheckpointError, match="not found"):
        read_official(tmp_path / "nope.pth")
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"garbage" * 10)
    with pytest.raises(CheckpointError, match="not a loadable"):
        read_official(bad)
    # a pickle carrying code is refused (weights_only)
    evil = tmp_path / "evil.pth"
    torch.save({"x": object()}, evil)
    with pytest.raises(CheckpointError):
        read_official(evil)
    # a state dict with a misshaped tensor: one error listing it
    sd = read_official(parity_dir / "c2i-small" / "var.pth")
    sd["head.bias"] = torch.zeros(3)
    with pytest.raises(CheckpointError, match="misshaped keys: head.bias"):
        transformer_from_official(sd, patch_nums=(1, 2, 3, 4))
    del sd["head.bias"]
    with pytest.raises(CheckpointError, match="missing keys: head.bias"):
        transformer_from_official(sd, patch_nums=(1, 2, 3, 4))


def test_schedule_inference_errors(parity_dir):
    with pytest.raises(CheckpointError, match="matches no known schedule"):
        transformer_from_official(parity_dir / "c2i-small" / "var.pth")
    with pytest.raises(CheckpointError, match="give"):
        transformer_from_official(parity_dir / "c2i-small" / "var.pth", patch_nums=(1, 2, 4))


def test_export_writes_official_buffers(tiny_pipeline, tmp_path):
    sd = transformer_to_official(tiny_pipeline.transformer)
    assert sd["lvl_1L"].dtype == torch.int64 and sd["attn_bias_for_masking"].shape == (1, 1, 30, 30)
    save_official(sd, tmp_path / "v.pth")
    assert set(read_official(tmp_path / "v.pth")) == set(sd)
    assert "quantize.ema_vocab_hit_SV" in tokenizer_to_official(tiny_pipeline.tokenizer)


def test_half_precision_native_copy(tiny_pipeline, tmp_path):
    src = save_model_dir(tmp_path / "m", tiny_pipeline.tokenizer, tiny_pipeline.transformer, text_encoder=None)
    assert main(["convert", str(src), str(tmp_path / "h"), "--to", "native", "--dtype", "fp16"]) == 0
    small = sum(p.stat().st_size for p in (tmp_path / "h").glob("*.safetensors"))
    big = sum(p.stat().st_size for p in src.glob("*.safetensors"))
    assert small < 0.6 * big
    tok, model, _ = load_model_dir(tmp_path / "h")
    assert model.head.weight.dtype == torch.float32
    assert torch.allclose(model.head.weight, tiny_pipeline.transformer.head.weight, atol=1e-3)
