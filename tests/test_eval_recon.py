"""Reconstruction metrics (PSNR, SSIM, codebook usage) and `varclip eval recon`."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from varclip.checkpoints import save_model_dir
from varclip.cli import main
from varclip.config import named_tokenizer
from varclip.data.sources import image_source_dataset
from varclip.eval import (CodebookUsage, evaluate_reconstruction, gaussian_window, patch_nums_for,
                          psnr, ssim)
from varclip.tokenizer import VQTokenizer


def _images(folder: Path, n: int, size: int, seed: int = 0) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        arr = rng.integers(0, 256, (size // 4, size // 4, 3), dtype=np.uint8)
        path = folder / f"{i:03d}.png"
        Image.fromarray(arr).resize((size, size), Image.NEAREST).save(path)
        paths.append(path)
    return paths


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: one intra-op thread is fastest


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    return save_model_dir(tmp_path_factory.mktemp("tok"), tokenizer=VQTokenizer(named_tokenizer("tiny")))


# ---------------------------------------------------------------------------- PSNR / SSIM


def test_identical_images_are_perfect() -> None:
    x = torch.rand(3, 3, 24, 24)
    assert torch.isinf(psnr(x, x)).all()
    assert torch.allclose(ssim(x, x), torch.ones(3), atol=1e-6)


def test_psnr_known_value() -> None:
    a = torch.full((1, 3, 8, 8), 0.5)
    assert float(psnr(a, a + 0.1)) == pytest.approx(20.0, abs=1e-4)  # mse 0.01


def test_noise_lowers_psnr_and_ssim_monotonically() -> None:
    torch.manual_seed(0)
    x = torch.rand(2, 3, 32, 32)
    n = torch.randn_like(x)
    levels = (0.01, 0.03, 0.1, 0.3)
    p = [float(psnr(x, (x + s * n).clamp(0, 1)).mean()) for s in levels]
    q = [float(ssim(x, (x + s * n).clamp(0, 1)).mean()) for s in levels]
    assert all(a > b for a, b in zip(p, p[1:])), p
    assert all(a > b for a, b in zip(q, q[1:])), q
    assert all(-1 <= v < 1 for v in q)


def _ssim_reference(a: np.ndarray, b: np.ndarray) -> float:
    """Direct (non-separable, loop) SSIM of one single-channel image, valid windows only."""
    g = gaussian_window().numpy()
    w = np.outer(g, g)
    k = w.shape[0]
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    vals = []
    for i in range(a.shape[0] - k + 1):
        for j in range(a.shape[1] - k + 1):
            pa, pb = a[i:i + k, j:j + k], b[i:i + k, j:j + k]
            ma, mb = (w * pa).sum(), (w * pb).sum()
            va, vb = (w * pa * pa).sum() - ma ** 2, (w * pb * pb).sum() - mb ** 2
            cov = (w * pa * pb).sum() - ma * mb
            vals.append(((2 * ma * mb + c1) * (2 * cov + c2)) / ((ma ** 2 + mb ** 2 + c1) * (va + vb + c2)))
    return float(np.mean(vals))


def test_ssim_matches_direct_definition() -> None:
    rng = np.random.default_rng(1)
    a = rng.random((14, 14))
    b = np.clip(a + 0.1 * rng.standard_normal((14, 14)), 0, 1)
    ours = float(ssim(torch.tensor(a).view(1, 1, 14, 14).float(), torch.tensor(b).view(1, 1, 14, 14).float()))
    assert ours == pytest.approx(_ssim_reference(a, b), abs=1e-5)


def test_ssim_small_images_and_shape_errors() -> None:
    x = torch.rand(1, 3, 6, 6)
    assert math.isfinite(float(ssim(x, x.flip(-1))))
    with pytest.raises(ValueError):
        psnr(x, torch.rand(1, 3, 6, 5))


def test_codebook_usage_counts() -> None:
    u = CodebookUsage(2, 4)
    u.update([torch.tensor([[0], [0]]), torch.tensor([[0, 1, 2, 3], [0, 1, 2, 3]])])
    assert u.fraction_used() == [0.25, 1.0]
    assert u.fraction_used_any() == 1.0
    ppl = u.perplexity()
    assert ppl[0] == pytest.approx(1.0) and ppl[1] == pytest.approx(4.0)
    with pytest.raises(ValueError):
        u.update([torch.tensor([[0]])])


# ---------------------------------------------------------------------------- evaluation


class CountingMetric:
    """Stands in for rFID: sees every (real, recon) pair in [0, 1]."""

    def __init__(self) -> None:
        self.n = 0

    def update(self, real: torch.Tensor, recon: torch.Tensor) -> None:
        assert real.shape == recon.shape and 0 <= float(recon.min()) and float(recon.max()) <= 1
        self.n += real.shape[0]

    def compute(self) -> dict[str, float]:
        return {"counted": float(self.n)}


def test_evaluate_reconstruction(tmp_path: Path) -> None:
    torch.manual_seed(0)
    tok = VQTokenizer(named_tokenizer("tiny"))
    _images(tmp_path / "imgs", 5, 32)
    data = image_source_dataset(tmp_path / "imgs", 32)
    batches = torch.utils.data.DataLoader(data, batch_size=2)
    metric = CountingMetric()
    res = evaluate_reconstruction(tok, batches, extra_metrics=[metric])
    assert res.num_images == 5 and res.image_size == 32 and res.patch_nums == [1, 2, 3, 4]
    assert math.isfinite(res.psnr) and -1 <= res.ssim <= 1
    assert len(res.usage_per_scale) == 4 and all(0 < u <= 1 for u in res.usage_per_scale)
    assert res.usage_per_scale[0] <= 5 / 64  # 5 images, one token each at the 1x1 scale
    assert res.extra == {"counted": 5.0}
    assert "PSNR" in res.table() and json.loads(res.to_json())["num_images"] == 5
    capped = evaluate_reconstruction(tok, batches, max_images=3)
    assert capped.num_images == 3


def test_image_source_from_folder_and_manifest(tmp_path: Path) -> None:
    paths = _images(tmp_path / "a" / "cls1", 2, 16) + _images(tmp_path / "a" / "cls2", 1, 16, seed=3)
    assert len(image_source_dataset(tmp_path / "a", 16)) == 3  # class sub-folders searched recursively
    rows = [{"image": str(p), "caption": f"c{i}"} for i, p in enumerate(paths)]
    rows.append({"image": str(paths[0]), "caption": "another caption, same image"})
    manifest = tmp_path / "m.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    ds = image_source_dataset(manifest, 16)
    assert len(ds) == 3
    x, _ = ds[0]
    assert x.shape == (3, 16, 16) and -1 <= float(x.min()) and float(x.max()) <= 1
    with pytest.raises(FileNotFoundError):
        image_source_dataset(tmp_path / "nope", 16)


def test_patch_nums_for() -> None:
    tok = VQTokenizer(named_tokenizer("tiny"))
    assert patch_nums_for(tok, 32) == (1, 2, 3, 4)
    assert patch_nums_for(tok, 48, [1, 2, 6]) == (1, 2, 6)
    with pytest.raises(ValueError, match="--patch-nums"):
        patch_nums_for(tok, 48)


def test_cli_eval_recon(tmp_path: Path, tiny_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _images(tmp_path / "imgs", 3, 32)
    out = tmp_path / "res.json"
    rc = main(["eval", "recon", "--tokenizer", str(tiny_dir), "--data", str(tmp_path / "imgs"), "--size", "32",
                         "--batch-size", "2", "--device", "cpu", "--quiet", "--json", str(out)])
    assert rc == 0
    table = capsys.readouterr().out
    assert "PSNR" in table and "SSIM" in table and "perplexity" in table
    res = json.loads(out.read_text())
    assert res["num_images"] == 3 and len(res["usage_per_scale"]) == 4
    assert main(["eval", "recon", "--tokenizer", str(tiny_dir), "--data", str(tmp_path / "imgs"), "--quiet",
                 "--device", "cpu", "--json", "-"]) == 0
    assert json.loads(capsys.readouterr().out)["image_size"] == 32


def test_cli_eval_recon_errors(tmp_path: Path, tiny_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _images(tmp_path / "imgs", 1, 32)
    assert main(["eval", "recon", "--tokenizer", str(tiny_dir), "--data", str(tmp_path / "imgs"), "--size", "40",
                 "--quiet"]) == 2
    assert "--patch-nums" in capsys.readouterr().err
    assert main(["eval", "recon", "--tokenizer", str(tiny_dir), "--data", str(tmp_path / "missing"), "--quiet"]) == 2
    assert "not found" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:  # argparse: --tokenizer is required
        main(["eval", "recon", "--data", "x"])
    assert e.value.code == 2



def test_cli_eval_recon_rfid(tmp_path: Path, tiny_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _images(tmp_path / "imgs", 6, 32)
    base = ["--tokenizer", str(tiny_dir), "--data", str(tmp_path / "imgs"), "--device", "cpu", "--quiet"]
    assert main(["eval", "recon", *base, "--rfid", "--inception", "random", "--json", "-"]) == 0
    rfid = json.loads(capsys.readouterr().out)["extra"]["rfid"]
    assert math.isfinite(rfid) and rfid > 0  # an untrained tokenizer does not reconstruct exactly
    assert main(["eval", "recon", *base, "--json", "-"]) == 0
    assert "rfid" not in json.loads(capsys.readouterr().out)["extra"]
    assert main(["eval", "recon", *base, "--rfid", "--inception", "random:x"]) == 2
    assert "seed must be an integer" in capsys.readouterr().err
