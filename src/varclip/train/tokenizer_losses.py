"""The losses and helpers of tokenizer (VQVAE) training that are not plain L1/L2.

- `PerceptualLoss`: an LPIPS-style distance. Deep features of a frozen VGG16 are unit-normalised
  per position over channels, their squared differences weighted per channel (the LPIPS
  "linear" layers; uniform when none are given) and averaged over space, summed over the
  five feature levels. Weights never come from the network at run time: they are read
  from a local file (see `resolve_perceptual_weights`). Two backbone layouts are understood:
  the torchvision VGG16 (max-pool stride 2) and the anti-aliased VGG16 of shift-tolerant
  LPIPS (max-pool stride 1 then a [1,2,1]^2 blur with stride 2), whose PyPI package
  `stlpips-pytorch` ships a complete, self-contained checkpoint (backbone + linear layers).
- `PatchDiscriminator` + hinge losses + `adaptive_gan_weight` (the VQGAN balancing rule).
- `reseed_dead_codes`: restart codes whose usage EMA has collapsed from current residuals.
"""

from __future__ import annotations

import importlib.util
import logging
import math
import re
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

log = logging.getLogger("varclip.train")

# --------------------------------------------------------------------------- perceptual loss

# LPIPS maps [-1,1] images to the ImageNet statistics of its backbone with this affine map.
LPIPS_SHIFT = (-0.030, -0.088, -0.188)
LPIPS_SCALE = (0.458, 0.448, 0.450)
# VGG16 "D" configuration: conv widths, "M" = pooling. Features are tapped after the ReLU of
# the last conv before each pooling and after the final conv (relu1_2 ... relu5_3).
VGG16_PLAN: tuple[int | str, ...] = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M",
                                     512, 512, 512, "M", 512, 512, 512)
VGG16_TAPS = (1, 3, 6, 9, 12)  # conv indices (0-based among the 13 convs) whose ReLU output is a feature
VGG16_WIDTHS = (64, 128, 256, 512, 512)
DISABLED_MESSAGE = "perceptual loss disabled: no weights (set tokenizer.perceptual_weights=PATH)"
STLPIPS_PACKAGE, STLPIPS_FILE = "stlpips_pytorch", ("weights", "vST0.0", "vgg_shift_tolerant.pth")
LPIPS_PACKAGE, LPIPS_VGG_LIN_FILE = "lpips", ("weights", "v0.1", "vgg.pth")


class BlurPool(nn.Module):
    """Anti-aliased downsampling: reflect-pad 2, depthwise [1,2,1]x[1,2,1]/16 blur, stride 2.

    The filter is a persistent buffer named `filt` so that a saved state dict says, by its
    keys alone, that the backbone is the anti-aliased one. Maps too small to reflect-pad
    (side <= 2, only for inputs under ~32 px) are replicate-padded instead of failing.
    """

    def __init__(self, channels: int):
        super().__init__()
        a = torch.tensor([1.0, 2.0, 1.0])
        k = (a[:, None] * a[None, :]) / 16
        self.register_buffer("filt", k.expand(channels, 1, 3, 3).clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mode = "reflect" if min(x.shape[-2:]) > 2 else "replicate"
        return F.conv2d(F.pad(x, (2, 2, 2, 2), mode=mode), self.filt.to(x.dtype), stride=2, groups=x.shape[1])


class VGG16Features(nn.Module):
    """The 13 convs of VGG16, returning the five ReLU feature maps LPIPS compares."""

    def __init__(self, antialias: bool = False):
        super().__init__()
        self.antialias = antialias
        convs, pools, cin = [], [], 3
        for v in VGG16_PLAN:
            if v == "M":
                pools.append(BlurPool(cin) if antialias else nn.Identity())
            else:
                convs.append(nn.Conv2d(cin, int(v), 3, 1, 1))
                cin = int(v)
        self.convs = nn.ModuleList(convs)
        self.pools = nn.ModuleList(pools)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats, conv_i, pool_i = [], 0, 0
        for v in VGG16_PLAN:
            if v == "M":
                if self.antialias:
                    x = self.pools[pool_i](F.max_pool2d(x, 2, 1))
                else:
                    x = F.max_pool2d(x, 2, 2)
                pool_i += 1
                continue
            x = F.relu(self.convs[conv_i](x))
            if conv_i in VGG16_TAPS:
                feats.append(x)
            conv_i += 1
        return feats


def _unit_normalise(f: torch.Tensor, eps: float = 1e-10) -> torch.Tensor:
    return f / (f.square().sum(dim=1, keepdim=True).sqrt() + eps)


class PerceptualLoss(nn.Module):
    """LPIPS-style distance between images in [-1, 1]; frozen, always in eval mode.

    `forward(a, b)` returns the per-image distance (B,); 0 for identical images.
    """

    def __init__(self, antialias: bool = False):
        super().__init__()
        self.net = VGG16Features(antialias)
        self.lins = nn.ModuleList(nn.Conv2d(c, 1, 1, 1, 0, bias=False) for c in VGG16_WIDTHS)
        for lin in self.lins:
            nn.init.ones_(lin.weight)  # uniform channel weights until real ones are loaded
        self.register_buffer("shift", torch.tensor(LPIPS_SHIFT).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor(LPIPS_SCALE).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> PerceptualLoss:
        return super().train(False)  # never dropout/batch statistics: it is a fixed metric

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        x = torch.cat([a, b], 0)
        x = (x - self.shift.to(x.dtype)) / self.scale.to(x.dtype)
        total = x.new_zeros(a.shape[0], dtype=torch.float32)
        for feat, lin in zip(self.net(x), self.lins):
            fa, fb = _unit_normalise(feat.float()).chunk(2, 0)
            total = total + lin((fa - fb).square().to(lin.weight.dtype)).float().mean(dim=(1, 2, 3))
        return total


@dataclass
class PerceptualWeights:
    """Tensors found in a weights file, in our order."""

    convs: list[tuple[torch.Tensor, torch.Tensor]]
    lins: list[torch.Tensor] | None
    antialias: bool


def read_weights_file(path: str | Path) -> dict[str, torch.Tensor]:
    """A flat tensor dict from .safetensors or a torch file (weights_only: no pickled code runs)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"perceptual weights not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file
        return load_file(str(path))
    obj = torch.load(path, map_location="cpu", weights_only=True)
    for wrapper in ("state_dict", "model"):
        if isinstance(obj, dict) and isinstance(obj.get(wrapper), dict):
            obj = obj[wrapper]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ValueError(f"{path}: not a state dict of tensors")
    return {k.removeprefix("module."): v for k, v in obj.items()}


_LIN_KEY = re.compile(r"^(?:lin(\d+)\.model\.1|lins\.(\d+))\.weight$")
_INDEX = re.compile(r"\.(\d+)\.weight$")


def parse_perceptual_state(sd: dict[str, torch.Tensor]) -> PerceptualWeights:
    """Find the VGG16 convs (torchvision `features.N`, LPIPS `net.sliceK.N`, or ours `net.convs.N`),
    the LPIPS linear layers, and whether the backbone is anti-aliased (`.filt` buffers)."""
    if any(k.endswith("running_mean") for k in sd):
        raise ValueError("batch-norm VGG weights are not supported; use plain VGG16")
    lins: dict[int, torch.Tensor] = {}
    convs: list[tuple[int, str]] = []
    for k, v in sd.items():
        m = _LIN_KEY.match(k)
        if m:
            lins[int(m.group(1) or m.group(2))] = v
            continue
        m = _INDEX.search(k)
        if m and v.ndim == 4 and v.shape[-2:] == (3, 3) and not k.startswith("classifier"):
            convs.append((int(m.group(1)), k))
    convs.sort()
    widths = [v for v in VGG16_PLAN if v != "M"]
    if len(convs) != len(widths):
        raise ValueError(f"expected the 13 convs of VGG16, found {len(convs)} 3x3 conv weights")
    pairs = []
    cin = 3
    for (_, key), cout in zip(convs, widths):
        w = sd[key]
        bias = sd.get(key[: -len("weight")] + "bias")
        if tuple(w.shape) != (cout, cin, 3, 3) or bias is None:
            raise ValueError(f"{key}: expected a VGG16 conv of shape {(cout, cin, 3, 3)} with a bias, "
                             f"got {tuple(w.shape)}")
        pairs.append((w.float(), bias.float()))
        cin = int(cout)
    lin_list = None
    if lins:
        if sorted(lins) != list(range(len(VGG16_WIDTHS))):
            raise ValueError(f"expected LPIPS linear layers 0..4, found {sorted(lins)}")
        lin_list = [lins[i].float().reshape(1, -1, 1, 1) for i in range(len(VGG16_WIDTHS))]
        for lw, c in zip(lin_list, VGG16_WIDTHS):
            if lw.shape[1] != c:
                raise ValueError(f"LPIPS linear layer of width {lw.shape[1]} does not fit VGG16 ({c})")
    return PerceptualWeights(pairs, lin_list, any(k.endswith(".filt") for k in sd))


def perceptual_from_state(sd: dict[str, torch.Tensor], lin_sd: dict[str, torch.Tensor] | None = None
                          ) -> PerceptualLoss:
    """Build the loss from tensors; `lin_sd` supplies linear layers that `sd` lacks."""
    parsed = parse_perceptual_state(sd)
    lins = parsed.lins
    if lins is None and lin_sd is not None:
        lins = [lin_sd[f"lin{i}.model.1.weight"].float().reshape(1, -1, 1, 1) if f"lin{i}.model.1.weight" in lin_sd
                else lin_sd[f"lins.{i}.weight"].float().reshape(1, -1, 1, 1) for i in range(len(VGG16_WIDTHS))]
    loss = PerceptualLoss(parsed.antialias)
    with torch.no_grad():
        for conv, (w, b) in zip(loss.net.convs, parsed.convs):
            conv.weight.copy_(w)
            conv.bias.copy_(b)
        if lins is not None:
            for lin, w in zip(loss.lins, lins):
                lin.weight.copy_(w)
    if lins is None:
        log.info("perceptual loss: no LPIPS linear layers found; using uniform channel weights")
    return loss


def _package_file(package: str, parts: tuple[str, ...]) -> Path | None:
    """A data file inside an installed package, found WITHOUT importing it (stlpips and lpips
    import torchvision at import time, which we do not have)."""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for root in spec.submodule_search_locations:
        f = Path(root).joinpath(*parts)
        if f.is_file():
            return f
    return None


def resolve_perceptual_weights(spec: str | None) -> Path | None:
    """Where the perceptual weights are: a PATH, "stlpips" (the installed stlpips-pytorch
    package's complete VGG checkpoint), "auto" (that package if installed, else none), or
    "none"/"" (off). A named file or package that is missing is an error, not a silent skip."""
    if spec is None or spec.strip().lower() in ("", "none", "off", "false"):
        return None
    key = spec.strip()
    if key.lower() in ("auto", "stlpips"):
        found = _package_file(STLPIPS_PACKAGE, STLPIPS_FILE)
        if found is None and key.lower() == "stlpips":
            raise FileNotFoundError("perceptual_weights=stlpips but the stlpips-pytorch package is not installed "
                                    "(pip install --no-deps stlpips-pytorch)")
        return found
    path = Path(key).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"perceptual weights not found: {path}")
    return path


def resolve_lin_weights(spec: str | None) -> Path | None:
    """LPIPS linear layers for a backbone file that has none: a PATH, or "auto" (the installed
    `lpips` package's v0.1 VGG file, if any)."""
    if spec is None or spec.strip().lower() in ("", "none", "off"):
        return None
    if spec.strip().lower() == "auto":
        return _package_file(LPIPS_PACKAGE, LPIPS_VGG_LIN_FILE)
    path = Path(spec).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"LPIPS linear weights not found: {path}")
    return path


_warned_disabled = False


def build_perceptual_loss(weights: str | None = "auto", lin_weights: str | None = "auto"
                          ) -> PerceptualLoss | None:
    """The perceptual loss, or None (logged once per process) when no weights can be found.

    Only "auto" may end up without weights; an explicit path that does not exist raises.
    """
    global _warned_disabled
    explicit_off = weights is None or weights.strip().lower() in ("", "none", "off", "false")
    path = resolve_perceptual_weights(weights)
    if path is None:
        if not explicit_off and not _warned_disabled:
            log.warning(DISABLED_MESSAGE)
            _warned_disabled = True
        return None
    sd = read_weights_file(path)
    lin_path = resolve_lin_weights(lin_weights) if not any(_LIN_KEY.match(k) for k in sd) else None
    lin_sd = read_weights_file(lin_path) if lin_path is not None else None
    loss = perceptual_from_state(sd, lin_sd)
    log.info("perceptual loss: %s VGG16 from %s", "anti-aliased" if loss.net.antialias else "plain", path)
    return loss


# --------------------------------------------------------------------------- adversarial loss


def _norm_layer(kind: str, channels: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "group":
        return nn.GroupNorm(math.gcd(32, channels), channels)
    if kind == "instance":
        return nn.InstanceNorm2d(channels, affine=True)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"unknown discriminator norm {kind!r}; use group, batch, instance or none")


class PatchDiscriminator(nn.Module):
    """pix2pix's PatchGAN: a conv net whose output is a map of real/fake logits, one per patch.

    GroupNorm by default (not BatchNorm as in pix2pix): it needs no statistics synchronised
    across ranks and behaves the same with batch size 1.
    """

    def __init__(self, in_channels: int = 3, ch: int = 64, n_layers: int = 3, norm: str = "group"):
        super().__init__()
        use_bias = norm == "none"
        layers: list[nn.Module] = [nn.Conv2d(in_channels, ch, 4, 2, 1), nn.LeakyReLU(0.2)]
        mult = 1
        for n in range(1, n_layers + 1):
            prev, mult = mult, min(2 ** n, 8)
            stride = 2 if n < n_layers else 1  # the last hidden layer keeps the resolution
            layers += [nn.Conv2d(ch * prev, ch * mult, 4, stride, 1, bias=use_bias),
                       _norm_layer(norm, ch * mult), nn.LeakyReLU(0.2)]
        layers.append(nn.Conv2d(ch * mult, 1, 4, 1, 1))
        self.main = nn.Sequential(*layers)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """The pix2pix initialisation: N(0, 0.02) convs, N(1, 0.02) norm scales."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, 0.0, 0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm, nn.InstanceNorm2d)) and m.weight is not None:
                nn.init.normal_(m.weight, 1.0, 0.02)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.main(x)


def hinge_d_loss(logits_real: torch.Tensor, logits_fake: torch.Tensor) -> torch.Tensor:
    """Discriminator hinge loss: 0.5 * (E[relu(1 - D(x))] + E[relu(1 + D(G(z)))])."""
    return 0.5 * (F.relu(1.0 - logits_real.float()).mean() + F.relu(1.0 + logits_fake.float()).mean())


def hinge_g_loss(logits_fake: torch.Tensor) -> torch.Tensor:
    """Generator side of the hinge GAN: -E[D(G(z))]."""
    return -logits_fake.float().mean()


def gan_active(step: int, disc_start: int) -> bool:
    """The adversarial terms (both players) are off before `disc_start` so that the autoencoder
    first learns to reconstruct; a discriminator facing blurry garbage only adds noise."""
    return disc_start >= 0 and step >= disc_start


def adaptive_gan_weight(rec_loss: torch.Tensor, g_loss: torch.Tensor, last_layer: torch.Tensor,
                        disc_weight: float = 1.0, max_weight: float = 1e4) -> torch.Tensor:
    """VQGAN balancing: ||grad rec|| / (||grad g|| + 1e-4) at the decoder's last layer, clamped to
    [0, max_weight], detached, times disc_weight. It keeps the GAN gradient on the scale of the
    reconstruction gradient whatever the loss magnitudes are."""
    def grad_norm(loss: torch.Tensor) -> torch.Tensor:
        if not loss.requires_grad:  # e.g. every reconstruction weight set to 0
            return torch.zeros((), device=last_layer.device)
        g = torch.autograd.grad(loss, last_layer, retain_graph=True, allow_unused=True)[0]
        return torch.zeros((), device=last_layer.device) if g is None else g.float().norm()

    w = grad_norm(rec_loss) / (grad_norm(g_loss) + 1e-4)
    w = torch.nan_to_num(w, nan=0.0, posinf=max_weight).clamp(0.0, max_weight)
    return w.detach() * disc_weight


# --------------------------------------------------------------------------- dead codes


@torch.no_grad()
def quantizer_residuals(quantize: nn.Module, f: torch.Tensor, pn: tuple[int, ...], mode: str = "finest"
                        ) -> torch.Tensor:
    """Vectors (N, Cvae) that the quantizer had to match at scales `pn`: the residual at the
    finest scale ("finest"), or the area-downsampled residual of every scale ("all")."""
    _, fhats = quantize.encode(f.float(), pn)
    C = f.shape[1]
    if mode == "finest":
        prev = fhats[-2] if len(pn) > 1 else torch.zeros_like(fhats[-1])
        z = f.float() - prev
        return z.permute(0, 2, 3, 1).reshape(-1, C)
    if mode != "all":
        raise ValueError(f"unknown residual mode {mode!r}; use finest or all")
    out = []
    prev = torch.zeros_like(f, dtype=torch.float32)
    for s, p in enumerate(pn):
        rest = f.float() - prev
        z = F.interpolate(rest, size=(p, p), mode="area") if s != len(pn) - 1 else rest
        out.append(z.permute(0, 2, 3, 1).reshape(-1, C))
        prev = fhats[s]
    return torch.cat(out, 0)


def dead_code_mask(quantize: nn.Module, threshold: float) -> torch.Tensor:
    """Codes whose usage EMA summed over scales is below `threshold` times the mean usage of all
    codes. Relative, so one setting fits every batch size, resolution and vocabulary."""
    usage = quantize.ema_vocab_hit_SV.float().sum(0)
    mean = usage.mean()
    if mean <= 0:  # no statistics yet: nothing can be called dead
        return torch.zeros_like(usage, dtype=torch.bool)
    return usage < threshold * mean


@torch.no_grad()
def reseed_dead_codes(quantize: nn.Module, residuals: torch.Tensor, threshold: float,
                      generator: torch.Generator | None = None) -> torch.Tensor:
    """Replace dead codes by random residual vectors; returns the re-seeded code indices.

    Their usage EMA is reset to the mean usage, which gives them a grace period before they
    can be judged dead again. Under DDP call it on every rank with the same generator seed and
    gathered residuals, or on rank 0 followed by a broadcast (see `broadcast_codebook`).
    """
    dead = dead_code_mask(quantize, threshold).nonzero().flatten()
    if dead.numel() == 0 or residuals.shape[0] == 0:
        return dead[:0]
    emb = quantize.embedding.weight
    pick = torch.randint(0, residuals.shape[0], (dead.numel(),), generator=generator,
                         device=generator.device if generator is not None else "cpu")
    emb[dead.to(emb.device)] = residuals[pick.to(residuals.device)].to(emb.device, emb.dtype)
    hits = quantize.ema_vocab_hit_SV
    hits[:, dead.to(hits.device)] = hits.mean(dim=1, keepdim=True)
    return dead


def broadcast_codebook(quantize: nn.Module, src: int = 0) -> None:
    """Make every rank's codebook and usage statistics equal to rank `src`'s (no-op without DDP)."""
    import torch.distributed as dist
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        dist.broadcast(quantize.embedding.weight.data, src)
        dist.broadcast(quantize.ema_vocab_hit_SV, src)


__all__ = [
    "PerceptualLoss", "VGG16Features", "BlurPool", "PerceptualWeights", "read_weights_file",
    "parse_perceptual_state", "perceptual_from_state", "resolve_perceptual_weights", "resolve_lin_weights",
    "build_perceptual_loss", "DISABLED_MESSAGE", "PatchDiscriminator", "hinge_d_loss", "hinge_g_loss",
    "gan_active", "adaptive_gan_weight", "quantizer_residuals", "dead_code_mask", "reseed_dead_codes",
    "broadcast_codebook",
]
