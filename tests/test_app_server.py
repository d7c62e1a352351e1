"""The web app over HTTP (gradio_client against a server on 127.0.0.1): results, readable errors,
20 concurrent requests, a full queue, and `varclip serve` as a process."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from PIL import Image

pytest.importorskip("gradio", reason="the web app needs gradio (pip install gradio)")
pytestmark = pytest.mark.filterwarnings("ignore::Warning:gradio.queueing")  # pandas notes inside Gradio
pytest.importorskip("gradio_client", reason="the HTTP tests need gradio_client")

from browser.app_server import class_pipeline, free_port, running_app, text_pipeline  # noqa: E402
from gradio_client import Client, handle_file  # noqa: E402
from gradio_client.exceptions import AppError  # noqa: E402

GEN = dict(negative_prompt="", num_images=2, cfg=4.0, top_k=10, top_p=0.9, seed=0)


def _client(url: str) -> Client:
    return Client(url, verbose=False, download_files=False)


def _alive(url: str) -> bool:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback only, never a proxy
    with opener.open(url, timeout=10) as r:
        return r.status == 200


@pytest.fixture(scope="module")
def text_app():
    with running_app(text_pipeline(slow=0.02), concurrency=2, max_queue=32) as (url, demo):
        yield url


@pytest.fixture(scope="module")
def class_app():
    with running_app(class_pipeline()) as (url, demo):
        yield url


def test_generate_over_http(text_app, tmp_path):
    c = Client(text_app, verbose=False, download_files=str(tmp_path))
    assert {"/generate", "/edit"} <= set(c.view_api(print_info=False, return_format="dict")["named_endpoints"])
    preview, status, gallery, files, grid = c.predict(prompt="a red apple", class_id=None, **GEN,
                                                      api_name="/generate")
    assert status == "done: 2 images in " + status.split(" in ")[1] and "seed 0" in status
    assert [g["caption"] for g in gallery] == ["a red apple #0", "a red apple #1"]
    images = [Image.open(g["image"]) for g in gallery]
    assert all(im.size == (32, 32) for im in images)
    assert [Path(f).name for f in files] == ["varclip-seed0-0.png", "varclip-seed0-1.png"]
    assert [Image.open(f).format for f in files] == ["PNG", "PNG"]
    assert Image.open(files[0]).tobytes() == images[0].convert("RGB").tobytes()
    assert Path(grid).name == "varclip-seed0-grid.png" and Image.open(grid).width > 64
    again = c.predict(prompt="a red apple", class_id=None, **GEN, api_name="/generate")
    assert Image.open(again[3][0]).tobytes() == Image.open(files[0]).tobytes()  # seeded


def test_bad_requests_get_readable_messages(text_app):
    c = _client(text_app)
    for args, message in [(dict(prompt=""), "empty caption"),
                          (dict(prompt="x", num_images=200), "the number of images must be between 1 and 8, got 200"),
                          (dict(prompt="x", top_p=3.0), "top_p must be in [0, 1]"),
                          (dict(prompt="x", seed=1.5), None)]:
        kw = {**GEN, "class_id": None, **args}
        if message is None:  # Gradio rounds a float seed (precision=0): still answered
            assert c.predict(**kw, api_name="/generate")[1].startswith("done")
            continue
        with pytest.raises(AppError) as e:
            c.predict(**kw, api_name="/generate")
        assert message in str(e.value) and "Traceback" not in str(e.value)
    with pytest.raises(AppError, match="upload an image"):
        c.predict(image=None, mode="inpaint", extend=1.5, prompt="", class_id=None, num_images=1, cfg=3.0,
                  top_k=10, top_p=0.9, seed=0, api_name="/edit")
    assert _alive(text_app)


def _edit_args(**kw) -> dict:
    return {**dict(image=None, mode="inpaint", extend=1.5, prompt="", class_id=None, num_images=1, cfg=3.0, top_k=10,
                   top_p=0.9, seed=0), **kw}


def test_rejected_inputs_are_one_log_line_each_in_our_words(text_app, tmp_path, capfd, caplog):
    """Gradio's own checks gave "Could not preprocess input component ...", "Value -5 is less than
    minimum value 0.0." and a traceback in the server log for each rejected input."""
    (tmp_path / "notes.png").write_text("not an image")
    upload = handle_file(str(tmp_path / "notes.png"))
    cases = [("/generate", dict(prompt="x", cfg="abc"), "cfg must be a number, got 'abc'"),
             ("/generate", dict(prompt="x", cfg=-5), "cfg must be a finite number >= 0"),
             ("/generate", dict(prompt="x", seed="abc"), "the seed must be a whole number"),
             ("/generate", dict(prompt="x", seed=2**70), "the seed must be at most 9223372036854775807"),
             ("/generate", dict(prompt="x", num_images=0), "between 1 and 8"),
             ("/edit", dict(image={"background": upload, "layers": [], "composite": upload}),
              "the upload is not an image that can be read"),
             ("/edit", dict(image=_editor_files(tmp_path), cfg="abc"), "cfg must be a number"),
             ("/edit", dict(mode="sideways"), "unknown edit mode 'sideways'")]
    c = _client(text_app)
    capfd.readouterr()
    with caplog.at_level(logging.WARNING, logger="varclip.app"):
        for api, args, message in cases:
            kw = {**GEN, "class_id": None, **args} if api == "/generate" else _edit_args(**args)
            with pytest.raises(AppError) as e:
                c.predict(**kw, api_name=api)
            assert message in str(e.value), (args, str(e.value))
            assert "Could not preprocess" not in str(e.value) and "None and" not in str(e.value)
    out, err = capfd.readouterr()
    assert "Traceback" not in out + err
    rejected = [r.getMessage() for r in caplog.records if r.name == "varclip.app"]
    assert len(rejected) == len(cases) and all(m.startswith("rejected input: ") for m in rejected), rejected


def _editor_files(tmp_path: Path, painted: bool = True) -> dict:
    bg, layer = Image.new("RGB", (48, 48), (200, 40, 40)), Image.new("RGBA", (48, 48), (0, 0, 0, 0))
    if painted:
        layer.paste((255, 45, 149, 255), (0, 0, 24, 24))
    bg.save(tmp_path / "bg.png")
    layer.save(tmp_path / "layer.png")
    return {"background": handle_file(str(tmp_path / "bg.png")), "layers": [handle_file(str(tmp_path / "layer.png"))],
            "composite": handle_file(str(tmp_path / "bg.png"))}


def test_edit_over_http(text_app, tmp_path):
    c = Client(text_app, verbose=False, download_files=str(tmp_path / "dl"))
    preview, status, source, mask, gallery, files, grid = c.predict(
        image=_editor_files(tmp_path), mode="inpaint", extend=1.5, prompt="a blue heart", class_id=None,
        num_images=2, cfg=3.0, top_k=10, top_p=0.9, seed=0, api_name="/edit")
    assert status.startswith("done: 2 results")
    m = Image.open(mask).convert("L")
    assert m.size == (32, 32) and m.getpixel((2, 2)) == 255 and m.getpixel((30, 30)) == 0
    assert Image.open(source).size == (32, 32) and len(gallery) == 2 and len(files) == 2
    with pytest.raises(AppError, match="paint over"):
        c.predict(image=_editor_files(tmp_path, painted=False), mode="inpaint", extend=1.5, prompt="",
                  class_id=None, num_images=1, cfg=3.0, top_k=10, top_p=0.9, seed=0, api_name="/edit")


def test_class_model_over_http(class_app, tmp_path):
    c = _client(class_app)
    out = c.predict(prompt="", class_id=7, **GEN, api_name="/generate")
    assert [g["caption"] for g in out[2]] == ["class 7", "class 7"]
    with pytest.raises(AppError, match=r"invalid class id 12: this model has classes 0\.\.9"):
        c.predict(prompt="", class_id=12, **GEN, api_name="/generate")
    out = c.predict(image=_editor_files(tmp_path), mode="outpaint", extend=1.5, prompt="", class_id=None,
                    num_images=1, cfg=3.0, top_k=10, top_p=0.9, seed=0, api_name="/edit")
    assert out[1].startswith("done: 1 result ")


def _burst(url: str, n: int, timeout: float) -> list[tuple[str, str]]:
    """n users at once, each with its own client, all submitting at the same moment:
    ("ok", status), ("rejected", message) for a full queue, or ("error", message)."""
    start = threading.Barrier(n, timeout=60)

    def one(i: int) -> tuple[str, str]:
        try:
            c = _client(url)
            start.wait()
            job = c.submit(prompt=f"caption {i}", class_id=None, **{**GEN, "num_images": 1, "seed": i},
                           api_name="/generate")
            return "ok", job.result(timeout=timeout)[1]
        except Exception as e:  # noqa: BLE001 - sorted below
            text = f"{type(e).__name__}: {e}"
            return ("rejected" if "queue is full" in text.lower() else "error"), text

    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(one, range(n)))


def test_twenty_concurrent_requests_are_all_answered(text_app):
    t0 = time.monotonic()
    results = _burst(text_app, 20, timeout=90)
    assert [kind for kind, _ in results] == ["ok"] * 20, results
    assert all(status.startswith("done: 1 image ") for _, status in results)
    assert sorted(int(s.split("seed ")[1].rstrip(")")) for _, s in results) == list(range(20))
    assert time.monotonic() - t0 < 90
    assert _alive(text_app)


def test_a_full_queue_turns_requests_away_cleanly():
    # one request at a time, two waiting, each ~0.6 s: most of a burst of 20 must be turned away
    with running_app(text_pipeline(slow=0.15), concurrency=1, max_queue=2) as (url, demo):
        t0 = time.monotonic()
        results = _burst(url, 20, timeout=60)
        kinds = [kind for kind, _ in results]
        assert "error" not in kinds, results
        assert kinds.count("ok") >= 1 and kinds.count("rejected") >= 1, results
        assert kinds.count("ok") + kinds.count("rejected") == 20
        assert time.monotonic() - t0 < 60
        # the server is still alive and serves the next request
        assert _alive(url)
        assert _client(url).predict(prompt="after the burst", class_id=None, **GEN,
                                    api_name="/generate")[1].startswith("done")


def test_varclip_serve_process_starts_serves_and_stops(tmp_path):
    """`python -m varclip.app` (what `varclip serve` runs) with no --model: the embedded model, or
    without one the labelled random demo; SIGINT stops it with status 0."""
    from varclip.embedded import EMBEDDED
    demo = not (EMBEDDED / "config.json").is_file()
    port = free_port()
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "varclip.app", "--port", str(port), "--device", "cpu"],
                            cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        url, deadline = f"http://127.0.0.1:{port}/", time.monotonic() + 60
        while True:
            try:
                if _alive(url):
                    break
            except OSError:
                pass
            assert proc.poll() is None, proc.stdout.read()
            assert time.monotonic() < deadline, "the server did not come up in 60 s"
            time.sleep(0.3)
        c = _client(url)
        if demo:
            out = c.predict(prompt="", class_id=3, **GEN, api_name="/generate")
            assert [g["caption"] for g in out[2]] == ["class 3", "class 3"]
            with pytest.raises(AppError, match="out of range"):
                c.predict(prompt="", class_id=1000, **GEN, api_name="/generate")
        else:
            out = c.predict(prompt="a red apple", class_id=None, **{**GEN, "num_images": 1}, api_name="/generate")
            assert out[1].startswith("done: 1 image ")
        proc.send_signal(signal.SIGINT)
        rc = proc.wait(timeout=30)
        log = proc.stdout.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert rc == 0, log
    assert ("RANDOMLY INITIALISED" in log) == demo and "Traceback" not in log
