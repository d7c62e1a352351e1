"""Parity checks of the text side against the golden cases (used by ``varclip parity``).

``clip-tokenizer``: every case's 77 ids, both variants, must be equal.
``clip-text-small``: the tokenizer must reproduce ``inputs.tokens`` from ``config.texts``, and
the tower must reproduce the four pooled outputs within ``config.tolerances``.
A missing or unreadable file becomes a failed check with a note rather than an exception, so
one broken case never hides the report of the others.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from varclip.checks import Check, compare

from .bpe import ClipTokenizer
from .clip import ClipLoadError, build_tower, extract_text_tower, infer_config, read_state_dict


def _fail(name: str, note: str) -> Check:
    return Check(name, None, 0.0, False, note)


def check_clip_tokenizer(case_dir: Path) -> list[Check]:
    """One exact check per (case, variant): ``tokenizer/{i:02d}/{variant}``."""
    case_dir = Path(case_dir)
    try:
        data = json.loads((case_dir / "cases.json").read_text())
    except (OSError, json.JSONDecodeError) as e:
        return [_fail("tokenizer", f"cannot read {case_dir / 'cases.json'}: {e}")]
    ctx = int(data.get("context_length", 77))
    checks: list[Check] = []
    tokenizers = {v: ClipTokenizer(v, ctx) for v in ("openai", "varclip")}
    for i, case in enumerate(data["cases"]):
        for variant, tok in tokenizers.items():
            name = f"tokenizer/{i:02d}/{variant}"
            got = tok([case["text"]])[0]
            want = torch.tensor(case[f"ids_{variant}"], dtype=torch.long)
            c = compare(name, got, want, 0.0)
            if not c.ok:
                c.note = f"{c.note}; text {case['text'][:40]!r}".lstrip("; ")
            checks.append(c)
    return checks


def check_clip_text(case_dir: Path) -> list[Check]:
    """``tokens`` (exact) then ``pooled_{gelu,quickgelu}[_norm]`` within the case's tolerances."""
    from safetensors.torch import load_file

    case_dir = Path(case_dir)
    names = ["pooled_gelu", "pooled_quickgelu", "pooled_gelu_norm", "pooled_quickgelu_norm"]
    try:
        cfg = json.loads((case_dir / "config.json").read_text())
        inputs = load_file(str(case_dir / "inputs.safetensors"))
        expected = load_file(str(case_dir / "expected.safetensors"))
        sd, _ = extract_text_tower(read_state_dict(case_dir / "clip.pth"))
    except (OSError, json.JSONDecodeError, ClipLoadError, KeyError) as e:
        return [_fail(n, f"cannot load case {case_dir}: {e}") for n in ["tokens", *names]]

    tokens = inputs["tokens"]
    checks = [compare("tokens", ClipTokenizer("openai", int(cfg.get("context_length", 77)))(cfg["texts"]), tokens, 0)]
    base = infer_config(sd, heads=int(cfg["transformer_heads"]))
    shape = (base.width, base.layers, base.embed_dim, base.vocab_size)
    want_shape = (cfg["transformer_width"], cfg["transformer_layers"], cfg["embed_dim"], cfg["vocab_size"])
    if shape != tuple(want_shape):
        return checks + [_fail(n, f"weights give width/layers/embed/vocab {shape}, config says {want_shape}")
                         for n in names]
    tol = cfg["tolerances"]
    for act in ("gelu", "quickgelu"):
        tower = build_tower(sd, infer_config(sd, heads=base.heads, activation=act))
        with torch.no_grad():
            out = tower.encode(tokens)
        pooled = out.pooled
        normed = torch.nn.functional.normalize(pooled, dim=-1)
        checks.append(compare(f"pooled_{act}", pooled, expected[f"pooled_{act}"], float(tol["pooled"])))
        checks.append(compare(f"pooled_{act}_norm", normed, expected[f"pooled_{act}_norm"], float(tol["pooled_norm"])))
    order = {n: i for i, n in enumerate(["tokens", *names])}
    return sorted(checks, key=lambda c: order[c.name])
