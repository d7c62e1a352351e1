"""Captioners: a local BLIP-2 / BLIP checkpoint (HF transformers), and a no-model template.

Every captioner maps a batch of images (and their classes, when known) to one caption
per image: `captioner.caption(images, classes) -> list[str]`. The template captioner
never looks at pixels (`needs_images` is False), so the captioning loop does not even
decode the files for it.

Models load only from a local directory (`local_files_only=True`): nothing is
downloaded. The directory is what `save_pretrained` writes for the model AND its
processor (config.json, weights, tokenizer files, preprocessor/processor config).
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from PIL import Image

from .names import ClassName, indefinite_article

log = logging.getLogger("varclip.caption")

DEFAULT_TEMPLATE = "a photo of {a_name}"
DEFAULT_MAX_NEW_TOKENS = 30
_DTYPES = {"fp32": "float32", "float32": "float32", "fp16": "float16", "float16": "float16",
           "half": "float16", "bf16": "bfloat16", "bfloat16": "bfloat16"}


def clean_caption(text: str) -> str:
    """One line, single spaces: captions go into line-based formats."""
    return " ".join(text.split())


class Captioner:
    """Interface: one caption per image. `classes[i]` is image i's class, or None."""

    needs_images: bool = True
    name: str = "captioner"

    def caption(self, images: Sequence[Image.Image | None],
                classes: Sequence[ClassName | None] | None = None) -> list[str]:
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        """The settings, for logs and run records."""
        return {"captioner": self.name}


class TemplateCaptioner(Captioner):
    """'a photo of a {class name}' from the image's class folder; no model, no pixels.

    Placeholders: {name} (readable class name), {a_name} (with 'a'/'an': "an otter"),
    {article} ('a'/'an') and {folder} (the folder name as on disk).
    """

    needs_images = False
    name = "template"

    def __init__(self, template: str = DEFAULT_TEMPLATE) -> None:
        try:
            template.format(name="x", a_name="a x", article="a", folder="x")
        except (KeyError, IndexError, ValueError) as err:
            raise ValueError(f"bad caption template {template!r}: placeholders are {{name}}, "
                             f"{{a_name}}, {{article}}, {{folder}} ({err})") from None
        self.template = template

    def format(self, cls: ClassName) -> str:
        article = indefinite_article(cls.name)
        return clean_caption(self.template.format(name=cls.name, a_name=f"{article} {cls.name}",
                                                  article=article, folder=cls.folder))

    def caption(self, images: Sequence[Image.Image | None],
                classes: Sequence[ClassName | None] | None = None) -> list[str]:
        if classes is None or len(classes) != len(images):
            raise ValueError("the template captioner needs the class of every image")
        out = []
        for cls in classes:
            if cls is None:
                raise ValueError("the template captioner needs images in class folders "
                                 "(IMAGES_DIR/<class>/<image>)")
            out.append(self.format(cls))
        return out

    def describe(self) -> dict[str, Any]:
        return {"captioner": self.name, "template": self.template}


def resolve_device(device: str = "auto") -> str:
    """`devices.resolve_device`: cuda:LOCAL_RANK under torchrun (one GPU per process)."""
    import torch

    from ..devices import resolve_device as resolve
    return resolve(device, int(os.environ.get("LOCAL_RANK", "0")) % max(1, torch.cuda.device_count()))


def resolve_dtype(dtype: str, device: str):
    """'auto' -> bf16 on GPUs that have it, else fp16 on GPU, fp32 on CPU."""
    import torch

    if dtype == "auto":
        if device.startswith("cuda"):
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float32
    if dtype not in _DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; use auto, fp32, fp16 or bf16")
    return getattr(torch, _DTYPES[dtype])


def _dtype_kwarg() -> str:
    """transformers renamed `torch_dtype` to `dtype` in 4.56."""
    import transformers
    from packaging.version import Version

    return "dtype" if Version(transformers.__version__.split("+")[0]) >= Version("4.56") \
        else "torch_dtype"


class HFCaptioner(Captioner):
    """A local BLIP-2 (`Blip2ForConditionalGeneration`, OPT or T5) or BLIP
    (`BlipForConditionalGeneration`) captioning checkpoint with its processor.

    `prompt` conditions the caption ('' = plain captioning; BLIP-2 OPT also takes e.g.
    'Question: what is in the picture? Answer:'). It is removed from the output; with
    `keep_prompt` every caption starts with it, whether or not the model echoes it.
    Decoding is greedy (`num_beams=1`) or beam search; `generate_kwargs` go to `generate`
    as they are (e.g. {"length_penalty": 1.0}).
    """

    name = "hf"

    def __init__(self, model_dir: str | os.PathLike[str], prompt: str = "", num_beams: int = 1,
                 max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS, min_new_tokens: int = 0,
                 repetition_penalty: float = 1.0, device: str = "auto", dtype: str = "auto",
                 keep_prompt: bool = False, kind: str = "auto",
                 generate_kwargs: dict[str, Any] | None = None) -> None:
        import torch

        self.model_dir = Path(model_dir)
        if not self.model_dir.is_dir():
            raise FileNotFoundError(f"captioning model directory not found: {self.model_dir}")
        if num_beams < 1 or max_new_tokens < 1 or min_new_tokens < 0:
            raise ValueError("need num_beams >= 1, max_new_tokens >= 1, min_new_tokens >= 0")
        try:
            import transformers
        except ImportError as err:  # pragma: no cover - depends on the install
            raise ImportError("captioning with a model needs transformers: "
                              "pip install 'varclip[text]'") from err
        self.prompt = prompt
        self.keep_prompt = keep_prompt
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(dtype, self.device)
        config = transformers.AutoConfig.from_pretrained(self.model_dir, local_files_only=True)
        model_type = getattr(config, "model_type", "")
        if kind == "auto":
            kind = {"blip-2": "blip2", "blip": "blip"}.get(model_type, "")
            if not kind:
                raise ValueError(f"{self.model_dir}: model type {model_type!r} is neither BLIP-2 "
                                 f"nor BLIP")
        if kind not in ("blip2", "blip"):
            raise ValueError(f"unknown captioner kind {kind!r}: blip2 or blip")
        self.kind = self.name = kind
        cls = (transformers.Blip2ForConditionalGeneration if kind == "blip2"
               else transformers.BlipForConditionalGeneration)
        self.processor = transformers.AutoProcessor.from_pretrained(self.model_dir,
                                                                    local_files_only=True)
        self.model = cls.from_pretrained(self.model_dir, local_files_only=True,
                                         **{_dtype_kwarg(): self.dtype})
        self.model.to(self.device).eval()
        if kind == "blip2":
            self._fix_legacy_blip2()
        self.generate_kwargs: dict[str, Any] = {
            "num_beams": num_beams, "max_new_tokens": max_new_tokens, "do_sample": False,
        }
        if min_new_tokens:
            self.generate_kwargs["min_new_tokens"] = min_new_tokens
        if repetition_penalty != 1.0:
            self.generate_kwargs["repetition_penalty"] = repetition_penalty
        self.generate_kwargs.update(generate_kwargs or {})
        self._torch = torch

    def _fix_legacy_blip2(self) -> None:
        """Checkpoints saved before image tokens existed: give the processor the query count
        and the model the id of the '<image>' token (the processor adds it if missing)."""
        config = self.model.config
        if getattr(self.processor, "num_query_tokens", None) is None:
            self.processor.num_query_tokens = config.num_query_tokens
        if getattr(config, "image_token_index", None) is None:
            tok = self.processor.tokenizer
            image_token = getattr(self.processor, "image_token", "<image>")
            token_id = tok.convert_tokens_to_ids(str(image_token))
            if token_id >= self.model.get_input_embeddings().num_embeddings:
                self.model.resize_token_embeddings(len(tok))
            config.image_token_index = token_id
            log.info("%s: legacy BLIP-2 checkpoint, using image token id %d", self.model_dir,
                     token_id)

    def describe(self) -> dict[str, Any]:
        return {"captioner": self.kind, "model": str(self.model_dir), "prompt": self.prompt,
                "device": self.device, "dtype": str(self.dtype).replace("torch.", ""),
                **{k: v for k, v in self.generate_kwargs.items() if k != "do_sample"}}

    def _strip_prompt(self, text: str) -> str:
        prompt = clean_caption(self.prompt)
        if prompt and not self.keep_prompt and text.lower().startswith(prompt.lower()):
            text = text[len(prompt):].lstrip(" ,:;-")
        return text

    def caption(self, images: Sequence[Image.Image | None],
                classes: Sequence[ClassName | None] | None = None) -> list[str]:
        if not images:
            return []
        if any(im is None for im in images):
            raise ValueError("the model captioner needs every image")
        torch = self._torch
        batch = [im.convert("RGB") if im.mode != "RGB" else im for im in images]
        if self.kind == "blip2" or self.prompt:
            inputs = self.processor(images=batch, text=[self.prompt] * len(batch),
                                    return_tensors="pt")
        else:
            inputs = self.processor(images=batch, return_tensors="pt")
        inputs = {k: v.to(self.device) for k, v in inputs.items() if hasattr(v, "to")}
        inputs["pixel_values"] = inputs["pixel_values"].to(self.dtype)
        with torch.inference_mode():
            out = self.model.generate(**inputs, **self.generate_kwargs)
        prompt_ids = inputs.get("input_ids")
        echoed = (prompt_ids is not None and out.shape[1] >= prompt_ids.shape[1]
                  and torch.equal(out[:, :prompt_ids.shape[1]], prompt_ids))
        if echoed and not self.keep_prompt:
            # decoder-only models return the prompt (image tokens + text) before the caption
            out = out[:, prompt_ids.shape[1]:]
        texts = [clean_caption(t) for t in self.processor.batch_decode(out, skip_special_tokens=True)]
        prompt = clean_caption(self.prompt)
        if not prompt:
            return texts
        if self.keep_prompt:  # the same result whether or not the model echoes the prompt
            return [t if t.lower().startswith(prompt.lower()) else clean_caption(f"{prompt} {t}")
                    for t in texts]
        if not echoed:  # BLIP returns the prompt re-tokenised: remove it as text
            texts = [clean_caption(self._strip_prompt(t)) for t in texts]
        return texts


def make_captioner(spec: str, *, template: str = DEFAULT_TEMPLATE, **model_options: Any) -> Captioner:
    """'template' | 'blip2:DIR' | 'blip:DIR' | 'hf:DIR' (kind from the config) | a bare DIR."""
    spec = spec.strip()
    if spec == "template":
        return TemplateCaptioner(template)
    match = re.match(r"^(blip2|blip-2|blip|hf):(.+)$", spec)
    kind, path = (match.group(1), match.group(2)) if match else ("hf", spec)
    if not match and not Path(spec).is_dir():
        raise ValueError(f"unknown captioner {spec!r}: use template, blip2:DIR, blip:DIR or hf:DIR")
    kind = {"blip-2": "blip2", "hf": "auto"}.get(kind, kind)
    return HFCaptioner(path, kind=kind, **model_options)
