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
import json
import random
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..data.captions import read_caption_manifest
from ..data.images import load_image, pil_to_tensor

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
                          batch: int = 16, cfg: float = 3.0, top_k: int = 0, top_p: float = 0.9,
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
        out = pipe(queries[i: i + batch], num_images=1, cfg=cfg, top_k=top_k, top_p=top_p, seed=seed + i,
                   per_sample_seeds=True)
        gen.append(torch.stack([pil_to_tensor(im) for im in out.images]).add(1).mul(0.5))
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
    feats = [pixel_features(pil_to_tensor(load_image(p))[None].add(1).mul(0.5)) for p in paths]
    return torch.cat(feats), paths


def cli_faithfulness(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="varclip eval faithfulness",
                                 description="prompt faithfulness by nearest-training-image retrieval")
    ap.add_argument("--model", help="native model directory (default: the embedded model)")
    ap.add_argument("--train", required=True, help="the training caption manifest")
    ap.add_argument("--heldout", help="a held-out caption manifest (unseen captions)")
    ap.add_argument("--n", type=int, default=200, help="captions per split")
    ap.add_argument("--cfg", type=float, default=3.0)
    ap.add_argument("--top-k", type=int, default=0)
    ap.add_argument("--top-p", type=float, default=0.9)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args(argv)
    from ..embedded import embedded_model_dir
    from ..pipeline import VARPipeline
    pipe = VARPipeline.from_pretrained(args.model or embedded_model_dir())
    if not pipe.is_text:
        raise ValueError("prompt faithfulness needs a text-to-image model")
    rng = random.Random(args.seed)
    train_records = read_caption_manifest(args.train).records
    feats = train_features(train_records)
    splits = {"seen": sorted({caption for _, caption in train_records})}
    if args.heldout:
        splits["heldout"] = sorted({caption for _, caption in read_caption_manifest(args.heldout).records})
    results = []
    for name, caps in splits.items():
        qs = rng.sample(caps, min(args.n, len(caps)))
        res = evaluate_faithfulness(pipe, args.train, qs, name, args.seed, cfg=args.cfg, top_k=args.top_k,
                                    top_p=args.top_p, train_feats=feats)
        print(res.table())
        results.append(asdict(res))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1) + "\n")
    return 0
