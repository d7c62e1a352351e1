"""`varclip eval tokens`: teacher-forcing loss and token accuracy per scale on a data set.

Each image is tokenized by the model's own tokenizer (eval transform: resize + centre crop); the
transformer sees the teacher-forcing input built from those tokens (exactly the training input)
and predicts every token of every scale. We report, per scale and overall, the mean cross-entropy
(nats per token, as in training) and top-1 / top-5 accuracy. The condition is the image's class
(class folders) or caption (caption manifests); ``null_cond`` evaluates the unconditional branch
instead, and ``compare_null`` both, which shows how much each scale draws on the condition.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from .metrics import Record


@dataclass
class ScaleStats:
    loss_sum: torch.Tensor
    top1: torch.Tensor
    top5: torch.Tensor
    count: torch.Tensor

    @staticmethod
    def zeros(k: int) -> "ScaleStats":
        z = lambda: torch.zeros(k, dtype=torch.float64)  # noqa: E731
        return ScaleStats(z(), z(), z(), z())


@dataclass
class TokenEvalResult(Record):
    data: str
    num_images: int
    patch_nums: list[int]
    condition: str  # "class", "caption", or "null"
    loss: list[float]  # per scale, nats/token
    top1: list[float]
    top5: list[float]
    loss_all: float  # over all tokens (token-weighted, as the training loss)
    top1_all: float
    top5_all: float
    null: dict[str, Any] | None = None  # the same numbers under the null condition (compare_null)
    notes: list[str] = field(default_factory=list)

    def table(self) -> str:
        lines = [f"data       {self.data} ({self.num_images} images)",
                 f"condition  {self.condition}",
                 ""]
        head = f"{'scale':>5} {'side':>4} {'tokens':>6} {'loss':>8} {'top-1 %':>8} {'top-5 %':>8}"
        if self.null:
            head += f" {'loss(null)':>10} {'top-1 %':>8}"
        lines.append(head)
        for s, p in enumerate(self.patch_nums):
            row = f"{s:>5} {p:>4} {p * p:>6} {self.loss[s]:>8.4f} {self.top1[s] * 100:>8.2f} {self.top5[s] * 100:>8.2f}"
            if self.null:
                row += f" {self.null['loss'][s]:>10.4f} {self.null['top1'][s] * 100:>8.2f}"
            lines.append(row)
        tail = f"{'all':>5} {'':>4} {sum(p * p for p in self.patch_nums):>6} {self.loss_all:>8.4f} " \
               f"{self.top1_all * 100:>8.2f} {self.top5_all * 100:>8.2f}"
        if self.null:
            tail += f" {self.null['loss_all']:>10.4f} {self.null['top1_all'] * 100:>8.2f}"
        lines.append(tail)
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines)


def _scale_index(patch_nums: tuple[int, ...]) -> torch.Tensor:
    return torch.cat([torch.full((p * p,), s, dtype=torch.long) for s, p in enumerate(patch_nums)])


def _accumulate(stats: ScaleStats, logits: torch.Tensor, target: torch.Tensor, scale_of: torch.Tensor, k: int) -> None:
    V = logits.shape[-1]
    ce = F.cross_entropy(logits.reshape(-1, V).float(), target.reshape(-1), reduction="none").view(target.shape)
    top = logits.topk(min(5, V), dim=-1).indices
    hit1 = (top[..., 0] == target)
    hit5 = (top == target.unsqueeze(-1)).any(-1)
    idx = scale_of.to(target.device).expand_as(target).reshape(-1)
    for acc, val in ((stats.loss_sum, ce), (stats.top1, hit1), (stats.top5, hit5)):
        acc += torch.zeros(k, dtype=torch.float64, device=val.device).index_add_(0, idx, val.reshape(-1).double()).cpu()
    stats.count += torch.bincount(idx, minlength=k).double().cpu()


def _summary(stats: ScaleStats) -> dict[str, Any]:
    c = stats.count.clamp_min(1)
    n = float(stats.count.sum())
    return {"loss": (stats.loss_sum / c).tolist(), "top1": (stats.top1 / c).tolist(), "top5": (stats.top5 / c).tolist(),
            "loss_all": float(stats.loss_sum.sum()) / n if n else math.nan,
            "top1_all": float(stats.top1.sum()) / n if n else math.nan,
            "top5_all": float(stats.top5.sum()) / n if n else math.nan}


@torch.no_grad()
def evaluate_tokens(pipe: Any, batches: Iterable[tuple[torch.Tensor, Any]], data_name: str = "<data>",
                    null_cond: bool = False, compare_null: bool = False, progress: bool = False,
                    total: int | None = None) -> TokenEvalResult:
    """Per-scale teacher-forcing loss/accuracy of `pipe` over (images in [-1,1], labels|captions) batches."""
    model, tok = pipe.transformer, pipe.tokenizer
    model.eval()
    tok.eval()
    device = pipe.device
    pn = tuple(model.patch_nums)
    k = len(pn)
    scale_of = _scale_index(pn).unsqueeze(0)
    main, null = ScaleStats.zeros(k), ScaleStats.zeros(k)
    amp = torch.autocast(device.type, dtype=pipe.autocast_dtype, enabled=pipe.autocast_dtype is not None)
    seen = 0
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=total, desc="tokens", unit="img", leave=False)
    try:
        for images, targets in batches:
            images = images.to(device)
            B = images.shape[0]
            ids = tok.encode(images)  # the pipeline keeps the tokenizer at the transformer's scales
            x_in = tok.quantize.teacher_forcing_input(ids, pn)
            gt = torch.cat(ids, dim=1)
            if null_cond:
                conds = [model.cond.null(B, device)]
            elif pipe.is_text:
                conds = [pipe.encode_prompts(list(targets))]
            else:
                labels = torch.as_tensor(targets, dtype=torch.long)
                bad = labels[(labels < 0) | (labels >= model.cfg.num_classes)]
                if bad.numel():
                    raise ValueError(f"class id {int(bad[0])} from the data is outside the model's classes "
                                     f"0..{model.cfg.num_classes - 1} (are the class folders the model's?)")
                from ..model import Cond
                conds = [Cond(labels.to(device))]
            if compare_null and not null_cond:
                conds.append(model.cond.null(B, device))
            for stats, cond in zip((main, null), conds):
                with amp:
                    logits = model(cond, x_in)
                _accumulate(stats, logits.float(), gt, scale_of, k)
            seen += B
            if bar is not None:
                bar.update(B)
    finally:
        if bar is not None:
            bar.close()
    if not seen:
        raise ValueError(f"{data_name}: no images")
    s = _summary(main)
    condition = "null" if null_cond else ("caption" if pipe.is_text else "class")
    return TokenEvalResult(data_name, seen, list(pn), condition, s["loss"], s["top1"], s["top5"], s["loss_all"],
                           s["top1_all"], s["top5_all"], _summary(null) if (compare_null and not null_cond) else None)


def token_dataset(pipe: Any, data: str | Path, null_cond: bool = False):
    """An eval-transform data set at the model's resolution: class folders for class models, a caption
    manifest for text models (any folder of images with null_cond)."""
    from ..data import CaptionDataset, ImageFolderDataset, RobustImageDataset
    from ..data.images import ImageTransform
    from .fid import list_image_files
    path = Path(data)
    size = pipe.image_size
    if not path.exists():
        raise FileNotFoundError(f"data not found: {path}")
    if pipe.is_text and not null_cond:
        if path.is_dir():
            raise ValueError(f"{path}: a text model is evaluated on a caption manifest (.jsonl/.csv/.txt), "
                             "not a folder (or pass --null-cond)")
        return CaptionDataset(path, size, train=False)
    if path.is_dir():
        has_classes = any(p.is_dir() and not p.name.startswith(".") for p in path.iterdir())
        if has_classes and not null_cond:
            return ImageFolderDataset(path, size, train=False)
        if not null_cond:
            raise ValueError(f"{path}: a class model needs class sub-folders (root/<class>/image) or --null-cond")
        files = list_image_files(path)
        if not files:
            raise ValueError(f"no image files under {path}")
        return RobustImageDataset([(p, 0) for p in files], ImageTransform(size, train=False), name=str(path))
    if null_cond or pipe.is_text:
        return CaptionDataset(path, size, train=False)
    raise ValueError(f"{path}: a class model is evaluated on an image folder with class sub-folders")


def run_token_eval(pipe: Any, data: str | Path, batch_size: int = 16, limit: int | None = None,
                   null_cond: bool = False, compare_null: bool = False, workers: int = 0, seed: int = 0,
                   progress: bool = True) -> TokenEvalResult:
    """Evaluate on `data` (at most `limit` images: a seeded random subset, not the first ones)."""
    from torch.utils.data import DataLoader, Subset
    if batch_size < 1:
        raise ValueError(f"batch size must be >= 1, got {batch_size}")
    ds = token_dataset(pipe, data, null_cond)
    notes = []
    if limit is not None and limit < len(ds):
        idx = torch.randperm(len(ds), generator=torch.Generator().manual_seed(seed))[:limit].sort().values
        ds = Subset(ds, idx.tolist())
        notes.append(f"a random subset of {limit} images (seed {seed})")
    loader = DataLoader(ds, batch_size=batch_size, shuffle=False, num_workers=workers,
                        collate_fn=_collate)
    res = evaluate_tokens(pipe, loader, str(data), null_cond, compare_null, progress, len(ds))
    res.notes += notes
    return res


def _collate(items):
    images = torch.stack([x for x, _ in items])
    return images, [t for _, t in items]


__all__ = ["TokenEvalResult", "evaluate_tokens", "token_dataset", "run_token_eval"]
