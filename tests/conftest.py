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


@pytest.fixture
def tiny_pipeline():
    from varclip.config import named_tokenizer, named_transformer
    from varclip.model import VARTransformer
    from varclip.pipeline import VARPipeline
    from varclip.tokenizer import VQTokenizer
    torch.manual_seed(0)
    return VARPipeline(VQTokenizer(named_tokenizer("tiny")), VARTransformer(named_transformer("tiny")))
