"""The `--fast` preset: speed-ups that trade a measured sliver of quality for speed.

Exact mode (the default) never passes through here, so its tokens stay bit-identical to the
official stream. `FastConfig` names the pieces; "auto" switches a piece on where it was
measured to pay (docs/benchmarks.md):

- autocast: bf16 where the device has native bf16 matmuls (AMX/AVX512-BF16 CPUs, CUDA); the
  fast model holds a bf16 copy of the weights (the float32 model stays for exact mode).
- compile: `torch.compile` of the per-scale step, shapes static per scale; on CUDA the
  "reduce-overhead" mode (CUDA graphs over the KV buffers, which are allocated once and
  written in place). Off on CPU: compiling d16 costs far more than one call saves.
- pruning: at the last scales the transformer runs only on the pivotal tokens (those whose
  input differs most from the scale's mean, i.e. where detail is still being added); the
  other positions reuse the previous scale's final hidden state, upsampled (FastVAR's cached
  token pruning, applied once at the input rather than per layer).
- cfg_off_last: no guidance at the last scales (the unconditional half is dropped).
- quantize: weight int8 dynamic quantisation of the Linear layers (CPU only); auto uses it on
  CPUs without native bf16, where it is the cheaper of the two.
- channels_last: the VQVAE decodes with channels-last convolutions (NHWC): on a CPU 1.14x in
  float32 and 2x on top of bf16 (d16's decoder, 2 images at 256 px), 1.6x for the emoji
  model's; not bit-exact (3.6e-5), so never in exact mode. auto: on for CPUs (unmeasured on CUDA).

A piece that fails on a device (a compile error, a missing kernel) falls back to the plain path
with a one-line warning.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import warnings
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .config import ConfigError

log = logging.getLogger("varclip.fast")

AUTOCASTS = {"auto": "auto", "off": None, "fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
COMPILE_MODES = ("auto", "off", "default", "reduce-overhead", "max-autotune")
QUANTIZE = ("auto", "off", "int8")
ON_OFF = ("auto", "on", "off")
MIN_CPU_BF16_WIDTH = 512  # narrower transformers: measured slower in bf16 on a CPU (docs/benchmarks.md)


@dataclass
class FastConfig:
    """What `--fast` switches on. "auto" fields are resolved per device by `resolve`."""

    autocast: str = "auto"  # auto | off | bf16 | fp16
    compile: str = "auto"  # auto | off | default | reduce-overhead | max-autotune
    compile_backend: str = "inductor"  # any torch.compile backend (tests use "eager")
    # token pruning at the last N scales (0 = off): off in the preset, it failed the quality
    # budget on the emoji model (docs/benchmarks.md); an option for large schedules
    prune_scales: int = 0
    prune_keep: float = 0.5  # share of a pruned scale's tokens the transformer runs on
    cfg_off_last: int = 0  # no guidance at the last N scales (0 = guidance everywhere)
    quantize: str = "auto"  # auto | off | int8 (CPU only)
    channels_last: str = "auto"  # auto | on | off: NHWC convolutions in the VQVAE decoder

    def __post_init__(self) -> None:
        if self.autocast not in AUTOCASTS:
            raise ConfigError(f"fast autocast must be one of {', '.join(AUTOCASTS)}, got {self.autocast!r}")
        if self.compile not in COMPILE_MODES:
            raise ConfigError(f"fast compile must be one of {', '.join(COMPILE_MODES)}, got {self.compile!r}")
        if self.quantize not in QUANTIZE:
            raise ConfigError(f"fast quantize must be one of {', '.join(QUANTIZE)}, got {self.quantize!r}")
        if self.channels_last not in ON_OFF:
            raise ConfigError(f"fast channels_last must be one of {', '.join(ON_OFF)}, got {self.channels_last!r}")
        for name in ("prune_scales", "cfg_off_last"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 0:
                raise ConfigError(f"fast {name} must be an integer >= 0, got {v!r}")
        if not 0.0 < self.prune_keep <= 1.0:
            raise ConfigError(f"fast prune_keep must be in (0, 1], got {self.prune_keep}")

    def resolve(self, device: torch.device, width: int = 1024) -> "FastConfig":
        """The same settings with every "auto" replaced by what pays on `device` for a
        transformer `width` channels wide (on a CPU, bf16 pays from d16's 1024 on; at the emoji
        model's 256 the casts cost more than the narrow matmuls save)."""
        device = torch.device(device)
        cuda = device.type == "cuda"
        native_bf16 = torch.cuda.is_bf16_supported() if cuda else (_cpu_bf16() and width >= MIN_CPU_BF16_WIDTH)
        autocast = self.autocast
        if autocast == "auto":
            autocast = "bf16" if native_bf16 else ("fp16" if cuda else "off")
        quantize = self.quantize
        if quantize == "auto":
            wide_cpu = not cuda and width >= MIN_CPU_BF16_WIDTH
            quantize = "int8" if wide_cpu and AUTOCASTS[autocast] is None and not _cpu_bf16() else "off"
        if quantize == "int8" and cuda:
            raise ConfigError("fast quantize=int8 is CPU only (dynamic int8 Linear kernels)")
        if quantize == "int8" and AUTOCASTS[autocast] is not None:
            raise ConfigError("fast quantize=int8 and autocast do not combine: the int8 kernels take float32")
        compile_mode = self.compile
        if compile_mode == "auto":
            compile_mode = "reduce-overhead" if cuda else "off"
        channels_last = self.channels_last
        if channels_last == "auto":
            channels_last = "off" if cuda else "on"
        return dataclasses.replace(self, autocast=autocast, quantize=quantize, compile=compile_mode,
                                   channels_last=channels_last)

    @property
    def autocast_dtype(self) -> torch.dtype | None:
        if self.autocast == "auto":
            raise ConfigError("resolve the FastConfig for a device first")
        return AUTOCASTS[self.autocast]


def _cpu_bf16() -> bool:
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def fast_config(value: "bool | FastConfig | dict | None") -> FastConfig | None:
    """`fast=` as given by a caller: True (the preset), a FastConfig, a dict of its fields, or off."""
    if value is None or value is False:
        return None
    if value is True:
        return FastConfig()
    if isinstance(value, FastConfig):
        return value
    if isinstance(value, dict):
        from .config import from_dict
        return from_dict(FastConfig, value)
    raise ConfigError(f"fast must be True/False, a FastConfig or a dict of its fields, got {type(value).__name__}")


def quantize_int8(model: nn.Module) -> nn.Module:
    """A copy of `model` whose block and head Linear layers use dynamic int8 weights (mat_qkv and
    the conditioning stay float: their weights are read directly, e.g. for the official split
    bias; they run once per scale or once per call)."""
    from torch.ao.nn.quantized.dynamic import Linear as QLinear
    from torch.ao.quantization import default_dynamic_qconfig, quantize_dynamic
    with warnings.catch_warnings():  # torch.ao.quantization's deprecation notice, many lines long
        warnings.simplefilter("ignore")
        probe = QLinear.from_float(_with_qconfig(nn.Linear(8, 8), default_dynamic_qconfig))
        probe(torch.zeros(1, 8))  # a missing kernel fails here, before the copy
        names = {n: default_dynamic_qconfig for n, m in model.named_modules()
                 if isinstance(m, nn.Linear) and n.startswith(("blocks.", "head")) and not n.endswith("mat_qkv")}
        return quantize_dynamic(copy.deepcopy(model), qconfig_spec=names, dtype=torch.qint8)


def _with_qconfig(m: nn.Module, qconfig) -> nn.Module:
    m.qconfig = qconfig
    return m


def pivotal_tokens(x_in: torch.Tensor, keep: int) -> torch.Tensor:
    """(B, l, C) next-scale input -> (B, keep) sorted indices of the tokens that differ most
    from the scale's mean: where the coarser scales left detail to add."""
    score = (x_in - x_in.mean(dim=1, keepdim=True)).square().sum(dim=-1)
    return score.topk(keep, dim=1, sorted=False).indices.sort(dim=1).values


def restore_pruned(h_prev: torch.Tensor, idx: torch.Tensor, h_kept: torch.Tensor, side: int) -> torch.Tensor:
    """Full (R, side^2, C) hidden states: the computed tokens at `idx` (R, n), elsewhere the
    previous scale's (R, q^2, C) states upsampled to the side x side grid."""
    R, n_prev, C = h_prev.shape
    q = int(round(n_prev ** 0.5))
    grid = h_prev.transpose(1, 2).reshape(R, C, q, q).to(h_kept.dtype)
    full = F.interpolate(grid, size=(side, side), mode="bilinear", align_corners=False)
    full = full.flatten(2).transpose(1, 2).contiguous()
    return full.scatter_(1, idx.unsqueeze(-1).expand(-1, -1, C), h_kept)


class FastRunner:
    """A FastConfig applied to one transformer: the model to run and the (compiled) step.

    Built once per pipeline and device; the sampler asks it which tokens to run at each scale,
    where guidance stops, and calls `step` instead of `model.run_blocks`.
    """

    def __init__(self, model: nn.Module, cfg: FastConfig, in_place: bool = False):
        """in_place: cast `model` (and the tokenizer given to `decode`) itself rather than a
        copy: no second set of weights in memory, for one-shot processes such as the CLI; the
        caller then has no float32 model left for exact mode."""
        self.requested, self.device = cfg, model.pos_1LC.device
        self.cfg = cfg.resolve(self.device, model.C)
        self.source = model
        self.model = model
        self.in_place = in_place
        self._decoders: tuple[nn.Module, nn.Module] | None = None  # (tokenizer, its channels-last form)
        if self.cfg.quantize == "int8":
            try:
                self.model = quantize_int8(model)
            except Exception as e:  # no int8 engine / kernel on this machine
                _fallback("int8 quantisation", e)
                self.cfg = dataclasses.replace(self.cfg, quantize="off")
        if self.cfg.autocast_dtype is not None:
            # weights stored in the compute dtype: autocast alone re-casts every float32 weight at
            # every scale, which costs more than it saves on the small early scales
            self.model = (model if in_place and self.cfg.quantize == "off" else copy.deepcopy(model)
                          ).to(self.cfg.autocast_dtype)
            self.model.head_nm.float()  # the head runs outside autocast, as in exact mode
            self.model.head.float()
        self._compiled = None
        if self.cfg.compile != "off":
            try:
                mode = None if self.cfg.compile == "default" else self.cfg.compile
                self._compiled = torch.compile(self.model.run_blocks, mode=mode, dynamic=False,
                                               backend=self.cfg.compile_backend)
            except Exception as e:
                _fallback("torch.compile", e)

    @property
    def autocast_dtype(self) -> torch.dtype | None:
        return self.cfg.autocast_dtype

    @property
    def changes_weights(self) -> bool:
        """Whether building this runner in place changed the caller's modules."""
        return self.in_place and (self.model is self.source and self.cfg.autocast_dtype is not None
                                  or self.cfg.channels_last == "on")

    def decode(self, tokenizer: nn.Module, f_hat: torch.Tensor) -> torch.Tensor:
        """`tokenizer.fhat_to_img` with this config's decoder layout (call under autocast)."""
        if self.cfg.channels_last != "on":
            return tokenizer.fhat_to_img(f_hat)
        if self._decoders is None or self._decoders[0] is not tokenizer:
            fmt = torch.channels_last
            self._decoders = (tokenizer, (tokenizer if self.in_place else copy.deepcopy(tokenizer)).to(memory_format=fmt))
        return self._decoders[1].fhat_to_img(f_hat.contiguous(memory_format=torch.channels_last))

    def guidance(self, ts: list[float]) -> list[float]:
        """The guidance schedule with the last `cfg_off_last` scales set to 0."""
        cut = len(ts) - self.cfg.cfg_off_last
        return [t if s < cut else 0.0 for s, t in enumerate(ts)]

    def kept(self, scale: int, side: int, num_scales: int) -> int | None:
        """How many tokens the transformer runs on at this scale (None: all of them)."""
        if scale == 0 or scale < num_scales - self.cfg.prune_scales:
            return None
        n = max(1, round(side * side * self.cfg.prune_keep))
        return n if n < side * side else None

    def step(self, x: torch.Tensor, cond_vec: torch.Tensor, cond, caches: list,
             ada: list[torch.Tensor] | None = None) -> torch.Tensor:
        """`model.run_blocks` for one scale, compiled when the config says so."""
        if self._compiled is None:
            return self.model.run_blocks(x, cond_vec, cond, None, caches, ada)
        lens = [c.len for c in caches]
        try:
            import torch._dynamo.config as dcfg
            with dcfg.patch(recompile_limit=64):  # one graph per scale (static shapes)
                return self._compiled(x, cond_vec, cond, None, caches, ada)
        except Exception as e:
            _fallback("torch.compile", e)
            self._compiled = None
            for c, n in zip(caches, lens):  # a failed call may have written part of the caches
                c.len = n
            return self.model.run_blocks(x, cond_vec, cond, None, caches, ada)


def _fallback(what: str, e: BaseException) -> None:
    first = (str(e).strip().splitlines() or [""])[0][:200]
    log.warning("varclip fast: %s failed on this device (%s: %s); using the plain path", what, type(e).__name__, first)


__all__ = ["FastConfig", "FastRunner", "fast_config", "pivotal_tokens", "restore_pruned", "quantize_int8"]
