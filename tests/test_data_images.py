"""Image decoding (odd modes, EXIF, corrupt files) and the VAR transform."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from varclip.data.images import (
    ImageTransform,
    center_crop_box,
    load_image,
    pil_to_tensor,
    resize_shorter_side,
    tensor_to_pil,
)


def _save(img: Image.Image, path, **kw):
    img.save(path, **kw)
    return path


def test_rgba_is_composited_on_white(tmp_path):
    img = Image.new("RGBA", (8, 8), (255, 0, 0, 0))
    img.putpixel((0, 0), (0, 0, 255, 255))
    out = load_image(_save(img, tmp_path / "a.png"))
    assert out.mode == "RGB"
    assert out.getpixel((5, 5)) == (255, 255, 255)
    assert out.getpixel((0, 0)) == (0, 0, 255)


def test_palette_with_transparency(tmp_path):
    img = Image.new("P", (6, 6), 1)
    img.putpalette([0, 0, 0, 10, 200, 30] + [0] * 762)
    img.putpixel((0, 0), 0)
    out = load_image(_save(img, tmp_path / "p.png", transparency=0))
    assert out.getpixel((0, 0)) == (255, 255, 255)
    assert out.getpixel((3, 3)) == (10, 200, 30)


@pytest.mark.parametrize("mode, value, expect", [
    ("L", 77, (77, 77, 77)),
    ("LA", (77, 255), (77, 77, 77)),
    ("1", 1, (255, 255, 255)),
    ("I;16", 65535, (255, 255, 255)),
    ("I;16", 32896, (128, 128, 128)),
])
def test_gray_modes(tmp_path, mode, value, expect):
    img = Image.new(mode, (4, 4), value)
    out = load_image(_save(img, tmp_path / "g.png"))
    assert out.mode == "RGB" and out.getpixel((1, 1)) == expect


def test_cmyk_jpeg(tmp_path):
    img = Image.new("CMYK", (8, 8), (0, 255, 255, 0))  # pure red in naive CMYK
    out = load_image(_save(img, tmp_path / "c.jpg", quality=100))
    r, g, b = out.getpixel((4, 4))
    assert out.mode == "RGB" and r > 200 and g < 60 and b < 60


def test_exif_orientation_is_applied(tmp_path):
    img = Image.new("RGB", (20, 10), (255, 0, 0))
    img.paste((0, 0, 255), (10, 0, 20, 10))  # left red, right blue
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 clockwise to display"
    out = load_image(_save(img, tmp_path / "e.png", exif=exif))
    assert out.size == (10, 20)
    assert out.getpixel((5, 2)) == (255, 0, 0)  # the left edge is now on top
    assert out.getpixel((5, 17)) == (0, 0, 255)


@pytest.mark.parametrize("content", [b"", b"not an image at all", b"\x89PNG\r\n\x1a\nbroken"])
def test_unreadable_file_raises_one_line_valueerror(tmp_path, content):
    path = tmp_path / "bad.png"
    path.write_bytes(content)
    with pytest.raises(ValueError) as info:
        load_image(path)
    msg = str(info.value)
    assert "bad.png" in msg and "\n" not in msg


def test_truncated_jpeg_raises(tmp_path):
    rng = np.random.default_rng(0)
    img = Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8))
    path = _save(img, tmp_path / "t.jpg", quality=90)
    path.write_bytes(path.read_bytes()[:400])
    with pytest.raises(ValueError, match="t.jpg"):
        load_image(path)
    with pytest.raises(ValueError):
        load_image(tmp_path / "missing.jpg")


def test_resize_matches_torchvision_rule():
    img = Image.new("RGB", (300, 200))
    assert resize_shorter_side(img, 72).size == (108, 72)
    assert resize_shorter_side(Image.new("RGB", (199, 301)), 72).size == (72, int(72 * 301 / 199))
    assert center_crop_box(108, 72, 64) == (22, 4)


def test_transform_shape_range_and_determinism():
    rng = np.random.default_rng(1)
    img = Image.fromarray(rng.integers(0, 255, (90, 130, 3), dtype=np.uint8))
    tf = ImageTransform(32, train=True, hflip=True)
    assert tf.mid == 36
    a = tf(img, torch.Generator().manual_seed(5))
    b = tf(img, torch.Generator().manual_seed(5))
    assert a.shape == (3, 32, 32) and a.dtype == torch.float32
    assert a.min() >= -1 and a.max() <= 1
    assert torch.equal(a, b)
    crops = {tuple(tf(img, torch.Generator().manual_seed(s)).flatten()[:8].tolist()) for s in range(8)}
    assert len(crops) > 1  # the random crop does move
    ev = ImageTransform(32, train=False)
    assert torch.equal(ev(img), ev(img))


def test_tensor_roundtrip_and_var_normalisation():
    img = Image.new("RGB", (2, 1))
    img.putpixel((0, 0), (0, 128, 255))
    x = pil_to_tensor(img)
    assert x[:, 0, 0].tolist() == pytest.approx([-1.0, 128 / 255 * 2 - 1, 1.0], abs=1e-6)
    assert tensor_to_pil(x).getpixel((0, 0)) == (0, 128, 255)


def test_one_image_io_module_range_crop_mask_and_alpha(tmp_path):
    from varclip.data.images import center_crop, mask_picture, to_pil, to_unit
    arr = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    x = pil_to_tensor(Image.fromarray(arr))
    assert torch.equal(to_unit(torch.tensor([-2.0, -1.0, 0.0, 1.0, 3.0])), torch.tensor([0.0, 0.0, 0.5, 1.0, 1.0]))
    assert np.array_equal(np.asarray(to_pil(to_unit(x[None]))[0]), arr)  # [-1,1] -> PIL is exact
    wide = Image.fromarray(np.arange(7 * 4, dtype=np.uint8).reshape(4, 7))  # 3 columns too many
    left, _ = center_crop_box(7, 4, 4)
    assert np.array_equal(np.asarray(center_crop(wide)), np.asarray(wide)[:, left:left + 4])
    mask = Image.new("L", (6, 3), 0)
    mask.putpixel((5, 2), 255)
    want = np.zeros((3, 6), np.float32)
    want[2, 5] = 1.0
    for given in (mask, _save(mask, tmp_path / "m.png"), want):
        assert np.array_equal(mask_picture(given).numpy(), want)
    layer = Image.new("RGBA", (4, 4), (0, 0, 0, 0))
    layer.putpixel((1, 1), (255, 0, 0, 200))
    kept = load_image(_save(layer, tmp_path / "l.png"), keep_alpha=True)
    assert kept.mode == "RGBA" and kept.getpixel((1, 1))[3] == 200 and kept.getpixel((0, 0))[3] == 0


def test_scale_jitter_zooms_only_in_training_and_keeps_the_official_stream_at_zero():
    rng = np.random.default_rng(2)
    img = Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8))
    plain, jit = ImageTransform(32, train=True), ImageTransform(32, train=True, scale_jitter=0.3)
    # at 0 nothing extra is drawn: the generator ends where the official transform leaves it
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    plain(img, g1)
    ImageTransform(32, train=True, scale_jitter=0.0)(img, g2)
    assert torch.equal(g1.get_state(), g2.get_state())
    # with jitter the resize target varies, so the same crop seed gives other pixels
    outs = [jit(img, torch.Generator().manual_seed(s)) for s in range(12)]
    assert all(o.shape == (3, 32, 32) for o in outs)
    assert any(not torch.equal(o, plain(img, torch.Generator().manual_seed(s))) for s, o in enumerate(outs))
    ev = ImageTransform(32, train=False, scale_jitter=0.3)
    assert torch.equal(ev(img), ImageTransform(32, train=False)(img))  # evaluation never jitters
    with pytest.raises(ValueError, match="scale_jitter"):
        ImageTransform(32, scale_jitter=1.5)
