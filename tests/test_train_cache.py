"""The token cache holds exactly the usable rows: unusable images and caption lines are left
out (never stood in for by a neighbour), captions line up with the cached rows, and `cache`
and `train` end with "N of M ... skipped"."""

from __future__ import annotations

import io
import json

import pytest
from PIL import Image
from safetensors import safe_open
from test_train_fixtures import CONFIGS, class_overrides, make_data, text_overrides

from varclip.train.cache import cli_cache, read_index
from varclip.train.config import TrainConfig, load_config
from varclip.train.generator import train

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_data(tmp_path_factory.mktemp("cache_data"), per_class=2)


def _truncated_png(path):
    buf = io.BytesIO()
    Image.effect_noise((32, 32), 60).convert("RGB").save(buf, format="PNG")
    path.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])  # a readable header, unreadable pixels


def _rows(cache):
    out = []
    for shard in read_index(cache).info["shards"]:
        with safe_open(str(cache / shard["file"]), framework="pt") as f:
            out.extend(f.get_tensor("rows").tolist())
    return out


def test_class_cache_drops_unusable_images(data, tmp_path, capsys):
    import shutil
    root = tmp_path / "class"
    shutil.copytree(data["class"], root)
    first = sorted(root.iterdir())[0]
    (first / "garbage.png").write_bytes(b"<html>not an image</html>")
    (first / "empty.jpg").write_bytes(b"")
    Image.new("RGB", (1, 1), (255, 0, 0)).save(first / "pixel.png")
    _truncated_png(first / "zcut.png")  # found only when decoded
    cache = tmp_path / "cache"
    over = class_overrides(data, tmp_path / "run", steps=2) + [f"data.root={root}", f"data.cache_dir={cache}",
                                                              "data.num_workers=0"]
    assert cli_cache([str(CONFIGS / "tiny_class.yaml"), *over, "--shard-size", "3", "--batch-size", "2"]) == 0
    out = capsys.readouterr().out
    assert "4 of 12 images skipped" in out and "zcut.png" in out
    index = read_index(cache)
    rows = _rows(cache)
    assert index.num_samples == 8 and index.info["skipped"] == 4
    assert rows == [0, 1, 3, 4, 5, 6, 7, 8]  # each row once; none for the truncated c0_red/zcut.png (index 2)
    # training from the images says what it left out, at the end
    train(load_config(TrainConfig, CONFIGS / "tiny_class.yaml", over + ["data.use_cache=off", "logging.progress=false"]))
    tail = capsys.readouterr().out.strip().splitlines()
    assert any("of 12 images skipped as unusable" in line for line in tail[-3:]), tail


def test_caption_file_caches_exactly_its_usable_pairs(data, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    folder = tmp_path / "train"
    folder.mkdir()
    lines = []
    for i in range(15):
        Image.new("RGB", (32, 32), (16 * i, 255 - 16 * i, 90)).save(folder / f"{i}.png")
        lines.append(f"train/{i}.png: picture {i}")
    (folder / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    _truncated_png(folder / "cut.png")
    lines[2:2] = ["train/bad.png: a corrupt image", "train/gone.png: a missing image", "train/3.png:",
                  "train/4.png without a separator", "train/cut.png: a truncated image"]
    manifest = folder / "image_captions.txt"
    manifest.write_text("\n".join(lines) + "\n")
    cache = tmp_path / "cache"
    over = text_overrides(data, tmp_path / "run", steps=2) + [f"data.manifest={manifest}",
                                                             f"data.cache_dir={cache}", "data.num_workers=0"]
    assert cli_cache([str(CONFIGS / "tiny_text.yaml"), *over, "--shard-size", "4"]) == 0
    out = capsys.readouterr().out
    assert "5 of 20 image-caption pairs skipped" in out
    index = read_index(cache)
    captions = [json.loads(line) for line in (cache / "captions.jsonl").read_text().splitlines()]
    assert index.num_samples == 15 and captions == [f"picture {i}" for i in range(15)]
    assert len(_rows(cache)) == 15
    result = train(load_config(TrainConfig, CONFIGS / "tiny_text.yaml", over + ["logging.progress=false"]))
    assert result.model_dir is not None
