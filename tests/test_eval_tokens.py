"""`varclip eval tokens`: per-scale teacher-forcing loss and token accuracy."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from varclip.eval.cli import cli_eval
from varclip.eval.tokens import run_token_eval


@pytest.fixture(scope="module")
def pipe_and_dir(tmp_path_factory):
    from varclip.config import named_tokenizer, named_transformer
    from varclip.model import VARTransformer
    from varclip.pipeline import VARPipeline
    from varclip.tokenizer import VQTokenizer
    torch.manual_seed(0)
    pipe = VARPipeline(VQTokenizer(named_tokenizer("tiny")), VARTransformer(named_transformer("tiny")))
    path = tmp_path_factory.mktemp("m") / "c2i"
    pipe.save_pretrained(path)
    return pipe, path


def make_class_folder(root, num_classes=3, per_class=2, size=36):
    rng = np.random.default_rng(0)
    for c in range(num_classes):
        (root / f"class_{c:02d}").mkdir(parents=True)
        for j in range(per_class):
            arr = (rng.random((size, size + 4, 3)) * 255).astype(np.uint8)
            Image.fromarray(arr).save(root / f"class_{c:02d}" / f"{j}.png")
    return root


def test_per_scale_numbers_and_their_definition(pipe_and_dir, tmp_path):
    pipe, _ = pipe_and_dir
    data = make_class_folder(tmp_path / "data")
    res = run_token_eval(pipe, data, batch_size=4, compare_null=True, progress=False)
    assert res.num_images == 6 and res.patch_nums == [1, 2, 3, 4] and res.condition == "class"
    assert len(res.loss) == len(res.top1) == len(res.top5) == 4
    assert all(math.isfinite(v) and v > 0 for v in res.loss)
    assert all(0 <= a <= b <= 1 for a, b in zip(res.top1, res.top5))
    weights = np.array([p * p for p in res.patch_nums], float)
    assert res.loss_all == pytest.approx(float(np.dot(res.loss, weights) / weights.sum()))
    assert res.null is not None and len(res.null["loss"]) == 4
    # by hand: the model's teacher-forcing cross-entropy over all tokens of all images
    from varclip.data import ImageFolderDataset
    from varclip.model import Cond
    ds = ImageFolderDataset(data, 32, train=False)
    x = torch.stack([ds[i][0] for i in range(len(ds))])
    y = torch.tensor(ds.targets)
    with torch.no_grad():
        ids = pipe.tokenizer.encode(x)
        x_in = pipe.tokenizer.quantize.teacher_forcing_input(ids, pipe.transformer.patch_nums)
        logits = pipe.transformer(Cond(y), x_in)
        gt = torch.cat(ids, 1)
        ce = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), gt.reshape(-1))
        acc = (logits.argmax(-1) == gt).double().mean()
    assert res.loss_all == pytest.approx(float(ce), rel=1e-5)
    assert res.top1_all == pytest.approx(float(acc))
    table = res.table()
    assert "loss(null)" in table and table.count("\n") >= 7


def test_cli_tokens_json_and_limit(pipe_and_dir, tmp_path, capsys):
    _, model = pipe_and_dir
    data = make_class_folder(tmp_path / "data", per_class=3)
    assert cli_eval(["tokens", "--model", str(model), "--data", str(data), "--device", "cpu", "--quiet",
                     "--limit", "4", "--batch-size", "3", "--json", "-"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["num_images"] == 4 and len(out["loss"]) == 4 and out["null"] is None
    assert any("random subset" in n for n in out["notes"])
    assert cli_eval(["tokens", "--model", str(model), "--data", str(data), "--device", "cpu", "--quiet",
                     "--null-cond", "--json", str(tmp_path / "t.json")]) == 0
    assert "top-1 %" in capsys.readouterr().out
    assert json.loads((tmp_path / "t.json").read_text())["condition"] == "null"


def test_bad_data_is_refused_in_one_line(pipe_and_dir, tmp_path):
    pipe, _ = pipe_and_dir
    flat = tmp_path / "flat"
    flat.mkdir()
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(flat / "a.png")
    with pytest.raises(ValueError, match="class sub-folders"):
        run_token_eval(pipe, flat, progress=False)
    res = run_token_eval(pipe, flat, null_cond=True, progress=False)  # any images under the null condition
    assert res.num_images == 1 and res.condition == "null"
    many = make_class_folder(tmp_path / "many", num_classes=11, per_class=1)
    with pytest.raises(ValueError, match="outside the model's classes"):
        run_token_eval(pipe, many, batch_size=16, progress=False)
    with pytest.raises(FileNotFoundError):
        run_token_eval(pipe, tmp_path / "missing", progress=False)


def test_text_model_on_a_caption_manifest(tmp_path, fake_text_pipeline):
    pipe = fake_text_pipeline
    (tmp_path / "img").mkdir()
    lines = []
    for i in range(3):
        Image.fromarray(np.full((32, 32, 3), 40 * i, np.uint8)).save(tmp_path / "img" / f"{i}.png")
        lines.append(json.dumps({"image": f"img/{i}.png", "caption": f"grey level {i}"}))
    (tmp_path / "m.jsonl").write_text("\n".join(lines) + "\n")
    res = run_token_eval(pipe, tmp_path / "m.jsonl", batch_size=2, compare_null=True, progress=False)
    assert res.condition == "caption" and res.num_images == 3 and res.null is not None
    with pytest.raises(ValueError, match="caption manifest"):
        run_token_eval(pipe, tmp_path / "img", progress=False)
