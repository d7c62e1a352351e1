"""The embedded emoji model that ships inside the package (`src/varclip/assets/emoji`)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from varclip.cli import main
from varclip.embedded import DEMO_CAPTIONS, EMBEDDED, embedded_model_dir

MAX_BYTES = 25 * 1024 * 1024


def test_the_embedded_model_ships_small_and_in_the_native_format():
    path = embedded_model_dir()
    files = [p for p in path.rglob("*") if p.is_file()]
    assert sum(p.stat().st_size for p in files) <= MAX_BYTES
    assert not [p for p in files if p.suffix in (".pt", ".pth", ".bin", ".pkl")], "pickle-free weights only"
    cfg = json.loads((path / "config.json").read_text())
    assert cfg["text_encoder"] == "minilm"
    assert cfg["transformer"]["text_dim"] == 384 and tuple(cfg["tokenizer"]["patch_nums"]) == (1, 2, 3, 4, 6, 8)
    from safetensors import safe_open
    for f in path.glob("*.safetensors"):
        with safe_open(str(f), "pt") as st:
            dtypes = {str(st.get_slice(k).get_dtype()) for k in st.keys()}
        assert dtypes <= {"F16"}, (f.name, dtypes)


def test_generate_without_model_uses_the_embedded_model(tmp_path, capsys):
    out = tmp_path / "apple.png"
    assert main(["generate", "red apple", "--n", "2", "--seed", "0", "--out", str(out), "--quiet"]) == 0
    im = Image.open(out)
    assert im.width >= 2 * 64


def _mean_rgb(img: Image.Image) -> np.ndarray:
    """Mean colour of the non-white pixels (the emoji, not its background)."""
    a = np.asarray(img.convert("RGB"), dtype=np.float32) / 255
    fg = a.min(axis=2) < 0.85
    return a[fg].mean(axis=0) if fg.any() else a.reshape(-1, 3).mean(axis=0)


def test_embedded_model_follows_the_caption():
    """The model is trained, not random, and reads colour words: with its own recommended
    sampling settings a smiling face comes out yellow, a blue heart blue, a red apple red."""
    from varclip.pipeline import VARPipeline

    pipe = VARPipeline.from_pretrained(EMBEDDED)
    assert pipe.sampling, "the embedded model should recommend its sampling settings"
    res = pipe(["smiling face", "blue heart", "red apple"], num_images=4, seed=0, per_sample_seeds=True)
    face, heart, apple = (np.stack([_mean_rgb(im) for im in res.images[i:i + 4]]).mean(axis=0) for i in (0, 4, 8))
    assert (face[0] + face[1]) / 2 - face[2] > 0.3, face  # yellow
    assert heart[2] - heart[0] > 0.2, heart  # blue
    assert apple[0] - max(apple[1], apple[2]) > 0.2, apple  # red


def test_demo_writes_the_captioned_grid(tmp_path, capsys):
    out = tmp_path / "demo.png"
    assert main(["demo", "--out", str(out), "--device", "cpu"]) == 0
    assert str(out) in capsys.readouterr().out
    im = Image.open(out)
    assert im.width >= 8 * 64 and im.height >= 2 * 64
    assert len(DEMO_CAPTIONS) == 8


@pytest.mark.parametrize("caption", ["", "   "])
def test_empty_captions_are_refused_in_one_line(caption, capsys):
    assert main(["generate", caption, "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "empty" in err and "Traceback" not in err


def _modules_after(code: str) -> set[str]:
    import subprocess
    import sys
    out = subprocess.run([sys.executable, "-c", code + "\nimport sys; print(' '.join(sys.modules))"],
                         capture_output=True, text=True, check=True)
    return set(out.stdout.split())


def test_loading_a_model_imports_nothing_heavy():
    """Loading builds the modules without initialising them (not on the meta device, whose ops
    import torch._dynamo, about a second of a fresh process) and needs no text stack."""
    mods = _modules_after("from varclip.checkpoints import load_model_dir\n"
                          "from varclip.embedded import EMBEDDED\nload_model_dir(EMBEDDED)")
    assert not mods & {"torch._dynamo", "transformers", "scipy", "gradio", "matplotlib"}


def test_the_default_generate_path_imports_no_app_or_training_stack(tmp_path):
    mods = _modules_after("from varclip.cli import main\n"
                          f"main(['generate', 'red apple', '--quiet', '--out', {str(tmp_path / 'x.png')!r}])")
    assert (tmp_path / "x.png").is_file()
    assert not mods & {"gradio", "matplotlib", "pandas", "tensorboard", "torchvision", "sklearn"}
    # MiniLM runs on varclip.text.bert: no transformers (and its torch._dynamo/sympy/scipy, ~3 CPU s)
    assert not mods & {"transformers", "sympy", "scipy"}
