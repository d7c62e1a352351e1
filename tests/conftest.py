"""Shared test helpers: the golden parity folder and tiny models."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
PARITY = ROOT.parent / "shared" / "parity"


@pytest.fixture
def parity_dir() -> Path:
    if not PARITY.is_dir():
        pytest.skip(f"golden parity data not found at {PARITY} (../shared/parity beside the repo)")
    return PARITY


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models on a shared 2-core machine: one intra-op thread avoids OpenMP spin-waiting
    against other processes (10x slower steps otherwise). Restored afterwards. Use it per module:
    `pytestmark = pytest.mark.usefixtures("one_thread")`."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def fake_text_pipeline():
    """The tiny text-to-image pipeline on a fake 384-d encoder: a fixed random unit vector per text."""
    from varclip.config import named_tokenizer, named_transformer
    from varclip.model import VARTransformer
    from varclip.pipeline import VARPipeline
    from varclip.text.encoders import TextEmbedding
    from varclip.tokenizer import VQTokenizer

    class FakeEncoder:
        identity, dim = "fake", 384

        def encode(self, texts, allow_empty=False):
            rows = [torch.randn(384, generator=torch.Generator().manual_seed(sum(map(ord, t)))) for t in texts]
            return TextEmbedding(torch.nn.functional.normalize(torch.stack(rows), dim=-1))

    torch.manual_seed(0)
    return VARPipeline(VQTokenizer(named_tokenizer("tiny")), VARTransformer(named_transformer("tiny_text")),
                       FakeEncoder())


@pytest.fixture
def tiny_pipeline():
    from varclip.config import named_tokenizer, named_transformer
    from varclip.model import VARTransformer
    from varclip.pipeline import VARPipeline
    from varclip.tokenizer import VQTokenizer
    torch.manual_seed(0)
    return VARPipeline(VQTokenizer(named_tokenizer("tiny")), VARTransformer(named_transformer("tiny")))
