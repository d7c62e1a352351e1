"""A model's recommended sampling settings (config.json "sampling"): used when the caller does not
say, overridden when it does, kept by save_pretrained and convert, refused in one line when bad."""

from __future__ import annotations

import json

import pytest
import torch

from varclip.cli import main
from varclip.config import ConfigError, SamplingConfig
from varclip.pipeline import VARPipeline

GREEDY = {"cfg": 0.0, "top_k": 1, "top_p": 0.0}


def _tokens(pipe, **kw):
    return pipe(class_labels=[1, 2], seed=0, return_tokens=True, **kw).tokens


def test_recommended_settings_apply_unless_overridden(tiny_pipeline):
    plain = _tokens(tiny_pipeline)
    tiny_pipeline.sampling = dict(GREEDY)
    assert tiny_pipeline.sampling_config().top_k == 1
    greedy = _tokens(tiny_pipeline)
    assert not all(torch.equal(a, b) for a, b in zip(plain, greedy))
    assert all(torch.equal(a, b) for a, b in zip(greedy, _tokens(tiny_pipeline, **GREEDY)))
    # explicit arguments win over the model's settings: back to the interactive defaults
    back = _tokens(tiny_pipeline, cfg=4.0, top_k=900, top_p=0.95)
    assert all(torch.equal(a, b) for a, b in zip(plain, back))


def test_settings_survive_save_load_and_convert(tiny_pipeline, tmp_path, capsys):
    tiny_pipeline.sampling = {"cfg": 2.5, "top_k": 7}
    tiny_pipeline.save_pretrained(tmp_path / "m")
    assert json.loads((tmp_path / "m" / "config.json").read_text())["sampling"] == {"cfg": 2.5, "top_k": 7}
    loaded = VARPipeline.from_pretrained(tmp_path / "m")
    assert loaded.sampling_config().cfg == 2.5 and loaded.sampling_config(cfg=1.0).cfg == 1.0
    assert loaded.sampling_config().top_p == 0.95  # not recommended: the interactive default
    assert main(["convert", str(tmp_path / "m"), str(tmp_path / "half"), "--to", "native", "--dtype", "fp16"]) == 0
    assert VARPipeline.from_pretrained(tmp_path / "half").sampling == {"cfg": 2.5, "top_k": 7}


@pytest.mark.parametrize("bad, message", [
    ({"beam": 3}, "unknown keys beam"),
    ({"cfg": "high"}, "cfg"),
    ({"top_p": 2.0}, "top_p must be in"),
    ([1, 2], "must be a mapping"),
])
def test_bad_settings_are_one_line_errors(tiny_pipeline, tmp_path, capsys, bad, message):
    tiny_pipeline.save_pretrained(tmp_path / "m")
    cfg_file = tmp_path / "m" / "config.json"
    cfg = json.loads(cfg_file.read_text())
    cfg["sampling"] = bad
    cfg_file.write_text(json.dumps(cfg))
    with pytest.raises(ConfigError, match=message):
        VARPipeline.from_pretrained(tmp_path / "m")
    assert main(["generate", "--class", "1", "--model", str(tmp_path / "m"), "--out", str(tmp_path / "x.png"),
                 "--quiet", "--device", "cpu"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "sampling" in err and message.split()[0] in err


# ---------------------------------------------------------------------------- the API's conventions


def _count_decodes(monkeypatch) -> list[int]:
    from varclip.tokenizer import VQTokenizer
    calls, decode = [], VQTokenizer.fhat_to_img
    monkeypatch.setattr(VQTokenizer, "fhat_to_img", lambda self, f: calls.append(1) or decode(self, f))
    return calls


def test_cli_generate_decodes_once_with_its_progress_bar(tiny_pipeline, tmp_path, monkeypatch, capsys):
    model = tiny_pipeline.save_pretrained(tmp_path / "m")
    calls = _count_decodes(monkeypatch)
    assert main(["generate", "--model", str(model), "--class", "1", "--n", "2", "--out", str(tmp_path / "g.png"),
                 "--device", "cpu"]) == 0  # not --quiet: the pipeline's bar runs
    assert len(calls) == 1 and "scales" in capsys.readouterr().err


def test_callback_images_are_decoded_only_when_read(tiny_pipeline, monkeypatch):
    calls = _count_decodes(monkeypatch)
    tiny_pipeline.set_progress_bar_config(disable=True)
    seen = []
    tiny_pipeline(class_labels=[0], seed=0, callback_on_scale=lambda s, k, imgs: seen.append(len(imgs)))
    assert seen == [1, 1, 1, 1] and len(calls) == 1
    tiny_pipeline(class_labels=[0], seed=0, callback_on_scale=lambda s, k, imgs: imgs[0].size)
    assert len(calls) == 1 + 4 + 1


def test_diffusers_conventions(tiny_pipeline, capsys):
    pipe = tiny_pipeline
    assert pipe.dtype == torch.float32 and pipe.to(dtype="bf16").dtype == torch.bfloat16
    pipe.to(dtype="fp32")
    with pytest.raises(TypeError, match="num_inference_steps.*num_images_per_prompt"):
        pipe(class_labels=[1], num_inference_steps=10)
    a = _tokens(pipe, num_images_per_prompt=2)
    assert len(a[0]) == 4 and all(torch.equal(x, y) for x, y in zip(a, _tokens(pipe, num_images=2)))
    with pytest.raises(ConfigError, match="num_images_per_prompt"):
        pipe(class_labels=[1], num_images=2, num_images_per_prompt=3)
    pipe.set_progress_bar_config(disable=True)
    capsys.readouterr()
    greedy = _tokens(pipe, **GREEDY)  # keyword overrides = a dict = a whole SamplingConfig
    assert "scales" not in capsys.readouterr().err
    assert all(torch.equal(x, y) for x, y in zip(greedy, _tokens(pipe, sampling=GREEDY)))
    assert all(torch.equal(x, y) for x, y in zip(greedy, _tokens(pipe, sampling=SamplingConfig(**GREEDY))))
    with pytest.raises(ConfigError, match="unknown sampling setting.*beam.*known: cfg"):
        pipe(class_labels=[1], sampling={"beam": 2})
    with pytest.raises(ConfigError, match="cfg must be a finite number >= 0"):
        pipe(class_labels=[1], cfg=-5)


def test_from_pretrained_without_a_path_is_the_embedded_model():
    from varclip.embedded import EMBEDDED
    pipe = VARPipeline.from_pretrained()
    assert pipe.is_text and pipe.sampling == json.loads((EMBEDDED / "config.json").read_text())["sampling"]
