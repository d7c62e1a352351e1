"""Each `--fast` piece on its own against exact mode: d16 random weights, 256 px, in one process,
interleaved (variant order rotates every round), best of the rounds. Also the share of tokens
that match exact mode for the same seed.

    python benchmarks/fast_pieces.py --batch 1,2 --rounds 2 [--config d16] [--compile]
"""

from __future__ import annotations

import argparse
import time

import torch

from varclip.config import SamplingConfig, TokenizerConfig, named_transformer
from varclip.fast import FastConfig, FastRunner
from varclip.model import Cond, VARTransformer
from varclip.sampling import generate
from varclip.tokenizer import VQTokenizer

PLAIN = dict(autocast="off", quantize="off", compile="off", prune_scales=0, cfg_off_last=0)
PIECES = {
    "bf16": dict(PLAIN, autocast="bf16"),
    "int8": dict(PLAIN, quantize="int8"),
    "prune 2 scales, keep 0.5": dict(PLAIN, prune_scales=2, prune_keep=0.5),
    "cfg off last 2": dict(PLAIN, cfg_off_last=2),
    "preset (auto)": {},
}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", default="d16")
    ap.add_argument("--batch", default="1,2")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--compile", action="store_true", help="also time torch.compile (inductor) of the step")
    args = ap.parse_args()
    pieces = dict(PIECES)
    if args.compile:
        pieces["compile"] = dict(PLAIN, compile="default")
    cfg = named_transformer(args.config)
    torch.manual_seed(0)
    model = VARTransformer(cfg).eval()
    tok = VQTokenizer(TokenizerConfig(vocab_size=cfg.vocab_size, z_channels=cfg.z_channels,
                                      patch_nums=cfg.patch_nums)).eval()
    runners = {name: FastRunner(model, FastConfig(**kw)) for name, kw in pieces.items()}
    print("preset resolves to", runners["preset (auto)"].cfg)
    sc = SamplingConfig(cfg=1.5, top_k=900, top_p=0.96, seed=0)
    for batch in (int(b) for b in args.batch.split(",")):
        cond = Cond(torch.arange(batch) * 97 % cfg.num_classes)
        variants = {"exact": None, **runners}
        times: dict[str, list[float]] = {k: [] for k in variants}
        ids: dict[str, list[torch.Tensor]] = {}
        generate(model, tok, cond, batch, sc)  # warm-up
        for r in range(args.rounds + 1):
            names = list(variants)
            names = names[r % len(names):] + names[: r % len(names)]
            for name in names:
                t = time.perf_counter()
                _, tokens, _ = generate(model, tok, cond, batch, sc, fast=variants[name])
                if r:  # round 0 warms every variant up (bf16 kernels, compilation)
                    times[name].append(time.perf_counter() - t)
                ids[name] = tokens
        base = min(times["exact"])
        total = sum(t.numel() for t in ids["exact"])
        print(f"\nB={batch}: exact {base:.2f} s (best of {args.rounds})")
        print("| piece | s | speed-up vs exact | tokens equal to exact |")
        print("|---|---|---|---|")
        for name in variants:
            same = sum((a == b).sum().item() for a, b in zip(ids["exact"], ids[name])) / total
            print(f"| {name} | {min(times[name]):.2f} | {base / min(times[name]):.2f}x | {100 * same:.1f} % |", flush=True)


if __name__ == "__main__":
    main()
