"""The multi-scale VQ tokenizer: image -> token pyramid -> image."""

from .quantizer import MultiScaleQuantizer, phi_index
from .vqvae import VQTokenizer

__all__ = ["VQTokenizer", "MultiScaleQuantizer", "phi_index"]
