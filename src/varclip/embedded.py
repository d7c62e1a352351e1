"""Where the embedded default model ships inside the package, and the captions `varclip demo` shows."""

from __future__ import annotations

from pathlib import Path

from .config import ConfigError

EMBEDDED = Path(__file__).parent / "assets" / "emoji"
# training captions, then new wordings of seen concepts
DEMO_CAPTIONS = ["red apple", "smiling face", "blue heart", "rocket",
                 "an apple that is red", "a happy smiling face", "heart in blue", "green tree"]


def embedded_model_dir() -> Path:
    if not (EMBEDDED / "config.json").is_file():
        raise ConfigError("no --model given and no embedded model is installed with this copy of varclip")
    return EMBEDDED
