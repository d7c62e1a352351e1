"""Word-position analysis of prompts (``varclip prompt-inspect``).

VAR-CLIP's paper observes that the pooled CLIP embedding is dominated by the first words of a
caption, so key words should come first. This tool measures it for any text encoder: for each
word, the cosine distance (1 - cos) between the embedding of the full caption and of

* the caption with that word removed (how much the word matters where it is),
* the caption with that word moved to the front,
* the caption with that word moved to the back (how much its position matters).

Over a caption file it reports the mean removal distance by word position, which is the
paper's "early words dominate" curve.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F

from .encoders import TextEncoder, TextEncoderError, load_text_encoder

_IMAGE_EXT = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff")


@dataclass
class WordShift:
    """Distances for one word of a caption (position is 0-based)."""

    position: int
    word: str
    removed: float
    to_front: float
    to_back: float


@dataclass
class PositionSummary:
    """Mean removal distance of the word at ``position`` (0-based) over ``count`` captions."""

    position: int
    mean_removed: float
    count: int


def _variants(words: list[str], i: int) -> tuple[str, str, str]:
    rest = words[:i] + words[i + 1 :]
    return " ".join(rest), " ".join([words[i], *rest]), " ".join([*rest, words[i]])


def _embed_unique(encoder: TextEncoder, texts: list[str]) -> dict[str, torch.Tensor]:
    unique = list(dict.fromkeys(texts))
    # A one-word caption without its word is "": that is the intended comparison here.
    pooled = F.normalize(encoder.encode(unique, allow_empty=True).pooled.double(), dim=-1)
    return {t: pooled[i] for i, t in enumerate(unique)}


def _dist(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(1.0 - (a * b).sum().clamp(-1.0, 1.0))


def word_position_analysis(encoder: TextEncoder, caption: str) -> list[WordShift]:
    """One row per whitespace-separated word of ``caption`` (all variants encoded in one call)."""
    words = caption.split()
    if not words:
        raise TextEncoderError("the caption to inspect is empty")
    variants = [_variants(words, i) for i in range(len(words))]
    full = " ".join(words)
    emb = _embed_unique(encoder, [full, *(v for trio in variants for v in trio)])
    return [
        WordShift(i, w, _dist(emb[full], emb[r]), _dist(emb[full], emb[f]), _dist(emb[full], emb[b]))
        for i, (w, (r, f, b)) in enumerate(zip(words, variants))
    ]


def summarize_captions(encoder: TextEncoder, captions: Sequence[str],
                       max_words: int | None = None) -> list[PositionSummary]:
    """Mean removal distance by word position over many captions (removals only: 1 + n texts each)."""
    texts: list[str] = []
    plan: list[tuple[str, list[str]]] = []
    for cap in captions:
        words = cap.split()
        if not words:
            continue
        n = len(words) if max_words is None else min(len(words), max_words)
        removed = [_variants(words, i)[0] for i in range(n)]
        full = " ".join(words)
        plan.append((full, removed))
        texts += [full, *removed]
    if not plan:
        raise TextEncoderError("no non-empty captions to summarise")
    emb = _embed_unique(encoder, texts)
    sums: dict[int, list[float]] = {}
    for full, removed in plan:
        for i, r in enumerate(removed):
            sums.setdefault(i, []).append(_dist(emb[full], emb[r]))
    return [PositionSummary(i, sum(v) / len(v), len(v)) for i, v in sorted(sums.items())]


def read_captions(path: str | Path) -> list[str]:
    """Captions, one per line; ``<image path>: <caption>`` lines (VAR-CLIP's files) are accepted.

    The split is on the first ': ' and only when the part before it names an image file, so
    captions that contain a colon are kept whole.
    """
    path = Path(path)
    if not path.is_file():
        raise TextEncoderError(f"caption file not found: {path}")
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line:
            continue
        head, sep, tail = line.partition(": ")
        out.append(tail.strip() if sep and head.lower().endswith(_IMAGE_EXT) else line)
    return out


# ---------------------------------------------------------------------------- rendering


def _bar(value: float, scale: float, width: int = 20) -> str:
    n = 0 if scale <= 0 else round(width * value / scale)
    return "#" * max(0, min(width, n))


def format_table(rows: Sequence[WordShift], caption: str | None = None, encoder: str | None = None) -> str:
    """Plain-text table, one line per word, with a bar of the removal distance."""
    w = max([4, *(len(r.word) for r in rows)])
    scale = max([r.removed for r in rows] + [1e-12])
    lines = []
    if caption is not None:
        lines.append(f"caption: {caption}")
    if encoder is not None:
        lines.append(f"encoder: {encoder}")
    lines.append(f"{'#':>3}  {'word':<{w}}  {'removed':>8}  {'front':>8}  {'back':>8}")
    for r in rows:
        lines.append(f"{r.position + 1:>3}  {r.word:<{w}}  {r.removed:8.5f}  {r.to_front:8.5f}  {r.to_back:8.5f}"
                     f"  {_bar(r.removed, scale)}")
    lines.append("distance = 1 - cosine(full caption, variant); removed/front/back = word removed, moved first, moved last")
    return "\n".join(lines)


def format_summary(summary: Sequence[PositionSummary]) -> str:
    scale = max([s.mean_removed for s in summary] + [1e-12])
    lines = [f"{'pos':>3}  {'captions':>8}  {'mean removed':>12}"]
    for s in summary:
        lines.append(f"{s.position + 1:>3}  {s.count:>8}  {s.mean_removed:12.5f}  {_bar(s.mean_removed, scale)}")
    return "\n".join(lines)


_COLORS = ((0xD6, 0x27, 0x28), (0x1F, 0x77, 0xB4), (0x2C, 0xA0, 0x2C))


def save_bar_chart(path: str | Path, labels: Sequence[str], series: dict[str, Sequence[float]],
                   title: str = "") -> Path:
    """Grouped bar chart with PIL only (no plotting library for one small figure)."""
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.load_default()
    names = list(series)
    n, k = len(labels), len(names)
    group_w, bar_w, left, top, plot_h, bottom = max(24, 10 * k + 14), 10, 60, 50, 240, 90
    width = max(480, left + n * group_w + 20)
    img = Image.new("RGB", (width, top + plot_h + bottom), "white")
    draw = ImageDraw.Draw(img)
    vmax = max([v for s in series.values() for v in s] + [1e-12])
    base_y = top + plot_h
    draw.text((left, 8), title[:110], fill="black", font=font)
    for j, name in enumerate(names):  # legend
        x = left + j * 110
        draw.rectangle([x, 28, x + 10, 38], fill=_COLORS[j % len(_COLORS)])
        draw.text((x + 14, 27), name, fill="black", font=font)
    for frac in (0.0, 0.5, 1.0):  # y axis ticks
        y = base_y - frac * plot_h
        draw.line([left - 4, y, width - 10, y], fill=(220, 220, 220))
        draw.text((4, y - 6), f"{vmax * frac:.4f}", fill="black", font=font)
    for i, label in enumerate(labels):
        gx = left + i * group_w + 4
        for j, name in enumerate(names):
            h = plot_h * float(series[name][i]) / vmax
            x0 = gx + j * bar_w
            draw.rectangle([x0, base_y - h, x0 + bar_w - 2, base_y], fill=_COLORS[j % len(_COLORS)])
        # Labels are drawn vertically so long words do not overlap their neighbours.
        text = label[:14]
        tw = int(draw.textlength(text, font=font)) + 2
        tile = Image.new("RGB", (tw, 12), "white")
        ImageDraw.Draw(tile).text((0, 0), text, fill="black", font=font)
        img.paste(tile.rotate(90, expand=True), (gx + (k * bar_w) // 2 - 6, base_y + 6))
    draw.line([left - 4, base_y, width - 10, base_y], fill="black")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)
    return path


def save_word_chart(rows: Sequence[WordShift], path: str | Path, title: str = "") -> Path:
    return save_bar_chart(path, [r.word for r in rows], {
        "removed": [r.removed for r in rows], "to front": [r.to_front for r in rows],
        "to back": [r.to_back for r in rows]}, title)


def save_summary_chart(summary: Sequence[PositionSummary], path: str | Path, title: str = "") -> Path:
    return save_bar_chart(path, [str(s.position + 1) for s in summary],
                          {"mean removed": [s.mean_removed for s in summary]}, title)


# ---------------------------------------------------------------------------- command line


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="varclip prompt-inspect",
        description="How much each word, and its position, moves a caption's pooled text embedding.",
    )
    p.add_argument("caption", nargs="?", help="caption to analyse word by word")
    p.add_argument("--text-encoder", default="minilm", metavar="SPEC",
                   help="'minilm' (default), 'clip:PATH[?variant=..&act=..]' or 'hf:PATH'")
    p.add_argument("--captions", metavar="FILE", help="caption file: mean removal distance by word position")
    p.add_argument("--max-words", type=int, default=None, help="positions to summarise (default: all)")
    p.add_argument("--limit", type=int, default=None, help="use at most this many captions of --captions")
    p.add_argument("--png", metavar="PATH", help="save a bar chart (the caption's, else the summary's)")
    p.add_argument("--cache-dir", metavar="DIR", help="cache embeddings on disk")
    p.add_argument("--device", default="cpu")
    p.add_argument("--json", action="store_true", help="print JSON instead of tables")
    return p


def cli_prompt_inspect(argv: list[str]) -> int:
    """Entry point of ``varclip prompt-inspect``; returns the process exit code."""
    args = _parser().parse_args(argv)
    if args.caption is None and args.captions is None:
        print("prompt-inspect: give a caption or --captions FILE", file=sys.stderr)
        return 2
    try:
        encoder: TextEncoder = load_text_encoder(args.text_encoder, device=args.device)
        if args.cache_dir:
            from .cache import CachedTextEncoder

            encoder = CachedTextEncoder(encoder, args.cache_dir)
        rows = word_position_analysis(encoder, args.caption) if args.caption is not None else None
        summary = None
        if args.captions is not None:
            caps = read_captions(args.captions)
            summary = summarize_captions(encoder, caps[: args.limit] if args.limit else caps, args.max_words)
    except ValueError as e:
        print(f"prompt-inspect: {e}", file=sys.stderr)
        return 2
    if args.json:
        doc = {"encoder": encoder.identity}
        if rows is not None:
            doc |= {"caption": args.caption, "rows": [asdict(r) for r in rows]}
        if summary is not None:
            doc["summary"] = [asdict(s) for s in summary]
        print(json.dumps(doc, indent=1))
    else:
        if rows is not None:
            print(format_table(rows, args.caption, encoder.identity))
        if summary is not None:
            print(("\n" if rows is not None else "") + f"captions: {args.captions}")
            print(format_summary(summary))
    if args.png:
        try:
            if rows is not None:
                save_word_chart(rows, args.png, f"{args.caption}  [{encoder.identity}]")
            else:
                save_summary_chart(summary or [], args.png, f"mean removal distance by position  [{encoder.identity}]")
        except OSError as e:
            print(f"prompt-inspect: cannot write {args.png}: {e}", file=sys.stderr)
            return 1
        print(f"saved {args.png}", file=sys.stderr)
    return 0
