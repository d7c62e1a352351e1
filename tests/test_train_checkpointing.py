"""Checkpoint manager: atomic directories, keep-last-N, RNG states, resume resolution; logging."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch

from varclip.train.checkpointing import CheckpointError, CheckpointManager, capture_rng, restore_rng
from varclip.train.ema import EMA
from varclip.train.logging import RunLogger, read_metrics


def _save(mgr: CheckpointManager, step: int) -> None:
    mgr.save(step, {"model": {"w": torch.full((2,), float(step))}}, {"schedule": {"step": step}}, {"loss": 1.0})


def test_keep_last_and_latest(tmp_path):
    mgr = CheckpointManager(tmp_path / "ck", keep_last=2)
    assert mgr.latest() is None and mgr.resolve("auto") is None and mgr.resolve("") is None
    for s in (10, 20, 30):
        _save(mgr, s)
    names = sorted(p.name for p in (tmp_path / "ck").iterdir())
    assert names == ["step-00000020", "step-00000030"]
    ck = mgr.latest()
    assert ck.step == 30 and ck.tensors("model")["w"].tolist() == [30.0, 30.0]
    assert ck.trainer_state()["schedule"]["step"] == 30 and ck.meta["complete"] is True
    assert ck.rng_state(0) is not None and ck.rng_state(1) is None
    assert mgr.resolve(str(ck.path)).step == 30
    with pytest.raises(ValueError, match="not a complete checkpoint"):
        mgr.resolve(str(tmp_path))


def test_torn_checkpoints_are_ignored_and_cleaned(tmp_path):
    mgr = CheckpointManager(tmp_path / "ck", keep_last=3)
    _save(mgr, 5)
    # what a SIGKILL mid-save leaves: a temp dir, and a final-looking dir without meta.json
    (tmp_path / "ck" / ".tmp-step-00000010-abc").mkdir()
    (tmp_path / "ck" / "step-00000010").mkdir()
    (tmp_path / "ck" / "step-00000010" / "model.safetensors").write_bytes(b"partial")
    mgr = CheckpointManager(tmp_path / "ck", keep_last=3)
    assert mgr.latest().step == 5
    assert not (tmp_path / "ck" / ".tmp-step-00000010-abc").exists()
    _save(mgr, 5)  # re-saving a step replaces it whole
    assert mgr.latest().step == 5


def test_rng_round_trip():
    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(3)
    state = capture_rng()
    a = (random.random(), np.random.rand(), torch.rand(2))
    restore_rng(torch.load(_roundtrip(state), weights_only=True))
    b = (random.random(), np.random.rand(), torch.rand(2))
    assert a[0] == b[0] and a[1] == b[1] and torch.equal(a[2], b[2])


def _roundtrip(obj):
    import io
    buf = io.BytesIO()
    torch.save(obj, buf)
    buf.seek(0)
    return buf


def test_ema():
    model = torch.nn.Linear(2, 2)
    ema = EMA(model, 0.5)
    before = {k: v.clone() for k, v in ema.state_dict().items()}
    with torch.no_grad():
        model.weight.add_(2.0)
    ema.update(model)
    after = ema.state_dict()
    assert torch.allclose(after["weight"], before["weight"] + 1.0)
    other = EMA(torch.nn.Linear(2, 2), 0.5)
    other.load_state_dict(after)
    assert torch.equal(other.state_dict()["weight"], after["weight"])


def test_run_logger_truncates_on_resume(tmp_path):
    log = RunLogger(tmp_path, total_steps=5, progress=False, tensorboard=False)
    for s in range(1, 6):
        log.log(s, {"loss": float(s)})
    log.close()
    with open(tmp_path / "metrics.jsonl", "a") as f:
        f.write('{"step": 6, "loss"')  # a torn line from a killed run
    log = RunLogger(tmp_path, total_steps=5, start_step=3, progress=False, tensorboard=False)
    log.log(4, {"loss": 40.0})
    log.close()
    rows = read_metrics(tmp_path / "metrics.jsonl")
    assert [r["step"] for r in rows] == [1, 2, 3, 4] and rows[-1]["loss"] == 40.0
    assert all("time" in r for r in rows) and json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[0])


# ---------------------------------------------------------------------------- corrupt and failed saves


def test_checksums_catch_a_flipped_bit(tmp_path):
    mgr = CheckpointManager(tmp_path / "ck")
    _save(mgr, 1)
    ck = mgr.latest()
    assert set(ck.meta["files"]) == {"model.safetensors", "trainer.pt", "rng-rank0.pt"}
    ck.verify()
    f = ck.path / "model.safetensors"
    data = bytearray(f.read_bytes())
    data[-1] ^= 1  # one bit of one weight: still a loadable file
    f.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="model.safetensors does not match its checksum"):
        ck.verify()


def test_newest_intact_falls_back_and_names_the_bad_ones(tmp_path):
    mgr = CheckpointManager(tmp_path / "ck", keep_last=4)
    for s in (1, 2, 3, 4):
        _save(mgr, s)
    root = tmp_path / "ck"
    (root / "step-00000004" / "model.safetensors").write_bytes(b"")  # zero bytes
    (root / "step-00000003" / "trainer.pt").write_bytes(b"garbage")
    (root / "step-00000002" / "meta.json").write_text("{not json")
    ck, notes = mgr.newest_intact()
    assert ck.step == 1 and len(notes) == 3
    text = "\n".join(notes)
    for step in (2, 3, 4):
        assert f"step-0000000{step}" in text
    assert "unreadable meta.json" in text and all("\n" not in n for n in notes)


def test_old_checkpoints_without_checksums_are_loaded_to_verify(tmp_path):
    mgr = CheckpointManager(tmp_path / "ck")
    _save(mgr, 1)
    ck = mgr.latest()
    meta = dict(ck.meta)
    del meta["files"]
    (ck.path / "meta.json").write_text(json.dumps(meta))
    mgr.latest().verify()
    (ck.path / "model.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{")  # truncated header
    with pytest.raises(CheckpointError, match="is corrupt"):
        mgr.latest().verify()


def test_disk_full_is_one_line_and_keeps_the_previous_checkpoints(tmp_path, monkeypatch):
    import varclip.train.checkpointing as ckpt_mod
    from safetensors import SafetensorError
    mgr = CheckpointManager(tmp_path / "ck")
    _save(mgr, 1)

    def full(*args, **kwargs):
        raise SafetensorError('Error while serializing: I/O error: No space left on device (os error 28)')
    monkeypatch.setattr(ckpt_mod, "save_file", full)
    with pytest.raises(CheckpointError) as e:
        _save(mgr, 2)
    assert "disk is full" in str(e.value) and "\n" not in str(e.value)
    assert [p.name for p in (tmp_path / "ck").iterdir()] == ["step-00000001"]  # no temporary left
    mgr.latest().verify()


def test_checkpoint_permissions_are_ordinary(tmp_path):
    mgr = CheckpointManager(tmp_path / "ck")
    _save(mgr, 1)
    ck = mgr.latest()
    assert ck.path.stat().st_mode & 0o777 == 0o755
    assert {f.stat().st_mode & 0o777 for f in ck.path.iterdir()} == {0o644}


def test_tensorboard_missing_is_said_once(tmp_path, monkeypatch, capsys):
    import varclip.train.logging as logging_mod
    monkeypatch.setattr(logging_mod, "tensorboard_available", lambda: False)
    log = RunLogger(tmp_path, total_steps=3, progress=False, tensorboard=True)
    for s in range(1, 4):
        log.log(s, {"loss": 1.0})
    log.close()
    assert capsys.readouterr().out.count("tensorboard is not installed") == 1
    RunLogger(tmp_path, total_steps=3, progress=False, tensorboard=False).close()
    assert "tensorboard" not in capsys.readouterr().out
