"""VARPipeline: tokenizer + transformer (+ text encoder) behind one object, diffusers-style.

    pipe = VARPipeline.from_pretrained()                           # the embedded model
    pipe = VARPipeline.from_pretrained("path/to/model")            # native directory
    pipe = VARPipeline.from_pretrained("var_d16.pth", vae="vae_ch160v4096z32.pth")  # official files
    out = pipe(class_labels=[207, 88], cfg=4, seed=0)               # or pipe("a red apple")
    out.images[0].save("x.png")
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from .checkpoints import (CheckpointError, CheckpointOptionError, check_compatible, load_model_dir, load_tokenizer,
                          read_sidecar, save_model_dir, sidecar_extras, sidecar_path, transformer_from_official)
from .config import ConfigError, SamplingConfig, recommended_sampling, sampling_preset
from .data.images import to_pil, to_unit
from .devices import parse_dtype
from .model import Cond, VARTransformer
from .fast import FastConfig, FastRunner, fast_config
from .sampling import EditSpec, sample_scales
from .tokenizer import VQTokenizer


@dataclass
class PipelineOutput:
    images: list[Image.Image]
    tokens: list[torch.Tensor] | None = None  # the token pyramid, (B, p_s^2) per scale
    conditions: torch.Tensor | None = None  # class ids used (random ones resolved) or text embeddings
    source: Image.Image | None = None  # edits: the input as the model saw it
    mask: Image.Image | None = None  # edits: white = regenerated


def check_class_ids(labels: Sequence[Any], num_classes: int) -> list[int]:
    """The one class-id check: whole numbers in 0..num_classes-1, or -1 for the null class."""
    for c in labels:
        if not isinstance(c, int) or isinstance(c, bool) or not (-1 <= c < num_classes):
            raise ConfigError(f"invalid class id {c!r}: this model has classes 0..{num_classes - 1} (-1 = null)")
    return list(labels)


class LazyImages(Sequence):
    """The partial images after one scale, decoded only when read: a progress callback that does
    not look at them costs nothing."""

    def __init__(self, decode: Callable[[], list[Image.Image]], count: int):
        self._decode, self._count, self._images = decode, count, None

    def __len__(self) -> int:
        return self._count

    def __getitem__(self, i):  # type: ignore[override]
        if self._images is None:
            self._images = self._decode()
        return self._images[i]


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
        self._progress_bar_config: dict[str, Any] = {}
        self._fast_config: FastConfig | None = None  # enable_fast(): the default of every call
        self._fast_runner: FastRunner | None = None
        self._fast_in_place = False  # enable_fast(keep_exact=False)

    # ------------------------------------------------------------------ loading / saving
    @classmethod
    def from_pretrained(cls, path: str | Path | None = None, vae: str | Path | None = None, text_encoder: str | Any = None,
                        resolution: int | None = None, patch_nums: tuple[int, ...] | None = None, device: str | torch.device = "cpu",
                        dtype: str | torch.dtype | None = None) -> "VARPipeline":
        """A native model directory, or an official transformer .pth plus its VQVAE (`vae`), with
        their sidecars if any (see `checkpoints`); no path: the embedded model that ships with the
        package. Local files only: a hub id is "not found"."""
        if path is None:
            from .embedded import embedded_model_dir
            path = embedded_model_dir()
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

    def sampling_config(self, sampling: SamplingConfig | Mapping[str, Any] | None = None,
                        **overrides: Any) -> SamplingConfig:
        """The settings a call uses. A SamplingConfig is taken whole; otherwise the `interactive`
        preset, then the model's recommendation (config.json "sampling"), then `sampling` as a
        mapping of overrides. Keyword `overrides` come last; None means "not given"."""
        if isinstance(sampling, SamplingConfig):
            base = sampling
        elif sampling is None or isinstance(sampling, Mapping):
            base = sampling_preset("interactive").replace(**self.sampling).replace(**dict(sampling or {}))
        else:
            raise ConfigError(f"sampling= takes a SamplingConfig or a dict of settings, got {type(sampling).__name__}")
        return base.replace(**overrides)

    def to(self, device: str | torch.device | None = None, dtype: str | torch.dtype | None = None) -> "VARPipeline":
        """Move the models; `dtype` sets the autocast dtype (bf16 on GPU), weights stay float32."""
        if device is not None:
            from .devices import resolve_device
            device = torch.device(resolve_device(device))
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
    def dtype(self) -> torch.dtype:
        """The dtype the models compute in: the autocast dtype, else float32."""
        return self.autocast_dtype or torch.float32

    def enable_fast(self, config: bool | FastConfig | Mapping[str, Any] = True,
                    keep_exact: bool = True) -> "VARPipeline":
        """Sample with the `--fast` preset (or this FastConfig) from now on; `False` is exact mode
        again. The fast model (e.g. a bf16 copy of the weights) is built on first use.
        keep_exact=False casts the weights themselves instead of a copy (half the memory, no copy
        time: what the CLI does); exact mode is then gone for this pipeline."""
        self._fast_config = fast_config(dict(config) if isinstance(config, Mapping) else config)
        self._fast_in_place = not keep_exact
        return self

    def _fast(self, fast: bool | FastConfig | Mapping[str, Any] | None) -> FastRunner | None:
        """The runner of a call's `fast=` (None: the pipeline's `enable_fast` setting)."""
        cfg = self._fast_config if fast is None else fast_config(dict(fast) if isinstance(fast, Mapping) else fast)
        r = self._fast_runner
        if r is not None and r.changes_weights and r.source is self.transformer and (cfg is None or r.requested != cfg):
            raise ConfigError("this pipeline's weights were cast for fast mode (enable_fast(keep_exact=False)); "
                              "load the model again for exact mode or other fast settings")
        if cfg is None:
            return None
        if r is None or r.requested != cfg or r.source is not self.transformer or r.device != self.device:
            r = self._fast_runner = FastRunner(self.transformer, cfg, in_place=self._fast_in_place)
        return r

    def set_progress_bar_config(self, **kwargs: Any) -> None:
        """Options of the per-scale progress bar (tqdm keywords), e.g. `disable=True`."""
        self._progress_bar_config = dict(kwargs)

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

    def _conditions(self, prompt, class_labels, negative_prompt, n: int, unconditional: bool
                    ) -> tuple[Cond | None, Cond | None, int]:
        """The one place conditions are checked; messages speak to the person who typed them."""
        if n < 1:
            raise ConfigError(f"the number of images must be >= 1, got {n}")
        if unconditional:
            if prompt is not None or class_labels is not None or negative_prompt is not None:
                raise ConfigError("unconditional sampling uses the null condition: give no caption, class or "
                                  "negative prompt")
            return self.transformer.cond.null(n, self.device), None, n
        if prompt is not None and class_labels is not None:
            raise ConfigError("give either a caption or class ids, not both")
        if self.is_text:
            if class_labels is not None:
                raise ConfigError("this is a text-to-image model: give a caption, not class ids")
            prompts = [prompt] if isinstance(prompt, str) else list(prompt or [])
            if not prompts:
                raise ConfigError("this is a text-to-image model: give a caption")
            if any(not isinstance(p, str) or not p.strip() for p in prompts):
                raise ConfigError("empty caption: type a caption, or ask for unconditional samples")
            cond = self.encode_prompts(prompts).repeat(n)
            neg = None
            if negative_prompt is not None:
                negs = [negative_prompt] * len(prompts) if isinstance(negative_prompt, str) else list(negative_prompt)
                if len(negs) != len(prompts):
                    raise ConfigError(f"{len(negs)} negative prompts for {len(prompts)} captions")
                if any(not isinstance(p, str) or not p.strip() for p in negs):
                    raise ConfigError("empty negative prompt: leave it out to use the learned null condition")
                neg = self.encode_prompts(negs).repeat(n)
            return cond, neg, len(cond)
        if prompt is not None:
            raise ConfigError("this is a class-conditional model: give class ids, not a caption")
        if negative_prompt is not None:
            raise ConfigError("a negative prompt needs a text-to-image model")
        if class_labels is None:
            return None, None, n
        num_classes = self.transformer.cfg.num_classes
        labels = check_class_ids([class_labels] if isinstance(class_labels, int) else list(class_labels), num_classes)
        ids = torch.tensor([num_classes if c < 0 else c for c in labels], dtype=torch.long)
        return Cond(ids).repeat(n).to(self.device), None, len(labels) * n

    # ------------------------------------------------------------------ generation
    def __call__(self, prompt: str | Sequence[str] | None = None, class_labels: int | Sequence[int] | None = None,
                 negative_prompt: str | Sequence[str] | None = None, num_images_per_prompt: int | None = None,
                 sampling: SamplingConfig | Mapping[str, Any] | None = None,
                 cfg: float | None = None, cfg_schedule: Any = None, top_k: int | None = None,
                 top_p: float | None = None, temperature: float | None = None, smooth: bool | None = None,
                 seed: int | None = None, per_sample_seeds: bool | None = None,
                 generator: torch.Generator | None = None, unconditional: bool = False,
                 callback_on_scale: Callable[[int, int, Sequence[Image.Image]], None] | None = None,
                 return_tokens: bool = False, edit: EditSpec | None = None, num_images: int | None = None,
                 fast: bool | FastConfig | Mapping[str, Any] | None = None, **unknown: Any) -> PipelineOutput:
        """Generate images. Class models: `class_labels` (None = random classes, -1 = null);
        text models: `prompt`; `unconditional=True` samples from the null condition.

        num_images_per_prompt: images per caption / class id (the total when no condition is
        given); `num_images` is the same, under its older name.
        sampling: a SamplingConfig (used whole) or a dict of settings; cfg ... per_sample_seeds
        override single settings. Unset settings come from the model's recommendation, then the
        `interactive` preset (`sampling_config` says what a call will use).
        Randomness: `generator` (a torch.Generator, consumed in the official order) wins over
        `seed`; with neither the global RNG is used. `seed` seeds one generator for the batch
        (the official stream); with `per_sample_seeds` image i gets its own, seeded seed + i.
        callback_on_scale(scale, num_scales, images): after every scale; `images` are decoded
        only if the callback reads them. The progress bar: `set_progress_bar_config`.
        fast: True (the `--fast` preset), a FastConfig or dict of its fields, False (exact);
        None: what `enable_fast` set (exact by default).
        """
        if unknown:
            known = [p for p in inspect.signature(type(self).__call__).parameters if p not in ("self", "unknown")]
            raise TypeError(f"VARPipeline() got unknown argument(s) {', '.join(sorted(unknown))}; "
                            f"it takes: {', '.join(known)}")
        if num_images is not None and num_images_per_prompt is not None and num_images != num_images_per_prompt:
            raise ConfigError("num_images is the older name of num_images_per_prompt: give one of them")
        n = num_images_per_prompt if num_images_per_prompt is not None else (num_images or 1)
        settings = self.sampling_config(sampling, cfg=cfg, cfg_schedule=cfg_schedule, top_k=top_k, top_p=top_p,
                                        temperature=temperature, smooth=smooth, seed=seed,
                                        per_sample_seeds=per_sample_seeds)
        cond, neg, n = self._conditions(prompt, class_labels, negative_prompt, n, unconditional)
        if edit is not None and edit.ids[0].shape[0] == 1 and n > 1:
            edit = EditSpec([t.expand(n, -1) for t in edit.ids], edit.keep)
        if edit is not None and edit.ids[0].shape[0] != n:
            raise ConfigError(f"the edit has {edit.ids[0].shape[0]} images but {n} are requested")
        ids, step = [], None
        K = len(self.transformer.patch_nums)
        runner = self._fast(fast)
        dtype = self.autocast_dtype if runner is None else runner.autocast_dtype
        with self._progress_bar(K) as bar:
            for step in sample_scales(self.transformer, self.tokenizer, cond, n, settings, neg, edit,
                                      self.autocast_dtype, generator, fast=runner):
                ids.append(step.ids)
                bar.update(1)
                if callback_on_scale is not None:
                    f_hat = step.f_hat.clone()
                    callback_on_scale(step.scale, K, LazyImages(lambda f=f_hat: self._decode(f, dtype, runner), n))
        images = self._decode(step.f_hat, dtype, runner)
        return PipelineOutput(images, ids if return_tokens else None, step.cond.value.cpu())

    def _progress_bar(self, total: int):
        from tqdm import tqdm
        return tqdm(total=total, **{"desc": "scales", "leave": False, **self._progress_bar_config})

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
        prompt or class the null condition is used (plain in/out-painting). Other keywords are
        those of `__call__`.
        """
        from .data.images import load_image, mask_picture
        from .editing import box_mask, extend_canvas, fit_image, keep_mask_from_pixels, mask_preview, picture_mask
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
            keep = box_mask(box, side, mode) if box is not None else picture_mask(mask_picture(mask), side)
        ids = self.tokenizer.encode(canvas[None].to(self.device))
        unconditional = prompt is None and class_labels is None
        out = self(prompt=prompt, class_labels=class_labels, unconditional=unconditional,
                   edit=EditSpec(ids, keep), **kwargs)
        out.source = to_pil(to_unit(canvas[None]))[0]
        out.mask = mask_preview(keep, size)
        return out

    @torch.inference_mode()
    def _decode(self, f_hat: torch.Tensor, dtype: torch.dtype | None = None,
                fast: FastRunner | None = None) -> list[Image.Image]:
        """f_hat -> images, under autocast of `dtype` (None: the pipeline's autocast dtype), with
        the fast runner's decoder layout when given."""
        dtype = self.autocast_dtype if dtype is None else dtype
        with torch.autocast(self.device.type, dtype=dtype, enabled=dtype is not None):
            img = self.tokenizer.fhat_to_img(f_hat) if fast is None else fast.decode(self.tokenizer, f_hat)
        return to_pil(to_unit(img))
