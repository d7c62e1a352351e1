"""`varclip train CONFIG`: train a VAR (class) or VAR-CLIP (text) generator.

One optimizer step, per micro-batch: images -> frozen tokenizer -> token pyramid (or ids read
from a token cache) -> teacher-forcing input -> transformer logits -> cross-entropy over all
tokens; condition dropout for classifier-free guidance; then gradient clipping, AdamW, the lr
schedule and the optional EMA. Around it: DDP / FSDP2 under torchrun, bf16/fp16 autocast,
gradient accumulation, atomic resumable checkpoints, metrics, sample grids, and the export of a
native model directory that `varclip generate` loads.

Determinism is a design goal, not an accident: a step's rows come from (seed, step), its
condition-dropout mask from (seed, step) over the GLOBAL batch, and all RNG states are in the
checkpoints. So 1 and N processes with the same global batch follow the same loss curve, and a
killed run resumed with `--resume auto` repeats the uninterrupted run step for step.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..checkpoints import load_transformer, save_model_dir
from ..config import ConfigError, TransformerConfig
from ..devices import parse_dtype
from ..model import Cond, VARTransformer
from .batches import Batch, CachedData, ImageData, TrainData, rows_per_rank
from .cache import TokenCache, cache_present, check_cache
from .checkpointing import Checkpoint, CheckpointManager, seed_everything
from .components import (
    check_model_data,
    load_frozen_text_encoder,
    load_frozen_tokenizer,
    make_image_dataset,
    transformer_config,
)
from .config import TrainConfig
from .distributed import (
    DistEnv,
    all_reduce_mean,
    broadcast_object,
    full_model_state,
    full_optimizer_state,
    load_full_model_state,
    load_full_optimizer_state,
    no_grad_sync,
    resolve_strategy,
    wrap_model,
)
from .ema import EMA
from .amp import make_grad_scaler, scaler_step, set_tf32
from .heldout import HeldoutBatch, HeldoutTracker, heldout_losses
from .losses import Progressive, drop_mask, scale_index, token_loss
from .optim import LRSchedule, build_optimizer, clip_grad_norm, peak_lr
from .runner import LoopTrainer, parse_run_args, resolve_config_path, run_trainer, total_steps, train_cli

_PREFIX = "model."


class CondDropNet(nn.Module):
    """The module that is trained (and wrapped by DDP / sharded by FSDP): it swaps the dropped
    rows' condition for the null condition, then runs the transformer.

    The swap is done with `torch.where` even when no row is dropped, so the null parameters
    (VAR-CLIP's `noise`) are always part of the graph: DDP and FSDP need every rank to produce
    the same set of gradients, and a text batch may drop no row on one rank.
    """

    def __init__(self, model: VARTransformer):
        super().__init__()
        self.model = model

    def forward(self, cond: Cond, x_in: torch.Tensor, drop: torch.Tensor) -> torch.Tensor:
        cond = cond.where(drop, self.model.cond.null(x_in.shape[0], x_in.device))
        return self.model(cond, x_in)


def _strip(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k.removeprefix(_PREFIX): v for k, v in sd.items()}


def _prefix(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {_PREFIX + k: v for k, v in sd.items()}


@dataclass
class TrainResult:
    out_dir: Path
    model_dir: Path | None
    steps: int
    last_loss: float | None


class GeneratorTrainer(LoopTrainer):
    """Builds everything from a TrainConfig in __init__; `run()` trains and exports."""

    result_type = TrainResult
    progress_keys = {"loss": "loss", "lr": "lr", "img_s": "images_per_s"}

    def __init__(self, cfg: TrainConfig, env: DistEnv):
        self.cfg, self.env = cfg, env
        self.device = env.device
        if self.device.type == "cuda":
            set_tf32(cfg.tf32)
        self.out = Path(cfg.out_dir)
        self.tcfg: TransformerConfig = transformer_config(cfg.model)
        self.patch_nums = tuple(self.tcfg.patch_nums)
        self.rows, self.micro = rows_per_rank(cfg, env)
        self.data = self._build_data()
        check_model_data(self.tcfg, self.data.kind, self.data.num_classes)
        self.total = total_steps(cfg.schedule, self.data.steps_per_epoch)
        self._frozen_parts()
        self._build_model()
        lc = cfg.loss
        self.schedule = LRSchedule.from_config(cfg.schedule, self.total, cfg.grad_accum, lc.progressive_fraction)
        its = self.schedule.total  # schedule iterations (micro-batches when they are counted)
        self.progressive = Progressive(self.patch_nums, its, lc.progressive_start_scales, lc.progressive_fraction,
                                       self.schedule.warmup_exact, lc.progressive_ramp_fraction * its)
        self.autocast_dtype = parse_dtype(cfg.precision)
        self.scaler = make_grad_scaler(self.device.type, self.strategy == "fsdp") if cfg.precision == "fp16" else None
        self.ema = EMA(self.net, cfg.ema_decay) if cfg.ema_decay > 0 else None
        self.lvl = scale_index(self.patch_nums).to(self.device)
        w = cfg.loss.scale_weights
        if w and len(w) != len(self.patch_nums):
            raise ConfigError(f"loss.scale_weights has {len(w)} values but the model has {len(self.patch_nums)} scales")
        self.scale_weights = torch.tensor(w, dtype=torch.float32, device=self.device) if w else None
        mode = cfg.loss.cond_drop_mode
        self.drop_mode = mode if mode != "auto" else ("exact" if self.data.kind == "text" else "bernoulli")
        self.ckpt = CheckpointManager(self.out / "checkpoints", cfg.checkpoint.keep_last, env)
        self._full_tok = None
        self._eval_model: VARTransformer | None = None
        self._text_memo: dict[str, Any] = {}
        self.heldout = HeldoutTracker()
        self._heldout_batches: list[HeldoutBatch] | None = None

    # ------------------------------------------------------------------ construction
    def _build_data(self) -> TrainData:
        cfg, env = self.cfg, self.env
        d = cfg.data
        use = d.use_cache != "off" and bool(d.cache_dir) and (d.use_cache == "on" or cache_present(d.cache_dir))
        if d.use_cache == "on" and not cache_present(d.cache_dir):
            raise ConfigError(f"data.use_cache is on but there is no token cache at {d.cache_dir or '(unset)'}; "
                              f"build it with `varclip cache CONFIG`")
        self.cache: TokenCache | None = None
        if use:
            self.cache = TokenCache(d.cache_dir)
            check_cache(self.cache.index, cfg, self.patch_nums)
            return CachedData(self.cache, self.rows, env, cfg.seed, d.fill_last)
        dataset = make_image_dataset(d, cfg.seed, augment=True)
        return ImageData(dataset, d.kind, self.rows, env, cfg.seed, d.num_workers, d.fill_last)

    def _frozen_parts(self) -> None:
        """The quantizer (always), and the VAE and text encoder when reading images."""
        cfg = self.cfg
        self.tokenizer = self.text_encoder = None
        if self.cache is not None:
            self.quantizer = self.cache.quantizer(self.device)
            return
        self.tokenizer = load_frozen_tokenizer(cfg.model.tokenizer, self.tcfg, cfg.data.image_size, self.device)
        self.quantizer = self.tokenizer.quantize
        if self.data.kind == "text":
            self.text_encoder = load_frozen_text_encoder(cfg.model.text_encoder, self.tcfg.text_dim, self.device)

    def _build_model(self) -> None:
        cfg, env = self.cfg, self.env
        seed_everything(cfg.seed)  # same initial weights on every rank
        if cfg.model.init_from:
            model = load_transformer(cfg.model.init_from)
            if model.cfg != self.tcfg:
                model = self._rebuild_like(model)
        else:
            model = VARTransformer(self.tcfg)
        self.model = model.to(self.device).train()
        self.net = CondDropNet(self.model)
        self.strategy = resolve_strategy(cfg.dist.strategy, env)
        self.train_module = wrap_model(self.net, env, self.strategy, shard_units=list(self.model.blocks),
                                       reshard_after_forward=cfg.dist.fsdp_reshard_after_forward)
        self.step_module = torch.compile(self.train_module) if cfg.compile else self.train_module
        self.optimizer = build_optimizer(self.net, cfg.optim, cfg.batch_size)
        self.peak_lr = peak_lr(cfg.optim, cfg.batch_size)

    def _rebuild_like(self, loaded: VARTransformer) -> VARTransformer:
        """init_from with arch overrides: same tensors where shapes agree (e.g. new drop rates)."""
        model = VARTransformer(self.tcfg)
        own = model.state_dict()
        src = loaded.state_dict()
        bad = [k for k in own if k not in src or src[k].shape != own[k].shape]
        if bad:
            raise ConfigError(f"model.init_from does not fit model.arch: {len(bad)} tensors differ, e.g. {bad[0]}")
        model.load_state_dict(src)
        return model

    # ------------------------------------------------------------------ one step
    def _tokens(self, mb: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """(target ids (B, L), teacher-forcing input (B, L - p_1^2, Cvae))."""
        pn = self.patch_nums
        with torch.no_grad():
            if mb.ids is not None:
                ids = mb.ids.to(self.device, non_blocking=True)
            else:
                pyramid = self.tokenizer.encode(mb.images.to(self.device, non_blocking=True))
                ids = torch.cat(pyramid, dim=1)
            pyramid = list(ids.split([p * p for p in pn], dim=1))
            x_in = self.quantizer.teacher_forcing_input(pyramid, pn)
        return ids, x_in

    def _cond(self, mb: Batch) -> Cond:
        if mb.labels is not None:
            return Cond(mb.labels.to(self.device))
        if mb.text:
            pooled, tokens, mask = mb.text["pooled"], mb.text.get("tokens"), mb.text.get("mask")
        else:
            emb = self._encode_captions(mb.captions)
            pooled, tokens, mask = emb.pooled, emb.tokens, emb.mask
        if not self.tcfg.cross_attn or tokens is None:
            return Cond(pooled.to(self.device))
        return Cond(pooled.to(self.device), tokens.to(self.device), mask.to(self.device))

    def _encode_captions(self, captions: list[str]) -> Any:
        """Caption embeddings through a memo: the frozen encoder sees each distinct caption once
        (up to data.text_memo_size of them), as every epoch repeats the same captions."""
        from ..text import TextEmbedding
        memo, limit = self._text_memo, self.cfg.data.text_memo_size
        missing = [c for c in dict.fromkeys(captions) if c not in memo]
        if missing:
            emb = self.text_encoder.encode(missing)
            rows = {c: emb.select([i]) for i, c in enumerate(missing)}
            if len(memo) + len(rows) <= limit:
                memo.update(rows)
            else:
                return TextEmbedding.concat([memo[c] if c in memo else rows[c] for c in captions])
        return TextEmbedding.concat([memo[c] for c in captions])

    def train_step(self, batch: Batch, step: int) -> dict[str, torch.Tensor]:
        """One optimizer step on this rank's rows; returns local metric tensors (not synced) and,
        under "micro", what each micro-batch used (schedule values are set per micro-batch, as the
        official code does; the optimizer step uses those of the last one)."""
        cfg, env = self.cfg, self.env
        K = len(self.patch_nums)
        first = self.patch_nums[0] ** 2
        global_mask = drop_mask(self.rows * env.world_size, cfg.loss.cond_drop_rate, self.drop_mode, cfg.seed, step)
        mask = global_mask[env.rank * self.rows:(env.rank + 1) * self.rows]
        self.schedule.step = step
        sums = torch.zeros(2 + 2 * K, device=self.device)  # loss, acc, scale losses, scale accs
        micro: dict[str, list[Any]] = {"loss": [], "lr": [], "wd": [], "scales": [], "ramp": []}
        for i in range(cfg.grad_accum):
            it = self.schedule.iteration(step, i)
            lr = self.schedule.apply(self.optimizer, it)
            k_now = self.progressive.scales(it)
            ed = sum(p * p for p in self.patch_nums[:k_now])
            weights = self.progressive.token_weights(it, self.scale_weights)
            lo, hi = i * self.micro, (i + 1) * self.micro
            mb = batch.rows(lo, hi)
            target, x_in = self._tokens(mb)
            target, x_in = target[:, :ed], x_in[:, : ed - first]
            cond = self._cond(mb)
            drop = mask[lo:hi].to(self.device)
            with no_grad_sync(self.train_module, self.strategy, skip=i < cfg.grad_accum - 1):
                with self._autocast():
                    logits = self.step_module(cond, x_in, drop)
                out = token_loss(logits, target, self.lvl[:ed], K, cfg.loss.label_smoothing, self.scale_weights,
                                 weights)
                loss = out.loss / cfg.grad_accum
                (self.scaler.scale(loss) if self.scaler is not None else loss).backward()
            sums += torch.cat((out.loss.detach().view(1), out.acc.view(1), out.scale_loss.nan_to_num(0.0),
                               out.scale_acc.nan_to_num(0.0)))
            for key, v in zip(micro, (out.loss.detach(), lr, self._weight_decay(), k_now,
                                      self.progressive.ramp_weight(it))):
                micro[key].append(v)
        if self.scaler is not None:
            self.scaler.unscale_(self.optimizer)
        grad_norm = clip_grad_norm(self.net.parameters(), cfg.optim.grad_clip)
        ok = self.finite_step(sums[0], grad_norm if self.scaler is None else 0.0)
        if self.scaler is not None:  # skips non-finite gradients itself
            scaler_step(self.scaler, self.optimizer)
        elif ok:
            self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        if self.ema is not None and ok:
            self.ema.update(self.net)
        self.schedule.advance()
        return {"sums": sums / cfg.grad_accum, "grad_norm": torch.tensor(grad_norm),
                "lr": torch.tensor(lr, dtype=torch.float64), "wd": torch.tensor(micro["wd"][-1], dtype=torch.float64),
                "micro": micro,
                "scales": torch.tensor(k_now), "skipped": not ok}

    def _weight_decay(self) -> float:
        """The weight decay of the decayed parameter group now (0 when nothing is decayed)."""
        return max(g["weight_decay"] for g in self.optimizer.param_groups)

    def _metrics(self, local: dict[str, torch.Tensor], images_per_s: float, epoch: int) -> dict[str, Any]:
        K = len(self.patch_nums)
        s = all_reduce_mean(local["sums"], self.env).cpu()
        k_now = int(local["scales"])
        m: dict[str, Any] = {"loss": float(s[0]), "acc": float(s[1]), "lr": float(local["lr"]),
                             "grad_norm": float(local["grad_norm"]), "images_per_s": round(images_per_s, 2),
                             "epoch": epoch, "wd": float(local["wd"])}
        if k_now < K:
            m["scales"] = k_now
        for k in range(k_now):
            m[f"scale_loss/{k:02d}"] = float(s[2 + k])
            m[f"scale_acc/{k:02d}"] = float(s[2 + K + k])
        if self.scaler is not None:
            m["loss_scale"] = float(self.scaler.get_scale())
        if self.device.type == "cuda":
            m["gpu_mem_gb"] = round(torch.cuda.max_memory_allocated(self.device) / 2 ** 30, 3)
        return m

    # ------------------------------------------------------------------ checkpoints
    def _model_state(self, use_ema: bool) -> dict[str, torch.Tensor]:
        """Full transformer state (collective); EMA values swapped in when asked and present."""
        sd = _strip(full_model_state(self.net))
        if use_ema and self.ema is not None:
            ema = _strip(self.ema.state_dict())
            if self.env.is_main:
                sd.update(ema)
        return sd

    def save_checkpoint(self, steps_done: int, last_loss: float | None) -> None:
        tensors = {"model": _strip(full_model_state(self.net))}
        if self.ema is not None:
            tensors["ema"] = _strip(self.ema.state_dict())
        opt_state = full_optimizer_state(self.net, self.optimizer)
        state = {
            "optimizer": opt_state,
            "schedule": self.schedule.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler is not None else {},
            "data": self._data_state(steps_done),
            "heldout": self.heldout.state_dict(),
        }
        meta = {"total_steps": self.total, "loss": last_loss, "strategy": self.strategy}
        self.ckpt.save(steps_done, tensors if self.env.is_main else {}, state, meta)

    def load_checkpoint(self, ck: Checkpoint, state: dict[str, Any]) -> None:
        load_full_model_state(self.net, _prefix(ck.tensors("model")))
        load_full_optimizer_state(self.net, self.optimizer, state["optimizer"])
        for g in self.optimizer.param_groups:  # the lr rule of THIS config wins
            g["peak_lr"] = self.peak_lr
        self.schedule.load_state_dict(state["schedule"])
        self.heldout.load_state_dict(state.get("heldout", {}))
        if self.scaler is not None and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        if self.ema is not None:
            self.ema.load_state_dict(_prefix(ck.tensors("ema") if ck.has("ema") else ck.tensors("model")))

    # ------------------------------------------------------------------ samples and export
    def full_tokenizer(self) -> Any:
        """The whole VQVAE (for sample grids and the export), loaded on first use."""
        if self._full_tok is None:
            path = self.cfg.model.tokenizer or (self.cache.index.info.get("tokenizer") if self.cache else "")
            if self.tokenizer is not None:
                self._full_tok = self.tokenizer
            else:
                self._full_tok = load_frozen_tokenizer(path, self.tcfg, self.cfg.data.image_size, self.device)
        return self._full_tok

    def text_encoder_spec(self) -> str | None:
        if not self.tcfg.is_text:
            return None
        return self.cfg.model.text_encoder or (self.cache.index.info.get("text_encoder") if self.cache else None)

    def eval_model(self) -> VARTransformer | None:
        """The weights to sample from, on rank 0 (None elsewhere). Collective under FSDP / EMA."""
        if self.strategy != "fsdp" and self.ema is None:
            return self.model if self.env.is_main else None
        sd = self._model_state(use_ema=True)
        if not self.env.is_main:
            return None
        if self._eval_model is None:
            with torch.random.fork_rng(devices=[]):  # building must not move the training RNG
                self._eval_model = VARTransformer(self.tcfg).to(self.device)
        self._eval_model.load_state_dict(sd)
        return self._eval_model.eval()

    def _sample_cond(self, n: int) -> tuple[Cond, list[str]]:
        lc = self.cfg.logging
        if not self.tcfg.is_text:
            num = self.data.num_classes or self.tcfg.num_classes
            labels = lc.sample_classes or [i % num for i in range(n)]
            return Cond(torch.tensor(labels, device=self.device)), [f"class {c}" for c in labels]
        if not lc.sample_prompts and isinstance(self.data, CachedData):
            text, caps = self.data.sample_text(n)
            return self._cond(Batch(ids=torch.zeros(len(caps), 1), text=text)), caps
        caps = lc.sample_prompts or self.data.sample_captions(n)
        if self.text_encoder is None:
            self.text_encoder = load_frozen_text_encoder(self.text_encoder_spec() or "", self.tcfg.text_dim,
                                                         self.device)
        return self._cond(Batch(ids=torch.zeros(len(caps), 1), captions=caps)), caps

    def preview_grid(self, step: int) -> Path | None:
        """Generate a grid with the current (EMA) weights; written by rank 0."""
        lc = self.cfg.logging
        if lc.sample_count < 1:
            return None
        model = self.eval_model()
        if model is None:
            return None
        from ..data.images import to_pil
        from ..grid import make_grid, save_image_atomic
        from ..sampling import generate
        was_training = model.training
        cond, caps = self._sample_cond(lc.sample_count)
        sc = lc.sample.replace(seed=lc.sample.seed or 0)  # comparable previews: seed 0 unless given
        model.eval()
        try:
            images, _, _ = generate(model, self.full_tokenizer(), cond, len(cond), sc,
                                    autocast_dtype=self.autocast_dtype)
        finally:
            model.train(was_training)
        grid = make_grid(to_pil(images), ncol=min(8, len(caps)), captions=caps, title=f"step {step}")
        path = save_image_atomic(grid, self.out / "samples" / f"step-{step:08d}.png")
        self.log.image("samples", grid, step)
        return path

    def export(self, steps_done: int, name: str = "model") -> Path | None:
        """The native model directory OUT/<name> (loadable by `varclip generate`)."""
        sd = self._model_state(use_ema=self.cfg.export_ema)
        if not self.env.is_main:
            return None
        with torch.random.fork_rng(devices=[]):
            model = VARTransformer(self.tcfg)
        model.load_state_dict(sd)
        tok = self.full_tokenizer()
        sampling = self.cfg.logging.sample.recommended()  # the preview settings become the model's recommendation
        return save_model_dir(self.out / name, tok, model.eval(), self.text_encoder_spec(),
                              extra={**self._export_extra(steps_done), "sampling": sampling})

    # ------------------------------------------------------------------ held-out evaluation
    def _heldout_data(self) -> list[HeldoutBatch]:
        """The held-out rows (first `heldout.limit`), tokenized and caption-encoded once."""
        if self._heldout_batches is None:
            from ..data.captions import CaptionDataset
            h, pn = self.cfg.heldout, self.patch_nums
            ds = CaptionDataset(h.manifest, self.cfg.data.image_size, train=False)
            if self.text_encoder is None:
                self.text_encoder = load_frozen_text_encoder(self.text_encoder_spec() or "", self.tcfg.text_dim,
                                                             self.device)
            n, tok, self._heldout_batches = min(h.limit, len(ds)), self.full_tokenizer(), []
            with torch.no_grad():
                picks = [i * len(ds) // n for i in range(n)]  # spread over the manifest
                for lo in range(0, n, h.batch_size):
                    rows = [ds[i] for i in picks[lo:lo + h.batch_size]]
                    ids = torch.cat(tok.encode(torch.stack([x for x, _ in rows]).to(self.device)), dim=1)
                    x_in = self.quantizer.teacher_forcing_input(list(ids.split([p * p for p in pn], dim=1)), pn)
                    cond = self._cond(Batch(ids=ids, captions=[c for _, c in rows]))
                    self._heldout_batches.append(HeldoutBatch(ids, x_in, cond))
        return self._heldout_batches

    def should_stop(self, steps_done: int) -> bool:
        """Every `heldout.every` steps: score the held-out rows, export a new best to OUT/best,
        and stop after `heldout.patience` evaluations without improvement."""
        h, tr = self.cfg.heldout, self.heldout
        if not h.every or steps_done % h.every or steps_done <= tr.last_step or not self.tcfg.is_text:
            return tr.stopped
        model = self.eval_model()  # collective under FSDP / EMA
        if model is not None:
            m = heldout_losses(model, self._heldout_data(), self.lvl, self._autocast)
            tr.update(steps_done, m["loss"], h.patience, h.min_delta)
            self.log.log(steps_done, {f"heldout/{k}": v for k, v in m.items()})
            self.log.write(f"step {steps_done}: held-out loss {m['loss']:.4f} (null condition {m['loss_null']:.4f}), "
                           f"best {tr.best:.4f} at step {tr.best_step}")
        tr.load_state_dict(broadcast_object(tr.state_dict(), self.env))
        if tr.best_step == steps_done:
            self.export(steps_done, "best")
        if tr.stopped:
            self.log.write(f"early stop at step {steps_done}: no held-out improvement in {h.patience} evaluations; "
                           f"best weights (step {tr.best_step}) in {self.out / 'best'}")
        return tr.stopped

    # ------------------------------------------------------------------ the loop
    def describe(self, start: int) -> str:
        cfg, env = self.cfg, self.env
        return (f"training {self.total} steps from step {start}: global batch {cfg.batch_size} "
                f"({env.world_size} x {self.rows} rows, {cfg.grad_accum} micro-batches), strategy "
                f"{self.strategy}, {cfg.precision}, {'token cache' if self.cache else 'images'}, "
                f"peak lr {self.peak_lr:.3g}")


# ---------------------------------------------------------------------------- entry points


def train(cfg: TrainConfig) -> TrainResult:
    """Train from a config in this process (joining torchrun's group when launched by it)."""
    return run_trainer(GeneratorTrainer, cfg)


def parse_train_args(argv: list[str]) -> tuple[TrainConfig, argparse.Namespace]:
    return parse_run_args(TrainConfig, argv, "varclip train", "Train a VAR (class) or VAR-CLIP (text) generator.",
                          "tiny_class", "optim.lr=1e-4 schedule.steps=100",
                          "checkpoints, metrics, samples, model")


def cli_train(argv: list[str]) -> int:
    """`varclip train CONFIG [key=value ...] [--resume auto]`; config errors are one-line ValueErrors."""
    return train_cli(argv, parse_train_args, train)


__all__ = ["CondDropNet", "GeneratorTrainer", "TrainResult", "train", "cli_train", "parse_train_args",
           "resolve_config_path"]
