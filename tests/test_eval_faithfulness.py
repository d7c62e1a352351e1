from __future__ import annotations

import json

import torch
from PIL import Image

from varclip.eval.faithfulness import evaluate_faithfulness
from varclip.pipeline import PipelineOutput
from varclip.text.encoders import TextEmbedding

COLOURS = {"red square": (255, 0, 0), "green square": (0, 255, 0), "blue square": (0, 0, 255),
           "yellow square": (255, 255, 0), "black square": (0, 0, 0), "white circle": (250, 250, 250),
           "purple square": (128, 0, 128), "orange square": (255, 128, 0)}


class WordEncoder:
    """Bag of words over a fixed vocabulary: 'red box' is nearest to 'red square'."""

    identity, dim = "words", 16
    vocab = ["red", "green", "blue", "yellow", "black", "white", "purple", "orange", "square", "circle", "box"]

    def encode(self, texts, allow_empty=False):
        return TextEmbedding(torch.tensor([[float(w in t.split()) for w in self.vocab] for t in texts]) + 1e-3)


class Oracle:
    """Draws exactly what the caption's nearest training caption shows (or ignores the prompt)."""

    is_text = True

    def __init__(self, honest: bool):
        self.text_encoder, self.honest = WordEncoder(), honest

    def __call__(self, prompts, **kw):
        imgs = []
        for p in prompts:
            colour = next((c for name, c in COLOURS.items() if name.split()[0] in p.split()), (9, 9, 9))
            imgs.append(Image.new("RGB", (32, 32), colour if self.honest else (128, 128, 128)))
        return PipelineOutput(imgs)


def _manifest(tmp_path):
    lines = []
    for name, colour in COLOURS.items():
        Image.new("RGB", (32, 32), colour).save(tmp_path / f"{name.replace(' ', '_')}.png")
        lines.append(json.dumps({"image": f"{name.replace(' ', '_')}.png", "caption": name}))
    (tmp_path / "train.jsonl").write_text("\n".join(lines) + "\n")
    return tmp_path / "train.jsonl"


def test_faithful_model_beats_the_shuffled_baseline(tmp_path):
    m = _manifest(tmp_path)
    queries = ["red box", "green square", "blue box", "yellow square", "purple box", "orange box"]
    good = evaluate_faithfulness(Oracle(True), m, queries, "heldout")
    assert good.top1 == 1.0 and good.top5 == 1.0
    assert good.baseline_top1 < 0.5
    blind = evaluate_faithfulness(Oracle(False), m, queries, "heldout")
    assert blind.top1 < good.top1
    assert good.examples[0]["target_caption"] == "red square"
