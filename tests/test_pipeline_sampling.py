"""A model's recommended sampling settings (config.json "sampling"): used when the caller does not
say, overridden when it does, kept by save_pretrained and convert, refused in one line when bad."""

from __future__ import annotations

import json

import pytest
import torch

from varclip.cli import main
from varclip.config import ConfigError
from varclip.pipeline import VARPipeline

GREEDY = {"cfg": 0.0, "top_k": 1, "top_p": 0.0}


def _tokens(pipe, **kw):
    return pipe(class_labels=[1, 2], seed=0, return_tokens=True, **kw).tokens


def test_recommended_settings_apply_unless_overridden(tiny_pipeline):
    plain = _tokens(tiny_pipeline)
    tiny_pipeline.sampling = dict(GREEDY)
    assert tiny_pipeline.sampling_settings()["top_k"] == 1
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
    assert loaded.sampling_settings()["cfg"] == 2.5 and loaded.sampling_settings(cfg=1.0)["cfg"] == 1.0
    assert loaded.sampling_settings()["top_p"] == 0.95  # not recommended: the interactive default
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
