"""Tiny random pipelines and a running `varclip.app` server on 127.0.0.1 for the app tests."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager

import torch

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")


class FakeEncoder:
    """Deterministic 384-d sentence vectors per text (stands in for MiniLM)."""

    identity, dim = "fake-encoder", 384

    def encode(self, texts, allow_empty=False):
        from varclip.text.encoders import TextEmbedding
        rows = []
        for t in texts:
            g = torch.Generator().manual_seed(sum(map(ord, t)) + len(t))
            rows.append(torch.randn(384, generator=g))
        return TextEmbedding(torch.nn.functional.normalize(torch.stack(rows), dim=-1))


def text_pipeline(slow: float = 0.0):
    """The tiny text model (32 px, 4 scales), randomly initialised; `slow` s of sleep per scale."""
    from varclip.config import named_tokenizer, named_transformer
    from varclip.model import VARTransformer
    from varclip.tokenizer import VQTokenizer
    torch.manual_seed(0)
    cls = _slow_class(slow)
    pipe = cls(VQTokenizer(named_tokenizer("tiny")), VARTransformer(named_transformer("tiny_text")), FakeEncoder())
    pipe.model_name = "tiny random text model (tests)"
    return pipe


def class_pipeline(slow: float = 0.0):
    """The tiny class model (10 classes), randomly initialised."""
    from varclip.config import named_tokenizer, named_transformer
    from varclip.model import VARTransformer
    from varclip.tokenizer import VQTokenizer
    torch.manual_seed(0)
    pipe = _slow_class(slow)(VQTokenizer(named_tokenizer("tiny")), VARTransformer(named_transformer("tiny")))
    pipe.model_name = "tiny random class model (tests)"
    return pipe


def _slow_class(delay: float):
    from varclip.pipeline import VARPipeline
    if delay <= 0:
        return VARPipeline

    class SlowPipeline(VARPipeline):
        """Sleeps after every scale, so that requests overlap in the queue."""

        def __call__(self, *args, callback_on_scale=None, **kwargs):
            def on_scale(k, n, images):
                time.sleep(delay)
                if callback_on_scale is not None:
                    callback_on_scale(k, n, images)
            return super().__call__(*args, callback_on_scale=on_scale, **kwargs)

    return SlowPipeline


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def running_app(pipe, **build_kwargs) -> Iterator[tuple[str, object]]:
    """(url, demo) of the app for `pipe`, served on a free 127.0.0.1 port for the block's duration."""
    from varclip.app import build_app, launch
    demo = build_app(pipe, **build_kwargs)
    url = launch(demo, host="127.0.0.1", port=free_port(), block=False, quiet=True)
    try:
        yield url, demo
    finally:
        demo.close()
