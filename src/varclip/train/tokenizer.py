"""`varclip train-tokenizer CONFIG`: train or fine-tune the multi-scale VQ tokenizer (VQVAE).

The official repository publishes no VAE training code; this follows the VQGAN recipe that VAR's
tokenizer descends from. Per step:

    recon, vq_loss, ids = tokenizer(images)
    loss = l1*|x - recon| + l2*(x - recon)^2 + perceptual*LPIPS(x, recon)       (the "nll")
         + vq*vq_loss                                  (multi-scale commitment/codebook loss)
         + w_adaptive * hinge_g(D(recon))                         (only from disc.start on)
    then a discriminator step on hinge_d(D(x), D(recon.detach())).

Optional: weight EMA (exported instead of the raw weights), dead-code re-seeding, bf16 autocast.
Around it the shared training infrastructure: typed YAML config with dotted overrides, DDP under
torchrun (FSDP is refused: the tokenizer is small), atomic checkpoints with `--resume auto`,
JSONL/tensorboard metrics with the codebook usage of every scale, reconstruction grids, and at
the end a native tokenizer-only directory OUT/tokenizer that every other command loads.

Determinism: a step's rows are a function of (seed, step), re-seeding draws from (seed, step),
and checkpoints hold every RNG state, so a resumed run repeats the uninterrupted one.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..checkpoints import load_tokenizer, save_model_dir
from ..config import ConfigError, TokenizerConfig, from_dict, named_tokenizer, to_dict
from ..data.images import mix_seed
from ..devices import parse_dtype
from ..data.sources import image_source_dataset
from ..tokenizer import VQTokenizer
from .checkpointing import Checkpoint, CheckpointManager, seed_everything
from .config import TokenizerModelConfig, TokenizerTrainConfig
from .distributed import (DistEnv, all_reduce_mean, broadcast_object, full_model_state, full_optimizer_state,
                          load_full_model_state, load_full_optimizer_state, resolve_strategy, wrap_model)
from .ema import EMA
from .optim import LRSchedule, build_optimizer, clip_grad_norm, peak_lr
from .runner import LoopTrainer, parse_run_args, run_trainer, total_steps, train_cli
from .tokenizer_losses import (PatchDiscriminator, PerceptualLoss, adaptive_gan_weight, broadcast_codebook,
                               build_perceptual_loss, gan_active, hinge_d_loss, hinge_g_loss, quantizer_residuals,
                               reseed_dead_codes)


# --------------------------------------------------------------------------- the model


def build_tokenizer(m: TokenizerModelConfig) -> VQTokenizer:
    """A fresh named tokenizer (with `arch` overrides), or the `init_from` checkpoint to fine-tune."""
    pn = tuple(m.patch_nums) if m.patch_nums else None
    if m.init_from:
        if m.arch:
            raise ConfigError("tokenizer.arch cannot change the architecture of tokenizer.init_from")
        if not Path(m.init_from).exists():
            raise ConfigError(f"tokenizer.init_from not found: {m.init_from}")
        return load_tokenizer(m.init_from, pn)
    overrides = {**m.arch, **({"patch_nums": pn} if pn else {})}
    cfg = named_tokenizer(m.config)
    tok = VQTokenizer(from_dict(TokenizerConfig, {**to_dict(cfg), **overrides}, "tokenizer.arch") if overrides else cfg)
    if m.codebook_init == "uniform":
        init_codebook_uniform(tok)
    return tok


def init_codebook_uniform(tok: VQTokenizer) -> None:
    """Codes in U(-1/V, 1/V), close to the origin. With N(0, 1) codes (nn.Embedding's default)
    the small latents of a fresh encoder (std ~0.1) are all nearest to the few shortest codes:
    most codes never win once and are dead from the first step."""
    V = tok.cfg.vocab_size
    with torch.no_grad():
        tok.quantize.embedding.weight.uniform_(-1.0 / V, 1.0 / V)


def last_decoder_layer(tok: VQTokenizer) -> torch.Tensor:
    """The weight at which the adaptive GAN weight compares gradient norms."""
    return tok.decoder.conv_out.weight


# --------------------------------------------------------------------------- the trainer


@dataclass
class TokenizerTrainResult:
    out_dir: Path
    tokenizer_dir: Path | None
    steps: int
    last_loss: float | None


_LOSS_KEYS = ("loss", "l1", "l2", "perceptual", "vq", "g_loss", "gan_weight", "d_loss", "logits_real",
              "logits_fake")


class TokenizerTrainer(LoopTrainer):
    """Builds everything from a TokenizerTrainConfig; `run()` trains, checkpoints and exports."""

    result_type = TokenizerTrainResult
    log_desc = "tokenizer"
    progress_keys = {"loss": "loss", "l1": "l1", "use": "usage/any"}

    def __init__(self, cfg: TokenizerTrainConfig, env: DistEnv):
        self.cfg, self.env, self.device = cfg, env, env.device
        self.out = Path(cfg.out_dir)
        seed_everything(cfg.seed)  # same initial weights on every rank
        self.tok = build_tokenizer(cfg.tokenizer).to(self.device).train()
        self.image_size = cfg.data.image_size or self.tok.cfg.image_size
        try:
            self.tok.cfg.check_image_size(self.image_size)
        except ConfigError as e:
            raise ConfigError(f"data.image_size: {e}") from None
        self.strategy = resolve_strategy(cfg.dist.strategy, env)
        if self.strategy == "fsdp":
            raise ConfigError("dist.strategy fsdp is not supported for the tokenizer (it is small): use ddp")
        self.train_tok = wrap_model(self.tok, env, self.strategy)
        self.optimizer = build_optimizer(self.tok, cfg.optim, cfg.batch_size)
        self.peak_lr = peak_lr(cfg.optim, cfg.batch_size)
        self.disc: PatchDiscriminator | None = None
        if cfg.disc.start >= 0:
            d = cfg.disc
            self.disc = PatchDiscriminator(self.tok.cfg.in_channels, d.ch, d.n_layers, d.norm).to(self.device)
            self.train_disc = wrap_model(self.disc, env, self.strategy)
            self.opt_d = build_optimizer(self.disc, d.optim, cfg.batch_size)
            self.peak_lr_d = peak_lr(d.optim, cfg.batch_size)
        self.perceptual: PerceptualLoss | None = None
        if cfg.loss.perceptual > 0:
            p = build_perceptual_loss(cfg.tokenizer.perceptual_weights, cfg.tokenizer.perceptual_lin_weights)
            self.perceptual = p.to(self.device) if p is not None else None
        self.ema = EMA(self.tok, cfg.ema_decay) if cfg.ema_decay > 0 else None
        self.data = self._build_data()
        self.total = total_steps(cfg.schedule, self.data.steps_per_epoch)
        self.schedule = LRSchedule.from_config(cfg.schedule, self.total)
        self.schedule_d = LRSchedule.from_config(cfg.schedule, self.total)
        self.autocast_dtype = parse_dtype(cfg.precision)
        self.ckpt = CheckpointManager(self.out / "checkpoints", cfg.checkpoint.keep_last, env)
        V, K = self.tok.cfg.vocab_size, len(self.tok.patch_nums)
        self.hits = torch.zeros(K, V, device=self.device)  # code hits since the last metrics record
        self.reseeded = 0
        self.preview: torch.Tensor | None = None

    def _build_data(self) -> Any:
        from .batches import ImageData
        cfg, env = self.cfg, self.env
        if not cfg.data.source:
            raise ConfigError("data.source is not set: give an image folder or a caption manifest")
        if cfg.batch_size % env.world_size:
            raise ConfigError(f"batch_size {cfg.batch_size} is not divisible by the {env.world_size} processes")
        dataset = image_source_dataset(cfg.data.source, self.image_size, train=cfg.data.random_crop, seed=cfg.seed,
                                       hflip=cfg.data.hflip)
        if len(dataset) < cfg.batch_size:
            raise ConfigError(f"{cfg.data.source} has {len(dataset)} images, fewer than one batch of {cfg.batch_size}")
        # kind "text" only means "pass the targets through untouched": we use the images alone
        return ImageData(dataset, "text", cfg.batch_size // env.world_size, env, cfg.seed, cfg.data.num_workers)

    # ------------------------------------------------------------------ one step
    def step_batch(self, batch: Any, step: int) -> dict[str, torch.Tensor]:
        if self.preview is None:  # the first batch's images are the reconstruction previews
            self.preview = batch.images[: self.cfg.logging.sample_count].clone()
        return self.train_step(batch.images, step)

    def train_step(self, images: torch.Tensor, step: int) -> dict[str, torch.Tensor]:
        """One autoencoder step and (once the GAN is on) one discriminator step; local metrics."""
        cfg, L = self.cfg, self.cfg.loss
        x = images.to(self.device, non_blocking=True)
        gan_on = self.disc is not None and gan_active(step, cfg.disc.start)
        zero = torch.zeros((), device=self.device)
        m = dict.fromkeys(_LOSS_KEYS, zero)
        self.schedule.step = step
        lr = self.schedule.apply(self.optimizer)
        self.tok.train()
        with self._autocast():
            rec, vq_loss, ids = self.train_tok(x)
        rec = rec.float()
        l1 = (rec - x).abs().mean()
        l2 = (rec - x).square().mean()
        nll = L.l1 * l1 + L.l2 * l2
        if self.perceptual is not None:
            with self._autocast():
                p = self.perceptual(x, rec).mean()
            nll = nll + L.perceptual * p
            m["perceptual"] = p.detach()
        loss = nll + L.vq * vq_loss.float()
        if gan_on:
            raw = self.disc
            raw.requires_grad_(False)  # the generator step must not touch D's gradients
            try:
                with self._autocast():
                    g_loss = hinge_g_loss(raw(rec))
            finally:
                raw.requires_grad_(True)
            if cfg.disc.adaptive:
                w = adaptive_gan_weight(nll, g_loss, last_decoder_layer(self.tok), cfg.disc.weight,
                                        cfg.disc.max_adaptive)
                w = all_reduce_mean(w, self.env)  # the same balance on every rank
            else:
                w = torch.tensor(cfg.disc.weight, device=self.device)
            loss = loss + w * g_loss
            m["g_loss"], m["gan_weight"] = g_loss.detach(), w.detach()
        loss.backward()
        grad_norm = clip_grad_norm(self.tok.parameters(), cfg.optim.grad_clip)
        ok = self.finite_step(loss.detach(), grad_norm)
        if ok:
            self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        if self.ema is not None and ok:
            self.ema.update(self.tok)
        self.schedule.advance()
        d_norm = 0.0
        if gan_on and ok:
            d_norm = self._disc_step(x, rec.detach(), step, m)
        for s, idx in enumerate(ids):
            self.hits[s] += torch.bincount(idx.flatten(), minlength=self.hits.shape[1]).to(self.hits.dtype)
        if L.reseed_every and (step + 1) % L.reseed_every == 0:
            self.reseeded += self.reseed(x, step)
        m.update(loss=loss.detach(), l1=l1.detach(), l2=l2.detach(), vq=vq_loss.detach().float())
        return {"losses": torch.stack([m[k].float() for k in _LOSS_KEYS]), "lr": torch.tensor(lr),
                "grad_norm": torch.tensor(grad_norm), "d_grad_norm": torch.tensor(d_norm),
                "gan": torch.tensor(float(gan_on)), "skipped": not ok}

    def _disc_step(self, x: torch.Tensor, rec: torch.Tensor, step: int, m: dict[str, torch.Tensor]) -> float:
        """Real and reconstructed images in ONE forward (DDP wants one forward per backward)."""
        self.schedule_d.step = step
        self.schedule_d.apply(self.opt_d)
        self.disc.train()
        with self._autocast():
            logits = self.train_disc(torch.cat([x, rec], 0)).float()
        real, fake = logits.chunk(2, 0)
        d_loss = hinge_d_loss(real, fake)
        d_loss.backward()
        norm = clip_grad_norm(self.disc.parameters(), self.cfg.disc.optim.grad_clip)
        self.opt_d.step()
        self.opt_d.zero_grad(set_to_none=True)
        self.schedule_d.advance()
        m.update(d_loss=d_loss.detach(), logits_real=real.detach().mean(), logits_fake=fake.detach().mean())
        return norm

    @torch.no_grad()
    def reseed(self, x: torch.Tensor, step: int) -> int:
        """Re-seed dead codes from this batch's residuals (decided and drawn on rank 0, then
        broadcast); their AdamW moments and EMA shadows restart too. Returns how many."""
        env, q, L = self.env, self.tok.quantize, self.cfg.loss
        if env.distributed:  # judge usage over all ranks' data
            q.ema_vocab_hit_SV.copy_(all_reduce_mean(q.ema_vocab_hit_SV, env))
        dead: list[int] = []
        if env.is_main:
            f = self.tok.latent(x).float()
            residuals = quantizer_residuals(q, f, self.tok.patch_nums, L.reseed_source)
            gen = torch.Generator().manual_seed(mix_seed(self.cfg.seed, step, 0x5EED))
            dead = reseed_dead_codes(q, residuals.cpu(), L.reseed_threshold, gen).tolist()
        dead = broadcast_object(dead, env)
        broadcast_codebook(q)
        if not dead:
            return 0
        weight = q.embedding.weight
        rows = torch.tensor(dead, device=weight.device)
        for key in ("exp_avg", "exp_avg_sq"):
            state = self.optimizer.state.get(weight, {})
            if key in state:
                state[key][rows] = 0
        if self.ema is not None and "quantize.embedding.weight" in self.ema.names:
            shadow = self.ema.shadow[self.ema.names.index("quantize.embedding.weight")]
            shadow[rows.to(shadow.device)] = weight[rows].to(shadow.dtype)
        return len(dead)

    def _metrics(self, local: dict[str, torch.Tensor], images_per_s: float, epoch: int) -> dict[str, Any]:
        env = self.env
        vals = all_reduce_mean(local["losses"], env).cpu()
        m: dict[str, Any] = {k: float(v) for k, v in zip(_LOSS_KEYS, vals)}
        if not float(local["gan"]):
            for k in ("g_loss", "gan_weight", "d_loss", "logits_real", "logits_fake"):
                m.pop(k)
        if self.perceptual is None:
            m.pop("perceptual")
        if not self.cfg.loss.l2:
            m.pop("l2")
        hits = all_reduce_mean(self.hits, env).cpu()  # mean > 0 <=> hit on some rank
        for s in range(hits.shape[0]):
            m[f"usage/s{s:02d}"] = float((hits[s] > 0).float().mean())
        m["usage/any"] = float((hits.sum(0) > 0).float().mean())
        self.hits.zero_()
        m.update(lr=float(local["lr"]), grad_norm=float(local["grad_norm"]), gan=int(float(local["gan"])),
                 images_per_s=round(images_per_s, 2))
        if float(local["gan"]):
            m["d_grad_norm"] = float(local["d_grad_norm"])
        if self.cfg.loss.reseed_every:
            m["reseeded"] = self.reseeded
            self.reseeded = 0
        if self.device.type == "cuda":
            m["gpu_mem_gb"] = round(torch.cuda.max_memory_allocated(self.device) / 2 ** 30, 3)
        m["epoch"] = epoch
        return m

    # ------------------------------------------------------------------ checkpoints
    def save_checkpoint(self, steps_done: int, last_loss: float | None) -> None:
        tensors = {"tokenizer": full_model_state(self.tok)}
        state: dict[str, Any] = {"optimizer": full_optimizer_state(self.tok, self.optimizer),
                                 "schedule": self.schedule.state_dict(),
                                 "data": self._data_state(steps_done)}
        if self.disc is not None:
            tensors["disc"] = full_model_state(self.disc)
            state["disc_optimizer"] = full_optimizer_state(self.disc, self.opt_d)
            state["disc_schedule"] = self.schedule_d.state_dict()
        if self.ema is not None:
            tensors["ema"] = self.ema.state_dict()
        meta = {"total_steps": self.total, "loss": last_loss, "kind": "tokenizer"}
        self.ckpt.save(steps_done, tensors if self.env.is_main else {}, state, meta)

    def load_checkpoint(self, ck: Checkpoint, state: dict[str, Any]) -> None:
        load_full_model_state(self.tok, ck.tensors("tokenizer"))
        load_full_optimizer_state(self.tok, self.optimizer, state["optimizer"])
        for g in self.optimizer.param_groups:  # the lr rule of THIS config wins
            g["peak_lr"] = self.peak_lr
        self.schedule.load_state_dict(state["schedule"])
        if self.disc is not None and ck.has("disc"):
            load_full_model_state(self.disc, ck.tensors("disc"))
            load_full_optimizer_state(self.disc, self.opt_d, state["disc_optimizer"])
            for g in self.opt_d.param_groups:
                g["peak_lr"] = self.peak_lr_d
            self.schedule_d.load_state_dict(state["disc_schedule"])
        if self.ema is not None:
            self.ema.load_state_dict(ck.tensors("ema") if ck.has("ema") else ck.tensors("tokenizer"))

    # ------------------------------------------------------------------ export and previews
    def export_model(self) -> VQTokenizer:
        """The weights to export: the EMA ones (buffers from the live model) when enabled."""
        if self.ema is None or not self.cfg.export_ema:
            return self.tok
        with torch.random.fork_rng(devices=[]):
            tok = VQTokenizer(self.tok.cfg)
        tok.load_state_dict({k: v.detach().cpu() for k, v in self.tok.state_dict().items()})
        ema = self.ema.state_dict()
        with torch.no_grad():
            for name, p in tok.named_parameters():
                if name in ema:
                    p.copy_(ema[name])
        return tok.to(self.device)

    def export(self, steps_done: int) -> Path | None:
        """The native tokenizer-only directory OUT/tokenizer."""
        if not self.env.is_main:
            return None
        tok = self.export_model()
        return save_model_dir(self.out / "tokenizer", tokenizer=tok.eval(), extra=self._export_extra(steps_done))

    @torch.no_grad()
    def preview_grid(self, step: int) -> Path | None:
        """Originals (top row) and reconstructions (bottom row) of a fixed preview batch."""
        n = self.cfg.logging.sample_count
        if not self.env.is_main or n < 1 or self.preview is None:
            return None
        from ..data.images import to_pil, to_unit
        from ..grid import make_grid, save_image_atomic
        tok = self.export_model()
        was = tok.training
        tok.eval()
        try:
            x = self.preview[:n].to(self.device)
            rec = tok.decode(tok.encode(x))
        finally:
            tok.train(was)
        imgs = to_pil(to_unit(torch.cat([x, rec], 0)))
        grid = make_grid(imgs, ncol=x.shape[0], title=f"step {step}: originals / reconstructions")
        path = save_image_atomic(grid, self.out / "samples" / f"recon-{step:08d}.png")
        self.log.image("reconstructions", grid, step)
        return path

    # ------------------------------------------------------------------ the loop
    def describe(self, start: int) -> str:
        cfg = self.cfg
        return (f"training the tokenizer {self.total} steps from step {start}: global batch {cfg.batch_size} "
                f"({self.env.world_size} process(es)), {self.image_size} px, scales {list(self.tok.patch_nums)}, "
                f"{cfg.precision}, perceptual {'on' if self.perceptual is not None else 'off'}, "
                f"GAN from step {cfg.disc.start if self.disc is not None else 'never'}, lr {self.peak_lr:.3g}")


# --------------------------------------------------------------------------- entry points


def train_tokenizer(cfg: TokenizerTrainConfig) -> TokenizerTrainResult:
    """Train from a config in this process (joining torchrun's group when launched by it)."""
    return run_trainer(TokenizerTrainer, cfg)


def parse_tokenizer_args(argv: list[str]) -> tuple[TokenizerTrainConfig, argparse.Namespace]:
    return parse_run_args(TokenizerTrainConfig, argv, "varclip train-tokenizer",
                          "Train or fine-tune the multi-scale VQ tokenizer (VQVAE).", "tokenizer_tiny",
                          "data.source=DIR schedule.steps=100", "checkpoints, metrics, previews, tokenizer")


def cli_train_tokenizer(argv: list[str]) -> int:
    """`varclip train-tokenizer CONFIG [key=value ...] [--resume auto]`. Config errors are
    one-line ValueErrors (ConfigError) for the caller to print."""
    return train_cli(argv, parse_tokenizer_args, train_tokenizer)


__all__ = ["TokenizerTrainer", "TokenizerTrainResult", "build_tokenizer", "init_codebook_uniform",
           "last_decoder_layer", "train_tokenizer", "parse_tokenizer_args", "cli_train_tokenizer"]
