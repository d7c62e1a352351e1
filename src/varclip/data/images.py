"""Image decoding and the official VAR transform, without torchvision.

Decoding is made robust because real data sets are messy: every PIL mode ends up as
RGB (transparency composited on white, 16-bit and float scaled down, CMYK through its
ICC profile when it has one), EXIF orientation is applied, and any failure becomes a
one-line `ValueError` that names the file so that callers can skip and count it.

The transform reproduces VAR's recipe exactly: Resize(shorter side -> round(1.125 *
size), LANCZOS), RandomCrop (train) or CenterCrop (eval) to size x size, optional
horizontal flip (before the resize, as in VAR), then x/255 mapped to [-1, 1] as
`x + x - 1`. Random draws come from an explicit `torch.Generator` so that a crop is a
function of (seed, epoch, index) and not of which worker happened to load the image.
"""

from __future__ import annotations

import io
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps

IMAGE_EXTENSIONS: tuple[str, ...] = (
    ".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff", ".ppm", ".pgm",
)
WHITE: tuple[int, int, int] = (255, 255, 255)

# What PIL raises for bad files: unidentified/truncated (OSError), bombs, odd headers.
_DECODE_ERRORS = (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError,
                  IndexError, TypeError, KeyError, ZeroDivisionError, MemoryError)


def is_image_file(path: str | os.PathLike[str]) -> bool:
    """True for file names with a known image extension (case-insensitive)."""
    return str(path).lower().endswith(IMAGE_EXTENSIONS)


def _scale_to_uint8(img: Image.Image) -> Image.Image:
    """High bit depth grayscale (I;16, I, F) to L: `convert('L')` would clip at 255."""
    arr = np.asarray(img, dtype=np.float64)
    if img.mode == "F":
        top = 1.0 if arr.size and float(np.nanmax(arr)) <= 1.0 else 255.0
    elif img.mode.startswith("I;16") or (arr.size and float(arr.max()) > 255):
        top = 65535.0
    else:
        top = 255.0
    arr = np.nan_to_num(arr / top * 255.0, nan=0.0).clip(0, 255)
    return Image.fromarray(np.rint(arr).astype(np.uint8), mode="L")


def _cmyk_to_rgb(img: Image.Image) -> Image.Image:
    """Uses the embedded ICC profile when there is one; PIL's naive formula otherwise."""
    icc = img.info.get("icc_profile")
    if icc:
        try:
            from PIL import ImageCms

            src = ImageCms.ImageCmsProfile(io.BytesIO(icc))
            dst = ImageCms.createProfile("sRGB")
            out = ImageCms.profileToProfile(img, src, dst, outputMode="RGB")
            if out is not None:
                return out
        except Exception:  # broken profile or no littlecms: fall back, never fail
            pass
    return img.convert("RGB")


def to_rgb(img: Image.Image, background: tuple[int, int, int] = WHITE) -> Image.Image:
    """Any PIL mode to RGB; transparent pixels are composited on `background`."""
    mode = img.mode
    if mode == "RGB":
        return img
    if mode == "P" or mode == "PA":
        has_alpha = mode == "PA" or "transparency" in img.info
        img = img.convert("RGBA" if has_alpha else "RGB")
        mode = img.mode
    if mode in ("I", "F") or mode.startswith("I;16"):
        img = _scale_to_uint8(img)
        mode = img.mode
    if mode == "CMYK":
        return _cmyk_to_rgb(img)
    if mode in ("RGBA", "LA", "La", "RGBa") or (mode in ("L", "RGB") and "transparency" in img.info):
        rgba = img.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, background + (255,))
        return Image.alpha_composite(canvas, rgba).convert("RGB")
    return img.convert("RGB")


def _open_rgb(fp: str | os.PathLike[str] | io.BytesIO, keep_alpha: bool = False) -> Image.Image:
    with warnings.catch_warnings():
        # A DecompressionBombWarning is left to PIL's limit; other warnings are noise here.
        warnings.simplefilter("ignore", UserWarning)
        with Image.open(fp) as img:
            img.load()  # force the full decode now so that truncation is caught here
            img = ImageOps.exif_transpose(img)
            return img.convert("RGBA") if keep_alpha else to_rgb(img).copy()


def _one_line(err: BaseException) -> str:
    text = f"{type(err).__name__}: {err}".strip()
    return " ".join(text.split()) or type(err).__name__


def load_image(path: str | os.PathLike[str], keep_alpha: bool = False) -> Image.Image:
    """Decode a file to an upright RGB image (RGBA with `keep_alpha`: paint layers), or raise a
    one-line ValueError naming it."""
    try:
        return _open_rgb(path, keep_alpha)
    except _DECODE_ERRORS as err:
        raise ValueError(f"cannot read image {os.fspath(path)!r}: {_one_line(err)}") from err


def decode_image_bytes(data: bytes, name: str = "<bytes>") -> Image.Image:
    """Same as `load_image` for in-memory bytes (tar members); `name` is for the message."""
    try:
        return _open_rgb(io.BytesIO(data))
    except _DECODE_ERRORS as err:
        raise ValueError(f"cannot read image {name!r}: {_one_line(err)}") from err


def resize_shorter_side(img: Image.Image, short: int, resample: int = Image.LANCZOS) -> Image.Image:
    """torchvision's Resize(int) on PIL: long side is truncated, not rounded."""
    w, h = img.size
    if w <= h:
        new_w, new_h = short, int(short * h / w)
    else:
        new_w, new_h = int(short * w / h), short
    if (new_w, new_h) == (w, h):
        return img
    return img.resize((new_w, new_h), resample)


def center_crop_box(width: int, height: int, size: int) -> tuple[int, int]:
    """(left, top) exactly as torchvision's CenterCrop computes it."""
    return int(round((width - size) / 2.0)), int(round((height - size) / 2.0))


def random_crop_box(width: int, height: int, size: int,
                    generator: torch.Generator | None = None) -> tuple[int, int]:
    """(left, top) drawn as torchvision's RandomCrop does (top first, then left)."""
    top = int(torch.randint(0, height - size + 1, (1,), generator=generator).item())
    left = int(torch.randint(0, width - size + 1, (1,), generator=generator).item())
    return left, top


def pil_to_tensor(img: Image.Image) -> torch.Tensor:
    """RGB PIL image to float32 CHW in [-1, 1], with VAR's exact arithmetic."""
    arr = np.asarray(to_rgb(img), dtype=np.uint8)
    x = torch.from_numpy(arr.copy()).permute(2, 0, 1).float().div(255)
    return x.add(x).add_(-1)


def to_unit(x: torch.Tensor) -> torch.Tensor:
    """[-1, 1] (what the tokenizer reads and writes) -> [0, 1] (what metrics and viewers want), clamped."""
    return ((x.float() + 1) / 2).clamp_(0, 1)


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """(B, 3, H, W) in [0, 1] -> (B, H, W, 3) uint8, rounded."""
    return images.detach().float().clamp(0, 1).mul(255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


def to_pil(images: torch.Tensor) -> list[Image.Image]:
    """(B, 3, H, W) in [0, 1] -> PIL images."""
    return [Image.fromarray(np.ascontiguousarray(a)) for a in to_uint8(images)]


def tensor_to_pil(x: torch.Tensor) -> Image.Image:
    """Inverse of `pil_to_tensor` (CHW in [-1, 1]) for previews and tests."""
    return to_pil(to_unit(x[None]))[0]


def center_crop(img: Image.Image, size: int | None = None) -> Image.Image:
    """The centred size x size crop (default: the largest square), placed as torchvision's CenterCrop."""
    size = min(img.size) if size is None else size
    left, top = center_crop_box(img.width, img.height, size)
    return img.crop((left, top, left + size, top + size))


def mask_picture(mask: "Image.Image | torch.Tensor | np.ndarray | str | os.PathLike[str]") -> torch.Tensor:
    """A mask picture of any size (file, PIL image or array) -> (H, W) float in [0, 1]; white = 1."""
    if isinstance(mask, (str, os.PathLike)):
        mask = load_image(mask)
    if isinstance(mask, Image.Image):
        return torch.from_numpy(np.asarray(mask.convert("L"), dtype=np.float32) / 255.0)
    return torch.as_tensor(mask, dtype=torch.float32)


@dataclass(frozen=True)
class ImageTransform:
    """VAR's train/eval transform; `mid_ratio` 1.125 is the official value.

    `scale_jitter` j > 0 (training only) draws the resize target from mid * U(1 - j, 1 + j)
    (never below `size`) before the random crop: small zooms on top of the crop's shifts. At 0
    no extra number is drawn, so the random stream stays the official one.
    """

    size: int
    train: bool = True
    hflip: bool = False
    mid_ratio: float = 1.125
    scale_jitter: float = 0.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.scale_jitter < 1.0:
            raise ValueError(f"scale_jitter must be in [0, 1), got {self.scale_jitter}")

    @property
    def mid(self) -> int:
        return round(self.mid_ratio * self.size)

    def __call__(self, img: Image.Image, generator: torch.Generator | None = None) -> torch.Tensor:
        img = to_rgb(img)
        if self.train and self.hflip and float(torch.rand(1, generator=generator)) < 0.5:
            img = img.transpose(Image.FLIP_LEFT_RIGHT)
        mid = self.mid
        if self.train and self.scale_jitter > 0:
            u = float(torch.rand(1, generator=generator))
            mid = max(self.size, round(mid * (1.0 + self.scale_jitter * (2.0 * u - 1.0))))
        img = resize_shorter_side(img, mid)
        w, h = img.size
        if self.train:
            left, top = random_crop_box(w, h, self.size, generator)
        else:
            left, top = center_crop_box(w, h, self.size)
        img = img.crop((left, top, left + self.size, top + self.size))
        return pil_to_tensor(img)


def item_generator(seed: int, epoch: int, index: int) -> torch.Generator:
    """A generator for one item's random draws, a pure function of (seed, epoch, index)."""
    return torch.Generator().manual_seed(mix_seed(seed, epoch, index))


def mix_seed(*parts: int) -> int:
    """Combine integers into one 63-bit seed (splitmix64 steps): no (a,b)/(b,a) collisions."""
    mask = (1 << 64) - 1
    state = 0x9E3779B97F4A7C15
    for part in parts:
        state = (state + (int(part) & mask) + 0x9E3779B97F4A7C15) & mask
        z = state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & mask
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & mask
        state = z ^ (z >> 31)
    return state & ((1 << 63) - 1)


def load_transformed(path: str | Path, transform: ImageTransform,
                     generator: torch.Generator | None = None) -> torch.Tensor:
    """`load_image` then `transform`; raises ValueError on an unreadable file."""
    return transform(load_image(path), generator)
