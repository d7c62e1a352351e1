from __future__ import annotations

from pathlib import Path

import pytest
import torch

from varclip.checkpoints import (CheckpointError, CheckpointOptionError, export_official, infer_schedule,
                                 load_model_dir, read_official, save_model_dir, save_official, schedules_with,
                                 tokenizer_from_official, tokenizer_to_official, transformer_from_official,
                                 transformer_to_official)
from varclip.cli import main
from varclip.errors import cli_text


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


def test_schedule_inference(parity_dir):
    sd = read_official(parity_dir / "c2i-small" / "var.pth")
    assert transformer_from_official(sd).patch_nums == (1, 2, 3, 4)  # from lvl_1L
    del sd["lvl_1L"]
    assert transformer_from_official(sd).patch_nums == (1, 2, 3, 4)  # 4 scales of 30 tokens: the only fit
    assert schedules_with(130, 6) == [(1, 2, 3, 4, 6, 8)] and schedules_with(13, 3) == []
    with pytest.raises(CheckpointError, match=r"patch_nums 1,2,4 gives 21 tokens"):
        transformer_from_official(sd, patch_nums=(1, 2, 4))


def _counts(tokens: int, scales: int) -> dict:
    return {"pos_1LC": torch.zeros(1, tokens, 1), "lvl_embed.weight": torch.zeros(scales, 1)}


def test_schedule_inference_refuses_and_names_the_option_as_the_caller_knows_it():
    with pytest.raises(CheckpointOptionError) as e:  # 680 tokens in 10 scales: the 256 px schedule and others
        infer_schedule(_counts(680, 10))
    assert "fit several schedules (1,2,3,4,5,6,8,10,13,16 or" in str(e.value)
    assert "patch_nums=(1, 2, ...)" in str(e.value) and "--patch-nums" not in str(e.value)
    assert "--patch-nums 1,2,..." in cli_text(e.value) and "patch_nums=" not in cli_text(e.value)
    with pytest.raises(CheckpointOptionError, match="no schedule of increasing sides from 1 fits"):
        infer_schedule(_counts(13, 3))


def _state(module: torch.nn.Module) -> dict:
    return {k: v.float() for k, v in module.state_dict().items()}


def test_embedded_model_survives_native_official_native(tmp_path):
    """Settings the official layout has no place for (GroupNorm groups, text_norm, the text
    encoder, sampling and training records) travel in sidecars beside the .pth files."""
    import json

    from varclip.embedded import embedded_model_dir
    src = embedded_model_dir()
    off, back = tmp_path / "official", tmp_path / "back"
    assert main(["convert", str(src), str(off)]) == 0
    assert sorted(p.name for p in off.iterdir()) == ["vae.pth", "vae.varclip.json", "var.pth", "var.varclip.json"]
    assert main(["convert", str(off / "var.pth"), str(back), "--vae", str(off / "vae.pth")]) == 0
    assert json.loads((back / "config.json").read_text()) == json.loads((src / "config.json").read_text())
    tok_a, model_a, _ = load_model_dir(src)
    tok_b, model_b, _ = load_model_dir(back)
    _equal(_state(model_a), _state(model_b))
    _equal(_state(tok_a), _state(tok_b))
    # without the sidecar the official defaults apply: the loss the sidecar prevents
    (off / "vae.varclip.json").unlink()
    assert tokenizer_from_official(off / "vae.pth").cfg.norm_groups == 32 != tok_a.cfg.norm_groups


def test_a_sidecar_of_other_weights_is_refused(tiny_pipeline, tmp_path):
    export_official(tmp_path, tiny_pipeline.tokenizer, tiny_pipeline.transformer)
    assert transformer_from_official(tmp_path / "var.pth").cfg == tiny_pipeline.transformer.cfg
    sd = read_official(tmp_path / "var.pth")
    sd["head.bias"] = sd["head.bias"] + 1
    torch.save(sd, tmp_path / "var.pth")  # replaced behind the sidecar's back
    with pytest.raises(CheckpointError, match="var.varclip.json was written for other weights"):
        transformer_from_official(tmp_path / "var.pth")
    save_official(sd, tmp_path / "var.pth")  # our writer drops the stale sidecar
    assert not (tmp_path / "var.varclip.json").exists()
    assert transformer_from_official(tmp_path / "var.pth").patch_nums == tiny_pipeline.transformer.patch_nums


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="needs /proc/self/maps (Linux)")
def test_official_files_load_memory_mapped_without_a_second_copy(tiny_pipeline, tmp_path):
    export_official(tmp_path, tiny_pipeline.tokenizer, tiny_pipeline.transformer)
    model, tok = transformer_from_official(tmp_path / "var.pth"), tokenizer_from_official(tmp_path / "vae.pth")
    maps = Path("/proc/self/maps").read_text()
    assert str(tmp_path / "var.pth") in maps and str(tmp_path / "vae.pth") in maps  # weights read in place
    assert torch.equal(model.head.weight, tiny_pipeline.transformer.head.weight)
    assert torch.equal(model.block_causal_mask(), tiny_pipeline.transformer.block_causal_mask())
    assert torch.equal(tok.decoder.conv_in.weight, tiny_pipeline.tokenizer.decoder.conv_in.weight)
    del model, tok
    assert str(tmp_path / "var.pth") not in Path("/proc/self/maps").read_text()
    sd = read_official(tmp_path / "var.pth")  # a plain dict is read into memory: safe to rewrite the file
    torch.save(sd, tmp_path / "var.pth")
    assert torch.equal(sd["head.weight"], tiny_pipeline.transformer.head.weight)


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


def test_the_embedded_model_from_its_official_files_draws_the_same_images(tmp_path):
    """from_pretrained reads the sidecars back: same weights, sampling record and pictures."""
    from varclip.embedded import embedded_model_dir
    from varclip.pipeline import VARPipeline
    native = VARPipeline.from_pretrained(embedded_model_dir())
    export_official(tmp_path, native.tokenizer, native.transformer, native.text_encoder_spec, {"sampling": native.sampling})
    official = VARPipeline.from_pretrained(tmp_path / "var.pth", vae=tmp_path / "vae.pth")
    assert official.sampling == native.sampling and official.text_encoder_spec == native.text_encoder_spec
    assert official.transformer.cfg == native.transformer.cfg and official.tokenizer.cfg == native.tokenizer.cfg
    a = native("red apple", num_images_per_prompt=2, seed=3).images
    b = official("red apple", num_images_per_prompt=2, seed=3).images
    assert [im.tobytes() for im in a] == [im.tobytes() for im in b]


@pytest.mark.parametrize("path", ["/nonexistent", "some-org/some-model"])
def test_a_missing_model_is_not_found_and_python_errors_name_python_arguments(path, parity_dir):
    from varclip.pipeline import VARPipeline
    with pytest.raises(CheckpointError, match="model not found: .*local files only"):
        VARPipeline.from_pretrained(path)
    with pytest.raises(CheckpointOptionError) as e:
        VARPipeline.from_pretrained(parity_dir / "c2i-small" / "var.pth")
    assert "pass vae=PATH" in str(e.value) and "--vae" not in str(e.value)
    assert "pass --vae PATH" in cli_text(e.value)


def test_the_command_line_names_its_flags(parity_dir, tmp_path, capsys):
    assert main(["generate", "--model", str(parity_dir / "c2i-small" / "var.pth"), "--class", "1", "--quiet",
                 "--out", str(tmp_path / "x.png")]) == 2
    err = capsys.readouterr().err
    assert "pass --vae PATH" in err and "vae=" not in err
    assert main(["generate", "--model", "some-org/some-model", "--class", "1"]) == 2
    assert "not found" in capsys.readouterr().err
