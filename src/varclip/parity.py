"""`varclip parity`: run every check a golden case folder defines against the official outputs.

Case kinds (see the parity README): `c2i` and `t2i` model cases, `clip_tokenizer`, `clip_text`;
training-recipe cases of shared/train-parity (a `trajectory.json`, replayed by train/parity.py);
and `--layouts FILE`, which builds every released model from our configs on the meta device
and compares the keys, shapes and dtypes of its official-format export.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file

from .checkpoints import (tokenizer_from_official, tokenizer_to_official, transformer_from_official,
                          transformer_to_official)
from .checks import Check, compare, not_implemented
from .config import SCHEDULES, SamplingConfig, TokenizerConfig, TransformerConfig
from .editing import box_mask
from .model import Cond, VARTransformer
from .sampling import EditSpec, generate
from .tokenizer import VQTokenizer


def run_case(case_dir: str | Path) -> dict[str, Any]:
    case_dir = Path(case_dir)
    if (case_dir / "trajectory.json").is_file():
        from .train.parity import run_train_case
        return run_train_case(case_dir)
    cfg_file = case_dir / ("cases.json" if (case_dir / "cases.json").is_file() else "config.json")
    if not cfg_file.is_file():
        raise ValueError(f"{case_dir}: not a parity case folder (no config.json or cases.json)")
    cfg = json.loads(cfg_file.read_text())
    kind = cfg.get("kind")
    if kind in ("c2i", "t2i"):
        checks = _model_case(case_dir, cfg)
    elif kind == "clip_tokenizer":
        checks = _text_checks("check_clip_tokenizer", case_dir, "clip_tokenizer")
    elif kind == "clip_text":
        checks = _text_checks("check_clip_text", case_dir, "clip_text")
    else:
        raise ValueError(f"{cfg_file}: unknown parity case kind {kind!r}")
    return {"case": case_dir.name, "checks": [c.to_dict() for c in checks], "ok": all(c.ok for c in checks)}


def _text_checks(fn: str, case_dir: Path, name: str) -> list[Check]:
    try:
        from . import text
    except ImportError:  # the text extra is not installed
        return [not_implemented(name)]
    return getattr(text, fn)(case_dir)


def _model_case(case_dir: Path, cfg: dict[str, Any]) -> list[Check]:
    tol = cfg["tolerances"]
    tok = tokenizer_from_official(case_dir / "vae.pth", tuple(cfg["vqvae"]["v_patch_nums"]))
    var = transformer_from_official(case_dir / "var.pth", patch_nums=tuple(cfg["var"]["patch_nums"]))
    inp = load_file(str(case_dir / "inputs.safetensors"))
    exp = load_file(str(case_dir / "expected.safetensors"))
    K = len(var.patch_nums)
    checks: list[Check] = []
    with torch.no_grad():
        f = tok.latent(inp["images"])
        checks.append(compare("enc_f", f, exp["enc_f"], tol["enc_f"]))
        ids, fhats = tok.quantize.encode(f, tok.patch_nums)
        for s in range(K):
            checks.append(compare(f"enc_idx_s{s}", ids[s], exp[f"enc_idx_s{s}"], 0))
            checks.append(compare(f"enc_fhat_s{s}", fhats[s], exp[f"enc_fhat_s{s}"], tol["enc_fhat"]))
        checks.append(compare("recon", tok.fhat_to_img(fhats[-1]), exp["recon"], tol["recon"]))
        # downstream checks use the golden token pyramid, so one failure does not cascade
        gold = [exp[f"enc_idx_s{s}"] for s in range(K)]
        checks.append(compare("decode_idx", tok.decode(gold), exp["decode_idx"], tol["decode_idx"]))
        x_in = tok.quantize.teacher_forcing_input(gold, tok.patch_nums)
        checks.append(compare("var_input", x_in, exp["var_input"], tol["var_input"]))
        cond = Cond(inp["labels"]) if cfg["kind"] == "c2i" else Cond(inp["text_emb"])
        checks.append(compare("logits", var(cond, exp["var_input"]), exp["logits"], tol["logits"]))

    for name, s in cfg.get("samples", {}).items():
        B = s["B"]
        c = _condition(var, cfg["kind"], s.get("label"), inp, B)
        img, got, used = generate(var, tok, c, B, _sampling(s))
        checks += [compare(f"sample_{name}_idx_s{k}", got[k], exp[f"sample_{name}_idx_s{k}"], 0) for k in range(K)]
        checks.append(compare(f"sample_{name}_img", img, exp[f"sample_{name}_img"],
                              tol["img_smooth" if s["more_smooth"] else "img"]))
        if f"sample_{name}_label" in exp:
            checks.append(compare(f"sample_{name}_label", used.value, exp[f"sample_{name}_label"], 0))

    for name, e in cfg.get("edits", {}).items():
        B = inp["images"].shape[0]
        keep = box_mask(e["box"], var.patch_nums[-1], e["mode"])
        checks.append(compare(f"edit_{name}_mask", keep, exp[f"edit_{name}_mask"], tol["mask"]))
        c = _condition(var, cfg["kind"], e.get("label"), inp, B)
        img, got, _ = generate(var, tok, c, B, _sampling(e), edit=EditSpec(gold, keep))
        checks += [compare(f"edit_{name}_idx_s{k}", got[k], exp[f"edit_{name}_idx_s{k}"], 0) for k in range(K)]
        checks.append(compare(f"edit_{name}_img", img, exp[f"edit_{name}_img"],
                              tol["img_smooth" if e["more_smooth"] else "img"]))
    return checks


def _sampling(s: dict[str, Any]) -> SamplingConfig:
    return SamplingConfig(cfg=s["cfg"], top_k=s["top_k"], top_p=s["top_p"], smooth=s["more_smooth"], seed=s["seed"])


def _condition(var: VARTransformer, kind: str, label: Any, inp: dict[str, torch.Tensor], B: int) -> Cond | None:
    if kind == "t2i":
        return Cond(inp["text_emb"][:B])
    if label is None:
        return None
    if isinstance(label, int):
        return var.cond.null(B, "cpu") if label < 0 else Cond(torch.full((B,), label))
    return Cond(torch.tensor(label, dtype=torch.long))


# ---------------------------------------------------------------------------- layouts


def model_from_build(name: str, build: dict[str, Any]) -> torch.nn.Module:
    """Our model for an entry of official_layouts.json, built on the meta device (no memory)."""
    with torch.device("meta"):
        if "vocab_size" in build and "z_channels" in build:  # the VQVAE
            return VQTokenizer(TokenizerConfig(vocab_size=build["vocab_size"], z_channels=build["z_channels"],
                                               ch=build["ch"], share_quant_resi=build["share_quant_resi"],
                                               patch_nums=tuple(build.get("v_patch_nums", SCHEDULES[256]))))
        return VARTransformer(TransformerConfig(
            depth=build["depth"], patch_nums=tuple(build["patch_nums"]), shared_aln=build.get("shared_aln", False),
            num_classes=build.get("num_classes", 0), text_dim=build.get("n_cond_embed", 0)))


def run_layouts(file: str | Path) -> dict[str, Any]:
    layouts = json.loads(Path(file).read_text())
    checks = []
    for name, entry in layouts.items():
        model = model_from_build(name, entry["build"])
        if isinstance(model, VQTokenizer):
            sd = tokenizer_to_official(model)
        else:
            sd = transformer_to_official(model)
        want = entry["keys"]
        got = {k: [list(v.shape), str(v.dtype).removeprefix("torch.")] for k, v in sd.items()}
        missing = sorted(set(want) - set(got))
        extra = sorted(set(got) - set(want))
        wrong = sorted(k for k in set(want) & set(got) if [list(want[k][0]), want[k][1]] != got[k])
        n_params = sum(p.numel() for p in model.parameters())
        note = "; ".join(f"{label}: {', '.join(keys[:3])}" for label, keys in
                         (("missing", missing), ("extra", extra), ("wrong shape/dtype", wrong)) if keys)
        if "params" in entry and n_params != entry["params"]:
            note = (note + "; " if note else "") + f"params {n_params} != {entry['params']}"
        checks.append(Check(f"layout_{name}", float(len(missing) + len(extra) + len(wrong)), 0.0, not note, note))
    return {"case": Path(file).name, "checks": [c.to_dict() for c in checks], "ok": all(c.ok for c in checks)}

