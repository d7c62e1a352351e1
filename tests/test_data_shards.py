"""Tar shards: write/read round trip, rank/worker splits, corrupt data skipped and counted."""

from __future__ import annotations

import io
import logging
import tarfile

import pytest
from PIL import Image
from torch.utils.data import DataLoader

from varclip.data.shards import ShardDataset, expand_braces, iter_tar_groups, write_shards


def _samples(n: int, target: str = "txt"):
    for i in range(n):
        img = Image.new("RGB", (20 + i % 3, 18), (i * 9 % 256, 0, 255 - i * 9 % 256))
        value = f"caption {i}: a colour" if target == "txt" else i % 4
        yield {"__key__": f"s{i:04d}", "png": img, target: value}


def test_brace_expansion():
    assert expand_braces("a-{000..002}.tar") == ["a-000.tar", "a-001.tar", "a-002.tar"]
    assert expand_braces("{x,y}/{1..2}") == ["x/1", "x/2", "y/1", "y/2"]
    assert expand_braces("plain.tar") == ["plain.tar"]


def test_round_trip_captions_and_deterministic_bytes(tmp_path):
    paths = write_shards(_samples(10), str(tmp_path / "a-%03d.tar"), max_per_shard=4)
    assert [p.name for p in paths] == ["a-000.tar", "a-001.tar", "a-002.tar"]
    again = write_shards(_samples(10), str(tmp_path / "b-{:03d}.tar"), max_per_shard=4)
    assert [p.read_bytes() for p in paths] == [p.read_bytes() for p in again]
    ds = ShardDataset(str(tmp_path / "a-{000..002}.tar"), size=16, train=False)
    items = list(ds)
    assert [c for _, c in items] == [f"caption {i}: a colour" for i in range(10)]
    assert all(x.shape == (3, 16, 16) for x, _ in items) and ds.num_skipped == 0


def test_class_targets_and_json(tmp_path):
    write_shards(_samples(5, "cls"), str(tmp_path / "c-%d.tar"), max_per_shard=100)
    ds = ShardDataset(str(tmp_path / "c-0.tar"), size=8, train=False, target="class")
    assert [y for _, y in ds] == [0, 1, 2, 3, 0]
    write_shards([{"__key__": "k", "jpg": Image.new("RGB", (8, 8)), "json": {"label": 7}}],
                 str(tmp_path / "j-%d.tar"))
    assert [y for _, y in ShardDataset(str(tmp_path / "j-0.tar"), size=8, train=False)] == [7]


def test_shards_split_over_ranks_and_workers_exactly_once(tmp_path):
    write_shards(_samples(24), str(tmp_path / "s-%02d.tar"), max_per_shard=3)  # 8 shards
    pattern = str(tmp_path / "s-{00..07}.tar")
    seen = []
    for rank in range(2):
        ds = ShardDataset(pattern, size=8, train=True, seed=1, shuffle_buffer=4,
                          rank=rank, world_size=2)
        loader = DataLoader(ds, batch_size=None, num_workers=2)
        seen += [c for _, c in loader]
    assert sorted(seen) == sorted(f"caption {i}: a colour" for i in range(24))
    # the same seed and epoch give the same stream; another epoch reorders it
    ds = ShardDataset(pattern, size=8, seed=1, shuffle_buffer=4, rank=0, world_size=1)
    first = [c for _, c in ds]
    assert first == [c for _, c in ds]
    ds.set_epoch(1)
    assert sorted(first) == sorted(c for _, c in ds) and first != [c for _, c in ds]


def test_corrupt_members_and_truncated_shards_are_skipped(tmp_path, caplog):
    path = tmp_path / "bad.tar"
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), (255, 0, 0)).save(buf, format="PNG")
    png = buf.getvalue()
    members = [("a.png", png), ("a.txt", b"good one"),
               ("b.png", b"garbage"), ("b.txt", b"broken image"),
               ("c.txt", b"no image"),
               ("d.png", png),  # no caption
               ("e.png", png), ("e.txt", b"last")]
    with tarfile.open(path, "w") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    truncated = tmp_path / "cut.tar"
    truncated.write_bytes(path.read_bytes()[:1800])
    with caplog.at_level(logging.WARNING, logger="varclip.data"):
        ds = ShardDataset([str(path), str(truncated), str(tmp_path / "gone.tar")], size=8,
                          train=False, target="caption")
        got = [c for _, c in ds]
    assert got[:2] == ["good one", "last"] and got[2:] in ([], ["good one"])
    assert ds.stats["unreadable image"] >= 1 and ds.stats["sample without an image"] == 1
    assert ds.stats["corrupt or unreadable shard"] == 2
    assert any("skipped" in r.getMessage() for r in caplog.records)
    assert ds.num_skipped >= 5


def test_iter_groups_keys_with_folders(tmp_path):
    write_shards([{"__key__": "dir/x1", "txt": "t", "cls": 3}], str(tmp_path / "g-%d.tar"))
    groups = list(iter_tar_groups(str(tmp_path / "g-0.tar")))
    assert len(groups) == 1 and groups[0]["__key__"] == "dir/x1"
    assert groups[0]["txt"] == b"t" and groups[0]["cls"] == b"3"
    with pytest.raises(ValueError):
        write_shards([{"__key__": "a.b", "txt": "x"}], str(tmp_path / "h-%d.tar"))
    assert not list(tmp_path.glob("*h-*"))


def test_failed_writer_leaves_no_partial_shard(tmp_path):
    def dying():
        yield from _samples(3)
        raise RuntimeError("source died")

    with pytest.raises(RuntimeError):
        write_shards(dying(), str(tmp_path / "p-%d.tar"), max_per_shard=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p-0.tar"]  # only the finished one
