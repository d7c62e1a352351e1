"""varclip: image generation by next-scale prediction (VAR and VAR-CLIP)."""

__version__ = "0.1.0"
