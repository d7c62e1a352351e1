"""Seed diversity and colour-composition probes of a text-to-image model (the embedded emoji
model's card reports them; docs/model_card_emoji.md).

    python benchmarks/emoji_probes.py [--model DIR] [--grid probes.png] [--json out.json]

Seed diversity: for each of 8 trained captions, 6 seeds; the mean pairwise absolute pixel
difference in [0, 1] (0: every seed draws the same picture). Composition: colours on objects
that no emoji shows in that colour; for each, the share of the coloured (non-white, saturated)
pixels whose hue is the asked one, averaged over 6 seeds. Sampling: the model's recommended
settings.
"""

from __future__ import annotations

import argparse
import colorsys
import itertools
import json

import numpy as np
from PIL import Image

DIVERSITY_CAPTIONS = ("red apple", "smiling face", "blue heart", "rocket", "dog face", "pizza",
                      "sun", "cat face")
# caption -> hue range in degrees (wrapping at 360)
COLOUR_PROBES = {"a blue apple": (190, 260), "a green car": (75, 165), "a purple star": (260, 320),
                 "a red heart in twemoji style": (340, 20)}
SEEDS = 6


def seed_diversity(images: list[Image.Image]) -> float:
    arr = [np.asarray(im.convert("RGB"), dtype=np.float32) / 255 for im in images]
    return float(np.mean([np.abs(a - b).mean() for a, b in itertools.combinations(arr, 2)]))


def hue_share(img: Image.Image, lo: float, hi: float) -> float:
    """Share of coloured pixels (saturation > 0.35, value > 0.2, not near white) with hue in [lo, hi]."""
    a = np.asarray(img.convert("RGB"), dtype=np.float32) / 255
    hsv = np.array([colorsys.rgb_to_hsv(*p) for p in a.reshape(-1, 3)])
    coloured = (hsv[:, 1] > 0.35) & (hsv[:, 2] > 0.2)
    if not coloured.any():
        return 0.0
    h = hsv[coloured, 0] * 360
    inside = (h >= lo) & (h <= hi) if lo <= hi else (h >= lo) | (h <= hi)
    return float(inside.mean())


def run(model: str | None, grid: str | None) -> dict:
    from varclip.embedded import embedded_model_dir
    from varclip.grid import make_grid
    from varclip.pipeline import VARPipeline

    pipe = VARPipeline.from_pretrained(model or embedded_model_dir())
    out: dict = {"diversity": {}, "colour": {}}
    rows: list[Image.Image] = []
    labels: list[str] = []
    for cap in DIVERSITY_CAPTIONS:
        ims = pipe([cap], num_images=SEEDS, seed=0, per_sample_seeds=True).images
        out["diversity"][cap] = round(seed_diversity(ims), 4)
    for cap, (lo, hi) in COLOUR_PROBES.items():
        ims = pipe([cap], num_images=SEEDS, seed=0, per_sample_seeds=True).images
        out["colour"][cap] = round(float(np.mean([hue_share(im, lo, hi) for im in ims])), 3)
        rows += ims
        labels += [cap] + [""] * (SEEDS - 1)
    if grid:
        make_grid(rows, ncol=SEEDS, captions=labels).save(grid)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model")
    ap.add_argument("--grid")
    ap.add_argument("--json")
    args = ap.parse_args()
    res = run(args.model, args.grid)
    print(json.dumps(res, indent=1))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=1)


if __name__ == "__main__":
    main()
