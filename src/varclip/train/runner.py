"""What the trainers share: the run loop, resuming, and the command-line entry points.

`LoopTrainer.run()` resumes (or starts fresh), saves the resolved config, logs, runs the steps
with metric records, previews and checkpoints at their intervals, then saves the last checkpoint,
writes the last preview and exports. A trainer subclasses it, builds `cfg`, `env`, `out`, `data`,
`ckpt`, `total`, `ema` and `autocast_dtype` in its __init__, and provides the parts that differ:
`describe`, `step_batch`, `_metrics`, `preview_grid`, `save_checkpoint`, `load_checkpoint` and
`export`.

Failures are stopped, not carried: a step whose loss or gradients are not finite is skipped
(the trainer asks `finite_step` before applying it), `optim.max_nonfinite_steps` of them in a
row end the run with a one-line `TrainingDiverged`, and weights that are not finite are never
checkpointed or exported. Resuming verifies checkpoints (see checkpointing.py).
"""

from __future__ import annotations

import argparse
import contextlib
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError

from ..config import ConfigError, to_dict
from .checkpointing import Checkpoint, CheckpointError, restore_rng, write_error
from .config import ScheduleConfig, load_config, save_config
from .distributed import all_reduce_mean, broadcast_object, init_distributed, shutdown
from .logging import RunLogger


class TrainingDiverged(ValueError):
    """The loss or gradients stayed non-finite: the run stops (one line, no export)."""


def _first_reason(err: BaseException) -> str:
    """The informative line of a (multi-line) load_state_dict error."""
    lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()]
    useful = [ln for ln in lines if not ln.startswith("Error(s) in loading")]
    return ((useful or lines or [type(err).__name__])[0])[:300]


def total_steps(schedule: ScheduleConfig, steps_per_epoch: int) -> int:
    """Optimizer steps of a run: schedule.steps, or schedule.epochs worth of steps."""
    if schedule.steps == 0 and schedule.epochs == 0:
        raise ConfigError("set schedule.steps or schedule.epochs")
    return schedule.steps or max(1, math.ceil(schedule.epochs * steps_per_epoch))


class LoopTrainer:
    """The run loop of a trainer (see the module docstring for what a subclass provides)."""

    result_type: Any  # called as result_type(out_dir, exported_dir, steps, last_loss)
    log_desc = "train"  # the progress bar's label
    progress_keys: dict[str, str] = {"loss": "loss"}  # progress bar field -> metric key

    def _autocast(self) -> Any:
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.autocast_dtype)

    def step_batch(self, batch: Any, step: int) -> dict[str, torch.Tensor]:
        return self.train_step(batch, step)

    def should_stop(self, steps_done: int) -> bool:
        """Early stopping: asked before the first step and after each one (before its checkpoint)."""
        return False

    def _data_state(self, steps_done: int) -> dict[str, Any]:
        """Where the data stream stands, for a checkpoint's trainer state."""
        return {"step": steps_done, "steps_per_epoch": self.data.steps_per_epoch,
                "global_batch": self.cfg.batch_size, "num_samples": self.data.num_samples}

    def _export_extra(self, steps_done: int) -> dict[str, Any]:
        """The `training` record of an exported directory."""
        return {"training": {"steps": steps_done, "ema": bool(self.ema is not None and self.cfg.export_ema),
                             "config": to_dict(self.cfg)}}

    # ------------------------------------------------------------------ resuming
    def _pick_checkpoint(self) -> tuple[Checkpoint | None, list[str]]:
        """Rank 0: the verified checkpoint to resume from, and warnings about corrupt ones."""
        resume = self.cfg.checkpoint.resume
        if not resume and self.ckpt.latest() is not None:
            raise ConfigError(f"{self.out} already has checkpoints: pass --resume auto to continue, or "
                              f"another out_dir")
        if resume != "auto":
            ck = self.ckpt.resolve(resume)
            if ck is not None:
                ck.verify()  # a named checkpoint is used as it is or not at all
            return ck, []
        ck, notes = self.ckpt.newest_intact()
        if ck is None and notes:  # starting afresh would prune towards the corrupt ones
            raise CheckpointError(f"no intact checkpoint in {self.ckpt.root} to resume from "
                                  f"({len(notes)} unusable; first: {notes[0].removeprefix('warning: ')})")
        return ck, notes

    def resume(self) -> tuple[int, list[str]]:
        """Load the checkpoint `checkpoint.resume` names: (step to continue from, messages)."""
        env = self.env
        path, notes = None, []
        self.resumed_loss = None
        failed = None
        if env.is_main:
            try:
                ck, notes = self._pick_checkpoint()
                path = str(ck.path) if ck is not None else None
            except ValueError as e:  # every rank stops with it, none waits for the broadcast
                failed = e
        path, reason = broadcast_object((path, str(failed) if failed else None), env)
        if failed is not None:
            raise failed
        if reason is not None:
            raise CheckpointError(reason)
        if path is None:
            return 0, notes
        ck = self.ckpt.resolve(path)
        state = ck.trainer_state()
        try:
            self.load_checkpoint(ck, state)
        except (RuntimeError, ValueError, KeyError) as e:  # verified files, so: another model or optimizer
            raise ConfigError(f"checkpoint {ck.path} does not fit this run (was the architecture or optimizer "
                              f"changed?): {_first_reason(e)}") from None
        self.resumed_loss = ck.meta.get("loss")
        data = state["data"]
        if data["steps_per_epoch"] != self.data.steps_per_epoch or data["global_batch"] != self.cfg.batch_size:
            notes.append(f"warning: resuming with another data size or batch ({data}); the data order changes")
        rng = ck.rng_state(env.rank)
        if rng is not None:
            restore_rng(rng)
        notes.append(f"resumed from {ck.path} at step {ck.step}")
        return ck.step, notes

    def load_checkpoint(self, ck: Checkpoint, state: dict[str, Any]) -> None:
        raise NotImplementedError

    # ------------------------------------------------------------------ divergence
    def finite_step(self, loss: torch.Tensor, grad_norm: float) -> bool:
        """May this step's update be applied? Its loss and gradient norm are finite on every rank
        (pass grad_norm 0 when a grad scaler skips non-finite gradients itself)."""
        bad = not (math.isfinite(float(loss)) and math.isfinite(grad_norm))
        if not self.env.distributed:
            return not bad
        return float(all_reduce_mean(torch.tensor(float(bad), device=self.device), self.env)) == 0.0

    def check_finite(self, what: str) -> None:
        """Refuse to write `what` from weights that are not all finite (a collective)."""
        n = 0
        for group in self.optimizer.param_groups:
            for p in group["params"]:
                t = p.to_local() if hasattr(p, "to_local") else p
                n += int(not bool(torch.isfinite(t.detach()).all()))
        total = int(round(float(all_reduce_mean(torch.tensor(float(n), device=self.device), self.env))
                          * self.env.world_size))
        if total:
            raise TrainingDiverged(f"{total} weight tensors are not finite: {what} not written (training "
                                   f"diverged; lower optim.lr)")

    # ------------------------------------------------------------------ the loop
    def run(self) -> Any:
        cfg, env = self.cfg, self.env
        if env.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
        start, notes = self.resume()
        if env.is_main:
            save_config(cfg, self.out / "config.yaml")
        self.log = RunLogger(self.out, env.is_main, self.total, start, cfg.logging.progress, cfg.logging.tensorboard,
                             desc=self.log_desc)
        for note in notes:
            self.log.write(note)
        self.log.write(self.describe(start))
        last_loss, last_saved = self.resumed_loss, start
        t_log, n_log = time.perf_counter(), 0
        stream = self.data.stream(start)
        model_dir = None
        bad_run, limit = 0, cfg.optim.max_nonfinite_steps
        end = start if self.should_stop(start) else self.total
        try:
            for step in range(start, end):
                local = self.step_batch(next(stream), step)
                n_log += 1
                done = step + 1
                bad_run = bad_run + 1 if local.pop("skipped", False) else 0
                if bad_run:
                    self.log.write(f"warning: step {done}: non-finite loss or gradients, update skipped "
                                   f"({bad_run} in a row)")
                    if limit and bad_run >= limit:
                        latest = self.ckpt.latest()
                        raise TrainingDiverged(
                            f"training diverged: non-finite loss or gradients at steps {done - bad_run + 1}-{done} "
                            f"(optim.max_nonfinite_steps {limit}); last checkpoint: "
                            f"{latest.path if latest else 'none'}; no model exported (lower optim.lr)")
                if done % cfg.logging.log_every == 0 or done == self.total:
                    now = time.perf_counter()
                    m = self._metrics(local, n_log * cfg.batch_size / max(now - t_log, 1e-9),
                                      step // self.data.steps_per_epoch)
                    t_log, n_log = now, 0
                    last_loss = m["loss"]
                    self.log.log(done, m)
                    self.log.progress(1, **{k: m[key] for k, key in self.progress_keys.items()})
                else:
                    self.log.progress(1)
                t_aside = time.perf_counter()  # previews and checkpoints do not count in images/s
                if self.should_stop(done):
                    end = done
                    break
                if cfg.logging.sample_every and done % cfg.logging.sample_every == 0 and done != self.total:
                    self.preview_grid(done)
                if cfg.checkpoint.every and done % cfg.checkpoint.every == 0 and done != self.total:
                    self._save(done, last_loss)
                    last_saved = done
                t_log += time.perf_counter() - t_aside
                if cfg.step_sleep_s > 0:
                    time.sleep(cfg.step_sleep_s)
            if last_saved != end:
                self._save(end, last_loss)
            self.preview_grid(end)
            self.check_finite("the model")
            try:
                model_dir = self.export(end)
            except (OSError, SafetensorError) as e:  # ENOSPC and friends: one line
                raise write_error(e, f"the model in {self.out}") from None
            self.log_skipped_images()
        finally:
            self.log.close()
        if model_dir is not None:
            loss = f" (loss {last_loss:.4g})" if isinstance(last_loss, float) else ""
            print(f"wrote {model_dir} after {end} steps{loss}", flush=True)
        return self.result_type(self.out, model_dir, end, last_loss)

    def _save(self, steps_done: int, last_loss: float | None) -> None:
        self.check_finite(f"checkpoint step {steps_done}")
        self.save_checkpoint(steps_done, last_loss)

    def log_skipped_images(self) -> None:
        """'N of M images skipped' when the run read images and some were unusable."""
        summary = getattr(getattr(self.data, "dataset", None), "skip_summary", None)
        if summary is not None and self.env.is_main:
            text = summary()
            if text:
                self.log.write(text)


# ---------------------------------------------------------------------------- entry points


def resolve_config_path(name: str) -> Path:
    """A YAML path, or the name of a shipped recipe in ./configs (e.g. `tiny_class`)."""
    path = Path(name)
    if path.is_file():
        return path
    for cand in (Path("configs") / name, Path("configs") / f"{name}.yaml"):
        if cand.is_file():
            return cand
    raise ConfigError(f"config not found: {name}")


def run_trainer(make: Callable[[Any, Any], LoopTrainer], cfg: Any) -> Any:
    """Train from a config in this process (joining torchrun's group when launched by it)."""
    import torch.distributed as dist
    owned = not (dist.is_available() and dist.is_initialized())
    env = init_distributed(cfg.device, cfg.dist.backend, cfg.dist.timeout_minutes)
    try:
        return make(cfg, env).run()
    finally:
        if owned:
            shutdown()


def parse_run_args(cls: type, argv: list[str], prog: str, description: str, example: str, overrides: str,
                   outputs: str) -> tuple[Any, argparse.Namespace]:
    """`PROG CONFIG [key=value ...] [--set K=V] [--resume R] [--out-dir D] [--print-config]` as a `cls`."""
    ap = argparse.ArgumentParser(prog=prog, description=description)
    ap.add_argument("config", help=f"YAML recipe (path, or a name in ./configs such as {example})")
    ap.add_argument("overrides", nargs="*", help=f"dotted overrides, e.g. {overrides}")
    ap.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE", help="an override")
    ap.add_argument("--resume", help="auto (latest checkpoint of out_dir, if any) or a checkpoint directory")
    ap.add_argument("--out-dir", help=f"run directory ({outputs})")
    ap.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    args = ap.parse_args(argv)
    extra = []
    if args.resume is not None:
        extra.append(f"checkpoint.resume={args.resume}")
    if args.out_dir is not None:
        extra.append(f"out_dir={args.out_dir}")
    cfg = load_config(cls, resolve_config_path(args.config), [*args.overrides, *args.sets, *extra])
    return cfg, args


def train_cli(argv: list[str], parse: Callable[[list[str]], tuple[Any, argparse.Namespace]],
              train: Callable[[Any], Any]) -> int:
    """Parse, then print the resolved config (--print-config) or train. Config errors are one-line
    ValueErrors (ConfigError) for the caller to print."""
    cfg, args = parse(argv)
    if args.print_config:
        import yaml
        sys.stdout.write(yaml.safe_dump(to_dict(cfg), sort_keys=False))
        return 0
    train(cfg)
    return 0


__all__ = ["LoopTrainer", "TrainingDiverged", "total_steps", "resolve_config_path", "run_trainer", "parse_run_args", "train_cli"]
