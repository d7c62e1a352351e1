"""Text side of VAR-CLIP: CLIP's BPE tokenizer and text tower, other text encoders behind one
interface, an on-disk embedding cache, prompt analysis and the text parity checks.

Heavy optional dependencies (transformers, ftfy) are imported only by the code paths that need
them, so importing this package stays cheap.
"""

from .bpe import ClipTokenizer, TokenBatch
from .cache import CachedTextEncoder, EmbeddingCache, cache_key
from .clip import ClipLoadError, ClipTextConfig, ClipTextTower, load_clip_text_tower
from .encoders import (
    SPEC_HELP,
    ClipTextEncoder,
    EmptyPromptError,
    HFTextEncoder,
    MiniLMEncoder,
    PromptTruncatedWarning,
    TextEmbedding,
    TextEncoder,
    TextEncoderError,
    load_text_encoder,
)
from .parity import check_clip_text, check_clip_tokenizer

__all__ = [
    "SPEC_HELP", "CachedTextEncoder", "ClipLoadError", "ClipTextConfig", "ClipTextEncoder", "ClipTextTower",
    "ClipTokenizer", "EmbeddingCache", "EmptyPromptError", "HFTextEncoder", "MiniLMEncoder",
    "PromptTruncatedWarning", "TextEmbedding", "TextEncoder", "TextEncoderError", "TokenBatch", "cache_key",
    "check_clip_text", "check_clip_tokenizer", "load_clip_text_tower", "load_text_encoder",
]
