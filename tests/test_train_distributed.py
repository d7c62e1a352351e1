"""Multi-process training on CPU (gloo) and crash safety, each in real subprocesses:
- DDP and FSDP2 with 2 processes follow the 1-process loss curve for the same global batch;
- a run SIGKILLed after writing a checkpoint, resumed with --resume auto, repeats the
  uninterrupted run's losses step for step.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest
from test_train_fixtures import CONFIGS, class_overrides, losses, make_data, subprocess_env, torchrun

from varclip.checkpoints import load_model_dir
from varclip.train.config import TrainConfig, load_config
from varclip.train.generator import train

pytestmark = pytest.mark.usefixtures("one_thread")

STEPS = 10


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_data(tmp_path_factory.mktemp("dist_data"))


@pytest.fixture(scope="module")
def single_run(data, tmp_path_factory):
    """The 1-process reference (global batch 8)."""
    out = tmp_path_factory.mktemp("single")
    train(load_config(TrainConfig, CONFIGS / "tiny_class.yaml",
                      class_overrides(data, out, STEPS) + ["logging.sample_count=0"]))
    return losses(out)


def _check(proc: subprocess.CompletedProcess) -> None:
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]


def test_ddp_matches_single_process(data, single_run, tmp_path):
    out = tmp_path / "ddp"
    proc = torchrun(2, [str(CONFIGS / "tiny_class.yaml"), *class_overrides(data, out, STEPS),
                        "dist.strategy=ddp", "logging.sample_count=0"])
    _check(proc)
    assert "2 x 4 rows" in proc.stdout and "strategy ddp" in proc.stdout
    assert losses(out) == pytest.approx(single_run, rel=1e-4, abs=1e-5)
    assert (out / "model" / "transformer.safetensors").is_file()


def test_fsdp_runs_and_matches(data, single_run, tmp_path):
    out = tmp_path / "fsdp"
    proc = torchrun(2, [str(CONFIGS / "tiny_class.yaml"), *class_overrides(data, out, STEPS),
                        "dist.strategy=fsdp", "ema_decay=0.9", "checkpoint.every=5"])
    _check(proc)
    assert "strategy fsdp" in proc.stdout
    assert losses(out) == pytest.approx(single_run, rel=1e-4, abs=1e-5)
    # full (unsharded) weights in the checkpoints and the export
    _, model, cfg = load_model_dir(out / "model")
    assert model is not None and cfg["training"]["ema"] is True
    assert (out / "checkpoints" / "step-00000005" / "ema.safetensors").is_file()
    assert (out / "samples" / f"step-{STEPS:08d}.png").is_file()


def test_sigkill_and_resume_match_uninterrupted_run(data, tmp_path):
    steps = 30
    over = class_overrides(data, tmp_path / "ref", steps) + ["checkpoint.every=5", "logging.sample_count=0"]
    train(load_config(TrainConfig, CONFIGS / "tiny_class.yaml", over))
    reference = losses(tmp_path / "ref")

    out = tmp_path / "killed"
    args = [sys.executable, "-m", "varclip.train", str(CONFIGS / "tiny_class.yaml"),
            *[o.replace(str(tmp_path / "ref"), str(out)) for o in over]]
    proc = subprocess.Popen([*args, "step_sleep_s=0.1"], env=subprocess_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 90
    try:
        while not (out / "checkpoints" / "step-00000010" / "meta.json").is_file():
            assert proc.poll() is None, proc.communicate()[1][-2000:]
            assert time.monotonic() < deadline, "no checkpoint written in time"
            time.sleep(0.02)
        assert proc.poll() is None, "the run finished before it could be killed"
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    killed_at = len(losses(out))
    assert 10 <= killed_at < steps

    resumed = subprocess.run([*args, "--resume", "auto"], env=subprocess_env(), capture_output=True, text=True,
                             timeout=120)
    _check(resumed)
    assert "resumed from" in resumed.stdout + resumed.stderr
    curve = losses(out)
    assert len(curve) == steps  # records past the checkpoint were replaced, not duplicated
    assert curve == pytest.approx(reference, rel=1e-5, abs=1e-6)
    assert (out / "model" / "config.json").is_file()
    assert len(list((out / "checkpoints").glob("step-*"))) == 2  # keep_last
