"""Training failure paths: corrupt checkpoints fall back, divergence stops with one line and no
export, architecture changes and full disks are one-line errors, and what a run prints is true."""

from __future__ import annotations

import errno
import json

import pytest
import torch
from test_train_fixtures import CONFIGS, class_overrides, make_data, torchrun

from varclip.cli import main as varclip_main
from varclip.config import ConfigError
from varclip.train.checkpointing import CheckpointError
from varclip.train.config import TrainConfig, load_config
from varclip.train.generator import GeneratorTrainer, train
from varclip.train.logging import read_metrics
from varclip.train.runner import TrainingDiverged

pytestmark = pytest.mark.usefixtures("one_thread")

QUIET = ["logging.progress=false", "logging.sample_count=0", "logging.tensorboard=false"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_data(tmp_path_factory.mktemp("fail_data"), per_class=2)


def _cfg(data, out, steps, *extra):
    return load_config(TrainConfig, CONFIGS / "tiny_class.yaml", class_overrides(data, out, steps) + QUIET + list(extra))


def test_corrupt_newest_checkpoint_falls_back(data, tmp_path, capsys):
    out = tmp_path / "run"
    train(_cfg(data, out, 6, "checkpoint.every=2"))
    ck = out / "checkpoints"
    (ck / "step-00000006" / "model.safetensors").write_bytes(b"")
    capsys.readouterr()
    result = train(_cfg(data, out, 8, "checkpoint.every=2", "checkpoint.resume=auto"))
    text = capsys.readouterr().out
    assert "step-00000006" in text and "falling back" in text
    assert "resumed from" in text and "step-00000004 at step 4" in text
    assert result.model_dir is not None and [r["step"] for r in read_metrics(out / "metrics.jsonl")][-1] == 8
    # a named corrupt checkpoint is refused, not replaced by another one
    (ck / "step-00000008" / "trainer.pt").write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="step-00000008 is corrupt"):
        train(_cfg(data, out, 8, f"checkpoint.resume={ck / 'step-00000008'}"))


def test_every_rank_stops_on_an_unusable_checkpoint(data, tmp_path):
    out = tmp_path / "ddp"
    train(_cfg(data, out, 2))
    (out / "checkpoints" / "step-00000002" / "model.safetensors").write_bytes(b"")
    proc = torchrun(2, [str(CONFIGS / "tiny_class.yaml"), *class_overrides(data, out, 4), *QUIET,
                        "dist.strategy=ddp", "--resume", "auto"], timeout=180)
    assert proc.returncode != 0, proc.stderr[-2000:]
    assert proc.stderr.count("varclip train: error: no intact checkpoint") == 2  # one line per rank, no hang


def test_changed_architecture_is_one_line(data, tmp_path):
    out = tmp_path / "run"
    train(_cfg(data, out, 2))
    with pytest.raises(ConfigError) as e:
        train(_cfg(data, out, 4, "checkpoint.resume=auto", "model.arch.depth=3"))
    assert "does not fit this run" in str(e.value) and "\n" not in str(e.value)


def test_divergence_stops_with_one_line_and_no_export(data, tmp_path, capsys):
    out = tmp_path / "nan"
    args = ["train", str(CONFIGS / "tiny_class.yaml"), *class_overrides(data, out, 30), *QUIET,
            "optim.lr=1e4", "optim.max_nonfinite_steps=3", "checkpoint.every=1"]
    assert varclip_main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "training diverged" in err[0] and "max_nonfinite_steps 3" in err[0]
    assert not (out / "model").exists()
    for ck in (out / "checkpoints").iterdir():  # what was saved is finite
        from safetensors.torch import load_file
        assert all(torch.isfinite(t).all() for t in load_file(str(ck / "model.safetensors")).values())


def test_a_skipped_step_changes_nothing_and_training_goes_on(data, tmp_path, monkeypatch):
    real = GeneratorTrainer.step_batch
    seen = {}

    def poisoned(self, batch, step):
        if step == 1:
            seen["before"] = {k: v.clone() for k, v in self.model.state_dict().items()}
            self.scale_weights = torch.full((len(self.patch_nums),), float("nan"))
            try:
                return real(self, batch, step)
            finally:
                self.scale_weights = None
                seen["after"] = {k: v.clone() for k, v in self.model.state_dict().items()}
        return real(self, batch, step)

    monkeypatch.setattr(GeneratorTrainer, "step_batch", poisoned)
    result = train(_cfg(data, tmp_path / "r", 3, "logging.log_every=1"))
    assert result.model_dir is not None
    assert all(torch.equal(seen["before"][k], seen["after"][k]) for k in seen["before"])
    loss = [r["loss"] for r in read_metrics(tmp_path / "r" / "metrics.jsonl")]
    assert loss[1] == "nan" and isinstance(loss[2], float)


def test_non_finite_weights_are_never_exported(data, tmp_path, monkeypatch):
    real = GeneratorTrainer.step_batch

    def breaks(self, batch, step):
        local = real(self, batch, step)
        with torch.no_grad():
            next(self.model.parameters()).fill_(float("inf"))
        return local

    monkeypatch.setattr(GeneratorTrainer, "step_batch", breaks)
    with pytest.raises(TrainingDiverged, match="not finite"):
        train(_cfg(data, tmp_path / "inf", 2))
    assert not (tmp_path / "inf" / "model").exists() and not any((tmp_path / "inf" / "checkpoints").iterdir())


def test_disk_full_at_export_is_one_line(data, tmp_path, monkeypatch):
    def full(self, steps_done):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(GeneratorTrainer, "export", full)
    with pytest.raises(CheckpointError) as e:
        train(_cfg(data, tmp_path / "full", 2))
    assert "disk is full" in str(e.value) and "\n" not in str(e.value)
    assert (tmp_path / "full" / "checkpoints" / "step-00000002").is_dir()  # the checkpoint survives


def test_resuming_a_finished_run_prints_its_loss(data, tmp_path, capsys):
    out = tmp_path / "done"
    train(_cfg(data, out, 2))
    capsys.readouterr()
    result = train(_cfg(data, out, 2, "checkpoint.resume=auto"))
    text = capsys.readouterr().out
    assert "loss None" not in text and "(loss " in text
    assert isinstance(result.last_loss, float)


def test_images_per_second_leaves_out_previews(data, tmp_path, monkeypatch):
    import time

    monkeypatch.setattr(GeneratorTrainer, "preview_grid", lambda self, step: time.sleep(1.0))
    out = tmp_path / "speed"
    train(_cfg(data, out, 4, "logging.log_every=2", "logging.sample_every=2"))
    rate = [r["images_per_s"] for r in read_metrics(out / "metrics.jsonl")]
    # without the preview's second, steps 3-4 would report a fraction of steps 1-2's rate
    assert rate[1] > 0.3 * rate[0], rate
    assert json.loads((out / "model" / "config.json").read_text())["training"]["steps"] == 4


def test_tokenizer_trainer_shares_fallback_and_divergence(tmp_path, capsys, monkeypatch):
    from test_tokenizer_train import make_cfg, make_shapes

    from varclip.train.tokenizer import TokenizerTrainer, train_tokenizer
    shapes = make_shapes(tmp_path / "shapes", 8, 32)
    over = dict(batch_size=4, checkpoint={"every": 2}, logging={"sample_count": 0})
    train_tokenizer(make_cfg(tmp_path / "t", shapes, schedule={"steps": 4}, **over))
    (tmp_path / "t" / "checkpoints" / "step-00000004" / "trainer.pt").write_bytes(b"garbage")
    capsys.readouterr()
    train_tokenizer(make_cfg(tmp_path / "t", shapes, schedule={"steps": 5},
                             **{**over, "checkpoint": {"every": 2, "resume": "auto"}}))
    text = capsys.readouterr().out
    assert "step-00000004 is corrupt" in text and "step-00000002 at step 2" in text

    real = TokenizerTrainer.train_step
    monkeypatch.setattr(TokenizerTrainer, "train_step", lambda self, x, step: real(self, x * float("nan"), step))
    with pytest.raises(TrainingDiverged, match="steps 1-2"):
        train_tokenizer(make_cfg(tmp_path / "n", shapes, schedule={"steps": 5}, optim={"lr": 1e-3,
                                                                                       "max_nonfinite_steps": 2}))
    assert not (tmp_path / "n" / "tokenizer").exists()
