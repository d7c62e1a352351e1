"""The web app in a real browser: headless Chromium (Debian's chromium + chromium-driver, driven
by Selenium) types a caption, clicks Generate, watches the live preview and the gallery, then
paints a mask on the Edit tab and in-paints. The set-up installs Chromium with apt-get when it
is missing (as root); only if that is impossible are these tests skipped, with the reason.

VARCLIP_APP_SCREENSHOTS=docs/img also runs `test_readme_screenshots`: the embedded emoji model
in the app, whose screenshots app-generate.png and app-edit.png go to that folder."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

pytest.importorskip("gradio", reason="the web app needs gradio (pip install gradio)")
pytestmark = pytest.mark.filterwarnings("ignore::Warning:gradio.queueing")  # pandas notes inside Gradio
pytest.importorskip("selenium", reason="the browser test drives Chromium with selenium (pip install selenium)")

from browser.app_server import class_pipeline, running_app, text_pipeline  # noqa: E402
from browser.chromium import ensure_chromium, make_driver  # noqa: E402
from selenium.webdriver.common.action_chains import ActionChains  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402

NOTE = "A tiny RANDOMLY INITIALISED test model (32 px): the images are noise by design."


@pytest.fixture(scope="session")
def chromium():
    paths, reason = ensure_chromium()
    if paths is None:
        pytest.skip(reason)
    return paths


@pytest.fixture
def browser(chromium):
    driver = make_driver(*chromium, width=1400, height=1250)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def _wait(what, timeout: float = 30.0, every: float = 0.05):
    deadline = time.monotonic() + timeout
    while True:
        value = what()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {getattr(what, '__doc__', what)}")
        time.sleep(every)


def _text(driver, css: str) -> str:
    found = driver.find_elements(By.CSS_SELECTOR, css)
    return found[0].text if found else ""


def _loaded_images(driver, css: str) -> list[int]:
    return driver.execute_script(
        "return [...document.querySelectorAll(arguments[0])].filter(i => i.complete).map(i => i.naturalWidth)", css)


def _toasts(driver) -> list[str]:
    return driver.execute_script("return [...document.querySelectorAll('.toast-body')].map(e => e.innerText)")


def _retype(box, text: str) -> None:
    box.send_keys(Keys.CONTROL, "a")
    box.send_keys(Keys.BACKSPACE)
    if text:
        box.send_keys(text)


def _open(driver, url: str, ready_css: str) -> None:
    driver.get(url)
    _wait(lambda: driver.find_elements(By.CSS_SELECTOR, ready_css), timeout=30)


def test_generate_then_edit_in_a_real_browser(browser, tmp_path):
    with running_app(text_pipeline(slow=0.25), note=NOTE) as (url, demo):
        _open(browser, url, "#prompt textarea")
        assert "RANDOMLY INITIALISED" in _text(browser, "#model-note")
        browser.find_element(By.CSS_SELECTOR, "#prompt textarea").send_keys("a red apple")
        browser.find_element(By.CSS_SELECTOR, "#generate-btn").click()

        statuses: list[str] = []

        def finished():
            """the status to say done"""
            status = _text(browser, "#status")
            if status and (not statuses or statuses[-1] != status):
                statuses.append(status)
            return status.startswith("done")

        _wait(finished, timeout=60)
        # the live preview was redrawn while the scales came in, before the images were done
        assert any(s.startswith("scale ") for s in statuses), statuses
        assert statuses.index(next(s for s in statuses if s.startswith("scale"))) < len(statuses) - 1
        widths = _wait(lambda: _loaded_images(browser, "#gallery img"), timeout=15)
        assert len(widths) == 4 and set(widths) == {32}, widths
        assert _wait(lambda: _loaded_images(browser, "#preview img"), timeout=15)[0] > 32
        assert _wait(lambda: browser.find_elements(By.CSS_SELECTOR, "#downloads a"), timeout=15)
        assert not [t for t in _toasts(browser) if "rror" in t], _toasts(browser)
        browser.execute_script("window.scrollTo(0, 0)")
        time.sleep(0.3)
        browser.save_screenshot(str(tmp_path / "app-generate.png"))

        # the first image goes to the Edit tab; paint a stroke; in-paint it
        browser.find_element(By.CSS_SELECTOR, "#to-edit").click()
        _stroke(browser, "#editor canvas")
        browser.find_element(By.CSS_SELECTOR, "#edit-btn").click()
        _wait(lambda: _text(browser, "#edit-status").startswith("done"), timeout=60)
        assert len(_wait(lambda: _loaded_images(browser, "#edit-gallery img"), timeout=15)) == 4
        assert _wait(lambda: _loaded_images(browser, "#edit-mask img"), timeout=15)
        assert not [t for t in _toasts(browser) if "rror" in t], _toasts(browser)
        browser.execute_script("window.scrollTo(0, 0)")
        time.sleep(0.3)
        browser.save_screenshot(str(tmp_path / "app-edit.png"))
    for name in ("app-generate.png", "app-edit.png"):
        assert (tmp_path / name).stat().st_size > 10_000


def test_class_model_page_and_a_readable_error(browser):
    with running_app(class_pipeline()) as (url, demo):
        _open(browser, url, "#class-id input")
        assert not browser.find_elements(By.CSS_SELECTOR, "#prompt textarea")  # no caption box
        box = browser.find_element(By.CSS_SELECTOR, "#class-id input")
        _retype(box, "42")
        browser.find_element(By.CSS_SELECTOR, "#generate-btn").click()
        toasts = _wait(lambda: _toasts(browser), timeout=30)
        assert any("invalid class id 42" in t and "0..9" in t for t in toasts), toasts
        assert not any("Traceback" in t for t in toasts)
        _retype(box, "")  # empty = a random class per image
        browser.find_element(By.CSS_SELECTOR, "#generate-btn").click()
        _wait(lambda: _text(browser, "#status").startswith("done"), timeout=60)
        captions = _wait(lambda: [c.text for c in browser.find_elements(By.CSS_SELECTOR, "#gallery .caption-label")
                                  if c.text], timeout=15)
        assert len(captions) == 4 and all(c.startswith("class ") for c in captions), captions
        _retype(box, "5")
        browser.find_element(By.CSS_SELECTOR, "#generate-btn").click()
        _wait(lambda: set(c.text for c in browser.find_elements(By.CSS_SELECTOR, "#gallery .caption-label"))
              == {"class 5"}, timeout=60)


def _stroke(browser, css: str) -> None:
    """A diagonal brush stroke over the middle of the editor canvas."""
    canvas = _wait(lambda: [c for c in browser.find_elements(By.CSS_SELECTOR, css) if c.is_displayed()],
                   timeout=15)[0]
    time.sleep(0.5)  # the background image is drawn asynchronously
    strokes = ActionChains(browser).move_to_element_with_offset(canvas, -40, -60).click_and_hold()
    for _ in range(8):
        strokes.move_by_offset(12, 10)
    strokes.release().perform()
    time.sleep(0.3)


def _shoot_when_done(browser, status_css: str, gallery_css: str, file: Path) -> None:
    """Wait for the status to say done and four images to load, then screenshot the page top."""
    _wait(lambda: _text(browser, status_css).startswith("done"), timeout=120)
    assert len(_wait(lambda: _loaded_images(browser, gallery_css), timeout=15)) == 4
    browser.execute_script("window.scrollTo(0, 0)")
    time.sleep(0.5)
    browser.save_screenshot(str(file))


@pytest.mark.skipif(not os.environ.get("VARCLIP_APP_SCREENSHOTS"),
                    reason="set VARCLIP_APP_SCREENSHOTS=DIR to write the README screenshots")
def test_readme_screenshots(browser):
    """The documentation's screenshots: the embedded emoji model, "blue heart", then an in-paint of a stroke."""
    from varclip.embedded import embedded_model_dir
    from varclip.pipeline import VARPipeline
    out = Path(os.environ["VARCLIP_APP_SCREENSHOTS"])
    out.mkdir(parents=True, exist_ok=True)
    pipe = VARPipeline.from_pretrained(embedded_model_dir())
    pipe.model_name = "embedded emoji model (64 px, MiniLM captions)"
    with running_app(pipe) as (url, demo):
        _open(browser, url, "#prompt textarea")
        browser.find_element(By.CSS_SELECTOR, "#prompt textarea").send_keys("blue heart")
        browser.find_element(By.CSS_SELECTOR, "#generate-btn").click()
        _shoot_when_done(browser, "#status", "#gallery img", out / "app-generate.png")
        browser.find_element(By.CSS_SELECTOR, "#to-edit").click()
        _stroke(browser, "#editor canvas")
        box = browser.find_element(By.CSS_SELECTOR, "#edit-prompt textarea, #edit-prompt input")
        _retype(box, "blue heart")
        browser.find_element(By.CSS_SELECTOR, "#edit-btn").click()
        _shoot_when_done(browser, "#edit-status", "#edit-gallery img", out / "app-edit.png")
    for name in ("app-generate.png", "app-edit.png"):
        assert (out / name).stat().st_size > 10_000
