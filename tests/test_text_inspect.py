"""prompt-inspect: one row per word, tables, charts, caption-file summary, CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from PIL import Image

from varclip.text.encoders import TextEmbedding, TextEncoder
from varclip.text.inspect import (
    cli_prompt_inspect,
    format_summary,
    format_table,
    read_captions,
    save_summary_chart,
    save_word_chart,
    summarize_captions,
    word_position_analysis,
)

PARITY = Path(__file__).resolve().parents[1] / ".." / "shared" / "parity"
CLIP_PTH = PARITY / "clip-text-small" / "clip.pth"


class BagOfWords(TextEncoder):
    """Fake encoder whose embedding weights earlier words more, like the paper's finding."""

    identity, dim = "bow", 16

    def _encode(self, texts: list[str]) -> TextEmbedding:
        out = torch.zeros(len(texts), 16)
        for i, t in enumerate(texts):
            for pos, w in enumerate(t.split()):
                g = torch.Generator().manual_seed(sum(map(ord, w)))
                out[i] += torch.randn(16, generator=g) / (1 + pos)
        return TextEmbedding(out + 1e-3)


def test_one_row_per_word(tmp_path: Path) -> None:
    caption = "a sailboat with a sail at sunset"
    rows = word_position_analysis(BagOfWords(), caption)
    assert [r.word for r in rows] == caption.split() and [r.position for r in rows] == list(range(7))
    assert rows[0].to_front == pytest.approx(0.0, abs=1e-9) and rows[-1].to_back == pytest.approx(0.0, abs=1e-9)
    assert all(0 <= r.removed <= 2 for r in rows)
    table = format_table(rows, caption, "bow")
    assert all(w in table for w in caption.split()) and "removed" in table
    png = save_word_chart(rows, tmp_path / "words.png", caption)
    with Image.open(png) as im:
        assert im.format == "PNG" and im.width >= 480


def test_single_word_caption() -> None:
    rows = word_position_analysis(BagOfWords(), "sunset")
    assert len(rows) == 1


def test_summary_and_caption_file(tmp_path: Path) -> None:
    f = tmp_path / "image_captions.txt"
    f.write_text("train/n01/a.JPEG: a dog on the grass\n\nplain caption without path\n"
                 "train/n01/b.jpg: time: a clock on a wall\n")
    caps = read_captions(f)
    assert caps == ["a dog on the grass", "plain caption without path", "time: a clock on a wall"]
    summary = summarize_captions(BagOfWords(), caps)
    assert [s.position for s in summary] == list(range(6))
    assert summary[0].count == 3 and summary[5].count == 1
    assert "mean removed" in format_summary(summary)
    with Image.open(save_summary_chart(summary, tmp_path / "s.png")) as im:
        assert im.format == "PNG"


@pytest.mark.skipif(not CLIP_PTH.is_file(), reason=f"golden parity data not found at {CLIP_PTH}")
def test_cli(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    spec = f"clip:{CLIP_PTH}?variant=openai&heads=2"
    caps = tmp_path / "caps.txt"
    caps.write_text("a red apple\na cat on a mat\n")
    rc = cli_prompt_inspect(["a sailboat at sunset", "--text-encoder", spec, "--json",
                             "--png", str(tmp_path / "c.png"), "--captions", str(caps)])
    assert rc == 0
    doc = json.loads(capsys.readouterr().out)
    assert [r["word"] for r in doc["rows"]] == ["a", "sailboat", "at", "sunset"]
    assert len(doc["summary"]) == 5 and (tmp_path / "c.png").is_file()
    assert cli_prompt_inspect(["a cat", "--text-encoder", spec]) == 0
    assert "sailboat" not in capsys.readouterr().out
    assert cli_prompt_inspect(["a cat", "--text-encoder", f"clip:{tmp_path / 'nope.pt'}"]) == 2
    assert "not found" in capsys.readouterr().err
    assert cli_prompt_inspect([]) == 2
