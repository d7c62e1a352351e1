"""Input components of the web app that leave checking values to the app.

Gradio's own components check what a browser or API client sends before the app sees it: an
out-of-range number is refused with "Value 200 is greater than maximum value 8.", text in a number
field or an upload that is not an image with "Could not preprocess input component at index
...", and each leaves a traceback in the server log. These components convert what they can and
hand everything else to the app unchanged, so that the app's checks (`SamplingConfig`, the
pipeline, `app._as_int`) apply the same rules as the CLI and the Python API and name the problem
in their words. An upload that cannot be read is rejected here, with `reject`.

Imported by `build_app` only: it imports Gradio.
"""

from __future__ import annotations

import logging
from typing import Any

import gradio as gr

log = logging.getLogger("varclip.app")


def reject(message: str) -> gr.Error:
    """A rejected input: one line in the server log, the message in the browser, no traceback."""
    log.warning("rejected input: %s", message)
    return gr.Error(message, print_exception=False)


def _number(component: Any, payload: Any) -> Any:
    if isinstance(payload, bool) or not isinstance(payload, (int, float)):
        return payload  # None, text, ...: the app's checks say what is wrong
    return gr.Number.round_to_precision(payload, component.precision)  # no bounds: the app's rule applies


class AppNumber(gr.Number):
    is_template = True  # drawn by Gradio's own Number

    def preprocess(self, payload: Any) -> Any:
        return _number(self, payload)


class AppSlider(gr.Slider):
    is_template = True

    def preprocess(self, payload: Any) -> Any:
        return _number(self, payload)


class AppRadio(gr.Radio):
    is_template = True

    def preprocess(self, payload: Any) -> Any:
        return payload if self.type == "value" else super().preprocess(payload)


class AppImageEditor(gr.ImageEditor):
    is_template = True

    def preprocess(self, payload: Any) -> Any:
        try:
            return super().preprocess(payload)
        except gr.Error:
            raise
        except Exception as e:  # not an image, or one PIL cannot read
            raise reject(f"the upload is not an image that can be read ({type(e).__name__}): "
                         "upload a PNG, JPEG or WebP picture") from None


__all__ = ["AppImageEditor", "AppNumber", "AppRadio", "AppSlider", "reject"]
