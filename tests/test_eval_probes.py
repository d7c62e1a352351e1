"""The seed-diversity and colour probes of the embedded model's card."""

from __future__ import annotations

from PIL import Image

from varclip.eval.probes import hue_share, seed_diversity


def test_seed_diversity_is_the_mean_pairwise_pixel_difference():
    white, black = Image.new("RGB", (8, 8), "white"), Image.new("RGB", (8, 8), "black")
    assert seed_diversity([white, white, white]) == 0.0
    assert seed_diversity([white, black]) == 1.0
    assert abs(seed_diversity([white, white, black]) - 2 / 3) < 1e-6  # pairs: 0, 1, 1


def test_hue_share_counts_coloured_pixels_only_and_wraps_at_360():
    img = Image.new("RGB", (4, 4), (255, 255, 255))  # white: not coloured
    assert hue_share(img, 190, 260) == 0.0
    img.paste((0, 0, 255), (0, 0, 2, 4))  # half blue
    img.paste((255, 0, 0), (2, 0, 4, 4))  # half red
    assert hue_share(img, 190, 260) == 0.5  # blue is 240 degrees
    assert hue_share(img, 340, 20) == 0.5  # red is 0 degrees: the range wraps
    assert hue_share(img, 75, 165) == 0.0
