from __future__ import annotations

import subprocess
import sys

import pytest
from PIL import Image

from varclip.checkpoints import save_model_dir
from varclip.cli import main


@pytest.fixture
def tiny_dir(tiny_pipeline, tmp_path):
    return save_model_dir(tmp_path / "tiny", tiny_pipeline.tokenizer, tiny_pipeline.transformer)


def test_generate_grid_and_directory(tiny_dir, tmp_path):
    out = tmp_path / "grid.png"
    assert main(["generate", "--model", str(tiny_dir), "--class", "1", "--class", "2", "--n", "2", "--cfg", "1.5",
                 "--top-k", "10", "--top-p", "0.9", "--seed", "0", "--out", str(out), "--quiet", "--device", "cpu"]) == 0
    assert Image.open(out).size[0] > 64
    d = tmp_path / "pngs"
    assert main(["generate", "--model", str(tiny_dir), "--class", "3", "--n", "3", "--smooth", "--out", str(d),
                 "--quiet"]) == 0
    assert len(list(d.glob("*.png"))) == 3
    # a second run adds files, never overwrites what was written
    assert main(["generate", "--model", str(tiny_dir), "--class", "3", "--out", str(d), "--quiet"]) == 0
    assert len(list(d.glob("*.png"))) == 4


def test_generate_from_official_files(parity_dir, tmp_path):
    case = parity_dir / "c2i-small"
    assert main(["generate", "--model", str(case / "var.pth"), "--vae", str(case / "vae.pth"), "--patch-nums",
                 "1,2,3,4", "--class", "0", "--out", str(tmp_path / "a.png"), "--quiet"]) == 0
    assert Image.open(tmp_path / "a.png").size[0] >= 64


def _run(*args):
    return subprocess.run([sys.executable, "-m", "varclip.cli", *args], capture_output=True, text=True)


@pytest.mark.parametrize("args,needle", [
    (["--class", "10"], "invalid class id 10"),
    (["--class", "1", "--top-p", "1.5"], "top_p must be in [0, 1]"),
    (["--class", "1", "--top-k", "-3"], "top_k must be >= 0"),
    (["a caption"], "class-conditional model"),
    (["--class", "1", "--dtype", "fp8"], "unknown dtype"),
    (["--class", "1", "--cfg", "-5"], "cfg must be a finite number >= 0"),  # SamplingConfig's rule, as in Python and the app
])
def test_generate_bad_input_is_one_line_exit_2(tiny_dir, tmp_path, args, needle):
    r = _run("generate", "--model", str(tiny_dir), "--out", str(tmp_path / "x.png"), "--quiet", *args)
    assert r.returncode == 2, r.stderr
    assert needle in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_missing_and_mismatched_files(tiny_dir, parity_dir, tmp_path):
    r = _run("generate", "--model", str(tmp_path / "missing.pth"), "--vae", "x", "--class", "1")
    assert r.returncode == 2 and "not found" in r.stderr and "Traceback" not in r.stderr
    # an official transformer with a schedule that does not fit its token count: the flag is named as the CLI knows it
    r = _run("generate", "--model", str(parity_dir / "c2i-small" / "var.pth"), "--vae", str(tiny_dir),
             "--patch-nums", "1,2,4", "--class", "1", "--out", str(tmp_path / "y.png"))
    assert r.returncode == 2 and "--patch-nums 1,2,4 gives 21 tokens" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr and "patch_nums" not in r.stderr
    # a VQVAE whose codebook does not fit the transformer (vocab 32 vs 64)
    from varclip.config import TokenizerConfig
    from varclip.tokenizer import VQTokenizer
    other = save_model_dir(tmp_path / "other", VQTokenizer(TokenizerConfig(
        vocab_size=32, z_channels=8, ch=32, ch_mult=(1, 2, 2, 2), num_res_blocks=1, patch_nums=(1, 2, 3, 4))))
    r = _run("generate", "--model", str(tiny_dir), "--vae", str(other), "--class", "1")
    assert r.returncode == 2 and "does not match" in r.stderr and "Traceback" not in r.stderr, r.stderr
    # a tokenizer-only directory given as the model
    r = _run("generate", "--model", str(other), "--class", "1")
    assert r.returncode == 2 and "no transformer" in r.stderr, r.stderr


def test_demo_and_bench(tmp_path):
    assert main(["demo", "--out", str(tmp_path / "demo.png"), "--device", "cpu"]) == 0
    assert (tmp_path / "demo.png").is_file()
    js = tmp_path / "b.json"
    assert main(["bench", "--config", "tiny", "--batch", "2", "--dtype", "fp32", "--repeats", "1",
                 "--json", str(js)]) == 0
    assert '"images_per_s"' in js.read_text()


def test_more_bad_inputs_are_one_line(tiny_dir, parity_dir, tmp_path, capsys):
    import torch
    from varclip.checkpoints import read_official
    # a partial official state dict
    sd = read_official(parity_dir / "c2i-small" / "var.pth")
    del sd["word_embed.weight"]
    torch.save(sd, tmp_path / "partial.pth")
    assert main(["convert", str(tmp_path / "partial.pth"), str(tmp_path / "o"), "--vae",
                 str(parity_dir / "c2i-small" / "vae.pth"), "--patch-nums", "1,2,3,4"]) == 2
    assert "incomplete transformer state dict" in capsys.readouterr().err
    assert main(["generate", "--model", str(tiny_dir), "--class", "1", "--device", "foo", "--quiet"]) == 2
    assert "unknown device" in capsys.readouterr().err
    assert main(["generate", "--model", str(tiny_dir), "--class", "1", "--cfg-schedule", "off_from:x"]) == 2
    assert "off_from:K" in capsys.readouterr().err
    # a config.json with a wrongly typed value
    bad = tmp_path / "badcfg"
    import shutil
    shutil.copytree(tiny_dir, bad)
    (bad / "config.json").write_text((bad / "config.json").read_text().replace('"depth": 2', '"depth": "two"'))
    assert main(["generate", "--model", str(bad), "--class", "1", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_convert_refuses_to_overwrite_and_mismatched_pairs(tiny_dir, parity_dir, tmp_path, capsys):
    case = parity_dir / "c2i-small"
    out = tmp_path / "native"
    args = ["convert", str(case / "var.pth"), str(out), "--vae", str(case / "vae.pth"), "--patch-nums", "1,2,3,4"]
    assert main(args) == 0
    before = (out / "transformer.safetensors").read_bytes()
    assert main(args) == 2
    assert "--force" in capsys.readouterr().err
    assert (out / "transformer.safetensors").read_bytes() == before
    assert main(args + ["--force"]) == 0
    from varclip.config import TokenizerConfig
    from varclip.checkpoints import save_official, tokenizer_to_official
    from varclip.tokenizer import VQTokenizer
    other = VQTokenizer(TokenizerConfig(vocab_size=32, z_channels=8, ch=32, ch_mult=(1, 2, 2, 2, 2),
                                        num_res_blocks=1, patch_nums=(1, 2, 3, 4)))
    save_official(tokenizer_to_official(other), tmp_path / "other_vae.pth")
    assert main(["convert", str(case / "var.pth"), str(tmp_path / "x"), "--vae", str(tmp_path / "other_vae.pth"),
                 "--patch-nums", "1,2,3,4"]) == 2
    assert "does not match" in capsys.readouterr().err
    assert not (tmp_path / "x" / "config.json").exists()


def test_pipeline_round_trip_gives_the_same_images(tiny_pipeline, tmp_path):
    import numpy as np
    import torch
    from varclip.pipeline import VARPipeline
    a = tiny_pipeline(class_labels=[1, 2], seed=5, smooth=True)
    tiny_pipeline.save_pretrained(tmp_path / "p")
    again = VARPipeline.from_pretrained(tmp_path / "p")
    b = again(class_labels=[1, 2], seed=5, smooth=True)
    for x, y in zip(a.images, b.images):
        assert np.array_equal(np.asarray(x), np.asarray(y))
    g = torch.Generator().manual_seed(5)
    c = again(class_labels=[1, 2], generator=g, smooth=True)
    assert all(np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(a.images, c.images))
