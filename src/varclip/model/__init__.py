"""The next-scale transformer: conditioning, AdaLN blocks, KV-cached attention."""

from .conditioning import ClassConditioning, Cond, TextConditioning, cat_conds
from .transformer import VARTransformer, init_weights

__all__ = ["VARTransformer", "init_weights", "Cond", "ClassConditioning", "TextConditioning", "cat_conds"]
