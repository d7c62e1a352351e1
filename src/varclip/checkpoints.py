"""Checkpoints: the official .pth layouts (import and export) and our native directory format.

This is the only module that knows the official layout. Official files are read with
`torch.load(weights_only=True)` (no pickled code runs); our own format is safetensors.

Native model directory:
    config.json               {"format": "varclip", "version": 1, "tokenizer": {...},
                               "transformer": {...} | null, "text_encoder": "spec" | null}
    tokenizer.safetensors
    transformer.safetensors   (absent for a tokenizer-only directory)

Official files we export get a sidecar beside them (`var.pth` -> `var.varclip.json`): the exact
config and the records that the official layout has no place for (GroupNorm groups, text_norm,
the text encoder, sampling and training records). Loading an official file reads its sidecar back,
so native -> official -> native gives the same model; without one, what the tensors cannot tell
takes the official defaults.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from .config import SCHEDULES, TokenizerConfig, TransformerConfig, from_dict, to_dict, tokens_in
from .errors import OptionError
from .model.transformer import VARTransformer
from .tokenizer import VQTokenizer

FORMAT, VERSION = "varclip", 1


class CheckpointError(ValueError):
    """A checkpoint that cannot be used; the message is one line naming the problem."""


class CheckpointOptionError(CheckpointError, OptionError):
    """A checkpoint that needs an argument from the caller (named as Python or the CLI knows it)."""


def _schedule_error(template: str) -> CheckpointOptionError:
    return CheckpointOptionError(template, "patch_nums=(1, 2, ...)", "--patch-nums 1,2,...")


# ---------------------------------------------------------------------------- reading files


def read_official(path: str | Path, mmap: bool = False) -> dict[str, torch.Tensor]:
    """An official .pth as a flat state dict (VAR-CLIP's {'trainer': {'var_wo_ddp': sd}} unwrapped).

    mmap=True (the model loaders): the tensors stay mapped from the file, read on first use;
    the file must then be replaced (as `save_official` does), not rewritten in place, while
    they are alive. A plain dict for the caller is read into memory.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        obj = _torch_load(path, mmap)
    except Exception as e:  # corrupt file, pickle with code, not a torch file
        raise CheckpointError(f"{path}: not a loadable PyTorch checkpoint: corrupt, not a torch file, or it "
                              f"holds Python objects, which varclip never unpickles ({type(e).__name__})") from None
    if isinstance(obj, dict) and "trainer" in obj and isinstance(obj["trainer"], dict):
        obj = obj["trainer"].get("var_wo_ddp", obj["trainer"])
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"{path}: not a state dict of tensors")
    return {k.removeprefix("module."): v for k, v in obj.items()}


def _torch_load(path: Path, mmap: bool) -> Any:
    """torch.load, memory-mapped if asked and the format allows it (zip files, as torch.save
    writes since 1.6): tensors are read from the page cache on first use, not copied in."""
    if mmap:
        try:
            return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError:  # the legacy (pre-zip) format cannot be mapped
            pass
    return torch.load(path, map_location="cpu", weights_only=True)


class _NoInit(torch.overrides.TorchFunctionMode):
    """Every torch.nn.init function returns its tensor untouched (see `_assigned`)."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if getattr(func, "__module__", None) == "torch.nn.init":
            return args[0] if args else next(iter(kwargs.values()))
        return func(*args, **kwargs)


def _assigned(build: Callable[[], Any], sd: dict[str, torch.Tensor], what: str) -> Any:
    """`build()` without weight initialisation, then the tensors of `sd` assigned, in eval mode.

    No second copy: memory-mapped float32 tensors stay mapped and the never-initialised
    weights are never touched (so never resident). Not a meta-device build: meta ops run
    through torch's Python references, which import torch._dynamo (about a second).
    """
    with _NoInit():
        module = build()
    _load_strict(module, sd, what, assign=True)
    return module.eval()


def kind_of(sd: dict[str, torch.Tensor]) -> str:
    if "encoder.conv_in.weight" in sd and "quantize.embedding.weight" in sd:
        return "tokenizer"
    if "blocks.0.attn.mat_qkv.weight" in sd and "head.weight" in sd:
        return "transformer"
    raise CheckpointError("state dict is neither a VAR tokenizer (VQVAE) nor a VAR transformer")


# ---------------------------------------------------------------------------- tokenizer


def tokenizer_config_from_state(sd: dict[str, torch.Tensor], patch_nums: tuple[int, ...] | None = None
                                ) -> TokenizerConfig:
    """Infer the VQVAE architecture from an official state dict."""
    try:
        return _tokenizer_config(sd, patch_nums)
    except (KeyError, IndexError) as e:
        raise CheckpointError(f"incomplete tokenizer state dict: missing {e}") from None


def _tokenizer_config(sd: dict[str, torch.Tensor], patch_nums: tuple[int, ...] | None) -> TokenizerConfig:
    if kind_of(sd) != "tokenizer":
        raise CheckpointError("expected a tokenizer (VQVAE) state dict, got a transformer")
    V, Cvae = sd["quantize.embedding.weight"].shape
    ch = sd["encoder.conv_in.weight"].shape[0]
    levels = sorted({int(k.split(".")[2]) for k in sd if k.startswith("encoder.down.")})
    ch_mult = tuple(sd[f"encoder.down.{i}.block.0.conv2.weight"].shape[0] // ch for i in levels)
    nrb = len({k.split(".")[4] for k in sd if k.startswith("encoder.down.0.block.")})
    if any(k.startswith("quantize.quant_resi.qresi_ls.") for k in sd):
        share = len({k.split(".")[3] for k in sd if k.startswith("quantize.quant_resi.qresi_ls.")})
    elif "quantize.quant_resi.qresi.weight" in sd:
        share = 1
    else:
        share = 0
    K = sd["quantize.ema_vocab_hit_SV"].shape[0] if "quantize.ema_vocab_hit_SV" in sd else None
    if patch_nums is None:
        matches = [s for s in SCHEDULES.values() if len(s) == K]
        patch_nums = matches[0] if matches else SCHEDULES[256]
    return TokenizerConfig(vocab_size=V, z_channels=Cvae, ch=ch, ch_mult=ch_mult, num_res_blocks=nrb,
                           attn="encoder.mid.attn_1.qkv.weight" in sd, share_quant_resi=share,
                           in_channels=sd["encoder.conv_in.weight"].shape[1],
                           quant_conv_ks=sd["quant_conv.weight"].shape[-1], patch_nums=tuple(patch_nums))


def tokenizer_from_official(path_or_sd: str | Path | dict, patch_nums: tuple[int, ...] | None = None,
                            record: dict[str, Any] | None = None) -> VQTokenizer:
    """A VQVAE from an official file (and its sidecar, if any) or a state dict (and `record`)."""
    sd, record = _official_input(path_or_sd, record)
    cfg = tokenizer_config_from_state(sd, patch_nums)
    if record.get("tokenizer"):
        cfg = _recorded_config(TokenizerConfig, record, "tokenizer", patch_nums)
    sd = dict(sd)
    ema = sd.get("quantize.ema_vocab_hit_SV")
    if ema is not None and ema.shape[0] != len(cfg.patch_nums):  # usage stats of another schedule
        sd["quantize.ema_vocab_hit_SV"] = torch.zeros(len(cfg.patch_nums), ema.shape[1])
    return _assigned(lambda: VQTokenizer(cfg), sd, "tokenizer")


def _host(t: torch.Tensor) -> torch.Tensor:
    """A CPU copy for saving (meta tensors, used for layout checks, stay meta)."""
    return t if t.is_meta else t.detach().cpu().contiguous()


def tokenizer_to_official(tok: VQTokenizer) -> dict[str, torch.Tensor]:
    return {k: _host(v) for k, v in tok.state_dict().items()}


# ---------------------------------------------------------------------------- scale schedules

_SEARCH_BUDGET = 100_000  # partial schedules tried before the search counts as inconclusive


def schedules_with(tokens: int, scales: int, limit: int = 2) -> list[tuple[int, ...]] | None:
    """Up to `limit` schedules of `scales` strictly increasing sides, the first 1, whose squares sum
    to `tokens`; None when the search ran past its budget (too many to tell)."""
    found: list[tuple[int, ...]] = []
    budget = [_SEARCH_BUDGET]

    def least(lo: int, k: int) -> int:  # smallest square sum of k increasing sides from lo
        return sum((lo + i) ** 2 for i in range(k))

    def most(rem: int, k: int) -> int:  # largest square sum of k increasing sides, none over sqrt(rem)
        top = math.isqrt(rem)
        return sum((top - i) ** 2 for i in range(k)) if top >= k else -1

    def search(prefix: list[int], rem: int, k: int) -> bool:
        budget[0] -= 1
        if budget[0] < 0:
            return False
        if k == 0:
            if rem == 0:
                found.append(tuple(prefix))
            return len(found) < limit
        side = prefix[-1] + 1
        while side * side + least(side + 1, k - 1) <= rem:
            if most(rem - side * side, k - 1) >= rem - side * side:
                if not search(prefix + [side], rem - side * side, k - 1):
                    return False
            side += 1
        return True

    if tokens >= 1 and scales >= 1:
        complete = search([1], tokens - 1, scales - 1)
        if not complete and len(found) < limit:
            return None
    return found


def infer_schedule(sd: dict[str, torch.Tensor]) -> tuple[int, ...]:
    """The scale schedule of an official transformer state dict, by this rule:
    1. `lvl_1L` (every official VAR and VAR-CLIP file has it) gives each token's scale: side k is
       the square root of the number of tokens of scale k.
    2. Without it, from L (pos_1LC) and the number of scales n (rows of lvl_embed): the one
       schedule of n strictly increasing sides, the first 1, whose squares sum to L; e.g. 6 scales
       of 130 tokens can only be 1,2,3,4,6,8. None or several (the 256 px count of 680 tokens in
       10 scales fits several): an error asking for the schedule."""
    lvl = sd.get("lvl_1L")
    if lvl is not None and lvl.numel() and not lvl.is_floating_point():
        counts = torch.bincount(lvl.flatten().long().cpu()).tolist()
        sides = tuple(math.isqrt(c) for c in counts)
        if all(s > 0 and s * s == c for s, c in zip(sides, counts)) and list(sides) == sorted(set(sides)):
            return sides
    L, n = sd["pos_1LC"].shape[1], sd["lvl_embed.weight"].shape[0]
    found = schedules_with(L, n)
    if found is not None and len(found) == 1:
        return found[0]
    if not found:
        why = "too many schedules to tell" if found is None else "no schedule of increasing sides from 1 fits"
        raise _schedule_error(f"the checkpoint has {L} tokens in {n} scales: {why}; pass the schedule as {{option}}")
    shown = " or ".join(",".join(map(str, s)) for s in found)
    raise _schedule_error(f"the checkpoint's {L} tokens in {n} scales fit several schedules ({shown}, ...); "
                          "pass the schedule as {option}")


# ---------------------------------------------------------------------------- sidecars

SIDECAR_FORMAT = "varclip-sidecar"
_SIDECAR_OWN = ("format", "version", "file", "sha256", "tokenizer", "transformer")


def sidecar_path(pth: str | Path) -> Path:
    """`var.pth` -> `var.varclip.json`."""
    pth = Path(pth)
    return pth.with_name(pth.stem + ".varclip.json")


def write_sidecar(pth: Path, part: str, cfg: TokenizerConfig | TransformerConfig, extra: dict[str, Any]) -> Path:
    """The sidecar of `pth` (written first): its exact `part` config, `extra` records and checksum."""
    from .weights import file_digest
    record = {"format": SIDECAR_FORMAT, "version": VERSION, "file": pth.name, "sha256": file_digest(pth),
              part: to_dict(cfg), **extra}
    text = json.dumps(record, indent=1) + "\n"
    side = sidecar_path(pth)
    _atomic_write(side, lambda tmp: Path(tmp).write_text(text))
    return side


def read_sidecar(pth: str | Path) -> dict[str, Any]:
    """The sidecar of an official file, {} when it has none. One written for other weights (its
    checksum differs) is refused: its settings would silently apply to the wrong model."""
    pth, side = Path(pth), sidecar_path(pth)
    if not side.is_file():
        return {}
    from .weights import file_digest
    try:
        record = json.loads(side.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{side}: invalid JSON ({type(e).__name__})") from None
    if not isinstance(record, dict) or record.get("format") != SIDECAR_FORMAT:
        raise CheckpointError(f"{side}: not a varclip sidecar (format {record.get('format') if isinstance(record, dict) else None!r})")
    if record.get("sha256") != file_digest(pth):
        raise CheckpointError(f"{side} was written for other weights than {pth.name} (checksum differs); "
                              "delete it or convert the model again")
    return record


def sidecar_extras(record: dict[str, Any]) -> dict[str, Any]:
    """The records a sidecar carries beyond the config (text_encoder, sampling, training)."""
    return {k: v for k, v in record.items() if k not in _SIDECAR_OWN}


def _official_input(path_or_sd: str | Path | dict, record: dict[str, Any] | None
                    ) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    if isinstance(path_or_sd, dict):
        return path_or_sd, record or {}
    sd = read_official(path_or_sd, mmap=True)
    return sd, record if record is not None else read_sidecar(path_or_sd)


def _recorded_config(cls: type, record: dict[str, Any], part: str, patch_nums: tuple[int, ...] | None) -> Any:
    """The sidecar's config of `part`, at `patch_nums` when the caller gave a schedule."""
    cfg = from_dict(cls, record[part], f"sidecar {record.get('file', '')}: {part}")
    return replace(cfg, patch_nums=tuple(patch_nums)) if patch_nums else cfg


# ---------------------------------------------------------------------------- transformer

_COND_RENAMES = {"cond.class_emb.": "class_emb.", "cond.cond_proj.": "cond_proj.", "cond.noise.": "noise."}


def transformer_config_from_state(sd: dict[str, torch.Tensor], resolution: int | None = None,
                                  patch_nums: tuple[int, ...] | None = None) -> TransformerConfig:
    """Infer depth/width/heads/shared AdaLN/vocab/condition from the tensors; the schedule from
    `patch_nums`, `resolution`, or the token count L."""
    try:
        return _transformer_config(sd, resolution, patch_nums)
    except (KeyError, IndexError) as e:
        raise CheckpointError(f"incomplete transformer state dict: missing {e}") from None


def _transformer_config(sd: dict[str, torch.Tensor], resolution: int | None,
                        patch_nums: tuple[int, ...] | None) -> TransformerConfig:
    if kind_of(sd) != "transformer":
        raise CheckpointError("expected a transformer state dict, got a tokenizer (VQVAE)")
    C, Cvae = sd["word_embed.weight"].shape
    depth = len({k.split(".")[1] for k in sd if k.startswith("blocks.")})
    L = sd["pos_1LC"].shape[1]
    if patch_nums is None and resolution is not None:
        patch_nums = SCHEDULES.get(resolution)
        if patch_nums is None:
            raise _schedule_error(f"no official schedule for resolution {resolution} (known: {sorted(SCHEDULES)}); "
                                  "pass the schedule as {option}")
    if patch_nums is None:
        patch_nums = infer_schedule(sd)
    if tokens_in(tuple(patch_nums)) != L:
        raise CheckpointOptionError(f"{{option}} {','.join(map(str, patch_nums))} gives {tokens_in(tuple(patch_nums))} "
                                    f"tokens but the checkpoint has L={L}", "patch_nums", "--patch-nums")
    l2 = "blocks.0.attn.scale_mul_1H11" in sd
    heads = sd["blocks.0.attn.scale_mul_1H11"].shape[1] if l2 else max(1, C // 64)
    text_dim = sd["cond_proj.weight"].shape[1] if "cond_proj.weight" in sd else 0
    num_classes = sd["class_emb.weight"].shape[0] - 1 if "class_emb.weight" in sd else 0
    return TransformerConfig(depth=depth, embed_dim=C, num_heads=heads,
                             mlp_ratio=sd["blocks.0.ffn.fc1.weight"].shape[0] / C,
                             shared_aln="shared_ada_lin.1.weight" in sd, attn_l2_norm=l2,
                             patch_nums=tuple(patch_nums), vocab_size=sd["head.weight"].shape[0],
                             z_channels=Cvae, num_classes=num_classes, text_dim=text_dim)


def transformer_from_official(path_or_sd: str | Path | dict, resolution: int | None = None,
                              patch_nums: tuple[int, ...] | None = None, record: dict[str, Any] | None = None
                              ) -> VARTransformer:
    """A transformer from an official file (and its sidecar, if any) or a state dict (and `record`)."""
    sd, record = _official_input(path_or_sd, record)
    cfg = transformer_config_from_state(sd, resolution, patch_nums)
    if record.get("transformer"):
        cfg = _recorded_config(TransformerConfig, record, "transformer", cfg.patch_nums if patch_nums or resolution
                               else None)
    ours = {}
    for k, v in sd.items():
        if k in ("lvl_1L", "attn_bias_for_masking") or k.endswith("attn.zero_k_bias"):
            continue  # derived buffers: rebuilt, not loaded
        for old, new in _COND_RENAMES.items():
            if k.startswith(new):
                k = old + k[len(new):]
        ours[k] = v
    return _assigned(lambda: VARTransformer(cfg, init=False), ours, "transformer")


def transformer_to_official(model: VARTransformer) -> dict[str, torch.Tensor]:
    """Our transformer as the official state dict: same keys, shapes, dtypes and order."""
    if model.cfg.cross_attn:
        raise CheckpointError("models with cross-attention have no official layout; use the native format")
    ours = {k: _host(v) for k, v in model.state_dict().items()}
    rename = {}
    for k in ours:
        new = k
        for old, off in _COND_RENAMES.items():
            if k.startswith(old):
                new = off + k[len(old):]
        rename[k] = new
    out: dict[str, torch.Tensor] = {"pos_start": ours["pos_start"], "pos_1LC": ours["pos_1LC"],
                                    "lvl_1L": _host(model.lvl_1L).clone(),
                                    "attn_bias_for_masking": _host(model.block_causal_mask())}

    def take(prefix: str) -> None:
        for k, v in ours.items():
            if rename[k].startswith(prefix) and rename[k] not in out:
                out[rename[k]] = v

    take("word_embed.")
    take("noise.")
    take("cond_proj.")
    take("class_emb.")
    take("lvl_embed.")
    take("shared_ada_lin.")
    C = model.C
    for i, b in enumerate(model.blocks):
        p = f"blocks.{i}."
        take(p + "ada_gss")
        take(p + "attn.scale_mul_1H11")
        take(p + "attn.q_bias")
        take(p + "attn.v_bias")
        out[p + "attn.zero_k_bias"] = torch.zeros(C, device=ours["pos_start"].device)
        take(p + "attn.")
        take(p + "ffn.")
        take(p + "ada_lin.")
    take("head_nm.")
    take("head.")
    missing = set(rename.values()) - set(out)
    if missing:
        raise CheckpointError(f"internal: keys not exported: {sorted(missing)[:5]}")
    return out


def check_compatible(tokenizer: VQTokenizer, transformer: VARTransformer | TransformerConfig, what: str = "tokenizer"
                     ) -> None:
    """The one tokenizer/transformer check: a transformer predicts codes of one codebook, so
    vocabulary and code width must agree. The schedule is the transformer's (the tokenizer is
    re-scheduled to it), so it is not compared here."""
    q = tokenizer.quantize
    c = transformer.cfg if isinstance(transformer, VARTransformer) else transformer
    if q.vocab_size != c.vocab_size or q.channels != c.z_channels:
        raise CheckpointError(f"{what} (vocab {q.vocab_size}, Cvae {q.channels}) does not match the transformer "
                              f"(vocab {c.vocab_size}, Cvae {c.z_channels})")


# ---------------------------------------------------------------------------- strict loading


def _load_strict(module: torch.nn.Module, sd: dict[str, torch.Tensor], what: str, assign: bool = False) -> None:
    own = module.state_dict()
    missing = sorted(set(own) - set(sd))
    unexpected = sorted(set(sd) - set(own))
    misshaped = sorted(k for k in set(own) & set(sd) if tuple(own[k].shape) != tuple(sd[k].shape))
    if missing or unexpected or misshaped:
        parts = []
        for name, keys in (("missing", missing), ("unexpected", unexpected), ("misshaped", misshaped)):
            if keys:
                shown = ", ".join(keys[:4]) + (f" (+{len(keys) - 4} more)" if len(keys) > 4 else "")
                parts.append(f"{name} keys: {shown}")
        raise CheckpointError(f"{what} checkpoint does not fit the model: " + "; ".join(parts))
    module.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in sd.items()},
                           strict=True, assign=assign)


# ---------------------------------------------------------------------------- native directories


def _atomic_write(path: Path, write: Callable[[str], Any]) -> None:
    """`write(tmp)` a temporary file beside `path`, then rename it over `path`: readers see the
    old file or the new one, never a partial one."""
    from .data.atomic import atomic_output
    with atomic_output(path) as tmp:
        write(str(tmp))


def _tensors(module: torch.nn.Module, dtype: torch.dtype | None) -> dict[str, torch.Tensor]:
    out = {}
    for k, v in module.state_dict().items():
        v = v.detach().cpu()
        if dtype is not None and v.is_floating_point():
            v = v.to(dtype)
        out[k] = v.contiguous()
    return out


_OWN_KEYS = ("format", "version", "tokenizer", "transformer", "text_encoder")  # written by save_model_dir


def extra_fields(cfg: dict[str, Any]) -> dict[str, Any]:
    """The config.json entries beyond the model itself ("sampling", "training"): what a copy keeps."""
    return {k: v for k, v in cfg.items() if k not in _OWN_KEYS}


def save_model_dir(path: str | Path, tokenizer: VQTokenizer | None = None, transformer: VARTransformer | None = None,
                   text_encoder: str | None = None, extra: dict[str, Any] | None = None,
                   dtype: torch.dtype | None = None) -> Path:
    """Write a native model directory (files replaced atomically, config last)."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    cfg: dict[str, Any] = {"format": FORMAT, "version": VERSION,
                           "tokenizer": to_dict(tokenizer.cfg) if tokenizer is not None else None,
                           "transformer": to_dict(transformer.cfg) if transformer is not None else None,
                           "text_encoder": text_encoder}
    if extra:
        cfg.update(extra)
    for name, module in (("tokenizer", tokenizer), ("transformer", transformer)):
        if module is not None:
            tensors = _tensors(module, dtype)
            _atomic_write(path / f"{name}.safetensors", lambda tmp: save_file(tensors, tmp))
    text = json.dumps(cfg, indent=1) + "\n"
    _atomic_write(path / "config.json", lambda tmp: Path(tmp).write_text(text))
    return path


def read_model_config(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    cfg_file = path / "config.json"
    if not cfg_file.is_file():
        raise CheckpointError(f"{path}: not a varclip model directory (no config.json)")
    try:
        cfg = json.loads(cfg_file.read_text())
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{cfg_file}: invalid JSON ({e.msg} at line {e.lineno})") from None
    if cfg.get("format") != FORMAT:
        raise CheckpointError(f"{cfg_file}: not a varclip model config (format {cfg.get('format')!r})")
    return cfg


def _read_safetensors(file: Path) -> dict[str, torch.Tensor]:
    if not file.is_file():
        raise CheckpointError(f"missing weights file: {file}")
    try:
        return load_file(str(file))
    except Exception as e:
        raise CheckpointError(f"{file}: unreadable safetensors file ({type(e).__name__})") from None


def load_model_dir(path: str | Path, device: str | torch.device = "cpu"
                   ) -> tuple[VQTokenizer | None, VARTransformer | None, dict[str, Any]]:
    """Read a native model directory: (tokenizer, transformer, config dict), in eval mode."""
    path = Path(path)
    cfg = read_model_config(path)
    tok = model = None
    if cfg.get("tokenizer"):
        tcfg = from_dict(TokenizerConfig, cfg["tokenizer"], "tokenizer")
        tok = _assigned(lambda: VQTokenizer(tcfg), _read_safetensors(path / "tokenizer.safetensors"), "tokenizer")
        tok = tok.to(device)
    if cfg.get("transformer"):
        mcfg = from_dict(TransformerConfig, cfg["transformer"], "transformer")
        model = _assigned(lambda: VARTransformer(mcfg, init=False), _read_safetensors(path / "transformer.safetensors"),
                          "transformer")
        model = model.to(device)
    return tok, model, cfg


def _load_part(path: str | Path, part: str, official: Callable[[Path], Any]) -> Any:
    """The tokenizer or transformer (`part`) of a native directory, or `official(path)` of a file."""
    path = Path(path)
    if not path.is_dir():
        return official(path)
    tok, model, _ = load_model_dir(path)
    module = tok if part == "tokenizer" else model
    if module is None:
        raise CheckpointError(f"{path}: the model directory has no {part}")
    return module


def load_tokenizer(path: str | Path, patch_nums: tuple[int, ...] | None = None) -> VQTokenizer:
    """A tokenizer from a native directory or an official VQVAE .pth, at `patch_nums` if given."""
    tok = _load_part(path, "tokenizer", lambda p: tokenizer_from_official(p, patch_nums))
    return tok.set_schedule(patch_nums) if patch_nums else tok


def load_transformer(path: str | Path, resolution: int | None = None) -> VARTransformer:
    return _load_part(path, "transformer", lambda p: transformer_from_official(p, resolution))


def save_official(sd: dict[str, torch.Tensor], path: str | Path, wrap_varclip: bool = False) -> None:
    """Write an official .pth (VAR-CLIP's wrapper with `wrap_varclip`); a sidecar of the file it
    replaces is removed, as it describes other weights."""
    path = Path(path)
    obj: Any = {"trainer": {"var_wo_ddp": sd}} if wrap_varclip else sd
    sidecar_path(path).unlink(missing_ok=True)
    _atomic_write(path, lambda tmp: torch.save(obj, tmp))


def export_official(dst: str | Path, tokenizer: VQTokenizer | None, transformer: VARTransformer | None,
                    text_encoder: str | None = None, extra: dict[str, Any] | None = None) -> list[Path]:
    """native -> official: `vae.pth` and `var.pth` (VAR-CLIP's wrapper for text models), each with
    its sidecar; the text encoder and the `extra` records go with the transformer (else the
    tokenizer). Returns the files written."""
    dst = Path(dst)
    dst.mkdir(parents=True, exist_ok=True)
    records = {"text_encoder": text_encoder, **(extra or {})} if transformer is not None else dict(extra or {})
    written: list[Path] = []
    if tokenizer is not None:
        save_official(tokenizer_to_official(tokenizer), dst / "vae.pth")
        side = write_sidecar(dst / "vae.pth", "tokenizer", tokenizer.cfg, {} if transformer is not None else records)
        written += [dst / "vae.pth", side]
    if transformer is not None:
        save_official(transformer_to_official(transformer), dst / "var.pth", wrap_varclip=transformer.cfg.is_text)
        written += [dst / "var.pth", write_sidecar(dst / "var.pth", "transformer", transformer.cfg, records)]
    return written
