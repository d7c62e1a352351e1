"""`varclip bench`: sampling speed and a teacher-forcing training step, random weights."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from .config import SamplingConfig, TokenizerConfig, named_transformer
from .model import Cond, VARTransformer
from .pipeline import parse_dtype
from .sampling import generate
from .tokenizer import VQTokenizer


def add_bench_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", default="d16", help="named transformer config (d16, d20, d24, d30, d36, tiny, ...)")
    p.add_argument("--batch", type=int, default=1, help="images per sampling call")
    p.add_argument("--train-batch", type=int, default=2, help="batch of the training step (0 = skip)")
    p.add_argument("--dtype", default="fp32,bf16", help="comma list of fp32, bf16, fp16")
    p.add_argument("--compile", default="off", help="comma list of off, on")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--device", default="auto")
    p.add_argument("--json", help="also write the rows as JSON here")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _peak_mb(device: torch.device) -> float | None:
    return torch.cuda.max_memory_allocated() / 2 ** 20 if device.type == "cuda" else None


def bench_one(name: str, batch: int, train_batch: int, dtype: str, compiled: bool, repeats: int,
              device: torch.device) -> dict:
    cfg = named_transformer(name)
    tcfg = TokenizerConfig(vocab_size=cfg.vocab_size, z_channels=cfg.z_channels, patch_nums=cfg.patch_nums,
                           **({} if cfg.vocab_size == 4096 else dict(ch=32, ch_mult=(1, 2, 2, 2), num_res_blocks=1)))
    torch.manual_seed(0)
    model, tok = VARTransformer(cfg).to(device).eval(), VQTokenizer(tcfg).to(device).eval()
    amp = parse_dtype(dtype)
    run_model = torch.compile(model) if compiled else model
    if compiled:  # sampling calls the blocks one scale at a time: compile each block (dynamic lengths)
        sampler_model = VARTransformer(cfg).to(device).eval()
        sampler_model.load_state_dict(model.state_dict())
        sampler_model.blocks = torch.nn.ModuleList([torch.compile(b, dynamic=True) for b in sampler_model.blocks])
    else:
        sampler_model = model
    cond = (Cond(torch.randn(batch, cfg.text_dim, device=device)) if cfg.is_text
            else Cond(torch.arange(batch, device=device) % cfg.num_classes))
    sc = SamplingConfig(cfg=1.5, top_k=900, top_p=0.96, seed=0)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    if repeats < 1:
        raise ValueError(f"--repeats must be >= 1, got {repeats}")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda requested but CUDA is not available")
    times = []
    for _ in range(repeats + 1):  # the first run warms up (and compiles)
        _sync(device)
        t = time.perf_counter()
        generate(sampler_model, tok, cond, batch, sc, autocast_dtype=amp)
        _sync(device)
        times.append(time.perf_counter() - t)
    s = min(times[1:])
    row = {"config": name, "params_M": round(sum(p.numel() for p in model.parameters()) / 1e6, 1),
           "device": str(device), "dtype": dtype, "compile": compiled, "batch": batch,
           "sample_s": round(s, 4), "images_per_s": round(batch / s, 3), "ms_per_image": round(1000 * s / batch, 1),
           "sample_peak_MB": _peak_mb(device)}
    if train_batch:
        model.train()
        x = torch.randn(train_batch, cfg.L - cfg.patch_nums[0] ** 2, cfg.z_channels, device=device)
        tc = Cond(cond.value[:1].repeat(train_batch, *([1] * (cond.value.ndim - 1))))
        target = torch.randint(0, cfg.vocab_size, (train_batch, cfg.L), device=device)
        ttimes = []
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        for _ in range(repeats + 1):
            _sync(device)
            t = time.perf_counter()
            with torch.autocast(device.type, dtype=amp, enabled=amp is not None):
                logits = run_model(tc, x)
            loss = torch.nn.functional.cross_entropy(logits.view(-1, cfg.vocab_size), target.view(-1))
            loss.backward()
            model.zero_grad(set_to_none=True)
            _sync(device)
            ttimes.append(time.perf_counter() - t)
        ts = min(ttimes[1:])
        row.update({"train_batch": train_batch, "train_step_s": round(ts, 4),
                    "train_img_per_s": round(train_batch / ts, 2), "train_peak_MB": _peak_mb(device)})
    return row


def run_bench(args: argparse.Namespace) -> int:
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          ("cpu" if args.device == "auto" else args.device))
    rows = []
    for dtype in args.dtype.split(","):
        for comp in args.compile.split(","):
            if comp not in ("on", "off"):
                raise ValueError(f"--compile takes on/off, got {comp!r}")
            rows.append(bench_one(args.config, args.batch, args.train_batch, dtype.strip(), comp == "on",
                                  args.repeats, device))
    cols = ["config", "params_M", "device", "dtype", "compile", "batch", "images_per_s", "ms_per_image",
            "sample_peak_MB", "train_batch", "train_step_s", "train_img_per_s", "train_peak_MB"]
    print(" | ".join(cols))
    for r in rows:
        print(" | ".join(str(r.get(c, "")) for c in cols))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1) + "\n")
    return 0
