"""Whole-process timing of `varclip generate` in exact mode and with `--fast`, alternating the
two (exact, fast, exact, fast, ...) so that a shared machine slows both alike.

    python benchmarks/fast_cli.py --model var_d16.pth --vae vae_ch160v4096z32.pth --rounds 3 \
        -- --class 207 --n 2

Make official-layout files with random weights for d16 by saving `VARTransformer(d16)` and
`VQTokenizer()` with `varclip.checkpoints.save_official`. Prints each time, the best and the
median per mode, and the ratio exact / fast; also each process's CPU time (user + system), the
steadier figure when other work shares the machine.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--vae", required=True)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("rest", nargs="*", help="more `varclip generate` arguments (after --)")
    args = ap.parse_args()
    exe = str(Path(sys.executable).with_name("varclip"))
    times: dict[str, list[float]] = {"exact": [], "fast": []}
    cpu: dict[str, list[float]] = {"exact": [], "fast": []}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            for mode in ("exact", "fast") if r % 2 == 0 else ("fast", "exact"):
                cmd = [exe, "generate", "--model", args.model, "--vae", args.vae, "--quiet", "--device", "cpu",
                       "--out", str(Path(tmp) / f"{mode}{r}.png"), *args.rest] + (["--fast"] if mode == "fast" else [])
                t = time.perf_counter()
                proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
                _, status, usage = os.wait4(proc.pid, 0)
                times[mode].append(time.perf_counter() - t)
                cpu[mode].append(usage.ru_utime + usage.ru_stime)
                if status:
                    sys.exit(f"{mode} failed: {proc.stderr.read().decode()[-500:]}")
                print(f"round {r} {mode}: {times[mode][-1]:.1f} s wall, {cpu[mode][-1]:.1f} s CPU", flush=True)
    for what, d in (("wall", times), ("CPU", cpu)):
        for mode, ts in d.items():
            print(f"{mode} {what}: best {min(ts):.1f} s, median {statistics.median(ts):.1f} s")
        print(f"exact / fast ({what}): best {min(d['exact']) / min(d['fast']):.2f}x, "
              f"median {statistics.median(d['exact']) / statistics.median(d['fast']):.2f}x")


if __name__ == "__main__":
    main()
