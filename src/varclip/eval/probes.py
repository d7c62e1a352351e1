"""Seed diversity and colour-composition probes of a text-to-image model (the embedded emoji
model's card reports them, its tests check them; docs/model_card_emoji.md).

Seed diversity: the images of one caption under different seeds; the mean pairwise absolute
pixel difference in [0, 1] (0: every seed draws the same picture). Composition: colours on
objects that no emoji shows in that colour; the share of the coloured (saturated, not dark)
pixels whose hue is the asked one.
"""

from __future__ import annotations

import colorsys
import itertools
from collections.abc import Sequence

import numpy as np
from PIL import Image

DIVERSITY_CAPTIONS = ("red apple", "smiling face", "blue heart", "rocket", "dog face", "pizza",
                      "sun", "cat face")
# caption -> hue range in degrees (wrapping at 360)
COLOUR_PROBES = {"a blue apple": (190, 260), "a green car": (75, 165), "a purple star": (260, 320),
                 "a red heart in twemoji style": (340, 20)}
SEEDS = 6


def seed_diversity(images: Sequence[Image.Image]) -> float:
    """Mean pairwise absolute pixel difference in [0, 1] of the images (at least two)."""
    arr = [np.asarray(im.convert("RGB"), dtype=np.float32) / 255 for im in images]
    return float(np.mean([np.abs(a - b).mean() for a, b in itertools.combinations(arr, 2)]))


def hue_share(img: Image.Image, lo: float, hi: float) -> float:
    """Share of coloured pixels (saturation > 0.35, value > 0.2) whose hue in degrees lies in
    [lo, hi] (wrapping when lo > hi); 0 when no pixel is coloured."""
    a = np.asarray(img.convert("RGB"), dtype=np.float32) / 255
    hsv = np.array([colorsys.rgb_to_hsv(*p) for p in a.reshape(-1, 3)])
    coloured = (hsv[:, 1] > 0.35) & (hsv[:, 2] > 0.2)
    if not coloured.any():
        return 0.0
    h = hsv[coloured, 0] * 360
    inside = (h >= lo) & (h <= hi) if lo <= hi else (h >= lo) | (h <= hi)
    return float(inside.mean())


__all__ = ["COLOUR_PROBES", "DIVERSITY_CAPTIONS", "SEEDS", "hue_share", "seed_diversity"]
