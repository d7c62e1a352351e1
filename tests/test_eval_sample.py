"""`varclip sample-fid`: images + the evaluator's .npz, resuming, sharding, text models."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from varclip.config import sampling_preset
from varclip.eval.sample import (caption_work_list, class_work_list, cli_sample_fid, image_name,
                                 sample_to_folder, shard_blocks)


@pytest.fixture(scope="module")
def class_model(tmp_path_factory):
    from varclip.config import named_tokenizer, named_transformer
    from varclip.model import VARTransformer
    from varclip.pipeline import VARPipeline
    from varclip.tokenizer import VQTokenizer
    torch.manual_seed(0)
    pipe = VARPipeline(VQTokenizer(named_tokenizer("tiny")), VARTransformer(named_transformer("tiny")))
    path = tmp_path_factory.mktemp("models") / "c2i"
    pipe.save_pretrained(path)
    return path


def pixels(folder, n):
    return np.stack([np.asarray(Image.open(folder / image_name(i, n))) for i in range(n)])


def run(model, out, *extra):
    return cli_sample_fid(["--model", str(model), "--out", str(out), "--device", "cpu", "--quiet", *extra])


def test_work_lists_and_shards():
    items = class_work_list(10, 3, seed=5, classes=[2, 7])
    assert [(it.index, it.seed, it.label) for it in items] == [(0, 5, 2), (1, 6, 2), (2, 7, 2), (3, 8, 7),
                                                               (4, 9, 7), (5, 10, 7)]
    with pytest.raises(ValueError, match="invalid class id 10"):
        class_work_list(10, 1, classes=[10])
    caps = caption_work_list(["a", "b"], 2)
    assert [(it.index, it.caption) for it in caps] == [(0, "a"), (1, "a"), (2, "b"), (3, "b")]
    with pytest.raises(ValueError, match="empty"):
        caption_work_list(["a", " "])
    for world in (1, 2, 3, 5):
        blocks = [b for r in range(world) for b in shard_blocks(23, 4, r, world)]
        covered = sorted(i for s, e in blocks for i in range(s, e))
        assert covered == list(range(23))  # disjoint and complete
        assert sorted(blocks) == [(s, min(23, s + 4)) for s in range(0, 23, 4)]  # same blocks for any world
    with pytest.raises(ValueError, match="rank"):
        shard_blocks(10, 2, 2, 2)


def test_sample_fid_writes_images_and_npz_then_resumes(class_model, tmp_path, capsys):
    out = tmp_path / "s"
    assert run(class_model, out, "--per-class", "1", "--batch-size", "4") == 0
    assert "wrote 10 images" in capsys.readouterr().out
    pngs = sorted(out.glob("*.png"))
    assert [p.name for p in pngs] == [image_name(i, 10) for i in range(10)]
    npz = out / "samples_10x32x32x3.npz"
    with np.load(npz) as z:
        assert z["arr_0"].shape == (10, 32, 32, 3) and z["arr_0"].dtype == np.uint8
        np.testing.assert_array_equal(z["arr_0"], pixels(out, 10))
        np.testing.assert_array_equal(z["arr_1"], np.arange(10))
    rows = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    assert rows[3] == {"image": "000003.png", "seed": 3, "class": 3}
    settings = json.loads((out / "sample_fid.json").read_text())
    assert (settings["cfg"], settings["top_p"], settings["top_k"], settings["smooth"]) == (1.5, 0.96, 900, False)
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    # second run: nothing new is written
    assert run(class_model, out, "--per-class", "1", "--batch-size", "4", "--json", "-") == 0
    report = json.loads(capsys.readouterr().out)
    assert report["written"] == 0 and report["skipped"] == 10 and report["npz"] is None and report["complete"]
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before
    # lose two images (a crash): exactly those come back, identical
    want = pixels(out, 10)
    (out / image_name(5, 10)).unlink()
    (out / image_name(6, 10)).unlink()
    assert run(class_model, out, "--per-class", "1", "--batch-size", "4", "--json", "-") == 0
    report = json.loads(capsys.readouterr().out)
    assert report["written"] == 2
    np.testing.assert_array_equal(pixels(out, 10), want)


def test_resume_with_other_settings_is_refused(class_model, tmp_path):
    out = tmp_path / "s"
    assert run(class_model, out, "--per-class", "1", "--classes", "0,1", "--batch-size", "2") == 0
    with pytest.raises(ValueError, match="different settings.*cfg"):
        run(class_model, out, "--per-class", "1", "--classes", "0,1", "--batch-size", "2", "--cfg", "3")
    with pytest.raises(ValueError, match="different settings"):
        run(class_model, out, "--per-class", "2", "--classes", "0,1", "--batch-size", "2")


def test_sharding_does_not_change_the_images(class_model, tmp_path, capsys):
    args = ("--per-class", "2", "--classes", "1,4,8", "--batch-size", "2", "--seed", "11")
    assert run(class_model, tmp_path / "one", *args) == 0
    capsys.readouterr()
    assert run(class_model, tmp_path / "two", *args, "--rank", "1", "--world-size", "2", "--json", "-") == 0
    r1 = json.loads(capsys.readouterr().out)
    assert r1["written"] == 2 and not r1["complete"] and r1["npz"] is None  # blocks 1 of 3: items 2, 3
    assert sorted(p.name for p in (tmp_path / "two").glob("*.png")) == [image_name(2, 6), image_name(3, 6)]
    assert run(class_model, tmp_path / "two", *args, "--rank", "0", "--world-size", "2", "--json", "-") == 0
    r0 = json.loads(capsys.readouterr().out)
    assert r0["written"] == 4 and r0["complete"] and r0["npz"]  # the rank that completes the set packs it
    np.testing.assert_array_equal(pixels(tmp_path / "one", 6), pixels(tmp_path / "two", 6))
    name = "samples_6x32x32x3.npz"
    with np.load(tmp_path / "one" / name) as a, np.load(tmp_path / "two" / name) as b:
        np.testing.assert_array_equal(a["arr_0"], b["arr_0"])
        np.testing.assert_array_equal(a["arr_1"], [1, 1, 4, 4, 8, 8])


def test_torchrun_environment_is_read(class_model, tmp_path, monkeypatch, capsys):
    """WORLD_SIZE/RANK from torchrun pick the shard (no rendezvous here: ranks run independently)."""
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("LOCAL_RANK", "0")
    monkeypatch.delenv("MASTER_ADDR", raising=False)
    monkeypatch.delenv("MASTER_PORT", raising=False)
    assert run(class_model, tmp_path / "s", "--per-class", "1", "--classes", "0,1,2", "--batch-size", "1",
               "--json", "-") == 0
    captured = capsys.readouterr()
    report = json.loads(captured.out)
    assert (report["rank"], report["world_size"], report["written"]) == (1, 2, 1)
    names = sorted(p.name for p in (tmp_path / "s").glob("*.png"))
    assert names == [image_name(1, 3)]


def test_text_model_samples_captions(tmp_path, fake_text_pipeline):
    from varclip.data.captions import read_caption_manifest
    pipe = fake_text_pipeline
    items = caption_work_list(["a red apple", "a blue car", "the sea"], per_caption=2, seed=0)
    rep = sample_to_folder(pipe, items, tmp_path / "t", sampling_preset("official_fid"), batch_size=4, progress=False)
    assert rep.written == 6 and rep.complete and rep.npz
    with np.load(rep.npz) as z:
        assert z.files == ["arr_0"] and z["arr_0"].shape == (6, 32, 32, 3)
    man = read_caption_manifest(tmp_path / "t" / "samples.jsonl")
    assert [c for _, c in man.records] == [it.caption for it in items] and not man.problems
    with pytest.raises(ValueError, match="text-to-image"):
        sample_to_folder(pipe, class_work_list(10, 1), tmp_path / "u", sampling_preset("official_fid"), progress=False)


def test_class_model_refuses_captions(class_model, tmp_path):
    (tmp_path / "p.txt").write_text("a cat\n")
    with pytest.raises(ValueError, match="class-conditional"):
        run(class_model, tmp_path / "s", "--prompts", str(tmp_path / "p.txt"))
