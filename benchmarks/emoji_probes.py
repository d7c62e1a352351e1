"""Seed diversity and colour-composition probes of a text-to-image model (the embedded emoji
model's card reports them; docs/model_card_emoji.md).

    python benchmarks/emoji_probes.py [--model DIR] [--grid probes.png] [--json out.json]

(the grid: one row of seeds per caption, diversity captions first). The measures live in
`varclip.eval.probes`.

Seed diversity: for each of 8 trained captions, 6 seeds; the mean pairwise absolute pixel
difference in [0, 1] (0: every seed draws the same picture). Composition: colours on objects
that no emoji shows in that colour; for each, the share of the coloured (non-white, saturated)
pixels whose hue is the asked one, averaged over 6 seeds. Sampling: the model's recommended
settings.
"""

from __future__ import annotations

import argparse
import json

import numpy as np
from PIL import Image

from varclip.eval.probes import COLOUR_PROBES, DIVERSITY_CAPTIONS, SEEDS, hue_share, seed_diversity


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
        rows += ims
        labels += [cap] + [""] * (SEEDS - 1)
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
