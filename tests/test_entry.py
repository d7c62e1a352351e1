"""The entry kit: one set of sampling flags for every command that samples, typed schedules,
device and dtype names, and the one pipeline loader."""

from __future__ import annotations

import argparse
import dataclasses

import pytest
import torch

from varclip.config import ConfigError, SamplingConfig, sampling_preset
from varclip.devices import parse_dtype, resolve_device
from varclip.entry import (SAMPLING_FLAGS, add_sampling_args, load_pipeline, parse_schedule,
                           sampling_from_args)


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    return next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices


def test_every_command_that_samples_has_the_sampling_flags():
    from varclip.cli import build_parser
    from varclip.eval.cli import build_parser as eval_parser
    from varclip.eval.sample import _parser as sample_fid_parser
    top, ev = _subparsers(build_parser()), _subparsers(eval_parser())
    parsers = {"generate": top["generate"], "edit": top["edit"], "caption-bench": ev["caption-bench"],
               "faithfulness": ev["faithfulness"], "sample-fid": sample_fid_parser()}
    fields = {f.name for f in dataclasses.fields(SamplingConfig)}
    for name, p in parsers.items():
        dests = {a.dest for a in p._actions}
        for flag in SAMPLING_FLAGS:
            assert flag.field in fields
            if flag.field != "per_sample_seeds" or name in ("generate", "edit"):
                assert flag.field in dests, (name, flag.field)


def test_flags_are_overrides_of_a_preset_or_the_model():
    p = argparse.ArgumentParser()
    add_sampling_args(p)
    assert sampling_from_args(p.parse_args([])) == {"seed": 0}  # the rest: the model's, then the preset
    got = sampling_from_args(p.parse_args(["--cfg", "2", "--top-k", "5", "--smooth"]))
    assert got == {"cfg": 2.0, "top_k": 5, "smooth": True, "seed": 0}
    official = sampling_preset("official_fid").replace(**got)
    assert (official.cfg, official.top_p, official.smooth) == (2.0, 0.96, True)
    q = argparse.ArgumentParser()
    add_sampling_args(q, "official_fid")
    assert "official_fid preset: 0.96" in q.format_help()
    with pytest.raises(ConfigError, match="unknown sampling preset"):
        sampling_preset("fastest")


def test_schedules_devices_and_dtypes():
    assert parse_schedule("1,2,3,4") == (1, 2, 3, 4)
    for bad in ("1,x", "", "1,0"):
        with pytest.raises(ConfigError, match="schedule"):
            parse_schedule(bad)
    assert resolve_device("cpu") == "cpu"
    assert resolve_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ConfigError, match="unknown device"):
        resolve_device("foo")
    assert parse_dtype("fp32") is None and parse_dtype("bf16") is torch.bfloat16
    with pytest.raises(ConfigError, match="unknown dtype"):
        parse_dtype("fp8")


def test_the_loader_names_missing_files_and_falls_back_to_the_demo(tmp_path, monkeypatch):
    with pytest.raises(ConfigError, match="model not found"):
        load_pipeline(tmp_path / "missing")
    import varclip.embedded as embedded

    def missing():
        raise ConfigError("no embedded model")

    monkeypatch.setattr(embedded, "embedded_model_dir", missing)
    with pytest.raises(ConfigError, match="no embedded model"):
        load_pipeline()
    demo = load_pipeline(demo_if_missing=True, device="cpu")
    assert "RANDOMLY INITIALISED" in demo.model_note and not demo.is_text
