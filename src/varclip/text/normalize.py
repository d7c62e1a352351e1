"""Prompt normalisation for text encoders whose vocabularies cannot read emoji.

WordPiece and SentencePiece vocabularies (MiniLM, BERT, T5) map every emoji to one unknown token,
so "🍎" and "🚀" get the same embedding and an emoji-only prompt always draws the same picture.
Such encoders read emoji by their names instead. CLIP's byte-level BPE does read emoji, and the
official VAR-CLIP tokenisation must not change, so CLIP encoders do not use this.
"""

from __future__ import annotations

import re
import unicodedata
import warnings

_warned = False


def _name(chars: str, data: dict) -> str:
    return " " + data["en"].strip(":").replace("_", " ") + " "


def spell_emoji(text: str) -> str:
    """`text` with each emoji replaced by its English name ("a 🍎" -> "a red apple"). Text without
    emoji comes back unchanged, so its embeddings (and cache entries) stay the same."""
    global _warned
    try:
        import emoji
    except ImportError:
        if not _warned and any(unicodedata.category(c) == "So" for c in text):
            _warned = True
            warnings.warn("emoji in prompts are read as unknown tokens: install the 'emoji' package "
                          "(pip install 'varclip[text]') to have them read by name", stacklevel=3)
        return text
    if not emoji.emoji_count(text):
        return text
    spelled = emoji.replace_emoji(text, replace=_name)
    return re.sub(r"[ \t]{2,}", " ", spelled).strip()


__all__ = ["spell_emoji"]
