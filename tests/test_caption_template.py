"""Template captions from class folders, the JSONL / VAR-CLIP outputs, resume and merge
bookkeeping, --prefix-class, and caption-stats. No model is needed here."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from varclip.caption import (
    Captioner,
    TemplateCaptioner,
    caption_images,
    caption_stats,
    cli_caption,
    cli_caption_stats,
    merge_shards,
    shard_path,
)
from varclip.caption.run import done_keys, failed_path, read_rows, repair_tail
from varclip.data import CaptionDataset, read_caption_manifest


@pytest.fixture(autouse=True)
def _no_torchrun_env(monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(name, raising=False)


def make_class_folder(root: Path, classes: dict[str, int], size=(24, 20)) -> list[Path]:
    rng = np.random.default_rng(0)
    paths = []
    for cls, count in classes.items():
        (root / cls).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            p = root / cls / f"img{i}.JPEG"
            Image.fromarray(rng.integers(0, 255, (*size[::-1], 3), dtype=np.uint8)).save(p)
            paths.append(p)
    return paths


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def test_template_captions_class_folders_into_a_manifest(tmp_path, capsys):
    train = tmp_path / "train"
    make_class_folder(train, {"n01440764": 2, "n02444819": 2, "golden_retriever": 1})
    (train / "n01440764" / "notes.txt").write_text("not an image")
    (train / ".hidden").mkdir()
    Image.new("RGB", (8, 8)).save(train / ".hidden" / "x.png")
    out = tmp_path / "captions.jsonl"
    assert cli_caption([str(train), "--out", str(out), "--quiet"]) == 0
    rows = read_jsonl(out)
    assert rows == [
        {"image": "train/golden_retriever/img0.JPEG", "caption": "a photo of a golden retriever"},
        {"image": "train/n01440764/img0.JPEG", "caption": "a photo of a tench"},
        {"image": "train/n01440764/img1.JPEG", "caption": "a photo of a tench"},
        {"image": "train/n02444819/img0.JPEG", "caption": "a photo of an otter"},
        {"image": "train/n02444819/img1.JPEG", "caption": "a photo of an otter"},
    ]
    assert not shard_path(out, 0).exists()  # merged and removed
    # the training code reads it as it is
    ds = CaptionDataset(out, size=16, train=False)
    assert len(ds) == 5 and ds.num_bad_lines == 0
    x, caption = ds[1]
    assert tuple(x.shape) == (3, 16, 16) and caption == "a photo of a tench"
    assert "captioned 5 of 5" in capsys.readouterr().out


def test_varclip_txt_layout_reads_back_to_the_same_records(tmp_path):
    train = tmp_path / "imagenet" / "train"
    make_class_folder(train, {"n01443537": 2, "n01484850": 1})
    out = tmp_path / "manifests" / "captions.jsonl"
    assert cli_caption([str(train), "--out", str(out), "--format", "varclip-txt", "--quiet",
                        "--template", "{name}, a photo"]) == 0
    txt = train / "image_captions.txt"
    lines = txt.read_text(encoding="utf-8").splitlines()
    # VAR-CLIP's layout: train/image_captions.txt lists train/<wnid>/<file>
    assert lines == ["train/n01443537/img0.JPEG: goldfish, a photo",
                     "train/n01443537/img1.JPEG: goldfish, a photo",
                     "train/n01484850/img0.JPEG: great white shark, a photo"]
    from_txt = read_caption_manifest(txt)
    from_jsonl = read_caption_manifest(out)
    assert not from_txt.problems and not from_jsonl.problems
    assert [(p.resolve(), c) for p, c in from_txt.records] == \
        [(p.resolve(), c) for p, c in from_jsonl.records]
    assert read_jsonl(out)[0]["image"] == "../imagenet/train/n01443537/img0.JPEG"
    custom = tmp_path / "elsewhere" / "caps.txt"
    assert cli_caption([str(train), "--out", str(out), "--merge-only", "--txt-out",
                        str(custom)]) == 0
    assert [(p.resolve(), c) for p, c in read_caption_manifest(custom).records] == \
        [(p.resolve(), c) for p, c in from_jsonl.records]


def test_template_needs_class_folders_and_bad_input_exits_2(tmp_path, capsys):
    flat = tmp_path / "flat"
    flat.mkdir()
    Image.new("RGB", (8, 8)).save(flat / "a.png")
    out = tmp_path / "c.jsonl"
    assert cli_caption([str(flat), "--out", str(out)]) == 2
    assert "not in class folders" in capsys.readouterr().err
    assert cli_caption([str(tmp_path / "missing"), "--out", str(out)]) == 2
    assert cli_caption([str(flat), "--out", str(tmp_path / "c.txt")]) == 2
    assert cli_caption([str(flat), "--out", str(out), "--captioner", "nonsense"]) == 2
    assert cli_caption([str(flat), "--out", str(out), "--captioner", "blip2:/no/such/dir"]) == 2
    assert cli_caption([str(flat), "--out", str(out), "--template", "{nope}"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.count("varclip caption: error:") == 5


def test_rerun_skips_done_images_and_captions_new_ones(tmp_path, capsys):
    train = tmp_path / "train"
    make_class_folder(train, {"n01440764": 3})
    out = tmp_path / "captions.jsonl"
    assert cli_caption([str(train), "--out", str(out), "--quiet"]) == 0
    make_class_folder(train, {"n01443537": 1})
    assert cli_caption([str(train), "--out", str(out), "--quiet"]) == 0
    assert "captioned 1 of 4 images (3 already done" in capsys.readouterr().out
    assert [r["image"].split("/")[1] for r in read_jsonl(out)] == ["n01440764"] * 3 + ["n01443537"]


def test_class_names_file_and_limit(tmp_path):
    train = tmp_path / "train"
    make_class_folder(train, {"cls_a": 2, "cls_b": 2})
    names = tmp_path / "names.json"
    names.write_text(json.dumps({"cls_a": "red panda", "cls_b": "elephant"}))
    out = tmp_path / "captions.jsonl"
    assert cli_caption([str(train), "--out", str(out), "--class-names", str(names), "--limit", "3",
                        "--quiet"]) == 0
    assert [r["caption"] for r in read_jsonl(out)] == [
        "a photo of a red panda", "a photo of a red panda", "a photo of an elephant"]


class FakeModel(Captioner):
    """Stands for a model: looks at the pixels, returns a fixed kind of caption."""

    name = "fake"

    def __init__(self, fail_on_size=None):
        self.batches: list[int] = []
        self.fail_on_size = fail_on_size

    def caption(self, images, classes=None):
        self.batches.append(len(images))
        if self.fail_on_size and any(im.size == self.fail_on_size for im in images):
            raise RuntimeError("model cannot handle this one")
        return [f"a  small\nthing of width {im.size[0]}" for im in images]


def test_prefix_class_puts_the_name_first(tmp_path):
    train = tmp_path / "train"
    make_class_folder(train, {"n01440764": 2, "n01443537": 1})
    out = tmp_path / "captions.jsonl"
    fake = FakeModel()
    summary = caption_images(train, out, fake, batch_size=2, prefix_class=True, log_every=None)
    assert fake.batches == [2, 1] and summary.captioned == 3
    merge_shards(out)
    caps = [r["caption"] for r in read_jsonl(out)]
    assert caps == ["tench, a small thing of width 24", "tench, a small thing of width 24",
                    "goldfish, a small thing of width 24"]
    # the template captioner already starts from the class: nothing to prefix
    out2 = tmp_path / "t.jsonl"
    caption_images(train, out2, TemplateCaptioner("{name} in a photo"), prefix_class=True,
                   log_every=None)
    merge_shards(out2)
    assert read_jsonl(out2)[0]["caption"] == "tench in a photo"


def test_unreadable_and_failing_images_are_recorded_and_retried(tmp_path):
    train = tmp_path / "train"
    make_class_folder(train, {"a": 4})
    (train / "a" / "broken.png").write_bytes(b"not a png")
    Image.new("RGB", (31, 7)).save(train / "a" / "odd.png")
    out = tmp_path / "captions.jsonl"
    fake = FakeModel(fail_on_size=(31, 7))
    summary = caption_images(train, out, fake, batch_size=3, log_every=None)
    assert (summary.captioned, summary.failed) == (4, 2)
    # the batch holding odd.png failed and was retried one image at a time
    assert fake.batches[:1] == [2] and 1 in fake.batches
    errors = {r["image"]: r["error"] for r in read_rows(shard_path(out, 0))[0] if "error" in r}
    assert set(errors) == {"train/a/broken.png", "train/a/odd.png"}
    assert "cannot read image" in errors["train/a/broken.png"]
    assert "captioner failed" in errors["train/a/odd.png"]
    # failed rows count as done until merged (or --retry-failed)
    assert len(done_keys(out)) == 6 and len(done_keys(out, retry_failed=True)) == 4
    merged = merge_shards(out)
    assert (merged.rows, merged.failed) == (4, 2)
    assert {r["image"] for r in read_jsonl(failed_path(out))} == set(errors)
    assert read_caption_manifest(out).problems == []
    # the next run retries exactly the failed ones
    fixed = FakeModel()
    again = caption_images(train, out, fixed, batch_size=8, log_every=None)
    assert (again.skipped, again.captioned, again.failed) == (4, 1, 1)
    merged = merge_shards(out)
    assert (merged.rows, merged.failed) == (5, 1)


def test_torn_last_line_is_cut_and_ignored(tmp_path):
    train = tmp_path / "train"
    make_class_folder(train, {"n01440764": 3})
    out = tmp_path / "captions.jsonl"
    shard = shard_path(out, 0)
    shard.write_text('{"image": "train/n01440764/img0.JPEG", "caption": "first"}\n'
                     '{"image": "train/n01440764/img1.JP', encoding="utf-8")
    assert done_keys(out) == {"train/n01440764/img0.JPEG"}
    summary = caption_images(train, out, TemplateCaptioner(), log_every=None)
    assert (summary.skipped, summary.captioned) == (1, 2)
    rows, bad = read_rows(shard)
    assert bad == 0 and [r["image"][-9:] for r in rows] == ["img0.JPEG", "img1.JPEG", "img2.JPEG"]
    merged = merge_shards(out)
    assert merged.rows == 3 and read_jsonl(out)[0]["caption"] == "first"
    assert repair_tail(tmp_path / "absent.jsonl") == 0


def write_manifest(path: Path, rows: list[tuple[str, str]]) -> None:
    path.write_text("".join(json.dumps({"image": i, "caption": c}) + "\n" for i, c in rows))


def test_caption_stats_numbers(tmp_path):
    m = tmp_path / "captions.jsonl"
    write_manifest(m, [
        ("train/n01440764/a.JPEG", "a man holding a tench"),             # 5 words, named at 3
        ("train/n01440764/b.JPEG", "a man holding a fish"),              # not named
        ("train/n01443537/a.JPEG", "goldfish in a bowl"),                # named at 0
        ("train/n01443537/b.JPEG", "a man holding a fish"),              # duplicate, not named
        ("train/n01484850/a.JPEG", "a white shark under water today"),   # synonym at 1
        ("train/n01484850/b.JPEG", "the shark"),                         # head noun only
    ])
    s = caption_stats(m)
    assert s["captions"] == 6
    assert s["length_words"]["mean"] == pytest.approx((5 + 5 + 4 + 5 + 6 + 2) / 6)
    assert (s["length_words"]["min"], s["length_words"]["max"]) == (2, 6)
    assert s["length_words"]["histogram"] == {"2": 1, "4": 1, "5": 3, "6": 1}
    assert s["duplicates"]["distinct_captions"] == 5
    assert s["duplicates"]["duplicate_rate"] == pytest.approx(1 / 6)
    assert s["duplicates"]["shared_rate"] == pytest.approx(2 / 6)
    assert s["duplicates"]["most_repeated"] == [("a man holding a fish", 2)]
    cm = s["class_mentions"]
    assert (cm["images_with_class"], cm["classes"]) == (6, 3)
    assert cm["name_rate"] == pytest.approx(3 / 6)
    assert cm["head_noun_rate"] == pytest.approx(4 / 6)
    assert cm["in_first_3_words_rate"] == pytest.approx(2 / 6)
    assert cm["mean_first_position"] == pytest.approx((4 + 0 + 1) / 3)
    assert cm["least_named"][0]["folder"] in ("n01440764", "n01443537", "n01484850")
    vocab = s["vocabulary"]
    assert vocab["top"][0] == ("a", 8)
    assert vocab["distinct"] == 14 and vocab["words"] == 27
    assert ("man", 3) in vocab["top_content"] and all(w != "a" for w, _ in vocab["top_content"])


def test_caption_stats_cli_text_json_and_txt_manifest(tmp_path, capsys):
    m = tmp_path / "captions.jsonl"
    write_manifest(m, [("imgs/x.png", "a red car"), ("imgs/y.png", "a red car: fast")])
    assert cli_caption_stats([str(m)]) == 0
    text = capsys.readouterr().out
    assert "2 captions" in text and "duplicate rate 0.0%" in text
    assert "no class folders" in text
    assert cli_caption_stats([str(m), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["length_words"]["mean"] == pytest.approx(3.5)
    assert data["class_mentions"] == {"images_with_class": 0}
    # VAR-CLIP's txt layout, with class folders named by a user file
    train = tmp_path / "train"
    train.mkdir()
    (train / "image_captions.txt").write_text("train/cat/1.jpg: a cat on a mat\n"
                                             "train/dog/2.jpg: a photo of a puppy\n"
                                             "bad line without separator\n")
    names = tmp_path / "names.tsv"
    names.write_text("dog\tdog\tpuppy\n")
    assert cli_caption_stats([str(train / "image_captions.txt"), "--class-names", str(names),
                              "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["captions"] == 2 and data["unusable_lines"] == 1
    assert data["class_mentions"]["name_rate"] == 1.0
    assert cli_caption_stats([str(tmp_path / "missing.jsonl")]) == 2
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    assert cli_caption_stats([str(empty)]) == 2
