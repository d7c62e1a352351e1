"""VARPipeline: tokenizer + transformer (+ text encoder) behind one object, diffusers-style.

    pipe = VARPipeline.from_pretrained("path/to/model")            # native directory
    pipe = VARPipeline.from_pretrained("var_d16.pth", vae="vae_ch160v4096z32.pth")  # official files
    out = pipe(class_labels=[207, 88], cfg=4, seed=0)               # or pipe("a red apple")
    out.images[0].save("x.png")
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from .checkpoints import (CheckpointError, CheckpointOptionError, check_compatible, load_model_dir, load_tokenizer,
                          read_sidecar, save_model_dir, sidecar_extras, sidecar_path, transformer_from_official)
from .config import INTERACTIVE_SAMPLING, ConfigError, SamplingConfig, recommended_sampling
from .grid import to_pil
from .model import Cond, VARTransformer
from .sampling import EditSpec, ScaleStep, sample_scales
from .tokenizer import VQTokenizer

DTYPES = {"fp32": None, "float32": None, "bf16": torch.bfloat16, "bfloat16": torch.bfloat16,
          "fp16": torch.float16, "float16": torch.float16}


@dataclass
class PipelineOutput:
    images: list[Image.Image]
    tokens: list[torch.Tensor] | None = None  # the token pyramid, (B, p_s^2) per scale
    conditions: torch.Tensor | None = None  # class ids used (random ones resolved) or text embeddings
    source: Image.Image | None = None  # edits: the input as the model saw it
    mask: Image.Image | None = None  # edits: white = regenerated


def parse_dtype(name: str | torch.dtype | None) -> torch.dtype | None:
    """Autocast dtype from a name; None/fp32 means exact float32 (parity mode)."""
    if name is None or isinstance(name, torch.dtype):
        return None if name in (None, torch.float32) else name
    if name not in DTYPES:
        raise ConfigError(f"unknown dtype {name!r}; use one of fp32, bf16, fp16")
    return DTYPES[name]


class VARPipeline:
    def __init__(self, tokenizer: VQTokenizer, transformer: VARTransformer, text_encoder: Any = None,
                 text_encoder_spec: str | None = None, sampling: dict[str, Any] | None = None):
        check_compatible(tokenizer, transformer)
        tokenizer.set_schedule(transformer.patch_nums)
        self.tokenizer, self.transformer = tokenizer.eval(), transformer.eval()
        self.text_encoder_spec = text_encoder_spec
        # the model's recommended settings (config.json "sampling"); saved with the model
        self.sampling = recommended_sampling(sampling)
        self._text_encoder = text_encoder
        self.autocast_dtype: torch.dtype | None = None

    # ------------------------------------------------------------------ loading / saving
    @classmethod
    def from_pretrained(cls, path: str | Path, vae: str | Path | None = None, text_encoder: str | Any = None,
                        resolution: int | None = None, patch_nums: tuple[int, ...] | None = None, device: str | torch.device = "cpu",
                        dtype: str | torch.dtype | None = None) -> "VARPipeline":
        """A native model directory, or an official transformer .pth plus its VQVAE (`vae`), with
        their sidecars if any (see `checkpoints`). Local files only: a hub id is "not found"."""
        path = Path(path)
        if not path.exists():
            raise CheckpointError(f"model not found: {path} (a native model directory or an official .pth; "
                                  "varclip reads local files only)")
        if path.is_dir():
            tok, model, cfg = load_model_dir(path)
            if model is None:
                raise CheckpointError(f"{path}: the model directory has no transformer (a tokenizer-only directory?)")
            if vae is not None:
                tok = load_tokenizer(vae, model.patch_nums)
            if tok is None:
                raise CheckpointOptionError(f"{path}: the model directory has no tokenizer; pass {{option}}",
                                            "vae=PATH", "--vae PATH")
            spec = cfg.get("text_encoder")
            sampling = recommended_sampling(cfg.get("sampling"), f"{path / 'config.json'}: sampling")
            if spec and not str(spec).startswith(("clip:/", "hf:/")) and ":" in str(spec):
                kind, rel = str(spec).split(":", 1)  # paths in a model directory are relative to it
                if not Path(rel).is_absolute() and (path / rel).exists():
                    spec = f"{kind}:{path / rel}"
        else:
            if vae is None:
                raise CheckpointOptionError(f"{path}: an official transformer checkpoint needs its VQVAE; pass {{option}}",
                                            "vae=PATH", "--vae PATH")
            record = read_sidecar(path)  # what our exports carry beside the .pth
            model = transformer_from_official(path, resolution, patch_nums, record)
            tok = load_tokenizer(vae, model.patch_nums)
            extras = sidecar_extras(record)
            spec = extras.get("text_encoder")
            sampling = recommended_sampling(extras.get("sampling"), f"{sidecar_path(path)}: sampling")
        enc = None
        if text_encoder is not None and not isinstance(text_encoder, str):
            enc, spec = text_encoder, getattr(text_encoder, "identity", None)
        elif text_encoder is not None:
            spec = text_encoder
        pipe = cls(tok, model, enc, spec, sampling)
        return pipe.to(device, dtype)

    def save_pretrained(self, path: str | Path, dtype: torch.dtype | None = None) -> Path:
        extra = {"sampling": self.sampling} if self.sampling else None
        return save_model_dir(path, self.tokenizer, self.transformer, self.text_encoder_spec, extra, dtype=dtype)

    def sampling_settings(self, **given: Any) -> dict[str, Any]:
        """cfg, cfg_schedule, top_k, top_p, temperature: what the caller gave (not None), else
        the model's recommended value, else the interactive default (cfg 4, top-k 900, top-p 0.95)."""
        out = {**INTERACTIVE_SAMPLING, **self.sampling}
        out.update({k: v for k, v in given.items() if v is not None})
        return out

    def to(self, device: str | torch.device | None = None, dtype: str | torch.dtype | None = None) -> "VARPipeline":
        """Move the models; `dtype` sets the autocast dtype (bf16 on GPU), weights stay float32."""
        if device is not None:
            device = torch.device(device)
            if device.type == "cuda" and not torch.cuda.is_available():
                raise ConfigError("device cuda requested but CUDA is not available")
            self.tokenizer.to(device)
            self.transformer.to(device)
            if self._text_encoder is not None and hasattr(self._text_encoder, "to"):
                self._text_encoder.to(device)
        if dtype is not None:
            self.autocast_dtype = parse_dtype(dtype)
        return self

    @property
    def device(self) -> torch.device:
        return self.transformer.pos_1LC.device

    @property
    def is_text(self) -> bool:
        return self.transformer.cfg.is_text

    @property
    def text_encoder(self) -> Any:
        if self._text_encoder is None:
            if not self.text_encoder_spec:
                raise ConfigError("this text model has no text encoder set; pass text_encoder=SPEC "
                                  "(e.g. clip:PATH/ViT-L-14.pt or minilm)")
            from .text import load_text_encoder
            self._text_encoder = load_text_encoder(self.text_encoder_spec, device=str(self.device))
        return self._text_encoder

    # ------------------------------------------------------------------ conditions
    def encode_prompts(self, prompts: Sequence[str], allow_empty: bool = False) -> Cond:
        emb = self.text_encoder.encode(list(prompts), allow_empty=allow_empty) if allow_empty \
            else self.text_encoder.encode(list(prompts))
        want = self.transformer.cfg.text_dim
        if emb.pooled.shape[-1] != want:
            raise ConfigError(f"the text encoder gives {emb.pooled.shape[-1]}-d embeddings but the model expects {want}")
        tokens = emb.tokens if self.transformer.cfg.cross_attn else None
        mask = emb.mask if tokens is not None else None
        return Cond(emb.pooled.float(), tokens, mask).to(self.device)

    def _conditions(self, prompt, class_labels, negative_prompt, num_images: int | None
                    ) -> tuple[Cond | None, Cond | None, int]:
        if prompt is not None and class_labels is not None:
            raise ConfigError("give either a prompt or class labels, not both")
        n = num_images or 1
        if self.is_text:
            if class_labels is not None:
                raise ConfigError("this is a text-to-image model: give a prompt, not class labels")
            if prompt is None:
                raise ConfigError("this is a text-to-image model: give a prompt (\"\" only with unconditional=True)")
            prompts = [prompt] if isinstance(prompt, str) else list(prompt)
            cond = self.encode_prompts(prompts).repeat(n)
            neg = None
            if negative_prompt is not None:
                negs = [negative_prompt] * len(prompts) if isinstance(negative_prompt, str) else list(negative_prompt)
                if len(negs) != len(prompts):
                    raise ConfigError(f"{len(negs)} negative prompts for {len(prompts)} prompts")
                neg = self.encode_prompts(negs).repeat(n)
            return cond, neg, len(cond)
        if prompt is not None:
            raise ConfigError("this is a class-conditional model: give class_labels, not a prompt")
        if negative_prompt is not None:
            raise ConfigError("negative prompts need a text-to-image model")
        if class_labels is None:
            return None, None, n
        labels = [class_labels] if isinstance(class_labels, int) else list(class_labels)
        num_classes = self.transformer.cfg.num_classes
        for c in labels:
            if not isinstance(c, int) or isinstance(c, bool) or not (-1 <= c < num_classes):
                raise ConfigError(f"invalid class id {c!r}: this model has classes 0..{num_classes - 1} (-1 = null)")
        ids = torch.tensor([num_classes if c < 0 else c for c in labels], dtype=torch.long)
        return Cond(ids).repeat(n).to(self.device), None, len(labels) * n

    def unconditional(self, num_images: int) -> Cond:
        return self.transformer.cond.null(num_images, self.device)

    # ------------------------------------------------------------------ generation
    def __call__(self, prompt: str | Sequence[str] | None = None, class_labels: int | Sequence[int] | None = None,
                 negative_prompt: str | Sequence[str] | None = None, num_images: int | None = None,
                 cfg: float | None = None, cfg_schedule: Any = None, top_k: int | None = None,
                 top_p: float | None = None, temperature: float | None = None, smooth: bool = False,
                 seed: int | None = None,
                 per_sample_seeds: bool = False, generator: torch.Generator | None = None,
                 unconditional: bool = False,
                 callback_on_scale: Callable[[int, int, list[Image.Image]], None] | None = None,
                 return_tokens: bool = False, edit: EditSpec | None = None) -> PipelineOutput:
        """Generate images. Class models: `class_labels` (None = random classes, -1 = null);
        text models: `prompt`; `unconditional=True` samples from the null condition.
        `num_images` is per prompt/label (the total when no condition is given). Sampling
        settings left None come from `sampling_settings` (the model's recommendation first)."""
        chosen = self.sampling_settings(cfg=cfg, cfg_schedule=cfg_schedule, top_k=top_k, top_p=top_p,
                                        temperature=temperature)
        settings = SamplingConfig(**chosen, smooth=smooth, seed=seed, per_sample_seeds=per_sample_seeds)
        if unconditional:
            n = num_images or 1
            cond, neg = self.unconditional(n), None
        else:
            cond, neg, n = self._conditions(prompt, class_labels, negative_prompt, num_images)
        if edit is not None and edit.ids[0].shape[0] == 1 and n > 1:
            edit = EditSpec([t.expand(n, -1) for t in edit.ids], edit.keep)
        if edit is not None and edit.ids[0].shape[0] != n:
            raise ConfigError(f"the edit has {edit.ids[0].shape[0]} images but {n} are requested")
        ids, step = [], None
        for step in sample_scales(self.transformer, self.tokenizer, cond, n, settings, neg, edit,
                                  self.autocast_dtype, generator):
            ids.append(step.ids)
            if callback_on_scale is not None:
                callback_on_scale(step.scale, len(self.transformer.patch_nums), self._decode(step))
        images = self._decode(step)
        return PipelineOutput(images, ids if return_tokens else None, step.cond.value.cpu())

    @property
    def image_size(self) -> int:
        return self.transformer.patch_nums[-1] * self.tokenizer.cfg.downsample

    def edit(self, image: Image.Image | str | Path, mask: Image.Image | torch.Tensor | str | Path | None = None,
             box: Sequence[float] | None = None, mode: str = "inpaint", extend: float | None = None,
             prompt: str | Sequence[str] | None = None, class_labels: int | Sequence[int] | None = None,
             **kwargs: Any) -> PipelineOutput:
        """Zero-shot editing: regenerate where the mask says, keep the image's tokens elsewhere.

        mask: a picture (white = regenerate) of any size; or box=[y0,x0,y1,x1] relative with
        mode inpaint|outpaint; or extend=f to out-paint a border around the image. Without a
        prompt or class the null condition is used (plain in/out-painting).
        """
        from .data.images import load_image
        from .editing import (box_mask, extend_canvas, fit_image, keep_mask_from_pixels, mask_preview,
                              picture_mask, read_mask_picture)
        size, side = self.image_size, self.transformer.patch_nums[-1]
        if isinstance(image, (str, Path)):
            image = load_image(image)
        if sum(x is not None for x in (mask, box, extend)) != 1:
            raise ConfigError("give exactly one of a mask picture, a box, or extend")
        if extend is not None:
            canvas, inside = extend_canvas(image, size, float(extend))
            keep = keep_mask_from_pixels(inside, side)
        else:
            canvas = fit_image(image, size)
            if box is not None:
                keep = box_mask(box, side, mode)
            else:
                if isinstance(mask, (str, Path)):
                    pic = read_mask_picture(mask)
                elif isinstance(mask, Image.Image):
                    pic = torch.from_numpy(np.asarray(mask.convert("L"), dtype=np.float32) / 255.0)
                else:
                    pic = torch.as_tensor(mask, dtype=torch.float32)
                keep = picture_mask(pic, side)
        ids = self.tokenizer.encode(canvas[None].to(self.device))
        unconditional = prompt is None and class_labels is None
        out = self(prompt=prompt, class_labels=class_labels, unconditional=unconditional,
                   edit=EditSpec(ids, keep), **kwargs)
        out.source = to_pil(canvas[None].add(1).mul(0.5))[0]
        out.mask = mask_preview(keep, size)
        return out

    @torch.inference_mode()
    def _decode(self, step: ScaleStep) -> list[Image.Image]:
        with torch.autocast(self.device.type, dtype=self.autocast_dtype, enabled=self.autocast_dtype is not None):
            img = self.tokenizer.fhat_to_img(step.f_hat)
        return to_pil(img.float().add(1).mul(0.5))
