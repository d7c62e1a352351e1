"""CLIP score: our OpenAI-layout image tower against transformers' CLIPModel, HF folders, errors,
the command line, and the caption-set benchmark (FID + CLIP score) on tiny models."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from varclip.eval.cli import cli_eval
from varclip.eval.clip_score import (ClipScoreError, HFClipScorer, OpenAIClipScorer, load_clip_scorer, read_pairs,
                                     score_pairs)

PARITY_CLIP = Path(__file__).resolve().parents[1].parent / "shared" / "parity" / "clip-text-small" / "clip.pth"


def pictures(n: int, size: int = 40, seed: int = 0) -> list[Image.Image]:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    out = []
    for _ in range(n):
        a, b = rng.random(3), rng.random(3)
        img = 255 * (a * xx[..., None] + b * yy[..., None]) / 2
        out.append(Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).resize((size + 8, size)))
    return out


@pytest.fixture(scope="module")
def hf_clip_dir(tmp_path_factory):
    transformers = pytest.importorskip("transformers")
    cfg = transformers.CLIPConfig(
        text_config=dict(vocab_size=49408, hidden_size=32, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=2, max_position_embeddings=77),
        vision_config=dict(hidden_size=64, intermediate_size=256, num_hidden_layers=2, num_attention_heads=1,
                           image_size=32, patch_size=16),
        projection_dim=16)
    torch.manual_seed(0)
    model = transformers.CLIPModel(cfg).eval()
    with torch.no_grad():  # move LayerNorms and biases off their init so that every tensor matters
        for name, p in model.named_parameters():
            if "norm" in name or name.endswith("bias"):
                p.add_(torch.randn_like(p) * 0.1)
    path = tmp_path_factory.mktemp("hf_clip")
    model.save_pretrained(path)
    return path


def hf_to_openai(model) -> dict[str, torch.Tensor]:
    """A transformers CLIPModel's weights in OpenAI's layout (the test's independent converter)."""
    sd = model.state_dict()
    out = {"logit_scale": sd["logit_scale"]}
    for tower, dst in (("vision_model", "visual."), ("text_model", "")):
        i = 0
        while f"{tower}.encoder.layers.{i}.layer_norm1.weight" in sd:
            s, d = f"{tower}.encoder.layers.{i}.", f"{dst}transformer.resblocks.{i}."
            for kind in ("weight", "bias"):
                out[d + f"attn.in_proj_{kind}"] = torch.cat([sd[s + f"self_attn.{n}_proj.{kind}"] for n in "qkv"])
                out[d + f"attn.out_proj.{kind}"] = sd[s + f"self_attn.out_proj.{kind}"]
                out[d + f"ln_1.{kind}"] = sd[s + f"layer_norm1.{kind}"]
                out[d + f"ln_2.{kind}"] = sd[s + f"layer_norm2.{kind}"]
                out[d + f"mlp.c_fc.{kind}"] = sd[s + f"mlp.fc1.{kind}"]
                out[d + f"mlp.c_proj.{kind}"] = sd[s + f"mlp.fc2.{kind}"]
            i += 1
    v = "vision_model."
    out["visual.conv1.weight"] = sd[v + "embeddings.patch_embedding.weight"]
    out["visual.class_embedding"] = sd[v + "embeddings.class_embedding"]
    out["visual.positional_embedding"] = sd[v + "embeddings.position_embedding.weight"]
    for kind in ("weight", "bias"):
        out[f"visual.ln_pre.{kind}"] = sd[v + f"pre_layrnorm.{kind}"]
        out[f"visual.ln_post.{kind}"] = sd[v + f"post_layernorm.{kind}"]
        out[f"ln_final.{kind}"] = sd[f"text_model.final_layer_norm.{kind}"]
    out["visual.proj"] = sd["visual_projection.weight"].t().contiguous()
    out["text_projection"] = sd["text_projection.weight"].t().contiguous()
    out["token_embedding.weight"] = sd["text_model.embeddings.token_embedding.weight"]
    out["positional_embedding"] = sd["text_model.embeddings.position_embedding.weight"]
    return out


def test_openai_layout_tower_matches_transformers_clip(hf_clip_dir, tmp_path):
    hf = load_clip_scorer(f"hf:{hf_clip_dir}")
    assert isinstance(hf, HFClipScorer) and hf.image_size == 32
    torch.save(hf_to_openai(hf.model), tmp_path / "clip.pth")
    oa = load_clip_scorer(f"clip:{tmp_path / 'clip.pth'}?heads=2")
    assert isinstance(oa, OpenAIClipScorer) and oa.image_size == 32
    imgs = pictures(3)
    caps = ["a red square", "a blue sky at noon", "two dogs"]
    torch.testing.assert_close(oa.encode_images(imgs), hf.encode_images(imgs), atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(oa.encode_texts(caps), hf.encode_texts(caps), atol=1e-5, rtol=1e-4)
    # and the model's own projections, independently of our preprocessing
    px = torch.stack([oa.preprocess(im) for im in imgs])
    with torch.no_grad():
        ref = hf.model.visual_projection(hf.model.vision_model(pixel_values=px).pooler_output)
    torch.testing.assert_close(oa.vision(px), ref, atol=1e-5, rtol=1e-4)
    cos = oa.cosine(imgs, caps)
    assert cos.shape == (3,) and bool(((cos >= -1) & (cos <= 1)).all())


def test_parity_clip_file_with_its_tiny_image_tower():
    if not PARITY_CLIP.is_file():
        pytest.skip(f"{PARITY_CLIP} not found")
    scorer = load_clip_scorer(f"clip:{PARITY_CLIP}?heads=2")
    assert scorer.image_size == 64  # 2x2 patches of 32 px
    res = score_pairs(scorer, list(zip(pictures(4), ["a", "b c", "a sailboat", "x"])), batch_size=3,
                      progress=False)
    assert res.num_pairs == 4 and np.isfinite(res.clip_score) and 0 <= res.clip_score <= 100
    assert -1 <= res.cosine <= 1
    # a bare path means clip:, and the activation option is honoured
    other = load_clip_scorer(f"{PARITY_CLIP}?heads=2&act=gelu")
    assert not torch.allclose(other.encode_images(pictures(1)), scorer.encode_images(pictures(1)))


def test_weights_without_an_image_tower_are_refused_in_one_line(tmp_path, hf_clip_dir):
    from transformers import CLIPModel
    sd = hf_to_openai(CLIPModel.from_pretrained(str(hf_clip_dir), local_files_only=True))
    torch.save({k: v for k, v in sd.items() if not k.startswith("visual.")}, tmp_path / "text_only.pth")
    with pytest.raises(ClipScoreError, match="no CLIP image tower") as e:
        load_clip_scorer(f"clip:{tmp_path / 'text_only.pth'}?heads=2")
    assert "\n" not in str(e.value)
    with pytest.raises(ClipScoreError, match="text-only"):
        load_clip_scorer("minilm")
    from transformers import CLIPTextModel
    text = CLIPTextModel.from_pretrained(str(hf_clip_dir), local_files_only=True)
    text.save_pretrained(tmp_path / "hf_text")
    with pytest.raises(ClipScoreError, match="without a CLIP image tower"):
        load_clip_scorer(f"hf:{tmp_path / 'hf_text'}")
    with pytest.raises(ClipScoreError, match="not found"):
        load_clip_scorer(f"clip:{tmp_path / 'missing.pt'}")
    with pytest.raises(ClipScoreError, match="unknown option"):
        load_clip_scorer(f"clip:{tmp_path / 'text_only.pth'}?foo=1")


def _manifest(tmp_path: Path, n: int = 5) -> Path:
    (tmp_path / "imgs").mkdir(exist_ok=True)
    rows = []
    for i, im in enumerate(pictures(n, seed=7)):
        im.save(tmp_path / "imgs" / f"{i}.png")
        rows.append({"image": f"imgs/{i}.png", "caption": f"picture number {i}"})
    path = tmp_path / "captions.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_cli_clip_score(tmp_path, hf_clip_dir, capsys):
    man = _manifest(tmp_path)
    assert len(read_pairs(man)) == 5
    assert cli_eval(["clip-score", str(man), "--clip", f"hf:{hf_clip_dir}", "--quiet", "--batch-size", "2",
                     "--json", str(tmp_path / "r.json")]) == 0
    out = capsys.readouterr().out
    assert "CLIP score" in out
    data = json.loads((tmp_path / "r.json").read_text())
    assert data["num_pairs"] == 5 and 0 <= data["clip_score"] <= 100
    assert cli_eval(["clip-score", str(man), "--clip", f"hf:{hf_clip_dir}", "--quiet", "--limit", "2",
                     "--json", "-"]) == 0
    assert json.loads(capsys.readouterr().out)["num_pairs"] == 2


def test_caption_benchmark_on_tiny_models(tmp_path, hf_clip_dir):
    from varclip.config import named_tokenizer, named_transformer
    from varclip.eval.clip_score import caption_benchmark
    from varclip.eval.inception import RandomFeatureExtractor
    from varclip.config import sampling_preset
    from varclip.model import VARTransformer
    from varclip.pipeline import VARPipeline
    from varclip.text.encoders import TextEmbedding
    from varclip.tokenizer import VQTokenizer

    class FakeEncoder:
        identity, dim = "fake", 384

        def encode(self, texts, allow_empty=False):
            rows = [torch.randn(384, generator=torch.Generator().manual_seed(len(t) * 31 + ord(t[-1])))
                    for t in texts]
            return TextEmbedding(torch.nn.functional.normalize(torch.stack(rows), dim=-1))

    torch.manual_seed(0)
    pipe = VARPipeline(VQTokenizer(named_tokenizer("tiny")), VARTransformer(named_transformer("tiny_text")),
                       FakeEncoder())
    man = _manifest(tmp_path, n=6)
    scorer = load_clip_scorer(f"hf:{hf_clip_dir}")
    res = caption_benchmark(pipe, man, tmp_path / "bench", scorer, RandomFeatureExtractor(0),
                            sampling_preset("official_fid").replace(seed=3), limit=5, batch_size=4, progress=False)
    assert res.num_captions == 5 and len(list((tmp_path / "bench").glob("*.png"))) == 5
    assert np.isfinite(res.fid.fid) and res.fid.fid > 0
    assert 0 <= res.fid.precision <= 1 and res.clip.num_pairs == 5 and res.clip_real.num_pairs == 5
    table = res.table()
    assert "FID" in table and "CLIP score (samples)" in table and "CLIP score (real images)" in table
    json.dumps(res.to_dict())
    # the samples' manifest is a caption manifest that clip-score reads
    pairs = read_pairs(tmp_path / "bench" / "samples.jsonl")
    assert len(pairs) == 5 and {c for _, c in pairs} < {c for _, c in read_pairs(man)}
