"""Where one `varclip generate`-like process spends its wall time: imports, loading, building the
fast model, sampling, decoding. Run it as a fresh process per mode:

    python benchmarks/fast_breakdown.py --model var_d16.pth --vae vae.pth [--fast] [--class 207 --n 2]
"""

from __future__ import annotations

import time

T0 = time.perf_counter()

import argparse  # noqa: E402

import torch  # noqa: E402,F401  (timed with the imports)

from varclip.entry import load_pipeline  # noqa: E402


def main() -> None:
    t_import = time.perf_counter() - T0
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--vae", default=None)
    ap.add_argument("--fast", action="store_true")
    ap.add_argument("--class", dest="cls", type=int, default=207)
    ap.add_argument("--n", type=int, default=2)
    args = ap.parse_args()
    t = time.perf_counter()
    pipe = load_pipeline(args.model, args.vae, device="cpu", fast=args.fast)
    pipe.set_progress_bar_config(disable=True)
    t_load = time.perf_counter() - t
    t = time.perf_counter()
    runner = pipe._fast(None)  # built on first use otherwise
    t_runner = time.perf_counter() - t
    decode_s = []
    plain = pipe._decode

    def timed_decode(*a, **kw):
        s = time.perf_counter()
        out = plain(*a, **kw)
        decode_s.append(time.perf_counter() - s)
        return out

    pipe._decode = timed_decode
    t = time.perf_counter()
    pipe(class_labels=[args.cls] * args.n, seed=0)
    t_call = time.perf_counter() - t
    mode = "fast" if runner is not None else "exact"
    print(f"{mode}: imports {t_import:.2f} s, load {t_load:.2f} s, fast model {t_runner:.2f} s, "
          f"sampling {t_call - sum(decode_s):.2f} s, decode {sum(decode_s):.2f} s, "
          f"total {time.perf_counter() - T0:.2f} s")


if __name__ == "__main__":
    main()
