"""Grids of images with captions, and writing images to files (tensor -> PIL: `data.images`)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from PIL import Image, ImageDraw

from .fonts import label_font

MAX_LABEL_LINES = 3  # a caption or title longer than this is cut with an ellipsis


def make_grid(images: Sequence[Image.Image], ncol: int | None = None, captions: Sequence[str] | None = None,
              title: str | None = None, scale: int = 1, pad: int = 4) -> Image.Image:
    """Images in rows of `ncol`, each optionally with a caption below, and an optional title
    (each cut to MAX_LABEL_LINES lines)."""
    if not images:
        raise ValueError("no images to put in a grid")
    n = len(images)
    ncol = ncol or min(n, 8)
    nrow = (n + ncol - 1) // ncol
    w, h = images[0].width * scale, images[0].height * scale
    font = label_font(max(10, min(14, w // 8)))
    cap_lines = [font.wrap(str(c), w, MAX_LABEL_LINES) for c in captions] if captions else [[]] * n
    line_h = font.line_height
    cap_h = max((len(c) for c in cap_lines), default=0) * line_h
    title_lines = font.wrap(title, ncol * (w + pad), MAX_LABEL_LINES) if title else []
    top = len(title_lines) * line_h + (pad if title else 0)
    grid = Image.new("RGB", (ncol * (w + pad) + pad, top + nrow * (h + cap_h + pad) + pad), "white")
    draw = ImageDraw.Draw(grid)
    for i, line in enumerate(title_lines):
        font.draw(draw, (pad, pad + i * line_h), line)
    for i, img in enumerate(images):
        r, c = divmod(i, ncol)
        x, y = pad + c * (w + pad), top + pad + r * (h + cap_h + pad)
        grid.paste(img.resize((w, h), Image.NEAREST) if scale != 1 else img, (x, y))
        for j, line in enumerate(cap_lines[i] if i < len(cap_lines) else []):
            font.draw(draw, (x, y + h + j * line_h), line)
    return grid


def save_image_atomic(img: Image.Image, path: str | Path) -> Path:
    """Write a PNG via a temp file, so a crash never leaves half a file where a good one was."""
    from .data.atomic import atomic_output
    path = Path(path)
    with atomic_output(path) as tmp:
        img.save(tmp, format="PNG")
    return path


def save_images(images: Sequence[Image.Image], out: str | Path, captions: Sequence[str] | None = None,
                title: str | None = None, ncol: int | None = None) -> list[Path]:
    """`out` ending in .png/.jpg: one grid; otherwise a directory of numbered PNGs (existing kept)."""
    out = Path(out)
    if out.suffix.lower() in (".png", ".jpg", ".jpeg"):
        return [save_image_atomic(make_grid(images, ncol, captions, title), out)]
    out.mkdir(parents=True, exist_ok=True)
    start = len(list(out.glob("*.png")))
    return [save_image_atomic(img, out / f"{start + i:05d}.png") for i, img in enumerate(images)]
