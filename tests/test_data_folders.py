"""Class folders: ids from sorted names; unusable files dropped (or stood in for), counted, logged."""

from __future__ import annotations

import logging

import pytest
import torch
from PIL import Image

from varclip.data.folders import ImageFolderDataset


def _tree(root, corrupt: bool = True):
    colors = {"zebra": (0, 0, 0), "apple": (255, 0, 0), "moon": (0, 0, 255)}
    for name, color in colors.items():
        (root / name / "sub").mkdir(parents=True)
        for i in range(2):
            Image.new("RGB", (40, 30), color).save(root / name / f"{i}.png")
        Image.new("L", (30, 40), 128).save(root / name / "sub" / "deep.jpg")
        (root / name / "notes.txt").write_text("not an image")
    (root / ".hidden").mkdir()
    if corrupt:
        (root / "apple" / "1.png").write_bytes(b"\x89PNG\r\n\x1a\ngarbage")
    return root


def test_classes_and_items(tmp_path):
    ds = ImageFolderDataset(_tree(tmp_path, corrupt=False), size=16, train=False)
    assert ds.classes == ["apple", "moon", "zebra"]
    assert len(ds) == 9 and ds.targets == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    x, y = ds[0]
    assert x.shape == (3, 16, 16) and y == 0
    assert torch.allclose(x[0], torch.ones(16, 16)) and torch.allclose(x[1], -torch.ones(16, 16))
    assert ds.num_skipped == 0


def _truncated_png(path, size=(40, 30)):
    import io
    buf = io.BytesIO()
    Image.effect_noise(size, 60).convert("RGB").save(buf, format="PNG")
    path.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])  # the header reads, the pixels do not


def test_unusable_files_are_dropped_up_front_with_one_warning(tmp_path, caplog):
    root = _tree(tmp_path)
    Image.new("RGB", (1, 1)).save(root / "moon" / "pixel.png")  # a tracking pixel
    (root / "zebra" / "empty.jpg").write_bytes(b"")
    with caplog.at_level(logging.WARNING, logger="varclip.data"):
        ds = ImageFolderDataset(root, size=16)
    assert len(ds) == 8 and ds.num_skipped == 3 and ds.num_total == 11
    names = {p.name for p, _ in ds.samples}
    assert not names & {"pixel.png", "empty.jpg"} and ds.targets.count(0) == 2
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "3 of 11" in warnings[0] and "1x1 < 8 px" in warnings[0]
    assert ds.skip_summary().endswith("3 of 11 images skipped as unusable")
    assert len(ImageFolderDataset(root, size=16, min_size=1)) == 9  # the minimum size is a setting


def test_lazy_skips_substitute_count_and_log_once(tmp_path, caplog):
    ds = ImageFolderDataset(_tree(tmp_path), size=16, train=True, seed=0, check_files=False)
    bad = [i for i, (p, _) in enumerate(ds.samples) if p.name == "1.png" and p.parent.name == "apple"]
    assert len(bad) == 1 and len(ds) == 9
    assert isinstance(ds.try_item(bad[0]), str)  # no stand-in from try_item
    with caplog.at_level(logging.WARNING, logger="varclip.data"):
        items = [ds[i] for i in range(len(ds))] + [ds[bad[0]]]
    assert len(items) == len(ds) + 1  # never crashes: the next readable image stands in
    assert items[bad[0]][1] == 0  # the substitute (apple/sub/deep.jpg) has its own label
    assert ds.num_skipped == 1
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "1.png" in warnings[0].getMessage()


def test_truncated_files_found_in_workers_are_counted(tmp_path):
    root = _tree(tmp_path, corrupt=False)
    _truncated_png(root / "moon" / "cut.png")
    ds = ImageFolderDataset(root, size=16, train=False)  # the header scan cannot see it
    assert len(ds) == 10 and ds.num_skipped == 0
    loader = torch.utils.data.DataLoader(ds, batch_size=5, num_workers=2)
    assert sum(len(x) for x, _ in loader) == 10
    assert ds.num_skipped == 1 and "1 of 10" in ds.skip_summary()


def test_verify_drops_bad_files(tmp_path, caplog):
    root = _tree(tmp_path)
    _truncated_png(root / "moon" / "cut.png")
    ds = ImageFolderDataset(root, size=16, check_files=False)
    with caplog.at_level(logging.WARNING, logger="varclip.data"):
        assert ds.verify() == 2
    assert len(ds) == 8 and ds.num_skipped == 2
    assert "2 of 10" in caplog.records[-1].getMessage()


def test_seeded_crops_are_a_function_of_seed_epoch_index(tmp_path):
    root = tmp_path / "r"
    (root / "c").mkdir(parents=True)
    img = Image.linear_gradient("L").resize((64, 40)).convert("RGB")
    img.save(root / "c" / "g.png")
    a = ImageFolderDataset(root, size=16, seed=3)
    b = ImageFolderDataset(root, size=16, seed=3)
    assert torch.equal(a[0][0], b[0][0])
    crops = set()
    for epoch in range(6):
        a.set_epoch(epoch)
        crops.add(a[0][0].sum().item())
    assert len(crops) > 1  # a new epoch draws new crops
    with pytest.raises(IndexError):
        a[5]


def test_missing_root(tmp_path):
    with pytest.raises(FileNotFoundError):
        ImageFolderDataset(tmp_path / "nope", size=8)


def test_image_sources_drop_unusable_files(tmp_path):
    from varclip.data.sources import image_source_dataset
    root = _tree(tmp_path)  # 9 images, one of them corrupt
    Image.new("RGB", (2, 2)).save(root / "moon" / "tiny.png")
    ds = image_source_dataset(root, 16)
    assert len(ds) == 8 and ds.num_skipped == 2 and "2 of 10" in ds.skip_summary()
