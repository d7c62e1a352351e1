"""`varclip cache`: precompute token pyramids (and caption embeddings) once, train from them.

The frozen VQVAE encoder and the frozen text encoder cost as much as a small transformer's
step, for the same output every epoch. A cache stores, for every data row in data-set order,
its token ids (all scales, (L,) ints), its class id or its caption embedding, in sharded
safetensors files plus `index.json`:

    index.json            {"format": "varclip-token-cache", "kind", "num_samples", "patch_nums",
                           "image_size", "tokenizer_config", "text_encoder", "shards": [...], ...}
    quantizer.safetensors the tokenizer's quantizer (codebook + phi convs): the teacher-forcing
                          input is rebuilt from ids with it, so training never runs the VAE
    shard-00000.safetensors  ids (n, L) int16/int32; labels (n,) or text_pooled (n, D)
                          [+ text_tokens (n, T, Dt), text_mask (n, T)]
    captions.jsonl        the captions (text data), for sample grids

Images are center-cropped (the eval transform): random-crop augmentation is traded for speed.
Unusable images are left out, not stood in for: each shard also stores `rows`, the data-set
index of every row it holds, so captions.jsonl lists exactly the cached rows' captions, and the
command ends with "N of M images skipped". Shards are written atomically and skipped when
already present with the same fingerprint, so an interrupted `varclip cache` resumes; under
torchrun each rank writes every world_size-th shard.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from ..config import ConfigError, TokenizerConfig, from_dict, to_dict
from ..data.base import skip_line
from ..devices import parse_dtype
from ..tokenizer import MultiScaleQuantizer
from .checkpointing import atomic_write_text
from .components import (
    load_frozen_text_encoder,
    load_frozen_tokenizer,
    make_image_dataset,
    tokenizer_dir,
    transformer_config,
)
from .config import TrainConfig, load_config
from .distributed import DistEnv, barrier, init_distributed, shutdown

FORMAT, VERSION = "varclip-token-cache", 1
INDEX = "index.json"


def cache_present(path: str | Path) -> bool:
    return bool(path) and (Path(path) / INDEX).is_file()


def _shard_name(i: int) -> str:
    return f"shard-{i:05d}.safetensors"


def _atomic_save(tensors: dict[str, torch.Tensor], path: Path, metadata: dict[str, str]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp), metadata=metadata)
    tmp.replace(path)


def _fingerprint(info: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(info, sort_keys=True).encode()).hexdigest()[:16]


def _file_digest(path: Path) -> str:
    """Cheap identity of a tokenizer checkpoint: size and mtime of its files."""
    files = sorted(path.rglob("*")) if path.is_dir() else [path]
    h = hashlib.sha256()
    for f in files:
        if f.is_file():
            st = f.stat()
            h.update(f"{f.name}:{st.st_size}:{int(st.st_mtime)}".encode())
    return h.hexdigest()[:16]


# ---------------------------------------------------------------------------- reading


@dataclass
class CacheIndex:
    path: Path
    info: dict[str, Any]

    @property
    def kind(self) -> str:
        return self.info["kind"]

    @property
    def num_samples(self) -> int:
        return int(self.info["num_samples"])

    @property
    def patch_nums(self) -> tuple[int, ...]:
        return tuple(self.info["patch_nums"])

    @property
    def tokenizer_config(self) -> TokenizerConfig:
        return from_dict(TokenizerConfig, self.info["tokenizer_config"])


def read_index(path: str | Path) -> CacheIndex:
    path = Path(path)
    f = path / INDEX
    if not f.is_file():
        raise ConfigError(f"no token cache at {path} (missing {INDEX}); build it with `varclip cache CONFIG`")
    try:
        info = json.loads(f.read_text())
    except json.JSONDecodeError:
        raise ConfigError(f"{f}: invalid JSON") from None
    if info.get("format") != FORMAT:
        raise ConfigError(f"{f}: not a varclip token cache")
    if info.get("version") != VERSION:
        raise ConfigError(f"{f}: cache version {info.get('version')} is not supported (expected {VERSION})")
    return CacheIndex(path, info)


class TokenCache:
    """A whole cache in memory (ids as compact ints: ImageNet at 256 px is ~1.7 GB)."""

    def __init__(self, path: str | Path):
        self.index = read_index(path)
        self.path = self.index.path
        parts: dict[str, list[torch.Tensor]] = {}
        for shard in self.index.info["shards"]:
            if shard["count"] == 0:  # every image of the shard was unusable
                continue
            d = load_file(str(self.path / shard["file"]))
            if d["ids"].shape[0] != shard["count"]:
                raise ConfigError(f"{self.path / shard['file']}: {d['ids'].shape[0]} rows, index says {shard['count']}")
            for k, v in d.items():
                parts.setdefault(k, []).append(v)
        self.ids = torch.cat(parts["ids"])
        self.labels = torch.cat(parts["labels"]) if "labels" in parts else None
        self.text_pooled = torch.cat(parts["text_pooled"]) if "text_pooled" in parts else None
        self.text_tokens = self.text_mask = None
        if "text_tokens" in parts:
            T = max(t.shape[1] for t in parts["text_tokens"])
            self.text_tokens = torch.cat([torch.nn.functional.pad(t, (0, 0, 0, T - t.shape[1]))
                                          for t in parts["text_tokens"]])
            self.text_mask = torch.cat([torch.nn.functional.pad(m, (0, T - m.shape[1]), value=False)
                                        for m in parts["text_mask"]])
        if self.ids.shape[0] != self.index.num_samples:
            raise ConfigError(f"{self.path}: {self.ids.shape[0]} rows, index says {self.index.num_samples}")

    def __len__(self) -> int:
        return self.ids.shape[0]

    def quantizer(self, device: torch.device | str = "cpu") -> MultiScaleQuantizer:
        """The tokenizer's quantizer alone: enough to rebuild the teacher-forcing input."""
        tc = self.index.tokenizer_config
        q = MultiScaleQuantizer(tc.vocab_size, tc.z_channels, len(self.index.patch_nums), tc.share_quant_resi,
                                tc.quant_resi, tc.beta)
        sd = load_file(str(self.path / "quantizer.safetensors"))
        q.load_state_dict(sd, strict=True)
        q.requires_grad_(False)
        return q.to(device).eval()

    def captions(self, n: int) -> list[str]:
        f = self.path / "captions.jsonl"
        out: list[str] = []
        if f.is_file():
            with open(f, encoding="utf-8") as fh:
                for line in fh:
                    if len(out) >= n:
                        break
                    out.append(json.loads(line))
        return out


# ---------------------------------------------------------------------------- writing


def _shard_meta(file: Path) -> dict[str, str]:
    try:
        with safe_open(str(file), framework="pt") as f:
            return f.metadata() or {}
    except Exception:
        return {}


def _shard_complete(file: Path, fingerprint: str, lo: int, hi: int) -> bool:
    meta = _shard_meta(file) if file.is_file() else {}
    return meta.get("fingerprint") == fingerprint and meta.get("range") == f"{lo}:{hi}"


class _Rows(torch.utils.data.Dataset):
    """(data-set index, item or why it is unusable) of some rows: nothing is stood in."""

    def __init__(self, dataset: Any, indices: range):
        self.dataset, self.indices = dataset, indices

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, k: int) -> tuple[int, Any]:
        i = self.indices[k]
        return i, self.dataset.try_item(i)


def _collate_rows(batch: list[tuple[int, Any]]) -> tuple[list[int], torch.Tensor | None, list[Any], list[tuple[int, str]]]:
    """(kept indices, their images, their targets, [(index, reason)] of the unusable ones)."""
    good = [(i, item) for i, item in batch if not isinstance(item, str)]
    bad = [(i, item) for i, item in batch if isinstance(item, str)]
    images = torch.stack([item[0] for _, item in good]) if good else None
    return [i for i, _ in good], images, [item[1] for _, item in good], bad


def build_cache(cfg: TrainConfig, out_dir: str | Path, batch_size: int = 64, shard_size: int = 10000,
                text_dtype: str = "fp32", env: DistEnv | None = None, log: Any = print) -> CacheIndex:
    """Encode every row of the configured data set once (see the module docstring)."""
    env = env or DistEnv()
    out = Path(out_dir)
    tcfg = transformer_config(cfg.model)
    dataset = make_image_dataset(cfg.data, cfg.seed, augment=False)
    n = len(dataset)
    tok = load_frozen_tokenizer(cfg.model.tokenizer, tcfg, cfg.data.image_size, env.device)
    encoder = None
    if cfg.data.kind == "text":
        encoder = load_frozen_text_encoder(cfg.model.text_encoder, tcfg.text_dim, env.device)
    tdtype = parse_dtype(text_dtype) or torch.float32
    id_dtype = torch.int16 if tcfg.vocab_size <= 2 ** 15 else torch.int32
    source = cfg.data.root if cfg.data.kind == "class" else cfg.data.manifest
    info: dict[str, Any] = {
        "format": FORMAT, "version": VERSION, "kind": cfg.data.kind, "source_rows": n,
        "patch_nums": list(tcfg.patch_nums), "image_size": cfg.data.image_size, "transform": "center_crop",
        "source": str(Path(source).resolve()), "tokenizer": str(tokenizer_dir(cfg.model.tokenizer).resolve()),
        "tokenizer_digest": _file_digest(tokenizer_dir(cfg.model.tokenizer)),
        "tokenizer_config": to_dict(tok.cfg), "text_encoder": cfg.model.text_encoder if encoder else None,
        "text_encoder_identity": getattr(encoder, "identity", None), "text_dtype": text_dtype if encoder else None,
        "shard_size": shard_size,
    }
    fingerprint = _fingerprint(info)
    info["fingerprint"] = fingerprint
    if env.is_main:
        out.mkdir(parents=True, exist_ok=True)
    barrier(env)
    num_shards = max(1, math.ceil(n / shard_size))
    t0 = time.perf_counter()
    for s in range(num_shards):
        lo, hi = s * shard_size, min(n, (s + 1) * shard_size)
        if s % env.world_size != env.rank:
            continue
        file = out / _shard_name(s)
        if _shard_complete(file, fingerprint, lo, hi):
            log(f"shard {s + 1}/{num_shards}: already complete, kept")
            continue
        loader = torch.utils.data.DataLoader(_Rows(dataset, range(lo, hi)), batch_size=batch_size, shuffle=False,
                                             num_workers=cfg.data.num_workers, collate_fn=_collate_rows)
        rows, ids, labels, pooled, tokens, masks = [], [], [], [], [], []
        for kept, images, targets, bad in loader:
            for i, reason in bad:
                log(f"skipped row {i}: {reason}")
            if not kept:
                continue
            rows.extend(kept)
            with torch.no_grad():
                pyramid = tok.encode(images.to(env.device))  # at tcfg's scales: load_frozen_tokenizer
            ids.append(torch.cat(pyramid, dim=1).to(id_dtype).cpu())
            if encoder is None:
                labels.append(torch.as_tensor(targets, dtype=torch.long))
            else:
                emb = encoder.encode(list(targets))
                pooled.append(emb.pooled.to(tdtype).cpu())
                if tcfg.cross_attn and emb.tokens is not None:
                    tokens.append(emb.tokens.to(tdtype).cpu())
                    masks.append(emb.mask.cpu())
        L = sum(p * p for p in tcfg.patch_nums)
        tensors = {"ids": torch.cat(ids) if ids else torch.zeros(0, L, dtype=id_dtype),
                   "rows": torch.tensor(rows, dtype=torch.long)}
        if labels:
            tensors["labels"] = torch.cat(labels)
        if pooled:
            tensors["text_pooled"] = torch.cat(pooled)
        if tokens:
            from ..text import TextEmbedding
            cat = TextEmbedding.concat([TextEmbedding(p, t, m) for p, t, m in zip(pooled, tokens, masks)])
            tensors["text_tokens"], tensors["text_mask"] = cat.tokens, cat.mask
        _atomic_save(tensors, file, {"fingerprint": fingerprint, "range": f"{lo}:{hi}", "count": str(len(rows))})
        log(f"shard {s + 1}/{num_shards}: {len(rows)} rows ({time.perf_counter() - t0:.1f} s)")
    barrier(env)
    if env.is_main:
        shards, kept = [], []
        for s in range(num_shards):  # every rank's shards: which data-set rows they hold
            with safe_open(str(out / _shard_name(s)), framework="pt") as f:
                rows = f.get_tensor("rows").tolist()
            shards.append({"file": _shard_name(s), "count": len(rows)})
            kept.extend(rows)
        if not kept:
            raise ConfigError(f"no usable image in {source}: nothing to cache")
        q_sd = {k: v.detach().cpu().contiguous() for k, v in tok.quantize.state_dict().items()}
        _atomic_save(q_sd, out / "quantizer.safetensors", {"fingerprint": fingerprint})
        if encoder is not None:
            captions = dataset.captions
            atomic_write_text(out / "captions.jsonl", "".join(json.dumps(captions[i]) + "\n" for i in kept))
        if cfg.data.kind == "class":
            info["classes"] = list(dataset.classes)
        skipped = len(dataset.dropped) + n - len(kept)
        info.update(num_samples=len(kept), skipped=skipped, shards=shards)
        atomic_write_text(out / INDEX, json.dumps(info, indent=1) + "\n")
        if skipped:
            log(skip_line(dataset.name, skipped, dataset.num_total, dataset.unit))
    barrier(env)
    return read_index(out)


def check_cache(index: CacheIndex, cfg: TrainConfig, patch_nums: tuple[int, ...]) -> None:
    """One-line errors when a cache was made for another pipeline than this config's."""
    info = index.info
    if index.kind != cfg.data.kind:
        raise ConfigError(f"the cache at {index.path} holds {index.kind} data but data.kind is {cfg.data.kind}")
    if tuple(index.patch_nums) != tuple(patch_nums):
        raise ConfigError(f"the cache at {index.path} has patch_nums {index.patch_nums}, the transformer "
                          f"{tuple(patch_nums)}: rebuild it")
    if int(info["image_size"]) != cfg.data.image_size:
        raise ConfigError(f"the cache at {index.path} holds {info['image_size']} px images, data.image_size is "
                          f"{cfg.data.image_size}")
    if index.kind == "text" and cfg.model.text_encoder and info.get("text_encoder") != cfg.model.text_encoder:
        raise ConfigError(f"the cache at {index.path} was encoded with {info.get('text_encoder')!r}, "
                          f"model.text_encoder is {cfg.model.text_encoder!r}")


# ---------------------------------------------------------------------------- command line


def cli_cache(argv: list[str]) -> int:
    """`varclip cache CONFIG [key=value ...] [--out DIR]`: build the cache a training config uses."""
    ap = argparse.ArgumentParser(prog="varclip cache", description="Precompute token pyramids (and caption "
                                 "embeddings) of a training config's data set.")
    ap.add_argument("config", help="training config YAML (its data and model sections are used)")
    ap.add_argument("overrides", nargs="*", help="dotted overrides, e.g. data.root=/data/imagenet/train")
    ap.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--out", help="cache directory (default: data.cache_dir of the config)")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--shard-size", type=int, default=10000, help="rows per shard file")
    ap.add_argument("--text-dtype", default="fp32", help="fp32 | fp16 | bf16 storage of caption embeddings")
    args = ap.parse_args(argv)
    from .runner import resolve_config_path
    cfg = load_config(TrainConfig, resolve_config_path(args.config), [*args.overrides, *args.sets])
    out = args.out or cfg.data.cache_dir
    if not out:
        raise ConfigError("no cache directory: pass --out DIR or set data.cache_dir")
    if args.batch_size < 1 or args.shard_size < 1:
        raise ConfigError("--batch-size and --shard-size must be >= 1")
    import torch.distributed as dist
    owned = not (dist.is_available() and dist.is_initialized())
    env = init_distributed(cfg.device, cfg.dist.backend, cfg.dist.timeout_minutes)
    try:
        log = print if env.is_main else (lambda *a, **k: None)
        index = build_cache(cfg, out, args.batch_size, args.shard_size, args.text_dtype, env, log)
        log(f"wrote a token cache of {index.num_samples} rows ({index.kind}) to {index.path}")
    finally:
        if owned:
            shutdown()
    return 0


__all__ = ["FORMAT", "VERSION", "INDEX", "cache_present", "CacheIndex", "read_index", "TokenCache", "build_cache",
           "check_cache", "cli_cache"]
