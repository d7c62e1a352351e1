"""Evaluation. Tokenizers: PSNR, SSIM and codebook usage (`recon`, `metrics`); rFID plugs into
`recon.ImageMetric`. Generators: FID and friends in their own modules beside these."""

from .metrics import CodebookUsage, MeanMeter, gaussian_window, psnr, ssim
from .recon import ImageMetric, ReconResult, evaluate_reconstruction, patch_nums_for

__all__ = ["CodebookUsage", "MeanMeter", "gaussian_window", "psnr", "ssim", "ImageMetric", "ReconResult",
           "evaluate_reconstruction", "patch_nums_for"]
