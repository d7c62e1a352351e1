"""What the trainers share: the run loop, resuming, and the command-line entry points.

`LoopTrainer.run()` resumes (or starts fresh), saves the resolved config, logs, runs the steps
with metric records, previews and checkpoints at their intervals, then saves the last checkpoint,
writes the last preview and exports. A trainer subclasses it, builds `cfg`, `env`, `out`, `data`,
`ckpt`, `total`, `ema` and `autocast_dtype` in its __init__, and provides the parts that differ:
`describe`, `step_batch`, `_metrics`, `preview_grid`, `save_checkpoint`, `load_checkpoint` and
`export`.
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

from ..config import ConfigError, to_dict
from .checkpointing import Checkpoint, restore_rng
from .config import ScheduleConfig, load_config, save_config
from .distributed import broadcast_object, init_distributed, shutdown
from .logging import RunLogger


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

    def _data_state(self, steps_done: int) -> dict[str, Any]:
        """Where the data stream stands, for a checkpoint's trainer state."""
        return {"step": steps_done, "steps_per_epoch": self.data.steps_per_epoch,
                "global_batch": self.cfg.batch_size, "num_samples": self.data.num_samples}

    def _export_extra(self, steps_done: int) -> dict[str, Any]:
        """The `training` record of an exported directory."""
        return {"training": {"steps": steps_done, "ema": bool(self.ema is not None and self.cfg.export_ema),
                             "config": to_dict(self.cfg)}}

    # ------------------------------------------------------------------ resuming
    def resume(self) -> tuple[int, list[str]]:
        """Load the checkpoint `checkpoint.resume` names: (step to continue from, messages)."""
        env, resume = self.env, self.cfg.checkpoint.resume
        path = None
        if env.is_main:
            if not resume and self.ckpt.latest() is not None:
                raise ConfigError(f"{self.out} already has checkpoints: pass --resume auto to continue, or "
                                  f"another out_dir")
            ck = self.ckpt.resolve(resume)
            path = str(ck.path) if ck is not None else None
        path = broadcast_object(path, env)
        if path is None:
            return 0, []
        ck = self.ckpt.resolve(path)
        state = ck.trainer_state()
        self.load_checkpoint(ck, state)
        notes = []
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
        last_loss, last_saved = None, start
        t_log, n_log = time.perf_counter(), 0
        stream = self.data.stream(start)
        model_dir = None
        try:
            for step in range(start, self.total):
                local = self.step_batch(next(stream), step)
                n_log += 1
                done = step + 1
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
                if cfg.logging.sample_every and done % cfg.logging.sample_every == 0 and done != self.total:
                    self.preview_grid(done)
                if cfg.checkpoint.every and done % cfg.checkpoint.every == 0 and done != self.total:
                    self.save_checkpoint(done, last_loss)
                    last_saved = done
                if cfg.step_sleep_s > 0:
                    time.sleep(cfg.step_sleep_s)
            if last_saved != self.total:
                self.save_checkpoint(self.total, last_loss)
            self.preview_grid(self.total)
            model_dir = self.export(self.total)
        finally:
            self.log.close()
        if model_dir is not None:
            print(f"wrote {model_dir} after {self.total} steps (loss {last_loss})", flush=True)
        return self.result_type(self.out, model_dir, self.total, last_loss)


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


__all__ = ["LoopTrainer", "total_steps", "resolve_config_path", "run_trainer", "parse_run_args", "train_cli"]
