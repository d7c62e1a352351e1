"""`varclip bench`: sampling speed of exact mode and the `--fast` preset side by side, peak
memory, and a teacher-forcing training step; random weights.

The modes are timed interleaved (every round runs each mode once, after a warm-up round), so
that a machine shared with other work slows them alike; the speed-up is against the first
exact row.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import threading
import time
from pathlib import Path

import torch

from .config import ConfigError, TokenizerConfig, named_transformer, sampling_preset
from .devices import parse_dtype, resolve_device
from .fast import FastConfig, FastRunner
from .model import Cond, VARTransformer
from .sampling import generate
from .tokenizer import VQTokenizer


def add_bench_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", default="d16", help="named transformer config (d16, d20, d24, d30, d36, tiny, ...)")
    p.add_argument("--batch", type=int, default=1, help="images per sampling call")
    p.add_argument("--train-batch", type=int, default=2, help="batch of the training step (0 = skip)")
    p.add_argument("--modes", default="exact,fast",
                   help="comma list: exact (float32, the parity mode), fast (the --fast preset), bf16 / fp16 "
                        "(exact sampler under autocast)")
    p.add_argument("--dtype", help="the older spelling of --modes: a comma list of fp32 (= exact), bf16, fp16")
    p.add_argument("--repeats", type=int, default=2, help="timed rounds (after one warm-up round)")
    p.add_argument("--device", default="auto")
    p.add_argument("--json", help="also write the rows as JSON here")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


class PeakMemory:
    """Peak memory of a block above its start, in MB: CUDA's allocator peak, or on CPU the
    resident set sampled every 2 ms from /proc (ru_maxrss where /proc is missing: that one is
    a process-wide high-water mark, so it only shows growth beyond earlier peaks)."""

    def __init__(self, device: torch.device):
        self.device, self.mb = device, None
        self._proc = Path("/proc/self/statm")

    def _rss(self) -> int:
        if self._proc.exists():
            return int(self._proc.read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

    def __enter__(self) -> "PeakMemory":
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
            self._start = torch.cuda.memory_allocated()
            return self
        self._start = self._peak = self._rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()
        return self

    def _poll(self) -> None:
        while not self._stop.wait(0.002):
            self._peak = max(self._peak, self._rss())

    def __exit__(self, *exc) -> None:
        if self.device.type == "cuda":
            peak = torch.cuda.max_memory_allocated()
        else:
            self._stop.set()
            self._thread.join()
            peak = max(self._peak, self._rss())
        self.mb = round(max(peak - self._start, 0) / 2 ** 20, 1)


def _modes(args: argparse.Namespace) -> list[str]:
    text = args.modes if args.dtype is None else args.dtype
    out = []
    for m in (v.strip() for v in text.split(",")):
        m = "exact" if m in ("fp32", "float32") else m
        if m not in ("exact", "fast") and m not in ("bf16", "fp16"):
            raise ConfigError(f"unknown bench mode {m!r}: use exact, fast, bf16 or fp16")
        out.append(m)
    return out


def bench_modes(name: str, batch: int, train_batch: int, modes: list[str], repeats: int,
                device: torch.device) -> list[dict]:
    """One row per mode: best sampling time (with decoding), images/s, speed-up, peak memory."""
    if repeats < 1:
        raise ConfigError(f"--repeats must be >= 1, got {repeats}")
    if batch < 1:
        raise ConfigError(f"--batch must be >= 1, got {batch}")
    cfg = named_transformer(name)
    tcfg = TokenizerConfig(vocab_size=cfg.vocab_size, z_channels=cfg.z_channels, patch_nums=cfg.patch_nums,
                           **({} if cfg.vocab_size == 4096 else dict(ch=32, ch_mult=(1, 2, 2, 2), num_res_blocks=1)))
    torch.manual_seed(0)
    model, tok = VARTransformer(cfg).to(device).eval(), VQTokenizer(tcfg).to(device).eval()
    cond = (Cond(torch.randn(batch, cfg.text_dim, device=device)) if cfg.is_text
            else Cond(torch.arange(batch, device=device) % cfg.num_classes))
    sc = sampling_preset("official_fid").replace(seed=0)
    runners = {m: FastRunner(model, FastConfig()) if m == "fast" else None for m in modes}
    amps = {m: None if m in ("exact", "fast") else parse_dtype(m) for m in modes}
    times: dict[str, list[float]] = {m: [] for m in modes}
    peaks: dict[str, float | None] = {}
    for r in range(repeats + 1):  # round 0 warms up (bf16 kernels, compilation)
        for m in modes:
            with PeakMemory(device) as mem:
                _sync(device)
                t = time.perf_counter()
                generate(model, tok, cond, batch, sc, autocast_dtype=amps[m], fast=runners[m])
                _sync(device)
            if r:
                times[m].append(time.perf_counter() - t)
            peaks[m] = mem.mb if m not in peaks else max(peaks[m] or 0, mem.mb or 0)
    base = min(times[modes[0]])
    params = round(sum(p.numel() for p in model.parameters()) / 1e6, 1)
    rows = []
    for m in modes:
        s = min(times[m])
        rc = runners[m].cfg if runners[m] is not None else None
        rows.append({"config": name, "params_M": params, "device": str(device), "mode": m,
                     "fast_settings": None if rc is None else (f"{rc.autocast}, prune {rc.prune_scales}x{rc.prune_keep}, "
                                                               f"cfg_off_last {rc.cfg_off_last}, compile {rc.compile}, "
                                                               f"quantize {rc.quantize}"),
                     "batch": batch, "sample_s": round(s, 4), "images_per_s": round(batch / s, 3),
                     "ms_per_image": round(1000 * s / batch, 1), "speedup": round(base / s, 2),
                     "sample_peak_MB": peaks[m]})
    if train_batch:
        rows[0].update(_train_step(model, cfg, cond, train_batch, amps[modes[0]], repeats, device))
    return rows


def _train_step(model: VARTransformer, cfg, cond: Cond, train_batch: int, amp: torch.dtype | None, repeats: int,
                device: torch.device) -> dict:
    model.train()
    x = torch.randn(train_batch, cfg.L - cfg.patch_nums[0] ** 2, cfg.z_channels, device=device)
    tc = Cond(cond.value[:1].repeat(train_batch, *([1] * (cond.value.ndim - 1))))
    target = torch.randint(0, cfg.vocab_size, (train_batch, cfg.L), device=device)
    ttimes = []
    with PeakMemory(device) as mem:
        for _ in range(repeats + 1):
            _sync(device)
            t = time.perf_counter()
            with torch.autocast(device.type, dtype=amp, enabled=amp is not None):
                logits = model(tc, x)
            loss = torch.nn.functional.cross_entropy(logits.view(-1, cfg.vocab_size), target.view(-1))
            loss.backward()
            model.zero_grad(set_to_none=True)
            _sync(device)
            ttimes.append(time.perf_counter() - t)
    model.eval()
    ts = min(ttimes[1:])
    return {"train_batch": train_batch, "train_step_s": round(ts, 4), "train_img_per_s": round(train_batch / ts, 2),
            "train_peak_MB": mem.mb}


def run_bench(args: argparse.Namespace) -> int:
    device = torch.device(resolve_device(args.device))
    rows = bench_modes(args.config, args.batch, args.train_batch, _modes(args), args.repeats, device)
    cols = ["config", "params_M", "device", "mode", "batch", "images_per_s", "ms_per_image", "speedup",
            "sample_peak_MB", "train_batch", "train_step_s", "train_img_per_s", "train_peak_MB"]
    print(" | ".join(cols))
    for r in rows:
        print(" | ".join(str(r.get(c, "")) for c in cols))
    for r in rows:
        if r["fast_settings"]:
            print(f"fast on {r['device']}: {r['fast_settings']}")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1) + "\n")
    return 0
