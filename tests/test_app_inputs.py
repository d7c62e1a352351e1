"""The web app's input components hand bad values to the app's checks, and an unreadable upload
is rejected with our message and one log line, never Gradio's "Could not preprocess"; the page
names the model without the server's paths."""

from __future__ import annotations

import logging

import pytest

gr = pytest.importorskip("gradio", reason="the web app needs gradio (pip install gradio)")

from varclip.app_inputs import AppImageEditor, AppNumber, AppRadio, AppSlider  # noqa: E402


def test_numbers_are_rounded_but_not_bounded_and_text_passes_through():
    cfg = AppSlider(0, 10, step=0.1)
    assert cfg.preprocess(-5) == -5 and cfg.preprocess(11.0) == 11.0  # SamplingConfig's rule decides
    assert cfg.preprocess("abc") == "abc" and cfg.preprocess(None) is None
    seed = AppNumber(value=0, precision=0)
    assert seed.preprocess(1.6) == 2 and seed.preprocess("x") == "x"
    assert AppRadio(["a", "b"], value="a").preprocess("sideways") == "sideways"
    assert cfg.get_block_name() == "slider" and seed.get_block_name() == "number"  # drawn by Gradio's own


def test_an_upload_that_is_not_an_image_is_rejected_in_one_line(tmp_path, caplog):
    bad = tmp_path / "notes.png"
    bad.write_text("this is not an image")
    editor = AppImageEditor(type="pil")
    from gradio.data_classes import FileData
    from gradio.components.image_editor import EditorData
    payload = EditorData(background=FileData(path=str(bad)), layers=[], composite=FileData(path=str(bad)))
    with caplog.at_level(logging.WARNING, logger="varclip.app"), pytest.raises(gr.Error) as e:
        editor.preprocess(payload)
    assert "not an image that can be read" in e.value.message and not e.value.print_exception
    assert [r.getMessage() for r in caplog.records] == [f"rejected input: {e.value.message}"]
    assert editor.get_block_name() == "imageeditor"


def test_serve_with_a_missing_model_says_not_found(capsys):
    from varclip.app import cli_serve
    assert cli_serve(["--model", "/nonexistent/model", "--device", "cpu", "--port", "7999"]) == 2
    err = capsys.readouterr().err
    assert "not found: /nonexistent/model" in err and "--vae" not in err and len(err.strip().splitlines()) == 1


def test_the_header_names_the_model_not_the_servers_path(tmp_path):
    from browser.app_server import class_pipeline

    from varclip.app import build_app, display_name
    from varclip.embedded import EMBEDDED
    model = tmp_path / "srv" / "models" / "my_model"
    model.mkdir(parents=True)
    pipe = class_pipeline()
    pipe.model_name = str(model)  # what the loader records: the path it was given
    header = [b for b in build_app(pipe).blocks.values() if getattr(b, "elem_id", None) == "header"][0].value
    assert "`my_model`" in header and str(tmp_path) not in header and "/srv/" not in header
    assert display_name(EMBEDDED) == "embedded emoji model"
    assert display_name("/data/checkpoints/var_d16.pth") == "var_d16.pth"
    assert display_name("random tiny demo model") == "random tiny demo model" and display_name(None) == "in-memory model"
