"""The web app (`varclip serve`) without a server: layout, handlers, input checks, masks, CLI."""

from __future__ import annotations

import math
import re
import threading
import time
from pathlib import Path

import pytest
from PIL import Image

gr = pytest.importorskip("gradio", reason="the web app needs gradio (pip install gradio)")

from browser.app_server import class_pipeline, text_pipeline  # noqa: E402

from varclip.app import (DEMO_NOTE, AppHandlers, InputError, build_app, build_parser, cli_serve,  # noqa: E402
                         load_pipeline, mask_from_editor, stream_call)


@pytest.fixture(scope="module")
def text_pipe():
    return text_pipeline()


@pytest.fixture(scope="module")
def class_pipe():
    return class_pipeline()


def _by_id(demo, elem_id):
    hits = [b for b in demo.blocks.values() if getattr(b, "elem_id", None) == elem_id]
    assert len(hits) == 1, elem_id
    return hits[0]


def _drain(gen):
    """All yields of a handler, checking the files of the last one exist while it is current."""
    outs = []
    for out in gen:
        outs.append(out)
        if isinstance(out[-2], list) and out[-2] and isinstance(out[-2][0], str):
            assert all(Path(p).is_file() for p in out[-2])
            assert Path(out[-1]).is_file()
    return outs


# ---------------------------------------------------------------------------- layout


def test_the_layout_follows_the_kind_of_model(text_pipe, class_pipe):
    demo = build_app(text_pipe)
    assert _by_id(demo, "prompt").visible and _by_id(demo, "negative").visible
    assert not _by_id(demo, "class-id").visible
    assert {"generate-btn", "edit-btn", "gallery", "preview", "editor", "downloads", "download-grid"} <= \
        {b.elem_id for b in demo.blocks.values()}
    assert isinstance(_by_id(demo, "editor"), gr.ImageEditor)
    assert isinstance(_by_id(demo, "download-grid"), gr.DownloadButton)
    assert not [b for b in demo.blocks.values() if getattr(b, "elem_id", None) == "model-note"]
    demo = build_app(class_pipe, note="a note for people")
    assert _by_id(demo, "class-id").visible
    assert not _by_id(demo, "prompt").visible and not _by_id(demo, "negative").visible
    assert "a note for people" in _by_id(demo, "model-note").value
    assert "0..9" in _by_id(demo, "class-id").info


def test_the_cfg_slider_follows_the_sampling_rule(text_pipe):
    from varclip.config import ConfigError, SamplingConfig
    cfg = _by_id(build_app(text_pipe), "cfg")
    assert cfg.minimum == SamplingConfig.CFG_MIN and cfg.value == text_pipe.sampling_config().cfg
    with pytest.raises(ConfigError, match="cfg"):
        SamplingConfig(cfg=cfg.minimum - 0.5)


def test_the_queue_is_bounded_and_shared_by_both_tabs(text_pipe):
    demo = build_app(text_pipe, concurrency=2, max_queue=5)
    assert demo._queue.max_size == 5
    fns = {f.api_name: f for f in demo.fns.values() if f.api_name in ("generate", "edit")}
    assert set(fns) == {"generate", "edit"}
    assert {f.concurrency_limit for f in fns.values()} == {2}
    assert len({f.concurrency_id for f in fns.values()}) == 1
    with pytest.raises(ValueError, match=">= 1"):
        build_app(text_pipe, concurrency=0)


# ---------------------------------------------------------------------------- handlers


def test_generate_streams_every_scale_then_the_images(text_pipe):
    h = AppHandlers(text_pipe, max_images=4)
    outs = _drain(h.generate("a red apple", "", None, 3, 4.0, 64, 0.95, 7))
    statuses = [o[1] for o in outs]
    assert statuses[0] == "starting ..."
    ks = [int(re.match(r"scale (\d)/4 \(", s).group(1)) for s in statuses[1:-1]]
    assert ks and ks == sorted(set(ks))  # scales in order (a slow reader may skip some)
    preview, status, gallery, files, grid = outs[-1]
    assert status.startswith("done: 3 images") and "seed 7" in status
    assert [c for _, c in gallery] == ["a red apple #0", "a red apple #1", "a red apple #2"]
    assert all(img.size == (32, 32) for img, _ in gallery)
    assert [Path(f).name for f in files] == [f"varclip-seed7-{i}.png" for i in range(3)]
    assert isinstance(preview, Image.Image) and preview.width > 32  # enlarged for the screen
    assert not Path(files[0]).exists()  # removed once the request is over (Gradio keeps its own copy)
    again = _drain(h.generate("a red apple", "", None, 3, 4.0, 64, 0.95, 7))[-1]
    assert [a.tobytes() for a, _ in again[2]] == [b.tobytes() for b, _ in gallery]  # seeded


def test_class_generation_random_and_fixed_classes(class_pipe):
    h = AppHandlers(class_pipe)
    out = _drain(h.generate(None, None, 3, 2, 2.0, 10, 0.9, 0))[-1]
    assert [c for _, c in out[2]] == ["class 3", "class 3"]
    out = _drain(h.generate(None, None, None, 2, 2.0, 10, 0.9, 1))[-1]  # empty = random classes
    assert all(c.startswith("class ") for _, c in out[2])
    out = _drain(h.generate(None, None, -1, 1, 2.0, 10, 0.9, 1))[-1]
    assert out[2][0][1] == "unconditional"


@pytest.mark.parametrize("kind,args,message", [
    ("text", dict(prompt="  "), "empty caption"),
    ("text", dict(prompt="x" * 1001), "too long"),
    ("text", dict(num_images=0), "between 1 and 8"),
    ("text", dict(num_images=2.5), "whole number"),
    ("text", dict(top_p=1.5), "top_p must be in [0, 1]"),  # SamplingConfig's words, as everywhere
    ("text", dict(cfg=math.nan), "cfg must be a finite number >= 0"),
    ("text", dict(cfg=-1.0), "cfg must be a finite number >= 0"),
    ("text", dict(cfg="x"), "cfg must be a number"),
    ("text", dict(top_k=-3), "top_k must be >= 0"),
    ("text", dict(seed="abc"), "whole number"),
    ("class", dict(class_id=10), "classes 0..9"),
    ("class", dict(class_id=-2), "classes 0..9"),
])
def test_bad_inputs_are_readable_errors(kind, args, message, text_pipe, class_pipe):
    h = AppHandlers(text_pipe if kind == "text" else class_pipe)
    kw = dict(prompt="a red apple" if kind == "text" else None, negative_prompt=None, class_id=None, num_images=1,
              cfg=4.0, top_k=10, top_p=0.9, seed=0)
    kw.update(args)
    with pytest.raises(gr.Error) as e:
        _drain(h.generate(**kw))
    assert message in e.value.message
    assert "Traceback" not in e.value.message and len(e.value.message.splitlines()) == 1


def test_pipeline_errors_become_readable_messages(text_pipe):
    class Broken:
        is_text, image_size, transformer = True, 32, text_pipe.transformer

        def __call__(self, **kw):
            raise RuntimeError("CUDA out of memory.\nTried to allocate 20 GiB")

    with pytest.raises(gr.Error) as e:
        _drain(AppHandlers(Broken()).generate("a", None, None, 1, 4.0, 10, 0.9, 0))
    assert e.value.message == "generation failed (RuntimeError): CUDA out of memory."


def test_stream_call_streams_scales_and_stops_early_when_closed(text_pipe):
    kinds = [item[0] for item in stream_call(text_pipe, prompt="a", num_images=1, seed=0)]
    assert kinds[-1] == "done" and set(kinds[:-1]) == {"scale"}
    calls = []

    def slow_call(callback_on_scale):
        for k in range(200):
            calls.append(k)
            callback_on_scale(k, 200, [])
            time.sleep(0.01)
        return "finished"

    it = stream_call(slow_call)
    assert next(it)[0] == "scale"
    it.close()  # the user pressed Stop: the worker stops at its next scale
    deadline = time.monotonic() + 30
    while [t for t in threading.enumerate() if t.name == "varclip-app-sampler"]:
        assert time.monotonic() < deadline, "the sampler thread did not stop"
        time.sleep(0.01)
    assert len(calls) < 200
    with pytest.raises(ZeroDivisionError):  # errors come back as events, re-raised by the handlers
        kind, err = list(stream_call(lambda callback_on_scale: 1 / 0))[-1]
        raise err


# ---------------------------------------------------------------------------- editing


def _editor(size=(64, 48), box=(8, 8, 24, 24)):
    bg = Image.new("RGB", size, (40, 120, 200))
    layer = Image.new("RGBA", size, (0, 0, 0, 0))
    if box:
        layer.paste((255, 45, 149, 255), box)
    return {"background": bg, "layers": [layer], "composite": bg}


def test_mask_from_editor_strokes_are_white_and_aligned_with_the_crop():
    image, mask = mask_from_editor(_editor(), "inpaint")
    assert image.size == mask.size == (48, 48)  # centre square of 64x48: x 8..56
    assert mask.getpixel((0, 10)) == 255 and mask.getpixel((15, 20)) == 255  # stroke x 8..24 -> 0..16
    assert mask.getpixel((5, 2)) == 0 and mask.getpixel((20, 10)) == 0 and mask.getpixel((30, 30)) == 0
    _, inverted = mask_from_editor(_editor(), "outpaint")
    assert inverted.getpixel((0, 10)) == 0 and inverted.getpixel((30, 30)) == 255
    image, none = mask_from_editor(_editor(box=None), "extend")
    assert none is None and image.size == (48, 48)
    with pytest.raises(InputError, match="paint over"):
        mask_from_editor(_editor(box=None), "inpaint")
    with pytest.raises(InputError, match="upload an image"):
        mask_from_editor(None, "inpaint")
    with pytest.raises(InputError, match="upload an image"):
        mask_from_editor({"background": None, "layers": [], "composite": None}, "inpaint")
    with pytest.raises(InputError, match="unknown edit mode"):
        mask_from_editor(_editor(), "zoom")


@pytest.mark.parametrize("mode", ["inpaint", "outpaint", "extend"])
def test_edit_regenerates_what_was_painted(mode, class_pipe):
    h = AppHandlers(class_pipe)
    value = _editor(size=(32, 32), box=(0, 0, 16, 16))
    outs = _drain(h.edit(value, mode, 2.0, None, None, 2, 3.0, 10, 0.9, 0))
    assert sum(o[1].startswith("scale") for o in outs) >= 1
    preview, status, source, mask, gallery, files, grid = outs[-1]
    assert status.startswith("done: 2 results") and len(gallery) == 2 and len(files) == 2
    assert source.size == mask.size == (32, 32)
    m = mask.convert("L")
    if mode == "inpaint":
        assert m.getpixel((4, 4)) == 255 and m.getpixel((28, 28)) == 0
    elif mode == "outpaint":
        assert m.getpixel((4, 4)) == 0 and m.getpixel((28, 28)) == 255
    else:
        assert m.getpixel((0, 0)) == 255 and m.getpixel((16, 16)) == 0


def test_edit_with_a_caption_and_bad_edit_inputs(text_pipe):
    h = AppHandlers(text_pipe)
    out = _drain(h.edit(_editor(size=(32, 32)), "inpaint", 1.5, "a blue heart", None, 1, 3.0, 10, 0.9, 0))[-1]
    assert out[1].startswith("done: 1 result ")
    with pytest.raises(gr.Error, match="upload an image"):
        _drain(h.edit(None, "inpaint", 1.5, "", None, 1, 3.0, 10, 0.9, 0))
    with pytest.raises(gr.Error, match="extend factor"):
        _drain(h.edit(_editor(), "extend", 0.5, "", None, 1, 3.0, 10, 0.9, 0))


# ---------------------------------------------------------------------------- model loading and CLI


def test_without_an_embedded_model_the_app_uses_a_labelled_random_demo(monkeypatch):
    import varclip.embedded as embedded
    from varclip.config import ConfigError

    def missing():
        raise ConfigError("no embedded model")

    monkeypatch.setattr(embedded, "embedded_model_dir", missing)
    pipe = load_pipeline()
    assert pipe.model_note == DEMO_NOTE and "RANDOMLY INITIALISED" in DEMO_NOTE
    assert not pipe.is_text
    demo = build_app(pipe)
    assert "RANDOMLY INITIALISED" in _by_id(demo, "model-note").value


def test_cli_serve_arguments():
    args = build_parser().parse_args([])
    assert (args.model, args.host, args.port, args.concurrency, args.max_queue, args.device) == \
        (None, "127.0.0.1", 7860, 1, 32, "auto")
    args = build_parser().parse_args(["--model", "m", "--vae", "v", "--text-encoder", "minilm", "--port", "9000",
                                      "--concurrency", "2", "--max-queue", "4", "--device", "cpu"])
    assert (args.model, args.vae, args.text_encoder, args.port, args.concurrency, args.max_queue) == \
        ("m", "v", "minilm", 9000, 2, 4)
    for bad in (["--port", "0"], ["--port", "70000"], ["--concurrency", "0"], ["--max-queue", "x"]):
        with pytest.raises(SystemExit) as e:
            build_parser().parse_args(bad)
        assert e.value.code == 2


def test_cli_serve_reports_a_bad_model_in_one_line(tmp_path, capsys):
    rc = cli_serve(["--model", str(tmp_path / "missing"), "--device", "cpu", "--port", "7999"])
    err = capsys.readouterr().err
    assert rc == 2
    assert err.startswith("varclip serve: error:") and len(err.strip().splitlines()) == 1
