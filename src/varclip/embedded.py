"""The embedded default model that ships inside the package, and `varclip demo`."""

from __future__ import annotations

import time
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


def _random_demo(out: str | Path, device: str) -> list[Path]:
    """A grid from a small RANDOMLY INITIALISED class model: shows the machinery, not quality."""
    import torch

    from .config import named_tokenizer, named_transformer
    from .grid import save_images
    from .model import VARTransformer
    from .pipeline import VARPipeline
    from .tokenizer import VQTokenizer

    torch.manual_seed(0)
    pipe = VARPipeline(VQTokenizer(named_tokenizer("tiny")), VARTransformer(named_transformer("tiny"))).to(device)
    res = pipe(class_labels=list(range(8)), num_images=1, cfg=1.5, top_k=0, top_p=0.0, seed=0)
    caps = [f"class {int(c)}" for c in res.conditions]
    return save_images(res.images, out, caps, title="RANDOMLY INITIALISED tiny model (untrained): noise is expected")


def run_demo(out: str | Path, device: str = "cpu") -> int:
    t0 = time.perf_counter()
    if not (EMBEDDED / "config.json").is_file():
        paths = _random_demo(out, device)
    else:
        from .grid import save_images
        from .pipeline import VARPipeline
        pipe = VARPipeline.from_pretrained(EMBEDDED, device=device)
        res = pipe(DEMO_CAPTIONS, num_images=2, seed=0, per_sample_seeds=True)  # the model's sampling settings
        caps = [c for c in DEMO_CAPTIONS for _ in range(2)]
        paths = save_images(res.images, out, caps, ncol=8,
                            title="embedded emoji model: first row training captions, second row new wordings")
    print(f"wrote {paths[0]} ({time.perf_counter() - t0:.1f} s)")
    return 0
