"""Training-recipe parity: replay a golden trajectory of the official trainer with our trainer.

A train-parity case (shared/train-parity/<case>: `trajectory.json`, `config.json`, the initial
and final weights and a fixed batch) is run through the real `GeneratorTrainer`: its config is
translated from the official command-line arguments to our keys (`case_config`, the same mapping
the README's table documents), only the data source is replaced by the fixed batch, and every
optimizer step is compared with the golden one. So a wrong lr at one step, a wrong weight-decay
schedule, a missing ramp factor or a wrong decay group shows up as a failed check.
"""

from __future__ import annotations

import hashlib
import json
import math
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..checkpoints import read_official, transformer_from_official, transformer_to_official
from ..checks import Check, compare
from ..config import from_dict, to_dict
from .batches import Batch, TrainData
from .config import TrainConfig, apply_overrides
from .distributed import DistEnv
from .generator import GeneratorTrainer

# the README's recommended tolerances
TOL = {"loss": 1e-5, "grad_norm": 1e-4, "lr": 1e-12, "wd": 1e-12, "ramp": 1e-12, "weights": 1e-5,
       "teacher_input": 1e-5}


def case_config(case: dict[str, Any], vae_path: str, out_dir: str) -> TrainConfig:
    """Our TrainConfig for a case's official arguments (see the README's flag table)."""
    a, r, its, var = case["official_args"], case["resolved_args"], case["iterations"], case["model"]["var"]
    vq = case["model"]["vqvae"]
    ep = its["ep"]
    pg = float(a["pg"])
    data = {
        "out_dir": out_dir, "device": "cpu", "seed": 0, "batch_size": a["bs"], "grad_accum": a["ac"],
        "precision": {0: "fp32", 1: "fp16", 2: "bf16"}[int(a["fp16"])],
        "data": {"kind": "class", "image_size": max(var["patch_nums"]) * a["patch_size"], "fill_last": True},
        "model": {"transformer": "tiny", "tokenizer": vae_path, "arch": {
            "depth": var["depth"], "embed_dim": var["embed_dim"], "num_heads": var["num_heads"],
            "mlp_ratio": var["mlp_ratio"], "norm_eps": var["norm_eps"], "shared_aln": var["shared_aln"],
            "attn_l2_norm": var["attn_l2_norm"], "patch_nums": var["patch_nums"], "vocab_size": vq["vocab_size"],
            "z_channels": vq["z_channels"], "num_classes": var["num_classes"], "text_dim": 0,
            "drop_rate": var["drop_rate"], "attn_drop_rate": var["attn_drop_rate"],
            "drop_path_rate": var["drop_path_rate"]}},
        "optim": {"base_lr": a["tblr"], "lr_ref_batch": 256, "weight_decay": a["twd"],
                  "weight_decay_end": r["twde"], "grad_clip": a["tclip"], "fused": "on" if a["afuse"] else "off"},
        "schedule": {"steps": its["optimizer_steps"], "warmup_fraction": r["wp"] / ep, "warmup_start": a["wp0"],
                     "end_factor": a["wpe"], "kind": "auto" if pg > 0 else a["sche"], "count_micro_batches": True},
        "loss": {"label_smoothing": a["ls"], "cond_drop_rate": var["cond_drop_rate"],
                 "progressive_start_scales": a["pg0"] + 1 if pg > 0 else 0, "progressive_fraction": pg,
                 "progressive_ramp_fraction": r["pgwp"] / ep},
        "logging": {"progress": False, "tensorboard": False, "sample_count": 0},
    }
    return from_dict(TrainConfig, data, "")


class FixedData(TrainData):
    """The same global batch at every step (the golden runs have no data randomness)."""

    kind = "class"

    def __init__(self, batch: Batch, num_classes: int, steps_per_epoch: int):
        self.batch, self.num_classes, self.num_samples = batch, num_classes, len(batch)
        self._steps = steps_per_epoch

    @property
    def steps_per_epoch(self) -> int:
        return self._steps

    def batches(self, epoch: int, step: int) -> Iterator[Batch]:
        for _ in range(step, self._steps):
            yield self.batch


class _CaseTrainer(GeneratorTrainer):
    """The generator trainer with the fixed batch as its data; everything else is unchanged."""

    def __init__(self, cfg: TrainConfig, env: DistEnv, fixed: FixedData):
        self.fixed = fixed
        super().__init__(cfg, env)

    def _build_data(self) -> TrainData:
        self.cache = None
        return self.fixed


def _rel(got: float, want: float) -> float:
    return abs(got - want) / max(abs(want), 1e-30)


def series_check(name: str, got: Sequence[float], want: Sequence[float], tol: float, relative: bool = True,
                 unit: str = "step") -> Check:
    """One check over a whole trajectory: the worst (relative) difference, and where it first
    exceeded `tol`."""
    if len(got) != len(want):
        return Check(name, None, tol, False, f"{len(got)} {unit}s != expected {len(want)}")
    diffs = [(_rel(g, w) if relative else abs(g - w)) if math.isfinite(g) else math.inf
             for g, w in zip(map(float, got), map(float, want))]
    worst = max(diffs, default=0.0)
    bad = next((i for i, d in enumerate(diffs) if d > tol), None)
    note = "relative" if relative else ""
    if bad is not None:
        note = f"{note + '; ' if note else ''}first at {unit} {bad}: got {float(got[bad])!r}, expected {want[bad]!r}"
    return Check(name, worst, tol, bad is None, note)


@dataclass
class Golden:
    """What a case folder holds: the official config, trajectory, batch and final weights."""

    name: str
    config: dict[str, Any]
    trajectory: dict[str, Any]
    batch: dict[str, torch.Tensor]
    final: dict[str, torch.Tensor]
    init: dict[str, torch.Tensor]
    vae: Path

    @classmethod
    def load(cls, case_dir: str | Path) -> "Golden":
        case_dir = Path(case_dir)
        config = json.loads((case_dir / "config.json").read_text())
        vae = (case_dir / config["model"]["vae_file"]).resolve()
        if not vae.is_file():
            raise ValueError(f"{case_dir}: the VQVAE of this case is missing ({config['model']['vae_file']})")
        want_sha = config["model"].get("vae_sha256")
        if want_sha and hashlib.sha256(vae.read_bytes()).hexdigest() != want_sha:
            raise ValueError(f"{vae}: sha256 differs from the case's model.vae_sha256")
        return cls(case_dir.name, config, json.loads((case_dir / "trajectory.json").read_text()),
                   torch.load(case_dir / "batch.pth", map_location="cpu", weights_only=True),
                   read_official(case_dir / "final_var.pth"), read_official(case_dir / "init_var.pth"), vae)


@dataclass
class Replay:
    """What our trainer did on a case: its tokens, schedule kind and per-step / per-micro-batch
    records, and the final weights in the official layout."""

    tokens: torch.Tensor
    teacher_input: torch.Tensor
    lr_kind: str
    grad_clip: float
    steps: list[dict[str, float]] = field(default_factory=list)
    micro: list[dict[str, float]] = field(default_factory=list)
    final: dict[str, torch.Tensor] = field(default_factory=dict)


def replay(golden: Golden, overrides: Sequence[str] = ()) -> Replay:
    """Train our model on the case's batch for the case's steps; `overrides` (dotted config keys)
    change our side, e.g. to see the checks fail."""
    case, batch = golden.config, golden.batch
    with tempfile.TemporaryDirectory() as tmp:
        cfg = case_config(case, str(golden.vae), tmp)
        if overrides:
            cfg = from_dict(TrainConfig, apply_overrides(TrainConfig, to_dict(cfg), overrides), "")
        fixed = FixedData(Batch(images=batch["images"], labels=batch["labels"]), case["model"]["var"]["num_classes"],
                          max(1, case["iterations"]["iters_train"] // cfg.grad_accum))
        trainer = _CaseTrainer(cfg, DistEnv(0, 1, 0, torch.device("cpu"), None), fixed)
        init = transformer_from_official(golden.init, patch_nums=trainer.patch_nums)
        trainer.model.load_state_dict(init.state_dict())
        ids, x_in = trainer._tokens(fixed.batch)
        fixed.batch = Batch(ids=ids, labels=batch["labels"])  # encoded once: the data never change
        rep = Replay(ids, x_in, trainer.schedule.kind, cfg.optim.grad_clip)
        for step in range(trainer.total):
            out = trainer.train_step(fixed.batch, step)
            m = out["micro"]
            rep.steps.append({"loss": float(out["sums"][0]), "lr": float(out["lr"]), "wd": float(out["wd"]),
                              "grad_norm": float(out["grad_norm"])})
            rep.micro += [{"loss": float(m["loss"][i]), "lr": m["lr"][i], "wd": m["wd"][i], "scales": m["scales"][i],
                           "ramp": m["ramp"][i]} for i in range(len(m["loss"]))]
        rep.final = transformer_to_official(trainer.model)
    return rep


def compare_replay(rep: Replay, golden: Golden) -> list[Check]:
    """Every check of a case, in the JSON record format of `varclip parity`."""
    kind, want_kind = rep.lr_kind, golden.config["resolved_args"]["sche"]
    checks = [compare("tokens", rep.tokens, golden.batch["tokens"], 0),
              compare("teacher_input", rep.teacher_input, golden.batch["teacher_input"], TOL["teacher_input"]),
              Check("lr_schedule_kind", float(kind != want_kind), 0.0, kind == want_kind,
                    "" if kind == want_kind else f"got {kind}, expected {want_kind}")]
    checks += _trajectory_checks(rep.steps, rep.micro, golden.trajectory, rep.grad_clip)
    return checks + _weight_checks(rep.final, golden.final)


def run_train_case(case_dir: str | Path, overrides: Sequence[str] = ()) -> dict[str, Any]:
    """Replay a train-parity case and compare: the report of `varclip parity CASE_DIR`."""
    golden = Golden.load(case_dir)
    checks = compare_replay(replay(golden, overrides), golden)
    return {"case": golden.name, "checks": [c.to_dict() for c in checks], "ok": all(c.ok for c in checks)}


def _trajectory_checks(steps: list[dict[str, float]], micro: list[dict[str, float]], traj: dict[str, Any],
                       clip: float) -> list[Check]:
    gs, gm = traj["steps"], traj["micro_iterations"]
    col = lambda rows, k: [r[k] for r in rows]  # noqa: E731
    checks = [
        series_check("step_loss", col(steps, "loss"), col(gs, "loss"), TOL["loss"]),
        series_check("step_lr", col(steps, "lr"), col(gs, "lr"), TOL["lr"]),
        series_check("step_wd", col(steps, "wd"), col(gs, "wd"), TOL["wd"]),
        series_check("step_grad_norm", col(steps, "grad_norm"), col(gs, "grad_norm"), TOL["grad_norm"]),
        series_check("step_clipped", [float(s["grad_norm"] > clip) for s in steps], [float(s["clipped"]) for s in gs],
                     0.0, relative=False),
        series_check("micro_loss", col(micro, "loss"), col(gm, "loss"), TOL["loss"], unit="micro-iteration"),
        series_check("micro_lr", col(micro, "lr"), col(gm, "sched_lr"), TOL["lr"], unit="micro-iteration"),
        series_check("micro_wd", col(micro, "wd"), col(gm, "sched_wd"), TOL["wd"], unit="micro-iteration"),
        series_check("micro_n_scales", col(micro, "scales"), col(gm, "n_scales"), 0.0, relative=False,
                     unit="micro-iteration"),
        series_check("micro_newest_scale_weight", col(micro, "ramp"), col(gm, "newest_scale_weight"), TOL["ramp"],
                     unit="micro-iteration"),
    ]
    return checks


def _weight_checks(got: dict[str, torch.Tensor], want: dict[str, torch.Tensor]) -> list[Check]:
    checks = []
    for k, w in want.items():
        if k not in got:
            checks.append(Check(f"final_{k}", None, TOL["weights"], False, "missing in our model"))
        elif w.is_floating_point():  # torch.equal first: derived buffers hold -inf
            same = got[k].shape == w.shape and torch.equal(got[k], w)
            checks.append(Check(f"final_{k}", 0.0, TOL["weights"], True) if same else
                          compare(f"final_{k}", got[k], w, TOL["weights"]))
    return checks


__all__ = ["TOL", "case_config", "FixedData", "series_check", "Golden", "Replay", "replay",
           "compare_replay", "run_train_case"]
