"""Training: the VAR / VAR-CLIP generator trainer (`varclip train`), the token cache
(`varclip cache`), and generic helpers other trainers reuse: typed YAML configs with dotted
overrides (`config`), the official AdamW recipe and lr schedule (`optim`), DDP / FSDP2 and full
state dicts (`distributed`), atomic resumable checkpoints with RNG states (`checkpointing`),
progress / JSONL / tensorboard logging (`logging`), weight EMA (`ema`), and the run loop and
command-line entry points every trainer shares (`runner`).

Submodules are imported on demand: `import varclip.train` stays cheap.
"""

from __future__ import annotations

from typing import Any


def cli_train(argv: list[str]) -> int:
    from .generator import cli_train as run
    return run(argv)


def cli_cache(argv: list[str]) -> int:
    from .cache import cli_cache as run
    return run(argv)


def __getattr__(name: str) -> Any:
    if name in ("train", "GeneratorTrainer", "TrainResult"):
        from . import generator
        return getattr(generator, name)
    if name == "TrainConfig":
        from .config import TrainConfig
        return TrainConfig
    raise AttributeError(name)


__all__ = ["cli_train", "cli_cache", "train", "GeneratorTrainer", "TrainResult", "TrainConfig"]
