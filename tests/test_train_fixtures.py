"""Shared helpers of the training tests: a tiny synthetic data set and a tiny frozen tokenizer.

Imported by the other test_train_* modules (pytest puts this folder on sys.path); its own test
checks the synthetic data is what the others assume.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs"
COLORS = {"red": (220, 40, 40), "green": (40, 200, 60), "blue": (40, 60, 220), "yellow": (230, 210, 40)}


def make_data(root: Path, per_class: int = 8) -> dict[str, Path]:
    """32 px images in 4 colour classes (a bar at a per-image position), a JSONL caption manifest,
    and a randomly initialised "tiny" tokenizer saved as a native directory."""
    from varclip.checkpoints import save_model_dir
    from varclip.config import named_tokenizer
    from varclip.tokenizer import VQTokenizer

    root.mkdir(parents=True, exist_ok=True)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        save_model_dir(root / "tok", tokenizer=VQTokenizer(named_tokenizer("tiny")))
    rng = np.random.default_rng(0)
    rows = []
    for c, (name, col) in enumerate(COLORS.items()):
        d = root / "class" / f"c{c}_{name}"
        d.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            a = np.zeros((32, 32, 3), np.float32) + col
            a[8 + i % 12:20 + i % 12, 6:26] = 255 - np.array(col)
            a += rng.normal(0, 10, a.shape)
            Image.fromarray(a.clip(0, 255).astype(np.uint8)).save(d / f"{i}.png")
            rows.append({"image": f"class/{d.name}/{i}.png", "caption": f"a {name} square"})
    (root / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return {"root": root, "class": root / "class", "manifest": root / "train.jsonl", "tok": root / "tok"}


def class_overrides(data: dict[str, Path], out: Path, steps: int = 12) -> list[str]:
    return [f"data.root={data['class']}", f"model.tokenizer={data['tok']}", f"out_dir={out}",
            f"schedule.steps={steps}", "checkpoint.every=0", "logging.sample_count=2"]


def text_overrides(data: dict[str, Path], out: Path, steps: int = 12) -> list[str]:
    return [f"data.manifest={data['manifest']}", f"model.tokenizer={data['tok']}", f"out_dir={out}",
            f"schedule.steps={steps}", "checkpoint.every=0", "logging.sample_count=2"]


def losses(run_dir: Path) -> list[float]:
    from varclip.train.logging import read_metrics
    return [r["loss"] for r in read_metrics(run_dir / "metrics.jsonl")]


def subprocess_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", PYTHONUNBUFFERED="1")
    src = str(ROOT / "src")
    env["PYTHONPATH"] = src + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def torchrun(nproc: int, args: list[str], timeout: float = 120) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
           "-m", "varclip.train", *args]
    return subprocess.run(cmd, env=subprocess_env(), capture_output=True, text=True, timeout=timeout)


def test_synthetic_data(tmp_path):
    data = make_data(tmp_path)
    from varclip.data import CaptionDataset, ImageFolderDataset
    ds = ImageFolderDataset(data["class"], 32, train=False)
    assert len(ds) == 32 and len(ds.classes) == 4
    assert len(CaptionDataset(data["manifest"], 32, train=False)) == 32
    assert (data["tok"] / "tokenizer.safetensors").is_file()
