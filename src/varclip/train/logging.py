"""What a training run reports: a tqdm bar, a JSONL metrics file, tensorboard scalars and images.

Only rank 0 writes (other ranks get a silent logger), so trainers call it unconditionally.
The JSONL file (`metrics.jsonl`, one object per record with at least "step") is the durable
record: tests and plots read it, and a resumed run first drops the records past its checkpoint
so the file always describes ONE consistent run. Tensorboard is used when its package is
importable and is never required; when it is asked for but missing, the run says so once.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

from .checkpointing import atomic_write_text


def tensorboard_available() -> bool:
    try:
        import tensorboard  # noqa: F401
        from torch.utils.tensorboard import SummaryWriter  # noqa: F401
    except Exception:
        return False
    return True


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """The records of a metrics JSONL file (a torn last line, from a killed run, is ignored)."""
    path = Path(path)
    if not path.is_file():
        return []
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out


def truncate_metrics(path: str | Path, last_step: int) -> None:
    """Keep only records with step <= last_step (atomic rewrite)."""
    path = Path(path)
    if not path.is_file():
        return
    keep = [r for r in read_metrics(path) if int(r.get("step", -1)) <= last_step]
    atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in keep))


def _clean(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


class RunLogger:
    """Progress bar + metrics.jsonl + tensorboard for one run directory."""

    def __init__(self, out_dir: str | Path, is_main: bool = True, total_steps: int = 0, start_step: int = 0,
                 progress: bool = True, tensorboard: bool = True, jsonl_name: str = "metrics.jsonl",
                 desc: str = "train"):
        self.enabled = is_main
        self.out_dir = Path(out_dir)
        self.jsonl = self.out_dir / jsonl_name
        self._bar = None
        self._tb = None
        self._fh = None
        if not is_main:
            return
        self.out_dir.mkdir(parents=True, exist_ok=True)
        truncate_metrics(self.jsonl, start_step)
        self._fh = open(self.jsonl, "a", encoding="utf-8")
        tb_missing = tensorboard and not tensorboard_available()
        if tensorboard and not tb_missing:
            from torch.utils.tensorboard import SummaryWriter
            self._tb = SummaryWriter(str(self.out_dir / "tensorboard"), purge_step=start_step + 1)
        if progress:
            from tqdm import tqdm
            self._bar = tqdm(total=total_steps, initial=start_step, desc=desc, dynamic_ncols=True, mininterval=1.0)
        if tb_missing:
            self.write(f"note: tensorboard is not installed, metrics go to {self.jsonl} only "
                       f"(pip install tensorboard, or set logging.tensorboard=false)")

    @property
    def tensorboard(self) -> bool:
        return self._tb is not None

    def log(self, step: int, metrics: dict[str, Any]) -> None:
        """One JSONL record (with time) and a tensorboard scalar per numeric value."""
        if not self.enabled:
            return
        record = {"step": step, "time": round(time.time(), 3), **{k: _clean(v) for k, v in metrics.items()}}
        self._fh.write(json.dumps(record) + "\n")
        self._fh.flush()
        if self._tb is not None:
            for k, v in metrics.items():
                if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
                    self._tb.add_scalar(k, v, step)

    def progress(self, n: int = 1, **postfix: Any) -> None:
        if self._bar is None:
            return
        if postfix:
            self._bar.set_postfix({k: (f"{v:.4g}" if isinstance(v, float) else v) for k, v in postfix.items()},
                                  refresh=False)
        self._bar.update(n)

    def write(self, text: str) -> None:
        """A message that does not break the progress bar."""
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.write(text)
        else:
            print(text, flush=True)

    def image(self, tag: str, image: Any, step: int) -> None:
        """A PIL image to tensorboard (the grid file itself is written by the caller)."""
        if self._tb is None:
            return
        import numpy as np
        self._tb.add_image(tag, np.asarray(image.convert("RGB")), step, dataformats="HWC")

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        if self._tb is not None:
            self._tb.close()
            self._tb = None
        if self._fh is not None:
            self._fh.close()
            self._fh = None


__all__ = ["RunLogger", "read_metrics", "truncate_metrics", "tensorboard_available"]
