"""Held-out evaluation during generator training: losses logged with and without the caption,
the best weights exported to OUT/best, early stopping that survives --resume auto."""

from __future__ import annotations

import json

import pytest
from test_train_fixtures import CONFIGS, make_data, text_overrides

from varclip.checkpoints import load_model_dir
from varclip.config import ConfigError
from varclip.train.config import TrainConfig, load_config
from varclip.train.generator import train
from varclip.train.heldout import HeldoutTracker

pytestmark = pytest.mark.usefixtures("one_thread")


def test_tracker_keeps_the_best_and_counts_patience():
    t = HeldoutTracker()
    assert t.update(10, 5.0, patience=2, min_delta=0.1)
    assert not t.update(20, 4.95, patience=2, min_delta=0.1) and not t.stopped  # within min_delta
    assert t.update(30, 4.0, patience=2, min_delta=0.1) and t.bad_evals == 0
    assert not t.update(40, 4.5, 2, 0.1) and not t.update(50, 4.2, 2, 0.1)
    assert t.stopped and (t.best, t.best_step, t.last_step) == (4.0, 30, 50)
    u = HeldoutTracker()
    u.load_state_dict(json.loads(json.dumps(t.state_dict())))
    assert u == t


def test_heldout_config_is_checked():
    with pytest.raises(ConfigError, match="heldout"):
        load_config(TrainConfig, CONFIGS / "tiny_text.yaml", ["heldout.manifest=x.jsonl"])


def test_heldout_eval_best_export_and_early_stop(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    data = make_data(tmp_path / "data", per_class=2)
    out = tmp_path / "run"
    # min_delta so large that only the first evaluation (before training) improves: stop after 2 more
    over = text_overrides(data, out, steps=40) + [
        f"heldout.manifest={data['manifest']}", "heldout.every=4", "heldout.limit=6", "heldout.patience=2",
        "heldout.min_delta=1e9", "logging.sample_count=0", "checkpoint.every=4"]
    cfg = load_config(TrainConfig, CONFIGS / "tiny_text.yaml", over)
    result = train(cfg)
    assert result.steps == 8  # evaluations at 0 (best), 4, 8 -> stop
    recs = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    held = [r for r in recs if "heldout/loss" in r]
    assert [r["step"] for r in held] == [0, 4, 8]
    assert all(r["heldout/loss"] > 0 and r["heldout/loss_null"] > 0 for r in held)
    _, model, meta = load_model_dir(out / "best")
    assert model.cfg.is_text and meta["training"]["steps"] == 0
    assert (out / "model").is_dir()
    # resuming a stopped run trains no further step
    again = train(load_config(TrainConfig, CONFIGS / "tiny_text.yaml", over + ["checkpoint.resume=auto"]))
    assert again.steps == 8
    assert len((out / "metrics.jsonl").read_text().splitlines()) == len(recs)
