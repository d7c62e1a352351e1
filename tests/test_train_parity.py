"""Training-recipe parity: the four golden trajectories of the official trainer are reproduced by
our trainer, and every check fails when a number is off (perturbed golden data, or our config)."""

from __future__ import annotations

import copy
import json

import pytest
from conftest import ROOT

from varclip.cli import main as varclip_main
from varclip.train.parity import Golden, compare_replay, replay

pytestmark = pytest.mark.usefixtures("one_thread")

TRAIN_PARITY = ROOT.parent / "shared" / "train-parity"
CASES = ["lin0", "progressive", "twde", "accum"]


@pytest.fixture(scope="module")
def runs():
    """case -> (golden, our replay), each case trained once per module (about 2 s each)."""
    if not TRAIN_PARITY.is_dir():
        pytest.skip(f"golden training trajectories not found at {TRAIN_PARITY} (../shared/train-parity)")
    out = {}
    for name in CASES:
        golden = Golden.load(TRAIN_PARITY / name)
        out[name] = (golden, replay(golden))
    return out


def _failed(rep, golden) -> dict[str, str]:
    return {c.name: c.note for c in compare_replay(rep, golden) if not c.ok}


@pytest.mark.parametrize("name", CASES)
def test_case_is_reproduced(runs, name):
    golden, rep = runs[name]
    checks = compare_replay(rep, golden)
    assert all(c.ok for c in checks), [c for c in checks if not c.ok]
    names = {c.name for c in checks}
    assert {"tokens", "step_loss", "step_lr", "step_wd", "step_grad_norm", "micro_lr", "micro_newest_scale_weight",
            "final_head.weight"} <= names
    assert len(rep.steps) == len(golden.trajectory["steps"]) and len(rep.micro) == len(golden.trajectory[
        "micro_iterations"])


def test_the_cases_exercise_the_recipe(runs):
    """The data show what they are for: a ramp, a lin<pg> schedule, a moving wd, clipping, ac 2."""
    prog = runs["progressive"][1]
    assert prog.lr_kind == "lin0.6" and {m["ramp"] for m in prog.micro} >= {0.25, 0.5, 0.75, 1.0}
    assert [m["scales"] for m in prog.micro][:2] == [2, 2] and prog.micro[-1]["scales"] == 4
    twde = runs["twde"][1]
    assert twde.steps[0]["wd"] == pytest.approx(0.05) and twde.steps[-1]["wd"] == pytest.approx(0.08)
    assert any(s["grad_norm"] > twde.grad_clip for s in twde.steps)
    accum = runs["accum"][1]
    assert len(accum.micro) == 2 * len(accum.steps)
    assert accum.steps[0]["lr"] == accum.micro[1]["lr"] != accum.micro[0]["lr"]  # the step uses ac*k + ac - 1


@pytest.mark.parametrize("name, where, key, change, check", [
    ("lin0", "steps", "lr", lambda v: v * (1 + 1e-9), "step_lr"),
    ("twde", "steps", "wd", lambda v: v * (1 + 1e-9), "step_wd"),
    ("accum", "micro_iterations", "sched_lr", lambda v: v * (1 + 1e-9), "micro_lr"),
    ("twde", "micro_iterations", "sched_wd", lambda v: v + 1e-6, "micro_wd"),
    ("lin0", "steps", "loss", lambda v: v * (1 + 1e-4), "step_loss"),
    ("twde", "steps", "grad_norm", lambda v: v * (1 + 1e-3), "step_grad_norm"),
    ("twde", "steps", "clipped", lambda v: not v, "step_clipped"),
    ("progressive", "micro_iterations", "newest_scale_weight", lambda v: v * 0.9, "micro_newest_scale_weight"),
    ("progressive", "micro_iterations", "n_scales", lambda v: v + 1, "micro_n_scales"),
])
def test_a_wrong_number_at_one_step_fails(runs, name, where, key, change, check):
    golden, rep = runs[name]
    bad = copy.deepcopy(golden)
    rows = bad.trajectory[where]
    at = next(i for i, r in enumerate(rows) if i >= 7 and (key != "newest_scale_weight" or r[key] != 1))
    rows[at][key] = change(rows[at][key])
    failed = _failed(rep, bad)
    assert set(failed) == {check}, failed
    assert f" {at}:" in failed[check]


def test_a_wrong_weight_token_or_schedule_kind_fails(runs):
    golden, rep = runs["lin0"]
    bad = copy.deepcopy(golden)
    bad.final["blocks.1.ffn.fc2.weight"][0, 0] += 2e-5
    bad.batch["tokens"][3, 17] = (bad.batch["tokens"][3, 17] + 1) % 64
    bad.config["resolved_args"]["sche"] = "lin"
    assert set(_failed(rep, bad)) == {"final_blocks.1.ffn.fc2.weight", "tokens", "lr_schedule_kind"}


def test_our_side_off_recipe_fails(runs):
    """A constant weight decay (what the trainer did before twde existed) is caught."""
    golden, _ = runs["twde"]
    failed = _failed(replay(golden, ["optim.weight_decay_end=-1"]), golden)
    assert {"step_wd", "micro_wd", "final_head.weight"} <= set(failed)
    assert "step_lr" not in failed and "tokens" not in failed


def test_cli_parity_on_a_training_case(runs, capsys):
    code = varclip_main(["parity", str(TRAIN_PARITY / "accum")])
    report = json.loads(capsys.readouterr().out)
    assert code == 0 and report["ok"] is True and report["case"] == "accum"
    assert {"name", "max_abs_diff", "tol", "ok"} <= set(report["checks"][0])
