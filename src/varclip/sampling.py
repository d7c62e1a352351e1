"""The one sampler: next-scale prediction with classifier-free guidance, top-k/top-p, Gumbel
smoothing, seeds, and an optional edit mask. It yields after every scale.

It does not know whether the condition is a class or a caption: it receives `Cond` batches and
asks the model's conditioning module for the null condition.

Random numbers, parity mode (the default): one torch.Generator seeded with `seed` is used, in
this order, for (a) random classes when none are given, then per scale for (b) the multinomial
token draw and (c) with smoothing, the exponential noise of the Gumbel softmax. This is the
official order, so the same seed gives the official tokens. With `per_sample_seeds`, image i
has its own generator seeded with seed + i: an image no longer depends on the batch size or its
position, but the stream differs from the official one.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .checkpoints import check_compatible
from .config import ConfigError, SamplingConfig
from .fast import FastRunner, pivotal_tokens, restore_pruned
from .model.attention import KVCache
from .model.conditioning import Cond, cat_conds
from .model.transformer import VARTransformer
from .tokenizer import VQTokenizer


@dataclass
class ScaleStep:
    """What the sampler yields after scale `scale`: the drawn ids and the cumulative f_hat."""

    scale: int
    ids: torch.Tensor  # (B, p^2) tokens drawn at this scale
    f_hat: torch.Tensor  # (B, Cvae, P, P) after this scale
    cond: Cond  # the conditions used (random classes resolved)
    logits: torch.Tensor  # (B, p^2, V) guided and filtered logits the ids were drawn from


@dataclass
class EditSpec:
    """Zero-shot editing: the image's own token pyramid is forced where `keep` is 1."""

    ids: list[torch.Tensor]  # the image's tokens per scale, (B, p^2)
    keep: torch.Tensor  # (P, P) or (B, P, P); 1 = keep the image's token, 0 = generate


def guidance_scales(cfg: float, schedule: object, num_scales: int) -> list[float]:
    """Guidance t per scale for logits = (1+t)*cond - t*uncond.

    "linear" (official): t = cfg * s/(K-1); "constant": t = cfg; a list: one t per scale;
    "off_from:k" or ("off_from", k): linear, but 0 from scale k on.
    """
    ramp = [cfg * (s / (num_scales - 1) if num_scales > 1 else 1.0) for s in range(num_scales)]
    if schedule in (None, "linear"):
        return ramp
    if schedule == "constant":
        return [float(cfg)] * num_scales
    if isinstance(schedule, str) and schedule.startswith("off_from:"):
        k = schedule.split(":", 1)[1]
        if not k.isdigit():
            raise ConfigError(f"cfg schedule off_from:K needs a scale index K, got {schedule!r}")
        schedule = ("off_from", int(k))
    if isinstance(schedule, (tuple, list)) and len(schedule) == 2 and schedule[0] == "off_from":
        k = int(schedule[1])
        return [t if s < k else 0.0 for s, t in enumerate(ramp)]
    if isinstance(schedule, str) and "," in schedule:
        try:
            schedule = [float(v) for v in schedule.split(",")]
        except ValueError:
            raise ConfigError(f"a per-scale cfg schedule is a comma list of numbers, got {schedule!r}") from None
    if isinstance(schedule, (tuple, list)):
        if len(schedule) != num_scales:
            raise ConfigError(f"a per-scale cfg schedule needs {num_scales} values, got {len(schedule)}")
        return [float(v) for v in schedule]
    raise ConfigError(f"unknown cfg schedule {schedule!r}: use linear, constant, off_from:K or a list of values")


def filter_logits_(logits: torch.Tensor, top_k: int, top_p: float) -> torch.Tensor:
    """In place: top-k (keep >= k-th largest), then top-p over the survivors; removed -> -inf."""
    V = logits.shape[-1]
    if 0 < top_k < V:
        kth = logits.topk(top_k, dim=-1, largest=True, sorted=False)[0].amin(dim=-1, keepdim=True)
        logits.masked_fill_(logits < kth, -torch.inf)
    if top_p > 0:
        sorted_logits, sorted_idx = logits.sort(dim=-1, descending=False)
        remove = sorted_logits.softmax(dim=-1).cumsum_(dim=-1) <= (1 - top_p)
        remove[..., -1:] = False
        logits.masked_fill_(remove.scatter(sorted_idx.ndim - 1, sorted_idx, remove), -torch.inf)
    return logits


class _Streams:
    """Random numbers: one shared generator (official order) or one per sample."""

    def __init__(self, seed: int | None, batch: int, per_sample: bool, device: torch.device,
                 generator: torch.Generator | None = None):
        self.per_sample = per_sample and seed is not None and generator is None
        if generator is not None:  # the caller's stream, consumed in the official order
            if generator.device.type != device.type:
                raise ConfigError(f"the generator is on {generator.device} but the model is on {device}")
            self.gens = [generator]
        elif seed is None:
            self.gens: list[torch.Generator | None] = [None]
        elif self.per_sample:
            self.gens = [torch.Generator(device=device).manual_seed(seed + i) for i in range(batch)]
        else:
            self.gens = [torch.Generator(device=device).manual_seed(seed)]

    def multinomial(self, probs: torch.Tensor, batch: int) -> torch.Tensor:
        """probs (B*l, V) -> one draw per row, with replacement as upstream."""
        if not self.per_sample:
            return torch.multinomial(probs, 1, replacement=True, generator=self.gens[0])[:, 0]
        rows = probs.view(batch, -1, probs.shape[-1])
        return torch.cat([torch.multinomial(r, 1, replacement=True, generator=g)[:, 0]
                          for r, g in zip(rows, self.gens)])

    def exponential(self, like: torch.Tensor) -> torch.Tensor:
        if not self.per_sample:
            return torch.empty_like(like).exponential_(generator=self.gens[0])
        return torch.stack([torch.empty_like(r).exponential_(generator=g) for r, g in zip(like, self.gens)])


def _keep_mask(keep: torch.Tensor, p: int) -> torch.Tensor:
    """Edit mask on a p x p grid: bilinear resize, > 0.5, all kept when p^2 <= 3."""
    if p * p <= 3:
        return torch.ones(keep.shape[0], 1, p, p, dtype=torch.bool, device=keep.device)
    return F.interpolate(keep.float(), size=(p, p), mode="bilinear", align_corners=False) > 0.5


@torch.inference_mode()
def sample_scales(model: VARTransformer, tokenizer: VQTokenizer, cond: Cond | None, batch: int,
                  cfg: SamplingConfig, negative: Cond | None = None, edit: EditSpec | None = None,
                  autocast_dtype: torch.dtype | None = None, generator: torch.Generator | None = None,
                  fast: FastRunner | None = None) -> Iterator[ScaleStep]:
    """Draw `batch` token pyramids scale by scale; yields a ScaleStep after each scale.

    cond: the conditions (None: random classes for class models). negative: the unconditional
    branch's condition (default: the model's null condition). generator: use this stream
    instead of one seeded from `cfg.seed`. fast: the `--fast` preset (its model, step, token
    pruning and guidance cut-off); None is exact mode.
    """
    device = model.pos_1LC.device
    pn, K = model.patch_nums, len(model.patch_nums)
    quant = tokenizer.quantize
    check_compatible(tokenizer, model)
    streams = _Streams(cfg.seed, batch, cfg.per_sample_seeds, device, generator)
    if cond is None:
        if not hasattr(model.cond, "random"):
            raise ConfigError("a text model needs a caption (or an explicit unconditional request)")
        if streams.per_sample:
            cond = Cond(torch.cat([model.cond.random(1, g, device).value for g in streams.gens]))
        else:
            cond = model.cond.random(batch, streams.gens[0], device)
    cond = cond.to(device)
    if len(cond) != batch:
        raise ConfigError(f"got {len(cond)} conditions for a batch of {batch}")
    model.cond.validate(cond)
    uncond = negative.to(device) if negative is not None else model.cond.null(batch, device)
    if len(uncond) == 1 and batch > 1:
        uncond = uncond.repeat(batch)
    ts = guidance_scales(cfg.cfg, cfg.cfg_schedule, K)
    if fast is not None:
        model, ts, autocast_dtype = fast.model, fast.guidance(ts), fast.autocast_dtype

    guided = any(t != 0 for t in ts)
    both = cat_conds(cond, uncond) if guided else cond
    rows = 2 * batch if guided else batch
    caches = [KVCache(model.L) for _ in model.blocks]
    amp = torch.autocast(device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None)
    with amp:
        cond_vec = model.cond(both).float()
        ada = model.adaln(cond_vec)  # AdaLN modulations: once per call (and per row count), not per scale
    head_ada = model.head_adaln(cond_vec)
    lvl_pos = model.lvl_pos()
    x = model.first_tokens(cond_vec, lvl_pos)
    f_hat = cond_vec.new_zeros(batch, quant.channels, pn[-1], pn[-1])
    keep = None
    if edit is not None:
        keep = edit.keep.to(device).float()
        keep = (keep if keep.ndim == 3 else keep.unsqueeze(0).expand(batch, -1, -1)).unsqueeze(1)
    codebook = quant.embedding.weight
    cur = 0
    x_in = h_prev = None  # fast mode: this scale's raw input, the previous scale's hidden states
    for s, p in enumerate(pn):
        ratio = s / (K - 1) if K > 1 else 1.0
        n_run = fast.kept(s, p, K) if fast is not None else None
        if n_run is not None:  # token pruning: run the transformer on the pivotal tokens only
            idx = pivotal_tokens(x_in, n_run).repeat(rows // batch, 1)
            x = x.gather(1, idx.unsqueeze(-1).expand(-1, -1, x.shape[-1]))
        with amp:
            h = model.run_blocks(x, cond_vec, both, None, caches, ada) if fast is None else fast.step(x, cond_vec, both, caches, ada)
        if n_run is not None:
            h = restore_pruned(h_prev, idx, h, p)
        if fast is not None and fast.cfg.prune_scales:
            h_prev = h
        logits = model.logits(h, cond_vec, head_ada)
        t = ts[s]
        if rows == 2 * batch:
            logits = (1 + t) * logits[:batch] - t * logits[batch:]
        if cfg.temperature != 1.0:
            logits = logits / cfg.temperature
        filter_logits_(logits, cfg.top_k, cfg.top_p)
        V = logits.shape[-1]
        ids = streams.multinomial(logits.softmax(dim=-1).view(-1, V), batch).view(batch, p * p)
        if cfg.smooth:
            tau = max(0.27 * (1 - ratio * 0.95), 0.005)
            gumbels = -streams.exponential(logits).log()
            codes = (((logits * (1 + ratio)) + gumbels) / tau).softmax(dim=-1) @ codebook.unsqueeze(0)
        else:
            codes = quant.embedding(ids)
        codes = codes.transpose(1, 2).reshape(batch, quant.channels, p, p)
        if edit is not None:
            m = _keep_mask(keep, p)
            codes = torch.where(m, quant.lookup(edit.ids[s].to(device), p), codes)
        f_hat, nxt = quant.next_input(s, f_hat, codes.float(), pn)
        yield ScaleStep(s, ids, f_hat, cond, logits)
        cur += p * p
        if nxt is None:
            break
        if rows == 2 * batch and all(tt == 0 for tt in ts[s + 1:]):  # guidance over: drop the null half
            rows = batch
            cond_vec, both = cond_vec[:batch], cond
            with amp:
                ada = model.adaln(cond_vec)
            head_ada = model.head_adaln(cond_vec)
            for c in caches:
                c.keep_rows(batch)
            h_prev = None if h_prev is None else h_prev[:batch]
        x_in = nxt
        with amp:
            x = model.next_tokens(nxt, cur, lvl_pos)
        if rows == 2 * batch:
            x = x.repeat(2, 1, 1)


@torch.inference_mode()
def generate(model: VARTransformer, tokenizer: VQTokenizer, cond: Cond | None, batch: int, cfg: SamplingConfig,
             negative: Cond | None = None, edit: EditSpec | None = None, autocast_dtype: torch.dtype | None = None,
             on_scale=None, fast: FastRunner | None = None) -> tuple[torch.Tensor, list[torch.Tensor], Cond]:
    """Run the sampler to the end: (images (B,3,H,W) in [0,1], token pyramid, conditions)."""
    ids, step = [], None
    for step in sample_scales(model, tokenizer, cond, batch, cfg, negative, edit, autocast_dtype, fast=fast):
        ids.append(step.ids)
        if on_scale is not None:
            on_scale(step)
    if fast is not None:
        autocast_dtype = fast.autocast_dtype
    amp = torch.autocast(step.f_hat.device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None)
    with amp:
        img = tokenizer.fhat_to_img(step.f_hat) if fast is None else fast.decode(tokenizer, step.f_hat)
    return img.float().add_(1).mul_(0.5), ids, step.cond
