"""Caption manifests: VAR-CLIP txt, JSONL, CSV; bad lines counted and reported."""

from __future__ import annotations

import json
import logging

import pytest
from PIL import Image

from varclip.data.captions import (
    CaptionDataset,
    detect_format,
    read_caption_manifest,
    split_caption_line,
    write_jsonl_manifest,
)


def _img(path, color=(10, 20, 30)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (24, 20), color).save(path)
    return path


def test_split_on_first_separator_only():
    assert split_caption_line("a/b.jpg: time: 12:30, a clock") == ("a/b.jpg", "time: 12:30, a clock")
    assert split_caption_line(r"C:\x\y.jpg: a dog") == (r"C:\x\y.jpg", "a dog")
    assert split_caption_line("no separator here") is None


def test_varclip_txt_layout_and_bad_lines(tmp_path, caplog):
    root = tmp_path / "imagenet"
    _img(root / "train" / "n01" / "a.JPEG")
    _img(root / "train" / "n01" / "b.JPEG")
    manifest = root / "train" / "image_captions.txt"
    manifest.write_text(
        "train/n01/a.JPEG: a fish: close-up, on a table\n"   # 1: colon kept
        "\n"                                                # 2: blank, ignored
        "train/n01/missing.JPEG: a ghost\n"                 # 3: missing file
        "just some words\n"                                 # 4: no separator
        "train/n01/b.JPEG:    \n"                           # 5: empty caption
        "train/n01/b.JPEG: a second fish\n",                # 6
        encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger="varclip.data"):
        m = read_caption_manifest(manifest)
    assert m.format == "txt" and m.root == root.resolve()
    assert [c for _, c in m.records] == ["a fish: close-up, on a table", "a second fish"]
    assert [p.line for p in m.problems] == [3, 4, 5]
    assert m.problems[0].reason.startswith("image not found")
    assert m.problems[1].reason.startswith("no ': '") and m.problems[2].reason == "empty caption"
    assert m.num_lines == 5
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "3 of 5" in warnings[0] and "line 3" in warnings[0] and "line 4" in warnings[0]


def test_root_override_and_absolute_paths(tmp_path):
    img = _img(tmp_path / "data" / "x.png")
    manifest = tmp_path / "m" / "captions.txt"
    manifest.parent.mkdir()
    manifest.write_text(f"x.png: relative\n{img}: absolute\n")
    m = read_caption_manifest(manifest, root=tmp_path / "data")
    assert [c for _, c in m.records] == ["relative", "absolute"] and not m.problems


def test_jsonl_manifest(tmp_path, caplog):
    _img(tmp_path / "images" / "a.png")
    lines = [
        json.dumps({"image": "images/a.png", "caption": "red: apple", "extra": 1}),
        "{not json",
        json.dumps({"image": "images/a.png"}),
        json.dumps(["a", "list"]),
        "",
        json.dumps({"image": "images/a.png", "caption": "again"}),
    ]
    manifest = tmp_path / "train.jsonl"
    manifest.write_text("\n".join(lines) + "\n")
    m = read_caption_manifest(manifest)
    assert [c for _, c in m.records] == ["red: apple", "again"]
    assert [p.line for p in m.problems] == [2, 3, 4]
    arr = tmp_path / "arr.json"
    arr.write_text("[]")
    with pytest.raises(ValueError, match="JSON array"):
        read_caption_manifest(arr)


def test_csv_manifest(tmp_path):
    _img(tmp_path / "a.png")
    manifest = tmp_path / "pairs.csv"
    manifest.write_text('image,caption\na.png,"a cat, sitting: on a mat"\nb.png,missing\na.png,\n',
                        encoding="utf-8")
    m = read_caption_manifest(manifest)
    assert [c for _, c in m.records] == ["a cat, sitting: on a mat"]
    assert [(p.line, p.reason.split(":")[0]) for p in m.problems] == [
        (3, "image not found"), (4, "empty caption")]
    bad = tmp_path / "bad.csv"
    bad.write_text("path,text\na.png,x\n")
    with pytest.raises(ValueError, match="'image' and 'caption'"):
        read_caption_manifest(bad)


def test_detect_format(tmp_path):
    assert detect_format("a/b.JSONL") == "jsonl" and detect_format("x.json") == "jsonl"
    assert detect_format("x.csv") == "csv" and detect_format("image_captions.txt") == "txt"
    with pytest.raises(ValueError):
        detect_format("x.parquet")


def test_write_jsonl_is_atomic_and_roundtrips(tmp_path):
    _img(tmp_path / "out" / "i.png")
    rows = [{"image": "i.png", "caption": "ünïcode: ok"}, {"image": "i.png", "caption": "two"}]
    assert write_jsonl_manifest(rows, tmp_path / "out" / "m.jsonl") == 2
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["i.png", "m.jsonl"]
    m = read_caption_manifest(tmp_path / "out" / "m.jsonl")
    assert [c for _, c in m.records] == ["ünïcode: ok", "two"]

    def broken():
        yield {"image": "i.png", "caption": "x"}
        raise RuntimeError("writer died")

    with pytest.raises(RuntimeError):
        write_jsonl_manifest(broken(), tmp_path / "out" / "m.jsonl")
    assert len((tmp_path / "out" / "m.jsonl").read_text().splitlines()) == 2  # old file intact
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["i.png", "m.jsonl"]


def test_caption_dataset_skips_undecodable_images(tmp_path):
    _img(tmp_path / "good.png", (255, 255, 255))
    (tmp_path / "bad.png").write_bytes(b"nope")
    manifest = tmp_path / "m.jsonl"
    write_jsonl_manifest([{"image": "bad.png", "caption": "broken"},
                          {"image": "good.png", "caption": "white"}], manifest)
    ds = CaptionDataset(manifest, size=16, train=False)  # dropped when the manifest is read
    assert len(ds) == 1 and ds.num_bad_lines == 1 and ds.num_skipped == 1
    assert ds.manifest.problems[0].reason.startswith("unreadable image")
    ds = CaptionDataset(manifest, size=16, train=False, check_files=False)  # or met when loaded
    assert len(ds) == 2 and ds.num_bad_lines == 0
    x, caption = ds[0]
    assert caption == "white" and x.shape == (3, 16, 16) and ds.num_skipped == 1


def test_var_clip_file_reports_every_unusable_line_once(tmp_path, caplog):
    """15 usable pairs and 4 unusable lines: each named by its number and why, in one warning."""
    folder = tmp_path / "train"
    lines = []
    for i in range(15):
        _img(folder / f"{i}.png", (i * 16, 0, 0))
        lines.append(f"train/{i}.png: picture {i}")
    (folder / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    lines[3:3] = ["train/bad.png: a corrupt image"]           # line 4
    lines[6:6] = ["train/gone.png: a missing image"]          # line 7
    lines[9:9] = ["train/5.png:"]                             # line 10: empty caption, no trailing blank
    lines[12:12] = ["train/6.png a line without separator"]   # line 13
    manifest = folder / "image_captions.txt"
    manifest.write_text("\n".join(lines) + "\n")
    with caplog.at_level(logging.WARNING, logger="varclip.data"):
        ds = CaptionDataset(manifest, size=16, train=False)
    assert len(ds) == 15 and ds.captions == [f"picture {i}" for i in range(15)]
    reasons = {p.line: p.reason for p in ds.manifest.problems}
    assert sorted(reasons) == [4, 7, 10, 13]
    assert reasons[4].startswith("unreadable image") and reasons[7].startswith("image not found")
    assert reasons[10] == "empty caption" and reasons[13].startswith("no ': '")
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "4 of 19" in warnings[0]
    assert all(f"line {n}:" in warnings[0] for n in (4, 7, 10, 13))
    assert ds.skip_summary().endswith("4 of 19 image-caption pairs skipped as unusable")


def test_flip_false_rows_are_never_mirrored(tmp_path):
    import torch

    # left half black, right half white: a mirror image is told apart at once
    for name in ("arrow.png", "ball.png"):
        img = Image.new("RGB", (32, 32), (255, 255, 255))
        img.paste((0, 0, 0), (0, 0, 16, 32))
        img.save(tmp_path / name)
    rows = [{"image": "arrow.png", "caption": "left arrow", "flip": False},
            {"image": "ball.png", "caption": "ball"}]
    (tmp_path / "m.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    ds = CaptionDataset(tmp_path / "m.jsonl", 32, train=True, hflip=True, seed=0)
    assert ds.manifest.no_flip == {tmp_path / "arrow.png"}

    def left_dark(x: torch.Tensor) -> bool:
        return bool(x[:, :, :8].mean() < x[:, :, -8:].mean())

    seen = {0: set(), 1: set()}
    for epoch in range(12):
        ds.set_epoch(epoch)
        for i in (0, 1):
            seen[i].add(left_dark(ds[i][0]))
    assert seen[0] == {True}  # never mirrored
    assert seen[1] == {True, False}  # mirrored sometimes

    (tmp_path / "bad.jsonl").write_text(json.dumps({"image": "ball.png", "caption": "b", "flip": "no"}) + "\n"
                                        + json.dumps(rows[1]) + "\n")
    m = read_caption_manifest(tmp_path / "bad.jsonl")
    assert len(m.records) == 1 and "'flip' must be true or false" in str(m.problems[0])
