"""`varclip serve`: a Gradio web app over `VARPipeline`.

    varclip serve [--model PATH] [--host 127.0.0.1] [--port 7860] [--concurrency 1] [--max-queue 32]

Two tabs: *Generate* (caption or class id, negative prompt, cfg / top-k / top-p / seed / number,
a live preview that is redrawn after every scale, a gallery and downloads) and *Edit* (upload an
image, paint over what to regenerate; in-painting, out-painting, or extending the canvas).

The app holds no model logic: it reads what a person typed as numbers and text, calls the
pipeline (`pipe(...)`, `pipe.edit(...)`) and shows what comes back. Sampling settings are
checked by `SamplingConfig` and conditions by the pipeline; their messages are shown as they are
(`gr.Error` / `gr.Warning`), never a traceback. Requests go through Gradio's queue with a
concurrency limit shared by both tabs, and a bounded queue that turns excess requests away.

Python:
    from varclip.app import build_app, launch
    demo = build_app(pipe)                 # a queued gr.Blocks
    launch(demo, "127.0.0.1", 7860)        # blocks; block=False returns the URL at once
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import queue
import random
import shutil
import sys
import tempfile
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from PIL import Image

from .config import ConfigError, SamplingConfig, sampling_preset
from .data.images import center_crop, load_image, to_rgb
from .entry import DEMO_NOTE
from .errors import first_line as _first_line

log = logging.getLogger(__name__)

MAX_PROMPT_CHARS = 1000
FAST_INFO = "the fast preset: faster on big models, for a small measured quality cost"
EDIT_MODES = [("Regenerate the painted area (in-paint)", "inpaint"),
              ("Keep the painted area, regenerate the rest (out-paint)", "outpaint"),
              ("Extend the canvas: out-paint a border around the image", "extend")]

CSS = """
#model-note { border: 2px solid #d97706; background: #fffbeb; color: #7c2d12; border-radius: 8px; padding: 4px 12px; }
.varclip-pixelated img { image-rendering: pixelated; }
#preview img, #edit-preview img, #edit-source img, #edit-mask img { width: 100%; height: 100%; object-fit: contain; }
#edit-mask img { background: #9ca3af; }
#status { min-height: 1.5em; }
"""


class InputError(ValueError):
    """Something a person typed or uploaded that the app cannot use; shown as-is."""


class _Cancelled(Exception):
    pass


def _gradio():
    try:
        import gradio as gr
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("`varclip serve` needs Gradio: pip install 'gradio>=6.0'") from e
    return gr


# ---------------------------------------------------------------------------- model loading


def load_pipeline(model: str | Path | None = None, vae: str | None = None, text_encoder: str | None = None,
                  device: str = "cpu", dtype: str | None = None):
    """The pipeline `varclip serve` shows (`entry.load_pipeline`: the model, else the embedded one,
    else the random demo), with its text encoder loaded now: a missing one fails at start-up."""
    from .entry import load_pipeline as load
    pipe = load(model, vae, text_encoder, device=device, dtype=dtype, demo_if_missing=True)
    if pipe.is_text:
        pipe.text_encoder  # noqa: B018
    return pipe


# ---------------------------------------------------------------------------- input checks


def _reject(message: str) -> Exception:
    """A rejected input (`app_inputs.reject`): one line in the server log, the message in the
    page, no traceback."""
    from .app_inputs import reject
    return reject(message)


def _range(lo: int | None, hi: int | None) -> str:
    return f"at most {hi}" if lo is None else f"at least {lo}" if hi is None else f"between {lo} and {hi}"


def _as_int(value: Any, name: str, lo: int | None = None, hi: int | None = None,
            allow_none: bool = False) -> int | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        if allow_none:
            return None
        raise InputError(f"{name} is required")
    if isinstance(value, bool):
        raise InputError(f"{name} must be a whole number, got {value!r}")
    try:
        f = float(value)
    except (TypeError, ValueError):
        raise InputError(f"{name} must be a whole number, got {value!r}") from None
    if not math.isfinite(f) or f != int(f):
        raise InputError(f"{name} must be a whole number, got {value!r}")
    v = int(f)
    if (lo is not None and v < lo) or (hi is not None and v > hi):
        raise InputError(f"{name} must be {_range(lo, hi)}, got {v}")
    return v


def _as_float(value: Any, name: str, lo: float | None = None, hi: float | None = None) -> float:
    try:
        f = float(value)
    except (TypeError, ValueError):
        raise InputError(f"{name} must be a number, got {value!r}") from None
    if lo is not None and hi is not None and not lo <= f <= hi:
        raise InputError(f"{name} must be between {lo:g} and {hi:g}, got {value!r}")
    return f


def _text(value: Any, name: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise InputError(f"{name} must be text, got {type(value).__name__}")
    value = value.strip()
    if len(value) > MAX_PROMPT_CHARS:
        raise InputError(f"{name} is too long ({len(value)} characters; at most {MAX_PROMPT_CHARS})")
    return value


def mask_from_editor(value: Any, mode: str = "inpaint") -> tuple[Image.Image, Image.Image | None]:
    """An ImageEditor value -> (image, mask) for `pipe.edit`, both centre-cropped to a square
    (what the pipeline keeps of a non-square image), mask white = regenerate.

    Strokes on any layer mark the painted area; `inpaint` regenerates it, `outpaint` keeps it
    and regenerates the rest, `extend` needs no strokes (mask None)."""
    if mode not in {m for _, m in EDIT_MODES}:
        raise InputError(f"unknown edit mode {mode!r}; use one of {', '.join(m for _, m in EDIT_MODES)}")
    if isinstance(value, Image.Image):
        value = {"background": value, "layers": [], "composite": value}
    if not isinstance(value, dict):
        raise InputError("upload an image to edit first")
    image = value.get("background") or value.get("composite")
    if image is None:
        raise InputError("upload an image to edit first")
    if isinstance(image, (str, Path)):
        image = load_image(image)
    if image.width < 2 or image.height < 2:
        raise InputError(f"the image is too small ({image.width}x{image.height})")
    size = image.size
    image = center_crop(to_rgb(image))  # transparency on white
    if mode == "extend":
        return image, None
    painted = Image.new("L", size, 0)
    for layer in value.get("layers") or []:
        if layer is None:
            continue
        if isinstance(layer, (str, Path)):
            layer = load_image(layer, keep_alpha=True)
        if layer.mode not in ("RGBA", "LA", "PA"):
            continue  # no alpha: nothing tells strokes from the empty canvas
        alpha = layer.convert("RGBA").getchannel("A")
        if alpha.size != size:
            alpha = alpha.resize(size, Image.NEAREST)
        painted = Image.fromarray(_max_u8(painted, alpha.point(lambda a: 255 if a > 8 else 0)))
    if painted.getbbox() is None:
        raise InputError("paint over the part of the image to regenerate with the brush "
                         "(or choose 'Extend the canvas')")
    mask = center_crop(painted)
    if mode == "outpaint":
        mask = mask.point(lambda a: 255 - a)
    return image, mask


def _max_u8(a: Image.Image, b: Image.Image):
    import numpy as np
    return np.maximum(np.asarray(a, dtype=np.uint8), np.asarray(b, dtype=np.uint8))


# ---------------------------------------------------------------------------- running the pipeline


class PreviewBudget:
    """Decode a partial image only when the time since the last preview is at least `spacing`
    times what that decode cost, so live previews take at most about 1/(1+spacing) of the wall
    time (a full decode per scale, as before, made the official 256 px VQVAE cost more than the
    sampling on a CPU). The first scale is always shown."""

    def __init__(self, spacing: float = 3.0):
        self.spacing, self.cost, self.last = spacing, 0.0, None

    def decode(self, images) -> list | None:
        now = time.perf_counter()
        if self.last is not None and now - self.last < self.spacing * self.cost:
            return None
        out = list(images)
        self.last = time.perf_counter()
        self.cost = self.last - now
        return out


def stream_call(call: Callable[..., Any], **kwargs: Any) -> Iterator[tuple]:
    """Run `call(**kwargs, callback_on_scale=...)` in a worker thread and yield
    ("scale", k, K, images) after each scale, then ("done", output) or ("error", exception).

    Closing the iterator early (the user pressed Stop or went away) makes the worker stop at its
    next scale. It is not waited for: Gradio closes iterators on its event loop."""
    events: queue.Queue = queue.Queue()
    stop = threading.Event()

    budget = PreviewBudget()

    def on_scale(scale: int, num_scales: int, images) -> None:
        if stop.is_set():
            raise _Cancelled()
        shown = budget.decode(images) if scale < num_scales - 1 else None  # the last one: the result
        events.put(("scale", scale, num_scales, shown))  # decoded here, in the worker

    def work() -> None:
        try:
            events.put(("done", call(**kwargs, callback_on_scale=on_scale)))
        except BaseException as e:  # noqa: BLE001 - handed to the request's thread
            events.put(("error", e))

    worker = threading.Thread(target=work, name="varclip-app-sampler", daemon=True)
    worker.start()
    try:
        while True:
            item = events.get()
            while item[0] == "scale" and not events.empty():  # show only the newest scale
                item = events.get()
            yield item
            if item[0] != "scale":
                return
    finally:
        stop.set()


class AppHandlers:
    """What the buttons do, as generator functions (Gradio streams every `yield`).

    Generate yields (preview, status, gallery, files, grid); edit yields (preview, status,
    source, mask, gallery, files, grid). Intermediate yields leave the last three untouched."""

    def __init__(self, pipe: Any, max_images: int = 8, workdir: str | Path | None = None):
        self.pipe = pipe
        self.max_images = max_images
        self.is_text = bool(pipe.is_text)
        self.num_classes = int(pipe.transformer.cfg.num_classes)
        self.vocab_size = int(pipe.transformer.cfg.vocab_size)
        self.num_scales = len(pipe.transformer.patch_nums)
        # the model's recommended settings (config.json "sampling"): the controls' starting values
        # and what a direct call without them uses
        self.rec: SamplingConfig = pipe.sampling_config() if hasattr(pipe, "sampling_config") \
            else sampling_preset("interactive")
        if hasattr(pipe, "set_progress_bar_config"):
            pipe.set_progress_bar_config(disable=True)  # the live preview shows the progress
        if workdir is None:  # PNGs for the download buttons; Gradio serves its own copies
            workdir = tempfile.mkdtemp(prefix="varclip-serve-")
            weakref.finalize(self, shutil.rmtree, workdir, True)
        self.workdir = Path(workdir)
        self._count = 0
        self._lock = threading.Lock()

    # ------------------------------------------------------------ shared
    def _sampling(self, num_images, cfg, top_k, top_p, seed) -> tuple[int, SamplingConfig, int]:
        """The request's settings: the controls over the model's recommendation; SamplingConfig
        checks the values (ConfigError, shown as it is)."""
        n = _as_int(num_images, "the number of images", 1, self.max_images)
        s = _as_int(seed, "the seed", None, 2**63 - 1, allow_none=True)
        if s is None or s < 0:
            s = random.randrange(2**31)
            _info(f"random seed {s}")
        settings = self.rec.replace(cfg=None if cfg is None else _as_float(cfg, "cfg"),
                                    top_k=_as_int(top_k, "top-k", allow_none=True),
                                    top_p=None if top_p is None else _as_float(top_p, "top-p"), seed=s)
        return n, settings, s

    def _new_dir(self) -> Path:
        with self._lock:
            self._count += 1
            n = self._count
        d = self.workdir / f"{n:06d}-{os.getpid()}"
        d.mkdir(parents=True, exist_ok=True)
        return d

    def _files(self, images: list[Image.Image], captions: list[str], stem: str, seed: int
               ) -> tuple[Path, list[str], str]:
        from .grid import make_grid, save_image_atomic
        d = self._new_dir()
        paths = [str(save_image_atomic(img, d / f"{stem}-seed{seed}-{i}.png")) for i, img in enumerate(images)]
        grid = make_grid(images, min(len(images), 4), captions if self.pipe.image_size >= 64 else None)
        return d, paths, str(save_image_atomic(grid, d / f"{stem}-seed{seed}-grid.png"))

    def _run(self, call, kwargs, n_extra: int) -> Iterator[Any]:
        """Stream one pipeline call: yields preview tuples, returns the output via StopIteration."""
        gr = _gradio()
        t0 = time.perf_counter()
        skip = (gr.skip(),) * n_extra
        try:
            for item in stream_call(call, **kwargs):
                if item[0] == "scale":
                    _, k, total, imgs = item
                    preview = gr.skip() if imgs is None else _preview_grid(imgs)
                    yield (preview, f"scale {k + 1}/{total} ({time.perf_counter() - t0:.1f} s)", *skip)
                elif item[0] == "error":
                    raise item[1]
                else:
                    return item[1], time.perf_counter() - t0
        except gr.Error:
            raise
        except (ValueError, FileNotFoundError) as e:  # ConfigError and bad pictures: the user's to fix
            raise _reject(_first_line(e)) from None
        except Exception as e:
            log.exception("varclip app: the pipeline failed")
            raise gr.Error(f"generation failed ({type(e).__name__}): {_first_line(e)}", print_exception=False) from None

    # ------------------------------------------------------------ generate
    def generate(self, prompt: str | None = None, negative_prompt: str | None = None, class_id: int | None = None,
                 num_images: int = 1, cfg: float | None = None, top_k: int | None = None,
                 top_p: float | None = None, seed: int = 0, fast: bool = False):
        gr = _gradio()
        try:
            if self.is_text:
                text = _text(prompt, "the caption")  # the pipeline refuses an empty one
                neg = _text(negative_prompt, "the negative prompt") or None
                call = dict(prompt=text, negative_prompt=neg)
            else:
                c = _as_int(class_id, "the class id", allow_none=True)  # empty = random
                call = dict(class_labels=[c] if c is not None else None)
            n, settings, s = self._sampling(num_images, cfg, top_k, top_p, seed)
            call.update(num_images_per_prompt=n, sampling=settings, fast=bool(fast))
            if call.get("negative_prompt") and settings.cfg == 0:
                _warn("the negative prompt has no effect with cfg = 0")
        except ValueError as e:  # InputError, and ConfigError from SamplingConfig
            raise _reject(_first_line(e)) from None
        yield (None, "starting ...", *(gr.skip(),) * 3)
        runner = self._run(self.pipe, call, 3)
        out, dt = yield from runner
        if self.is_text:
            captions = [f"{call['prompt']} #{i}" for i in range(len(out.images))]
        elif out.conditions is not None and len(out.conditions) == len(out.images):
            captions = [f"class {int(c)}" if int(c) < self.num_classes else "unconditional" for c in out.conditions]
        else:
            captions = [f"#{i}" for i in range(len(out.images))]
        d, paths, grid = self._files(out.images, captions, "varclip", s)
        try:
            status = f"done: {len(out.images)} image{'s' * (len(out.images) != 1)} in {dt:.1f} s (seed {s})"
            yield (_preview_grid(out.images), status,
                   list(zip(out.images, captions)), paths, grid)
        finally:  # Gradio has copied the files into its cache once the last yield is processed
            shutil.rmtree(d, ignore_errors=True)

    # ------------------------------------------------------------ edit
    def edit(self, image: Any = None, mode: str = "inpaint", extend: float = 1.5, prompt: str | None = None,
             class_id: int | None = None, num_images: int = 1, cfg: float | None = None, top_k: int | None = None,
             top_p: float | None = None, seed: int = 0, fast: bool = False):
        gr = _gradio()
        try:
            source, mask = mask_from_editor(image, mode)
            cond: dict[str, Any] = {}
            if self.is_text:
                text = _text(prompt, "the caption")
                if text:
                    cond["prompt"] = text
            else:
                c = _as_int(class_id, "the class id", allow_none=True)
                if c is not None and c != -1:  # empty or -1: unconditional in/out-painting
                    cond["class_labels"] = [c]
            where: dict[str, Any] = {"extend": _as_float(extend, "the extend factor", 1.01, 8.0)} \
                if mode == "extend" else {"mask": mask}
            n, settings, s = self._sampling(num_images, cfg, top_k, top_p, seed)
        except ValueError as e:  # InputError, and ConfigError from SamplingConfig
            raise _reject(_first_line(e)) from None
        yield (None, "starting ...", *(gr.skip(),) * 5)
        out, dt = yield from self._run(self.pipe.edit, {"image": source, **where, **cond, "num_images_per_prompt": n,
                                                        "sampling": settings, "fast": bool(fast)}, 5)
        if out.mask is not None:
            lo, hi = out.mask.convert("L").getextrema()
            if hi == 0:
                _warn("the painted area is smaller than one token cell, so nothing was regenerated: paint a larger area")
            elif lo == 255:
                _warn("the mask covers the whole image: nothing of the input was kept")
        captions = [f"result {i}" for i in range(len(out.images))]
        d, paths, grid = self._files(out.images, captions, "varclip-edit", s)
        try:
            status = f"done: {len(out.images)} result{'s' * (len(out.images) != 1)} in {dt:.1f} s (seed {s})"
            yield (_preview_grid(out.images), status, out.source,
                   out.mask, list(zip(out.images, captions)), paths, grid)
        finally:
            shutil.rmtree(d, ignore_errors=True)


def _preview_grid(images: list[Image.Image]) -> Image.Image:
    """Images side by side for the live preview, small ones enlarged (nearest) to about 256 px."""
    from .grid import make_grid
    scale = max(1, 256 // max(images[0].width, 1))
    if len(images) == 1:
        img = images[0]
        return img.resize((img.width * scale, img.height * scale), Image.NEAREST) if scale > 1 else img
    return make_grid(images, min(len(images), 4), scale=scale)


def _warn(message: str) -> None:
    try:
        _gradio().Warning(message)
    except Exception:  # outside a request (direct calls, tests): just log it
        log.warning(message)


def _info(message: str) -> None:
    try:
        _gradio().Info(message)
    except Exception:
        log.info(message)


# ---------------------------------------------------------------------------- the app


def display_name(name: str | Path | None) -> str:
    """What the page calls the model: a path by its last part (the server's folders are none of a
    visitor's business), the embedded model by that name, any other name as it is."""
    if not name:
        return "in-memory model"
    from .embedded import EMBEDDED
    text = str(name)
    if "/" not in text and os.sep not in text and not Path(text).exists():
        return text
    path = Path(text).expanduser()
    if path.exists() and EMBEDDED.exists() and path.resolve() == EMBEDDED.resolve():
        return "embedded emoji model"
    return path.name or text


def _model_line(pipe: Any, model_name: str | None) -> str:
    cfg = pipe.transformer.cfg
    kind = "text-to-image (type a caption)" if pipe.is_text else f"class-conditional ({cfg.num_classes} classes)"
    name = display_name(model_name or getattr(pipe, "model_name", None))
    return (f"**Model:** `{name}` · {kind} · {pipe.image_size}×{pipe.image_size} px · "
            f"{len(pipe.transformer.patch_nums)} scales · {pipe.device}")


def build_app(pipe: Any, *, concurrency: int = 1, max_queue: int = 32, max_images: int = 8,
              model_name: str | None = None, note: str | None = None, title: str = "varclip"):
    """The Gradio app for `pipe` (a VARPipeline), queued: at most `concurrency` pipeline calls at
    once across both tabs, at most `max_queue` waiting; more are turned away with a message.
    Text models get caption boxes, class models a class-id box. `note` (default: the pipeline's
    `model_note`, set on the random demo model) is shown as a banner."""
    gr = _gradio()
    from .app_inputs import AppImageEditor, AppNumber, AppRadio, AppSlider
    if concurrency < 1 or max_queue < 1 or max_images < 1:
        raise ConfigError(f"concurrency, max_queue and max_images must be >= 1, got {concurrency}, {max_queue}, "
                          f"{max_images}")
    h = AppHandlers(pipe, max_images=max_images)
    is_text, ncls = h.is_text, h.num_classes
    note = note if note is not None else getattr(pipe, "model_note", None)
    pixel = ["varclip-pixelated"] if pipe.image_size < 128 else []
    top_k_max = h.vocab_size
    rec = h.rec
    cfg_range = (SamplingConfig.CFG_MIN, max(10.0, rec.cfg))  # SamplingConfig's rule; 10 is plenty in practice

    def sampling_sliders(prefix: str, open_: bool) -> tuple:
        """The cfg / top-k / top-p sliders of a tab, starting at the model's recommended settings."""
        with gr.Accordion("Sampling", open=open_):
            return (AppSlider(*cfg_range, value=rec.cfg, step=0.1, label="Guidance (cfg)",
                              info="0 = no classifier-free guidance", elem_id=f"{prefix}cfg"),
                    AppSlider(0, top_k_max, value=min(rec.top_k, top_k_max), step=1, label="Top-k",
                              info="0 = off", elem_id=f"{prefix}top-k"),
                    AppSlider(0.0, 1.0, value=rec.top_p, step=0.01, label="Top-p", info="0 = off",
                              elem_id=f"{prefix}top-p"))

    with gr.Blocks(title=title, analytics_enabled=False, delete_cache=(3600, 3600)) as demo:
        gr.Markdown(f"# varclip · next-scale image generation\n{_model_line(pipe, model_name)}", elem_id="header")
        if note:
            gr.Markdown(f"⚠️ **{note}**", elem_id="model-note")
        selected = gr.State(0)
        last_images = gr.State([])
        with gr.Tabs(elem_id="tabs") as tabs:
            # ------------------------------------------------------------ generate tab
            with gr.Tab("Generate", id="generate", elem_id="tab-generate"):
                with gr.Row(equal_height=False):
                    with gr.Column(scale=2, min_width=300):
                        prompt = gr.Textbox(label="Caption", lines=2, placeholder="a red apple", visible=is_text,
                                            elem_id="prompt", max_length=MAX_PROMPT_CHARS)
                        negative = gr.Textbox(label="Negative prompt (optional)", placeholder="blurry",
                                              visible=is_text, elem_id="negative", max_length=MAX_PROMPT_CHARS)
                        class_id = AppNumber(label="Class id", value=0, precision=0, visible=not is_text,
                                             info=f"0..{ncls - 1}; empty = a random class, -1 = unconditional",
                                             elem_id="class-id")
                        with gr.Row():
                            num = AppSlider(1, max_images, value=min(4, max_images), step=1,
                                            label="Number of images", elem_id="num-images")
                            seed = AppNumber(label="Seed", value=0, precision=0, info="-1 = random", elem_id="seed")
                            fast = gr.Checkbox(label="Fast", value=False, info=FAST_INFO, elem_id="fast")
                        cfg, top_k, top_p = sampling_sliders("", open_=True)
                        with gr.Row():
                            go = gr.Button("Generate", variant="primary", elem_id="generate-btn")
                            stop = gr.Button("Stop", variant="stop", elem_id="stop-btn")
                    with gr.Column(scale=3, min_width=300):
                        preview = gr.Image(label="Live preview (redrawn after every scale)", type="pil",
                                           interactive=False, height=280, elem_id="preview", elem_classes=pixel,
                                           format="png")
                        status = gr.Markdown("", label="Status", elem_id="status")
                        gallery = gr.Gallery(label="Images", columns=4, height=340, format="png",
                                             elem_id="gallery", elem_classes=pixel, interactive=False)
                        with gr.Row():
                            grid_dl = gr.DownloadButton("Download grid (PNG)", elem_id="download-grid")
                            to_edit = gr.Button("Edit the selected image", elem_id="to-edit")
                        files = gr.File(label="Downloads (one PNG per image)", file_count="multiple",
                                        interactive=False, elem_id="downloads")
            # ------------------------------------------------------------ edit tab
            with gr.Tab("Edit (in/out-painting)", id="edit", elem_id="tab-edit"):
                with gr.Row(equal_height=False):
                    with gr.Column(scale=3, min_width=300):
                        editor = AppImageEditor(
                            label="Image: paint over what to regenerate", type="pil", image_mode="RGBA",
                            sources=("upload", "clipboard"), format="png", layers=False, transforms=(),
                            brush=gr.Brush(default_size=max(3, pipe.image_size // 10), colors=["#ff2d95"],
                                           color_mode="fixed"), eraser=gr.Eraser(),
                            canvas_size=(512, 512), height=420, elem_id="editor")
                        mode = AppRadio(EDIT_MODES, value="inpaint", label="Mode", elem_id="edit-mode")
                        extend = AppSlider(1.1, 3.0, value=1.5, step=0.05, label="Extend factor",
                                           info="only for 'Extend the canvas': canvas size / image size",
                                           elem_id="extend")
                        e_prompt = gr.Textbox(label="Caption (optional; empty = unconditional)", visible=is_text,
                                              elem_id="edit-prompt", max_length=MAX_PROMPT_CHARS)
                        e_class = AppNumber(label="Class id (optional)", value=-1, precision=0,
                                            visible=not is_text, info=f"0..{ncls - 1}; -1 or empty = unconditional",
                                            elem_id="edit-class-id")
                        with gr.Row():
                            e_num = AppSlider(1, max_images, value=min(4, max_images), step=1,
                                              label="Number of results", elem_id="edit-num-images")
                            e_seed = AppNumber(label="Seed", value=0, precision=0, info="-1 = random",
                                               elem_id="edit-seed")
                            e_fast = gr.Checkbox(label="Fast", value=False, info=FAST_INFO, elem_id="edit-fast")
                        e_cfg, e_top_k, e_top_p = sampling_sliders("edit-", open_=False)
                        with gr.Row():
                            e_go = gr.Button("Edit", variant="primary", elem_id="edit-btn")
                            e_stop = gr.Button("Stop", variant="stop", elem_id="edit-stop-btn")
                    with gr.Column(scale=3, min_width=300):
                        e_preview = gr.Image(label="Live preview (redrawn after every scale)", type="pil",
                                             interactive=False, height=240, elem_id="edit-preview",
                                             elem_classes=pixel, format="png")
                        e_status = gr.Markdown("", label="Status", elem_id="edit-status")
                        with gr.Row():
                            e_source = gr.Image(label="Input as the model sees it", type="pil", interactive=False,
                                                height=160, elem_id="edit-source", elem_classes=pixel, format="png")
                            e_mask = gr.Image(label="Mask (white = regenerated)", type="pil", interactive=False,
                                              height=160, elem_id="edit-mask", elem_classes=pixel, format="png")
                        e_gallery = gr.Gallery(label="Results", columns=4, height="auto", format="png",
                                               elem_id="edit-gallery", elem_classes=pixel, interactive=False)
                        e_grid_dl = gr.DownloadButton("Download grid (PNG)", elem_id="edit-download-grid")
                        e_files = gr.File(label="Downloads (one PNG per result)", file_count="multiple",
                                          interactive=False, elem_id="edit-downloads")

        limits = dict(concurrency_limit=concurrency, concurrency_id="varclip-model", show_progress="minimal")

        def generate(prompt, negative_prompt, class_id, num_images, cfg, top_k, top_p, seed, fast=False):
            yield from h.generate(prompt, negative_prompt, class_id, num_images, cfg, top_k, top_p, seed, fast)

        def edit(image, mode, extend, prompt, class_id, num_images, cfg, top_k, top_p, seed, fast=False):
            yield from h.edit(image, mode, extend, prompt, class_id, num_images, cfg, top_k, top_p, seed, fast)

        gen_event = go.click(generate, [prompt, negative, class_id, num, cfg, top_k, top_p, seed, fast],
                             [preview, status, gallery, files, grid_dl], api_name="generate", **limits)
        if is_text:
            prompt.submit(generate, [prompt, negative, class_id, num, cfg, top_k, top_p, seed, fast],
                          [preview, status, gallery, files, grid_dl], api_visibility="private", **limits)
        edit_event = e_go.click(edit, [editor, mode, extend, e_prompt, e_class, e_num, e_cfg, e_top_k, e_top_p,
                                       e_seed, e_fast], [e_preview, e_status, e_source, e_mask, e_gallery, e_files,
                                                 e_grid_dl], api_name="edit", **limits)
        stop.click(None, None, None, cancels=[gen_event], api_visibility="private")
        e_stop.click(None, None, None, cancels=[edit_event], api_visibility="private")

        def remember(value):
            return [item[0] if isinstance(item, (tuple, list)) else item for item in (value or [])], 0

        def pick(evt):
            return evt.index if isinstance(evt.index, int) else 0
        pick.__annotations__ = {"evt": gr.SelectData}  # a real class: this module's annotations are strings

        def send_to_edit(images, index):
            if not images:
                raise _reject("generate an image first")
            img = images[min(max(int(index or 0), 0), len(images) - 1)]
            if isinstance(img, (str, Path)):
                img = load_image(img)
            elif isinstance(img, dict) and "path" in img:
                img = load_image(img["path"])
            return {"background": img, "layers": [], "composite": img}, gr.Tabs(selected="edit")

        gallery.change(remember, [gallery], [last_images, selected], api_visibility="private",
                       show_progress="hidden", queue=False)
        gallery.select(pick, None, [selected], api_visibility="private", show_progress="hidden", queue=False)
        to_edit.click(send_to_edit, [last_images, selected], [editor, tabs], api_visibility="private",
                      show_progress="hidden")

    demo.queue(max_size=max_queue, default_concurrency_limit=concurrency)
    demo.varclip_css = CSS
    demo.varclip_handlers = h
    return demo


def launch(demo: Any, host: str = "127.0.0.1", port: int = 7860, block: bool = True, quiet: bool = False) -> str:
    """Serve a `build_app` app on host:port. block=False returns the URL at once (tests, notebooks);
    stop it with `demo.close()`."""
    _, url, _ = demo.launch(server_name=host, server_port=port, prevent_thread_lock=not block, quiet=quiet,
                            share=False, inbrowser=False, show_error=True, max_file_size="25mb",
                            css=getattr(demo, "varclip_css", CSS), ssr_mode=False, mcp_server=False)
    return url


# ---------------------------------------------------------------------------- varclip serve


def _positive(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {v}")
    return v


def _port(text: str) -> int:
    v = _positive(text)
    if v > 65535:
        raise argparse.ArgumentTypeError(f"a port is 1..65535, got {v}")
    return v


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="varclip serve", description="A web app (Gradio) for generating and editing "
                                 "images; uses the embedded model unless --model is given.")
    from .entry import add_model_args
    add_model_args(ap, official=False)
    ap.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0 = every interface)")
    ap.add_argument("--port", type=_port, default=7860)
    ap.add_argument("--concurrency", type=_positive, default=1, help="pipeline calls running at once")
    ap.add_argument("--max-queue", type=_positive, default=32, help="requests waiting; more are turned away")
    ap.add_argument("--max-images", type=_positive, default=8, help="the most images one request may ask for")
    return ap


def cli_serve(argv: list[str]) -> int:
    """`varclip serve ...`: returns the exit status (2 with one line on stderr for bad input)."""
    args = build_parser().parse_args(argv)
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    try:
        _gradio()
        pipe = load_pipeline(args.model, args.vae, args.text_encoder, device=args.device, dtype=args.dtype)
        if getattr(pipe, "model_note", None):
            print(f"varclip serve: {pipe.model_note}", file=sys.stderr)
        demo = build_app(pipe, concurrency=args.concurrency, max_queue=args.max_queue, max_images=args.max_images)
        launch(demo, args.host, args.port)
    except (ValueError, ImportError, OSError) as e:
        print(f"varclip serve: error: {_first_line(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(cli_serve(sys.argv[1:]))
