"""CLIP score of images against their captions, with a user-supplied CLIP.

CLIP kinds (the ``--clip`` spec; same syntax as text encoder specs):

* ``clip:PATH[?act=quickgelu|gelu&heads=N&vheads=N]``: a full CLIP state dict in OpenAI's layout
  (an OpenAI TorchScript archive such as ``ViT-L-14.pt``, an open_clip ``.pt``/``.bin``/
  ``.safetensors``). The image tower (``visual.conv1``, ``class_embedding``,
  ``positional_embedding``, ``ln_pre``, ``transformer.resblocks``, ``ln_post``, ``proj``) is
  implemented here on `varclip.text.clip`'s transformer blocks (bidirectional attention); the
  text tower is `varclip.text.clip`'s. Default activation QuickGELU (what OpenAI trained with;
  open_clip models trained with GELU want ``act=gelu``); heads default to width // 64 as in
  CLIP (``heads``/``vheads`` for other shapes).
* ``hf:DIR``: a local transformers ``CLIPModel`` folder (loaded with ``local_files_only``).
* a bare path: a folder is ``hf:``, a file ``clip:``.

Text-only weights (or ``minilm``) are refused with one line: a CLIP score needs an image tower.

Score: for each (image, caption) pair the cosine of the L2-normalised embeddings; the reported
``clip_score`` is 100 * mean(max(cos, 0)) (the convention of torchmetrics' CLIPScore and most
text-to-image papers; Hessel et al.'s CLIP-S is 2.5 * mean(max(cos, 0)), i.e. clip_score / 40).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from ..errors import first_line
from ..text.clip import ClipTransformer, count_blocks, default_heads, load_tower
from .metrics import Record

OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)


class ClipScoreError(ValueError):
    """A CLIP that cannot score images (no image tower, unreadable, unknown layout): one line."""


# ---------------------------------------------------------------------------- preprocessing


def clip_preprocess(img: Image.Image, size: int, mean: Sequence[float] = OPENAI_MEAN,
                    std: Sequence[float] = OPENAI_STD, crop: int | None = None) -> torch.Tensor:
    """CLIP's transform: bicubic resize of the short side to `size`, centre crop, normalise."""
    from ..data.images import center_crop, resize_shorter_side
    img = center_crop(resize_shorter_side(img.convert("RGB"), size, Image.BICUBIC), crop or size)
    x = torch.from_numpy(np.asarray(img, dtype=np.uint8).copy()).permute(2, 0, 1).float().div(255)
    m = torch.tensor(mean).view(3, 1, 1)
    s = torch.tensor(std).view(3, 1, 1)
    return (x - m) / s


# ---------------------------------------------------------------------------- the image tower


@dataclass(frozen=True)
class ClipVisionConfig:
    width: int
    layers: int
    heads: int
    patch: int
    grid: int
    embed_dim: int
    activation: str = "quickgelu"
    eps: float = 1e-5

    @property
    def image_size(self) -> int:
        return self.patch * self.grid


class ClipVisionTower(nn.Module):
    """CLIP's ViT image encoder in OpenAI's layout: (B,3,R,R) normalised -> (B, embed_dim)."""

    def __init__(self, cfg: ClipVisionConfig):
        super().__init__()
        if cfg.width % cfg.heads:
            raise ClipScoreError(f"vision width {cfg.width} is not divisible by {cfg.heads} heads (pass ?vheads=N)")
        self.config = cfg
        w = cfg.width
        self.conv1 = nn.Conv2d(3, w, cfg.patch, cfg.patch, bias=False)
        self.class_embedding = nn.Parameter(torch.zeros(w))
        self.positional_embedding = nn.Parameter(torch.zeros(cfg.grid * cfg.grid + 1, w))
        self.ln_pre = nn.LayerNorm(w, eps=cfg.eps)
        self.transformer = ClipTransformer(cfg, causal=False)
        self.ln_post = nn.LayerNorm(w, eps=cfg.eps)
        self.proj = nn.Parameter(torch.zeros(w, cfg.embed_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(x.to(self.conv1.weight.dtype)).flatten(2).transpose(1, 2)  # B, g*g, w
        cls = self.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)
        x = torch.cat([cls, x], 1) + self.positional_embedding.to(x.dtype)
        x = self.transformer(self.ln_pre(x))
        return self.ln_post(x[:, 0]) @ self.proj


def extract_visual(sd: dict[str, torch.Tensor], source: str) -> dict[str, torch.Tensor]:
    """The OpenAI-layout image tower tensors (prefix `visual.` removed)."""
    anchor = next((k for k in sorted(sd, key=len) if k.endswith("visual.conv1.weight")), None)
    if anchor is None:
        if any(".layer1." in k and "visual." in k for k in sd):
            raise ClipScoreError(f"{source}: ResNet CLIP image towers are not supported; use a ViT CLIP")
        if any(k.startswith(("vision_model.", "clip.vision_model.")) or ".vision_model." in k for k in sd):
            raise ClipScoreError(f"{source}: Hugging Face CLIP weights: pass the model folder as hf:DIR")
        raise ClipScoreError(f"{source} has no CLIP image tower (text-only weights?): a CLIP score needs a full "
                             "CLIP (visual.* weights) or an hf: CLIPModel folder")
    prefix = anchor[: -len("conv1.weight")]
    return {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}


def infer_vision_config(v: dict[str, torch.Tensor], heads: int | None, activation: str) -> ClipVisionConfig:
    try:
        width, _, patch, _ = v["conv1.weight"].shape
        n_pos = v["positional_embedding"].shape[0]
        embed = v["proj"].shape[1]
    except KeyError as e:
        raise ClipScoreError(f"incomplete CLIP image tower: missing visual.{e.args[0]}") from None
    grid = math.isqrt(n_pos - 1)
    if grid * grid != n_pos - 1:
        raise ClipScoreError(f"positional embedding of {n_pos} rows is not 1 + a square grid")
    if heads is None:
        heads = default_heads(int(width), "vision head count", "pass ?vheads=N", ClipScoreError)
    return ClipVisionConfig(int(width), count_blocks(v), int(heads), int(patch), grid, int(embed), activation)


def build_vision_tower(v: dict[str, torch.Tensor], cfg: ClipVisionConfig) -> ClipVisionTower:
    return load_tower(ClipVisionTower(cfg), v, "image", ClipScoreError)


# ---------------------------------------------------------------------------- scorers


class ClipScorer:
    """Embeds images and captions into CLIP's joint space (L2-normalised, float32, CPU)."""

    identity: str = "abstract"
    image_size: int = 224
    device: torch.device = torch.device("cpu")

    def preprocess(self, img: Image.Image) -> torch.Tensor:
        raise NotImplementedError

    def _images(self, pixels: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _texts(self, texts: list[str]) -> torch.Tensor:
        raise NotImplementedError

    @torch.inference_mode()
    def encode_images(self, images: Sequence[Image.Image]) -> torch.Tensor:
        x = torch.stack([self.preprocess(im) for im in images]).to(self.device)
        return F.normalize(self._images(x).float(), dim=-1).cpu()

    @torch.inference_mode()
    def encode_texts(self, texts: Sequence[str]) -> torch.Tensor:
        return F.normalize(self._texts(list(texts)).float(), dim=-1).cpu()

    def cosine(self, images: Sequence[Image.Image], texts: Sequence[str]) -> torch.Tensor:
        if len(images) != len(texts):
            raise ValueError(f"{len(images)} images for {len(texts)} captions")
        return (self.encode_images(images) * self.encode_texts(texts)).sum(-1)


class OpenAIClipScorer(ClipScorer):
    def __init__(self, path: str | os.PathLike[str], activation: str = "quickgelu", heads: int | None = None,
                 vheads: int | None = None, device: str | torch.device = "cpu"):
        from ..text.bpe import ClipTokenizer
        from ..text.clip import ClipLoadError, build_tower, extract_text_tower, infer_config, read_state_dict
        from ..text.encoders import fingerprint
        path = Path(path).expanduser()
        if activation not in ("quickgelu", "gelu"):
            raise ClipScoreError(f"unknown activation {activation!r}: use quickgelu or gelu")
        try:
            sd = read_state_dict(path)
        except ClipLoadError as e:
            raise ClipScoreError(str(e)) from None
        visual = extract_visual(sd, str(path))
        self.vision = build_vision_tower(visual, infer_vision_config(visual, vheads, activation))
        try:
            text_sd, _ = extract_text_tower(sd)
            self.text = build_tower(text_sd, infer_config(text_sd, heads=heads, activation=activation))  # type: ignore[arg-type]
        except ClipLoadError as e:
            raise ClipScoreError(f"{path}: {e}") from None
        except KeyError as e:
            raise ClipScoreError(f"{path}: incomplete CLIP text weights (missing {e.args[0]})") from None
        self.tokenizer = ClipTokenizer("openai", self.text.config.context_length)
        if self.text.config.embed_dim != self.vision.config.embed_dim:
            raise ClipScoreError(f"{path}: text ({self.text.config.embed_dim}-d) and image "
                                 f"({self.vision.config.embed_dim}-d) embeddings differ in width")
        self.image_size = self.vision.config.image_size
        self.identity = f"clip:{fingerprint(path)}:act={activation}"
        self.truncated = 0
        self.to(device)

    def to(self, device: str | torch.device) -> "OpenAIClipScorer":
        self.device = torch.device(device)
        self.vision.to(self.device)
        self.text.to(self.device)
        return self

    def preprocess(self, img: Image.Image) -> torch.Tensor:
        return clip_preprocess(img, self.image_size)

    def _images(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.vision(pixels)

    def _texts(self, texts: list[str]) -> torch.Tensor:
        batch = self.tokenizer.tokenize(texts)
        self.truncated += sum(1 for d in batch.dropped if d)
        return self.text.encode(batch.ids.to(self.device)).pooled


class HFClipScorer(ClipScorer):
    def __init__(self, path: str | os.PathLike[str], device: str | torch.device = "cpu"):
        from ..text.encoders import fingerprint, quiet_transformers
        path = Path(path).expanduser()
        if not (path / "config.json").is_file():
            raise ClipScoreError(f"{path} is not a Hugging Face model folder (no config.json)")
        cfg = json.loads((path / "config.json").read_text())
        mtype = cfg.get("model_type", "")
        if mtype != "clip" or "vision_config" not in cfg:
            raise ClipScoreError(f"{path} holds a {mtype or 'unknown'} model without a CLIP image tower: a CLIP "
                                 "score needs a full CLIPModel folder")
        try:
            import transformers
        except ImportError:
            raise ClipScoreError("hf: CLIP models need transformers (pip install 'transformers>=4.40')") from None
        try:
            with quiet_transformers():
                self.model, info = transformers.CLIPModel.from_pretrained(str(path), local_files_only=True,
                                                                          output_loading_info=True)
        except (OSError, ValueError, KeyError, RuntimeError) as e:
            raise ClipScoreError(f"cannot load a CLIPModel from {path}: {first_line(e)}") from None
        missing = list(info.get("missing_keys") or [])
        if missing:
            raise ClipScoreError(f"{path} lacks {len(missing)} CLIP weights (e.g. {missing[0]})")
        self.model.eval().requires_grad_(False)
        vc = self.model.config.vision_config
        self.image_size, self.crop = int(vc.image_size), int(vc.image_size)
        self.mean, self.std = OPENAI_MEAN, OPENAI_STD
        pp = path / "preprocessor_config.json"
        if pp.is_file():
            p = json.loads(pp.read_text())
            self.mean, self.std = tuple(p.get("image_mean", self.mean)), tuple(p.get("image_std", self.std))
            size, crop = p.get("size"), p.get("crop_size")
            if isinstance(size, dict):
                size = size.get("shortest_edge", size.get("height"))
            if isinstance(crop, dict):
                crop = crop.get("height")
            self.image_size, self.crop = int(size or self.image_size), int(crop or size or self.crop)
        self.hf_tokenizer = None
        self.clip_tokenizer = None
        ctx = int(self.model.config.text_config.max_position_embeddings)
        if any((path / n).is_file() for n in ("tokenizer.json", "tokenizer_config.json", "vocab.json")):
            self.hf_tokenizer = transformers.AutoTokenizer.from_pretrained(str(path), local_files_only=True)
        else:
            from ..text.bpe import ClipTokenizer
            if self.model.config.text_config.vocab_size < 49408:
                raise ClipScoreError(f"{path} has no tokenizer files and a non-CLIP vocabulary size")
            self.clip_tokenizer = ClipTokenizer("openai", ctx)
        self.context = ctx
        self.identity = f"hf:{fingerprint(path)}"
        self.to(device)

    def to(self, device: str | torch.device) -> "HFClipScorer":
        self.device = torch.device(device)
        self.model.to(self.device)
        return self

    def preprocess(self, img: Image.Image) -> torch.Tensor:
        return clip_preprocess(img, self.image_size, self.mean, self.std, self.crop)

    def _images(self, pixels: torch.Tensor) -> torch.Tensor:
        out = self.model.vision_model(pixel_values=pixels)
        return self.model.visual_projection(out.pooler_output)

    def _texts(self, texts: list[str]) -> torch.Tensor:
        if self.hf_tokenizer is not None:
            enc = self.hf_tokenizer(texts, padding=True, truncation=True, max_length=self.context, return_tensors="pt")
            out = self.model.text_model(input_ids=enc["input_ids"].to(self.device),
                                        attention_mask=enc["attention_mask"].to(self.device))
        else:
            ids = self.clip_tokenizer.tokenize(texts).ids.to(self.device)
            out = self.model.text_model(input_ids=ids)
        return self.model.text_projection(out.pooler_output)


def _clip_scorers() -> dict[str, Any]:
    """The CLIP kinds a score accepts: the text encoders' spec grammar, kinds with an image tower."""
    from ..text.encoders import Option, SpecKind, int_option, str_option
    return {
        "clip": SpecKind(lambda p, device, **kw: (HFClipScorer(p, device) if p.is_dir()
                                                   else OpenAIClipScorer(p, device=device, **kw)),
                         {"act": Option("activation", str_option),
                          "heads": Option("heads", int_option), "vheads": Option("vheads", int_option)},
                         "clip:PATH[?act=quickgelu|gelu&heads=N&vheads=N]"),
        "hf": SpecKind(lambda p, device: HFClipScorer(p, device), {}, "hf:DIR"),
    }


def load_clip_scorer(spec: str, device: str | torch.device = "cpu") -> ClipScorer:
    """A scorer from 'clip:PATH[?opts]', 'hf:DIR' or a bare path (see the module docstring)."""
    from ..text.encoders import TEXT_ENCODERS, parse_spec, spec_kwargs
    kinds = _clip_scorers()
    head = spec.strip().partition("?")[0]
    kind = head.partition(":")[0].strip().lower()
    if kind in TEXT_ENCODERS and kind not in kinds:
        raise ClipScoreError(f"{kind} is a text-only encoder: a CLIP score needs a CLIP with an image tower "
                             "(clip:PATH or hf:DIR)")
    if kind not in kinds or ":" not in head:  # a bare path: a folder is hf:, a file clip:
        spec = ("hf:" if Path(head).expanduser().is_dir() else "clip:") + spec.strip()
    kind, path, opts = parse_spec(spec, kinds, ClipScoreError, "CLIP")
    p = Path(path).expanduser()
    if not p.exists():
        raise ClipScoreError(f"CLIP weights not found: {p}")
    try:
        kw = spec_kwargs(kinds[kind], opts)
    except ValueError as e:
        raise ClipScoreError(str(e)) from None
    return kinds[kind].build(p, device=device, **kw)


# ---------------------------------------------------------------------------- scoring a set


@dataclass
class ClipScoreResult(Record):
    source: str
    clip: str
    num_pairs: int
    clip_score: float  # 100 * mean(max(cos, 0))
    clip_score_std: float
    cosine: float  # mean raw cosine
    notes: list[str] = field(default_factory=list)

    def table(self) -> str:
        rows = [("pairs", f"{self.source} ({self.num_pairs})"), ("CLIP", self.clip),
                ("CLIP score", f"{self.clip_score:.3f} ± {self.clip_score_std:.3f}"),
                ("mean cosine", f"{self.cosine:.4f}")]
        width = max(len(r[0]) for r in rows)
        return "\n".join([f"{a:<{width}}  {b}" for a, b in rows] + [f"note: {n}" for n in self.notes])


def read_pairs(manifest: str | os.PathLike[str], limit: int | None = None) -> list[tuple[Path, str]]:
    """(image, caption) pairs of a caption manifest (e.g. the samples.jsonl that sample-fid writes)."""
    from ..data.captions import read_caption_manifest
    man = read_caption_manifest(manifest)
    if not man.records:
        raise ValueError(f"{manifest}: no usable (image, caption) lines ({man.summary()})")
    return man.records if limit is None else man.records[:limit]


def score_pairs(scorer: ClipScorer, pairs: Sequence[tuple[Path | Image.Image, str]], batch_size: int = 32,
                progress: bool = True, source: str = "<pairs>", center_crop: int | None = None) -> ClipScoreResult:
    """CLIP score of (image file or PIL image, caption) pairs. `center_crop` first applies the
    reference-batch crop (as the FID reference set gets it), so real images are scored as seen."""
    from ..data.images import load_image
    from .fid import center_crop_arr
    if not pairs:
        raise ValueError("no (image, caption) pairs to score")
    if batch_size < 1:
        raise ValueError(f"batch size must be >= 1, got {batch_size}")
    cos = []
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=len(pairs), desc="CLIP score", unit="img", leave=False)
    before = getattr(scorer, "truncated", 0)
    try:
        for i in range(0, len(pairs), batch_size):
            chunk = pairs[i: i + batch_size]
            imgs = [p if isinstance(p, Image.Image) else load_image(p) for p, _ in chunk]
            if center_crop:
                imgs = [Image.fromarray(center_crop_arr(im, center_crop)) for im in imgs]
            cos.append(scorer.cosine(imgs, [c for _, c in chunk]))
            if bar is not None:
                bar.update(len(chunk))
    finally:
        if bar is not None:
            bar.close()
    c = torch.cat(cos).double()
    s = 100 * c.clamp_min(0)
    notes = []
    cut = getattr(scorer, "truncated", 0) - before
    if cut:
        notes.append(f"{cut} captions were longer than CLIP's context and were truncated")
    return ClipScoreResult(source, scorer.identity, len(c), float(s.mean()), float(s.std(unbiased=False)),
                           float(c.mean()), notes)


__all__ = [
    "OPENAI_MEAN", "OPENAI_STD", "ClipScoreError", "ClipVisionConfig", "ClipVisionTower", "ClipScorer",
    "OpenAIClipScorer", "HFClipScorer", "ClipScoreResult", "clip_preprocess", "extract_visual",
    "infer_vision_config", "build_vision_tower", "load_clip_scorer", "read_pairs", "score_pairs",
]


# ---------------------------------------------------------------------------- caption-set benchmark


@dataclass
class CaptionBenchResult:
    manifest: str
    samples: str
    num_captions: int
    fid: Any  # varclip.eval.fid.FIDResult
    clip: ClipScoreResult
    clip_real: ClipScoreResult | None = None
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"manifest": self.manifest, "samples": self.samples, "num_captions": self.num_captions,
                "fid": self.fid.to_dict(), "clip": self.clip.to_dict(),
                "clip_real": None if self.clip_real is None else self.clip_real.to_dict(), "notes": self.notes}

    def table(self) -> str:
        f = self.fid

        def num(v: float | None, fmt: str) -> str:
            return "n/a" if v is None else format(v, fmt)
        rows = [("captions", f"{self.manifest} ({self.num_captions})"), ("samples", self.samples),
                ("FID", num(f.fid, ".4f")), ("IS (samples)", num(f.inception_score, ".3f")),
                (f"precision (k={f.k})", num(f.precision, ".4f")), (f"recall (k={f.k})", num(f.recall, ".4f")),
                ("CLIP score (samples)", f"{self.clip.clip_score:.3f}"),
                ("CLIP score (real images)", "n/a" if self.clip_real is None else f"{self.clip_real.clip_score:.3f}"),
                ("features", f.extractor), ("CLIP", self.clip.clip)]
        width = max(len(r[0]) for r in rows)
        notes = self.notes + f.notes + self.clip.notes
        return "\n".join([f"{a:<{width}}  {b}" for a, b in rows] + [f"note: {n}" for n in notes])


def caption_benchmark(pipe: Any, manifest: str | os.PathLike[str], out: str | os.PathLike[str],
                      scorer: ClipScorer, extractor: Any, settings: Any = None, limit: int | None = None,
                      batch_size: int = 25, eval_batch_size: int = 50, subset_seed: int = 0, pr: bool = True,
                      score_real: bool = True, progress: bool = True, model_id: str = "") -> CaptionBenchResult:
    """Generate one image per caption of a manifest, then FID (+IS, P/R) against the manifest's own
    images (centre-cropped to the model's resolution) and the CLIP score of samples vs captions."""
    from .fid import FileImages, Input, NpzImages, evaluate_fid
    from ..config import sampling_preset
    from .sample import caption_work_list, image_name, npz_name, sample_to_folder
    if not pipe.is_text:
        raise ValueError("the caption benchmark needs a text-to-image model")
    records = read_pairs(manifest)
    notes = []
    if limit is not None and limit < len(records):
        idx = sorted(np.random.default_rng(subset_seed).choice(len(records), limit, replace=False).tolist())
        records = [records[i] for i in idx]
        notes.append(f"a random subset of {limit} captions (seed {subset_seed})")
    settings = settings or sampling_preset("official_fid").replace(seed=0)
    items = caption_work_list([c for _, c in records], 1, settings.seed or 0)
    out = Path(out)
    rep = sample_to_folder(pipe, items, out, settings, batch_size, model_id=model_id, progress=progress)
    size = pipe.image_size
    n = len(items)
    sample_input = Input(str(out / npz_name(n, size)), NpzImages(out / npz_name(n, size))) if rep.complete and \
        (out / npz_name(n, size)).is_file() else Input(str(out), FileImages([out / image_name(i, n) for i in range(n)],
                                                                             str(out)))
    ref_input = Input(str(manifest), FileImages([p for p, _ in records], str(manifest), center_crop=size))
    fid = evaluate_fid(ref_input, sample_input, extractor, eval_batch_size, pr=pr, progress=progress)
    clip = score_pairs(scorer, [(out / image_name(i, n), c) for i, (_, c) in enumerate(records)],
                       progress=progress, source=str(out))
    clip_real = score_pairs(scorer, records, progress=progress, source=str(manifest), center_crop=size) \
        if score_real else None
    return CaptionBenchResult(str(manifest), str(out), n, fid, clip, clip_real, notes)


__all__ += ["CaptionBenchResult", "caption_benchmark"]
