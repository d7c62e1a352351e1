from __future__ import annotations

import pytest
import torch
from PIL import Image

from varclip.checkpoints import save_model_dir
from varclip.cli import main
from varclip.editing import box_mask, picture_mask


def _photo(tmp_path, mode="RGB", size=(50, 40), name="in.png"):
    img = Image.new("RGB", size, (200, 30, 30))
    img.paste((20, 20, 220), (0, 0, size[0] // 2, size[1]))
    path = tmp_path / name
    img.convert(mode).save(path)
    return path


def test_box_masks():
    m = box_mask([0.25, 0.25, 0.75, 0.75], 4, "inpaint")
    assert m.sum() == 12 and m[1:3, 1:3].sum() == 0
    assert torch.equal(box_mask([0.25, 0.25, 0.75, 0.75], 4, "outpaint"), 1 - m)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        box_mask([0, 0, 1.2, 1], 4)
    with pytest.raises(ValueError, match="y1 > y0"):
        box_mask([0.5, 0, 0.2, 1], 4)


def test_picture_mask_any_size():
    pic = torch.zeros(100, 60)
    pic[:, 30:] = 1.0  # right half white = regenerate
    keep = picture_mask(pic, 4)
    assert keep[:, :2].all() and not keep[:, 2:].any()


def test_keep_everything_reproduces_the_input(tiny_pipeline, tmp_path):
    src = _photo(tmp_path)
    black = tmp_path / "black.png"
    Image.new("L", (7, 9), 0).save(black)
    out = tiny_pipeline.edit(src, mask=black, class_labels=[1], num_images=2, seed=0, return_tokens=True)
    from varclip.editing import fit_image
    from varclip.data.images import load_image
    ids = tiny_pipeline.tokenizer.encode(fit_image(load_image(src), 32)[None])
    f_hat = tiny_pipeline.tokenizer.quantize.decode(ids, tiny_pipeline.transformer.patch_nums)
    expected = tiny_pipeline._decode(f_hat)[0]
    import numpy as np
    for img in out.images:
        diff = np.abs(np.asarray(img, dtype=np.int16) - np.asarray(expected, dtype=np.int16)).max()
        assert diff <= 1
    assert out.mask.convert("L").getextrema() == (0, 0)


def test_inpaint_changes_only_inside_mostly(tiny_pipeline, tmp_path):
    src = _photo(tmp_path)
    out = tiny_pipeline.edit(src, box=[0.0, 0.5, 1.0, 1.0], mode="inpaint", num_images=1, seed=3)
    assert out.images[0].size == (32, 32)
    assert out.mask.getpixel((30, 5)) == (255, 255, 255) and out.mask.getpixel((2, 5)) == (0, 0, 0)


@pytest.mark.parametrize("mode", ["RGBA", "L", "P", "CMYK"])
def test_odd_image_inputs(tiny_pipeline, tmp_path, mode):
    src = _photo(tmp_path, mode=mode if mode != "CMYK" else "RGB", size=(80, 33),
                 name="in.jpg" if mode == "CMYK" else "in.png")
    if mode == "CMYK":
        Image.open(src).convert("CMYK").save(src)
    out = tiny_pipeline.edit(src, box=[0.1, 0.1, 0.6, 0.6], num_images=1, seed=0)
    assert out.source.size == (32, 32) and out.source.mode == "RGB"


def test_exif_rotated_input(tiny_pipeline, tmp_path):
    img = Image.new("RGB", (60, 30), (255, 0, 0))
    img.paste((0, 0, 255), (0, 0, 60, 15))  # top half blue
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 CW on display
    path = tmp_path / "r.jpg"
    img.save(path, exif=exif.tobytes())
    out = tiny_pipeline.edit(path, box=[0, 0, 0.5, 0.5], num_images=1, seed=0)
    r, g, b = out.source.getpixel((28, 16))  # after rotation blue is on the right
    assert b > r


def test_extend_outpaints_a_border(tiny_pipeline, tmp_path):
    out = tiny_pipeline.edit(_photo(tmp_path), extend=2.0, num_images=1, seed=0)
    assert out.mask.getpixel((0, 0)) == (255, 255, 255) and out.mask.getpixel((16, 16)) == (0, 0, 0)


def test_text_conditional_editing(tmp_path):
    from varclip.config import named_tokenizer, named_transformer
    from varclip.model import VARTransformer
    from varclip.pipeline import VARPipeline
    from varclip.text.encoders import TextEmbedding
    from varclip.tokenizer import VQTokenizer

    class Fake:
        identity, dim = "fake", 384

        def encode(self, texts, allow_empty=False):
            g = torch.Generator().manual_seed(len(texts[0]))
            return TextEmbedding(torch.nn.functional.normalize(torch.randn(len(texts), 384, generator=g), dim=-1))

    torch.manual_seed(0)
    pipe = VARPipeline(VQTokenizer(named_tokenizer("tiny")), VARTransformer(named_transformer("tiny_text")), Fake())
    a = pipe.edit(_photo(tmp_path), box=[0.2, 0.2, 0.8, 0.8], prompt="red apple", seed=0, num_images=2,
                  return_tokens=True)
    b = pipe.edit(_photo(tmp_path), box=[0.2, 0.2, 0.8, 0.8], seed=0, num_images=2, return_tokens=True)
    assert len(a.images) == 2
    assert not all(torch.equal(x, y) for x, y in zip(a.tokens, b.tokens))


def test_edit_cli_and_bad_inputs(tiny_pipeline, tmp_path, capsys):
    d = save_model_dir(tmp_path / "m", tiny_pipeline.tokenizer, tiny_pipeline.transformer)
    src = _photo(tmp_path)
    out = tmp_path / "e.png"
    assert main(["edit", str(src), "--model", str(d), "--box", "0.1,0.1,0.8,0.8", "--class", "2", "--n", "2",
                 "--seed", "0", "--out", str(out)]) == 0
    assert Image.open(out).width > 4 * 32
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not a png")
    assert main(["edit", str(bad), "--model", str(d), "--box", "0,0,1,1"]) == 2
    assert "cannot read image" in capsys.readouterr().err
    assert main(["edit", str(src), "--model", str(d), "--mask", str(bad)]) == 2
    assert main(["edit", str(src), "--model", str(d), "--box", "0,0,2,1"]) == 2
    assert "[0, 1]" in capsys.readouterr().err
    assert main(["edit", str(src), "--model", str(d)]) == 2
    assert "exactly one of" in capsys.readouterr().err


def test_edit_caption_after_options(tmp_path, monkeypatch):
    """`varclip edit IMAGE --model M --extend 1.5 "a caption"` (caption last, as in the README)."""
    from varclip.config import named_tokenizer, named_transformer
    from varclip.model import VARTransformer
    from varclip.tokenizer import VQTokenizer
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    torch.manual_seed(0)
    d = save_model_dir(tmp_path / "t2i", VQTokenizer(named_tokenizer("tiny")),
                       VARTransformer(named_transformer("tiny_text")), text_encoder="minilm")
    out = tmp_path / "e.png"
    assert main(["edit", str(_photo(tmp_path)), "--model", str(d), "--extend", "1.5", "--n", "1",
                 "a beach at sunset", "--out", str(out)]) == 0
    assert out.is_file()
