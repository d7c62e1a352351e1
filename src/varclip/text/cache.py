"""On-disk cache of text embeddings, keyed by (encoder identity, text).

Captions are encoded many times (every epoch, every evaluation, every prompt sweep) by a frozen
encoder, so their embeddings are worth keeping. One safetensors file per (identity, text) keeps
the cache append-only and safe for several processes: a file is written to a temporary name in
the same folder and moved into place with ``os.replace``, which is atomic, so a reader sees
either no entry or a complete one. The encoder's identity is part of the key, so changing the
weights, tokenizer variant, activation or normalisation can never return stale vectors.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Sequence

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open, save_file

from ..data.atomic import atomic_output
from .encoders import TextEmbedding, TextEncoder, TextEncoderError, check_texts

_FORMAT = "varclip-text-cache-1"


def cache_key(identity: str, text: str) -> str:
    """sha256 of identity and text, separated so that no two pairs can collide by concatenation."""
    h = hashlib.sha256()
    h.update(_FORMAT.encode() + b"\0" + identity.encode("utf-8") + b"\0" + text.encode("utf-8"))
    return h.hexdigest()


class EmbeddingCache:
    """Rows of TextEmbedding stored as ``<dir>/<key[:2]>/<key>.safetensors``."""

    def __init__(self, cache_dir: str | Path) -> None:
        self.root = Path(cache_dir).expanduser()
        self.root.mkdir(parents=True, exist_ok=True)

    def path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.safetensors"

    def get(self, identity: str, text: str) -> TextEmbedding | None:
        """The stored row as a batch of one, or None when absent, unreadable or not ours."""
        path = self.path(cache_key(identity, text))
        if not path.is_file():
            return None
        try:
            with safe_open(str(path), framework="pt") as f:
                meta = f.metadata() or {}
            if meta.get("identity") != identity or meta.get("text") != text:
                return None
            d = load_file(str(path))
        except (SafetensorError, OSError, ValueError):
            return None  # a damaged entry is a miss; the next put replaces it
        if "pooled" not in d:
            return None
        tokens, mask = d.get("tokens"), d.get("mask")
        return TextEmbedding(d["pooled"][None], None if tokens is None else tokens[None],
                             None if mask is None else mask[None])

    def put(self, identity: str, text: str, row: TextEmbedding) -> None:
        """Store a batch-of-one embedding atomically (temp file in the same folder, then replace)."""
        path = self.path(cache_key(identity, text))
        path.parent.mkdir(parents=True, exist_ok=True)
        tensors = {"pooled": row.pooled[0].detach().cpu().contiguous().clone()}
        if row.tokens is not None and row.mask is not None:
            tensors["tokens"] = row.tokens[0].detach().cpu().contiguous().clone()
            tensors["mask"] = row.mask[0].detach().cpu().contiguous().clone()
        with atomic_output(path) as tmp:
            save_file(tensors, str(tmp), metadata={"format": _FORMAT, "identity": identity, "text": text})


class CachedTextEncoder(TextEncoder):
    """Wrap any encoder: cached texts are read back bit for bit; only misses run the encoder.

    ``hits`` and ``misses`` count texts (after de-duplication within each call).
    """

    def __init__(self, encoder: TextEncoder, cache_dir: str | Path) -> None:
        self.inner = encoder
        self.cache = EmbeddingCache(cache_dir)
        self.identity = encoder.identity
        self.dim = encoder.dim
        self.hits = 0
        self.misses = 0

    def encode(self, texts: Sequence[str], *, allow_empty: bool = False) -> TextEmbedding:
        # Same validation as every encoder; chunking is left to the inner encoder.
        texts = check_texts(texts, allow_empty)
        if not texts:
            raise TextEncoderError("encode() needs at least one prompt")
        return self._encode(texts)

    def _encode(self, texts: list[str]) -> TextEmbedding:
        unique = list(dict.fromkeys(texts))
        found: dict[str, TextEmbedding] = {}
        for t in unique:
            row = self.cache.get(self.identity, t)
            if row is not None:
                found[t] = row
        missing = [t for t in unique if t not in found]
        self.hits += len(found)
        self.misses += len(missing)
        if missing:
            fresh = self.inner.encode(missing, allow_empty=True)  # prompts were checked above
            for i, t in enumerate(missing):
                row = fresh.select([i])
                self.cache.put(self.identity, t, row)
                found[t] = row
        return TextEmbedding.concat([found[t] for t in texts])

    def __repr__(self) -> str:
        return f"CachedTextEncoder({self.inner!r}, {str(self.cache.root)!r})"
