"""Prompt faithfulness by retrieval: does a generated image look like the training image its
caption describes?

For each query caption we generate an image and rank every training image by distance to it in
a fixed feature space (area-downsampled 16x16 RGB pixels: cheap, deterministic, and adequate
for flat-coloured icons; no learned network involved). The target of a query is the set of
training images whose caption is the training caption nearest to the query in the text
encoder's space (for a seen caption: its own images). Top-k accuracy = how often a target is
among the k nearest training images. The baseline pairs each generated image with the target
of a random other query (shuffled captions): a model that ignores its prompt scores the same
as the baseline.
"""

from __future__ import annotations

import argparse
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..data.captions import read_caption_manifest
from ..data.images import load_image, pil_to_tensor, to_unit
from .metrics import Record

FEATURE_SIDE = 16


def pixel_features(images: torch.Tensor) -> torch.Tensor:
    """(B,3,H,W) in [0,1] -> (B, 3*16*16) area-downsampled pixels."""
    return F.interpolate(images.float(), size=(FEATURE_SIDE, FEATURE_SIDE), mode="area").flatten(1)


@dataclass
class FaithfulnessResult:
    queries: int
    top1: float
    top5: float
    baseline_top1: float
    baseline_top5: float
    split: str
    examples: list[dict] = field(default_factory=list)

    def table(self) -> str:
        return (f"{self.split}: {self.queries} captions | top-1 {self.top1:.3f} top-5 {self.top5:.3f} | "
                f"shuffled-caption baseline top-1 {self.baseline_top1:.3f} top-5 {self.baseline_top5:.3f}")


def _hits(dist: torch.Tensor, targets: list[set[int]], k: int) -> float:
    topk = dist.topk(k, dim=1, largest=False).indices.tolist()
    return float(np.mean([bool(set(row) & t) for row, t in zip(topk, targets)]))


@torch.inference_mode()
def evaluate_faithfulness(pipe, train_manifest: str | Path, queries: list[str], split: str, seed: int = 0,
                          sampling: Any = None, batch: int = 16,
                          train_feats: tuple[torch.Tensor, list[str]] | None = None) -> FaithfulnessResult:
    records = read_caption_manifest(train_manifest).records
    if train_feats is None:
        train_feats = train_features(records)
    feats, paths = train_feats
    captions_of: dict[str, list[int]] = {}
    index_of = {p: i for i, p in enumerate(paths)}
    for image, caption in records:
        captions_of.setdefault(caption, []).append(index_of[str(image)])
    train_caps = sorted(captions_of)
    enc = pipe.text_encoder
    cap_emb = F.normalize(enc.encode(train_caps).pooled.float(), dim=-1)
    q_emb = F.normalize(enc.encode(queries).pooled.float(), dim=-1)
    nearest = (q_emb @ cap_emb.T).argmax(dim=1).tolist()
    targets = [set(captions_of[train_caps[j]]) for j in nearest]
    gen = []
    for i in range(0, len(queries), batch):
        out = pipe(queries[i: i + batch], sampling=sampling, seed=seed + i, per_sample_seeds=True)
        gen.append(to_unit(torch.stack([pil_to_tensor(im) for im in out.images])))
    g = pixel_features(torch.cat(gen))
    dist = torch.cdist(g, feats)
    perm = list(range(len(queries)))
    random.Random(seed).shuffle(perm)
    shuffled = [targets[p] for p in perm]
    nn1 = dist.argmin(dim=1).tolist()
    examples = [{"caption": q, "target_caption": train_caps[n], "nearest_train_image": paths[j]}
                for q, n, j in list(zip(queries, nearest, nn1))[:10]]
    return FaithfulnessResult(len(queries), _hits(dist, targets, 1), _hits(dist, targets, 5),
                              _hits(dist, shuffled, 1), _hits(dist, shuffled, 5), split, examples)


def train_features(records) -> tuple[torch.Tensor, list[str]]:
    paths = sorted({str(image) for image, _ in records})
    feats = [pixel_features(to_unit(pil_to_tensor(load_image(p))[None])) for p in paths]
    return torch.cat(feats), paths


@dataclass
class FaithfulnessReport(Record):
    splits: list[FaithfulnessResult]

    def table(self) -> str:
        return "\n".join(r.table() for r in self.splits)


def add_args(ap: argparse.ArgumentParser) -> None:
    """`varclip eval faithfulness` (output and errors: `eval.cli`'s contract)."""
    from ..entry import add_fast_arg, add_sampling_args
    ap.add_argument("--model", help="native model directory (default: the embedded model)")
    ap.add_argument("--train", required=True, help="the training caption manifest")
    ap.add_argument("--heldout", help="a held-out caption manifest (unseen captions)")
    ap.add_argument("--n", type=int, default=200, help="captions per split")
    ap.add_argument("--device", default="auto", help="cpu | cuda | auto")
    add_fast_arg(ap)
    add_sampling_args(ap, skip=("per_sample_seeds",))  # image i is drawn with seed + i


def run(args: argparse.Namespace) -> FaithfulnessReport:
    from ..entry import load_pipeline, sampling_from_args
    pipe = load_pipeline(args.model, device=args.device, fast=args.fast)
    pipe.set_progress_bar_config(disable=True)
    if not pipe.is_text:
        raise ValueError("prompt faithfulness needs a text-to-image model")
    settings = pipe.sampling_config(sampling_from_args(args))
    rng = random.Random(args.seed)
    train_records = read_caption_manifest(args.train).records
    feats = train_features(train_records)
    splits = {"seen": sorted({caption for _, caption in train_records})}
    if args.heldout:
        splits["heldout"] = sorted({caption for _, caption in read_caption_manifest(args.heldout).records})
    return FaithfulnessReport([evaluate_faithfulness(pipe, args.train, rng.sample(caps, min(args.n, len(caps))), name,
                                                     args.seed, settings, train_feats=feats)
                               for name, caps in splits.items()])
