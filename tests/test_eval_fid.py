"""FID, IS, precision/recall and their inputs, on a tiny random feature extractor (fast)."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest
import torch
from PIL import Image

from varclip.eval.cli import cli_eval
from varclip.eval.fid import (ArrayImages, FileImages, NpzImages, NpzWriter, RFIDMetric, Stats,
                              center_crop_arr, compute_stats, evaluate_fid, extract_features, fid_from_features,
                              frechet_distance, inception_score, load_stats, open_input, precision_recall)
from varclip.eval.inception import (RandomFeatureExtractor, build_inception, load_feature_extractor,
                                    tf1_resize_bilinear)


def synthetic_images(n: int, size: int = 32, seed: int = 0) -> np.ndarray:
    """Smooth, varied pictures: colour gradients with a bright disc at a random place."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    out = np.empty((n, size, size, 3), np.uint8)
    for i in range(n):
        a, b, c = rng.random(3), rng.random(3), rng.random(3)
        img = 255 * (a * xx[..., None] + b * yy[..., None] + c) / 2.5
        cy, cx, r = rng.random(), rng.random(), 0.1 + 0.2 * rng.random()
        disc = ((yy - cy) ** 2 + (xx - cx) ** 2) < r * r
        img[disc] = 255 * rng.random(3)
        out[i] = np.clip(img, 0, 255).astype(np.uint8)
    return out


def noisy(x: np.ndarray, sigma: float, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(x.astype(np.float64) + rng.normal(0, sigma, x.shape), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def extractor():
    return RandomFeatureExtractor(0)


@pytest.fixture(scope="module")
def images():
    return synthetic_images(32)


def feats(ex, x):
    return extract_features(ArrayImages(x), ex, batch_size=16, progress=False)


# ---------------------------------------------------------------------------- metric properties


def test_fid_of_a_set_with_itself_is_zero(extractor, images):
    f = feats(extractor, images).features
    assert abs(fid_from_features(f, f)) < 1e-6


def test_fid_grows_monotonically_with_noise(extractor, images):
    ref = feats(extractor, images).features
    values = [fid_from_features(ref, feats(extractor, noisy(images, s)).features) for s in (0, 8, 16, 32, 64)]
    assert values[0] < 1e-6
    assert all(b > a for a, b in zip(values, values[1:])), values


def test_frechet_distance_matches_scipy_sqrtm(extractor, images):
    scipy_linalg = pytest.importorskip("scipy.linalg")
    a = Stats.of(feats(extractor, images).features)
    b = Stats.of(feats(extractor, noisy(images, 30)).features)
    s = scipy_linalg.sqrtm(a.sigma @ b.sigma)
    s = s[0] if isinstance(s, tuple) else s
    want = float(((a.mu - b.mu) ** 2).sum() + np.trace(a.sigma + b.sigma - 2 * np.real(s)))
    assert frechet_distance(a.mu, a.sigma, b.mu, b.sigma) == pytest.approx(want, rel=1e-5, abs=1e-8)


def test_frechet_distance_matches_torchmetrics(extractor, images):
    tm_fid = pytest.importorskip("torchmetrics.image.fid")

    class Feed(torch.nn.Module):  # torchmetrics runs `feature(x)`; here x already is the features
        num_features = extractor.dim

        def forward(self, x):
            return x

    fa, fb = feats(extractor, images).features, feats(extractor, noisy(images, 30)).features
    m = tm_fid.FrechetInceptionDistance(feature=Feed())
    m.update(torch.from_numpy(fa).double(), real=True)
    m.update(torch.from_numpy(fb).double(), real=False)
    assert fid_from_features(fa, fb) == pytest.approx(float(m.compute()), rel=1e-4)


def test_frechet_distance_refuses_mismatched_sizes():
    with pytest.raises(ValueError, match="different feature sizes"):
        frechet_distance(np.zeros(3), np.eye(3), np.zeros(4), np.eye(4))


def test_inception_score_is_finite_and_bounded(extractor, images):
    fs = feats(extractor, images)
    mean, std = inception_score(fs.logits)
    assert np.isfinite(mean) and np.isfinite(std)
    assert 1.0 <= mean <= extractor.num_classes
    # uniform predictions give exactly 1; confident, evenly spread ones give the class count
    assert inception_score(np.zeros((10, 5)))[0] == pytest.approx(1.0)
    assert inception_score(np.eye(5).repeat(2, 0) * 50)[0] == pytest.approx(5.0, rel=1e-6)
    mean, std = inception_score(np.random.default_rng(0).normal(size=(30, 7)), split_size=10)
    assert std > 0  # three splits


def test_precision_recall_range_and_identity(extractor, images):
    f = feats(extractor, images).features
    assert precision_recall(f, f) == (1.0, 1.0)
    g = feats(extractor, noisy(images, 60)).features
    p, r = precision_recall(f, g)
    assert 0.0 <= p <= 1.0 and 0.0 <= r <= 1.0
    assert p < 1.0 and r < 1.0
    # a sample set far off the data: nothing inside the real manifold
    p, r = precision_recall(f, f + 1000.0)
    assert (p, r) == (0.0, 0.0)


def test_precision_recall_needs_more_than_k_points():
    x = np.random.default_rng(0).normal(size=(3, 4)).astype(np.float32)
    with pytest.raises(ValueError, match="more than 3"):
        precision_recall(x, x)


def test_precision_recall_k_nearest_neighbour_definition():
    # 1-d points: real at 0,1,2,3,10 -> k=1 radii 1,1,1,1,7; fake at 2.5 (inside) and 20 (outside)
    real = np.array([[0.0], [1.0], [2.0], [3.0], [10.0]], np.float32)
    fake = np.array([[2.5], [20.0], [21.0], [22.0]], np.float32)
    p, r = precision_recall(real, fake, k=1)
    assert p == pytest.approx(0.25)
    # fake radii (k=1): 2.5->17.5, 20->1, 21->1, 22->1: every real point is within 17.5 of 2.5
    assert r == pytest.approx(1.0)


# ---------------------------------------------------------------------------- inputs


def write_folder(path, arr):
    path.mkdir(parents=True, exist_ok=True)
    for i, a in enumerate(arr):
        Image.fromarray(a).save(path / f"{i:03d}.png")
    return path


def test_npz_writer_streams_and_numpy_reads_it(tmp_path, images):
    path = tmp_path / "batch.npz"
    with NpzWriter(path) as w:
        w.add_stream("arr_0", images.shape, np.uint8, (images[i: i + 5] for i in range(0, len(images), 5)))
        w.add("arr_1", np.arange(len(images)))
    with np.load(path) as z:
        assert z.files == ["arr_0", "arr_1"]
        np.testing.assert_array_equal(z["arr_0"], images)
    reader = NpzImages(path)
    assert len(reader) == len(images)
    np.testing.assert_array_equal(np.concatenate(list(reader.batches(7))), images)
    np.testing.assert_array_equal(np.concatenate(list(reader.batches(7, limit=9))), images[:9])
    assert not list(tmp_path.glob(".*.tmp"))  # no temp file left behind


def test_npz_writer_leaves_nothing_on_error(tmp_path, images):
    path = tmp_path / "bad.npz"
    with pytest.raises(ValueError, match="streamed"):
        with NpzWriter(path) as w:
            w.add_stream("arr_0", (100, 32, 32, 3), np.uint8, [images[:3]])
    assert not path.exists() and not list(tmp_path.iterdir())


def test_npz_images_must_be_uint8_nhwc(tmp_path):
    np.savez(tmp_path / "f.npz", arr_0=np.zeros((2, 3, 8, 8), np.uint8))
    with pytest.raises(ValueError, match="channels first"):
        NpzImages(tmp_path / "f.npz")
    np.savez(tmp_path / "g.npz", other=np.zeros(3))
    with pytest.raises(ValueError, match="arr_0"):
        open_input(tmp_path / "g.npz")


def test_inputs_folder_npz_stats_and_manifest_agree(tmp_path, extractor, images):
    folder = write_folder(tmp_path / "imgs", images)
    np.savez(tmp_path / "batch.npz", arr_0=images)
    man = tmp_path / "m.jsonl"
    man.write_text("".join(json.dumps({"image": f"imgs/{i:03d}.png", "caption": f"c{i}"}) + "\n"
                           for i in range(len(images))))
    want = feats(extractor, images).features
    for spec in (folder, tmp_path / "batch.npz", man):
        inp = open_input(spec)
        got = extract_features(inp.images, extractor, batch_size=10, progress=False).features
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
    stats = compute_stats(folder, extractor, tmp_path / "stats.npz", batch_size=8, progress=False)
    loaded = load_stats(tmp_path / "stats.npz")
    np.testing.assert_allclose(loaded.mu, stats.mu)
    np.testing.assert_allclose(loaded.sigma, stats.sigma)
    assert loaded.num == len(images) and loaded.identity == extractor.identity
    assert open_input(tmp_path / "stats.npz").kind == "stats"


def test_evaluate_fid_stats_file_equals_images(tmp_path, extractor, images):
    ref = write_folder(tmp_path / "ref", images)
    np.savez(tmp_path / "samples.npz", arr_0=noisy(images, 20))
    compute_stats(ref, extractor, tmp_path / "ref_stats.npz", progress=False)
    a = evaluate_fid(ref, tmp_path / "samples.npz", extractor, batch_size=8, progress=False)
    b = evaluate_fid(tmp_path / "ref_stats.npz", tmp_path / "samples.npz", extractor, batch_size=8, progress=False)
    assert a.fid == pytest.approx(b.fid, rel=1e-9)
    assert a.precision is not None and b.precision is None  # no images behind a stats file
    assert any("precision/recall need images" in n for n in b.notes)
    assert a.inception_score is not None and a.inception_score_ref is not None
    # stored features make precision/recall possible from a stats file
    compute_stats(ref, extractor, tmp_path / "ref_feats.npz", with_features=True, progress=False)
    c = evaluate_fid(tmp_path / "ref_feats.npz", tmp_path / "samples.npz", extractor, progress=False)
    assert (c.precision, c.recall) == pytest.approx((a.precision, a.recall))


def test_reference_batch_with_images_and_stats_uses_the_stats_for_fid(tmp_path, extractor, images):
    """OpenAI's reference batches hold arr_0 and mu/sigma: FID from the stats, P/R from the images."""
    other = Stats.of(feats(extractor, noisy(images, 40)).features)
    np.savez(tmp_path / "ref.npz", arr_0=images, mu=other.mu, sigma=other.sigma)
    np.savez(tmp_path / "s.npz", arr_0=noisy(images, 40))
    res = evaluate_fid(tmp_path / "ref.npz", tmp_path / "s.npz", extractor, progress=False)
    assert abs(res.fid) < 1e-6  # the stored stats are those of the samples
    assert res.precision is not None
    res2 = evaluate_fid(tmp_path / "ref.npz", tmp_path / "s.npz", extractor, recompute_stats=True, progress=False)
    assert res2.fid > 1e-3


def test_folder_of_mixed_sizes_and_center_crop(tmp_path, extractor):
    (tmp_path / "mix").mkdir()
    Image.fromarray(synthetic_images(1, 40)[0]).save(tmp_path / "mix" / "a.png")
    Image.fromarray(synthetic_images(1, 24, seed=3)[0]).resize((30, 24)).save(tmp_path / "mix" / "b.jpg")
    (tmp_path / "mix" / "notes.txt").write_text("not an image")
    inp = open_input(tmp_path / "mix")
    assert len(inp.images) == 2
    f = extract_features(inp.images, extractor, progress=False)
    assert f.features.shape == (2, extractor.dim)
    crop = FileImages(inp.images.files, "mix", center_crop=16)
    batch = next(crop.batches(4))
    assert all(a.shape == (16, 16, 3) for a in batch)


def test_center_crop_arr_matches_the_reference_recipe():
    img = Image.fromarray(synthetic_images(1, 64)[0]).resize((100, 70))
    out = center_crop_arr(img, 32)
    assert out.shape == (32, 32, 3) and out.dtype == np.uint8
    # the recipe: box-halve while >= 2x, bicubic to the short side, centre crop
    half = img.resize((50, 35), Image.BOX)
    scaled = half.resize((round(50 * 32 / 35), 32), Image.BICUBIC)
    arr = np.asarray(scaled)
    left = (arr.shape[1] - 32) // 2
    np.testing.assert_array_equal(out, arr[:, left: left + 32])


def test_tf1_resize_matches_an_affine_grid_implementation():
    """TF1 bilinear (source = dst * in/out) against NVIDIA's affine_grid/grid_sample formulation."""
    import torch.nn.functional as F
    x = torch.rand(2, 3, 37, 23) * 255
    oh, ow = 61, 50
    n, c, h, w = x.shape
    theta = torch.eye(2, 3).unsqueeze(0).repeat(n, 1, 1)
    theta[:, 0, 2] += 1 / w - 1 / ow
    theta[:, 1, 2] += 1 / h - 1 / oh
    grid = F.affine_grid(theta, [n, c, oh, ow], align_corners=False)
    ref = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    torch.testing.assert_close(tf1_resize_bilinear(x, (oh, ow)), ref, atol=5e-3, rtol=0)
    assert tf1_resize_bilinear(x, (37, 23)) is x


# ---------------------------------------------------------------------------- inception plumbing


def _random_native_state(num_classes: int = 0) -> dict[str, torch.Tensor]:
    from varclip.eval.inception import InceptionV3
    torch.manual_seed(0)
    net = InceptionV3(num_classes)
    sd = {}
    for k, v in net.state_dict().items():
        sd[k] = torch.rand_like(v) + 0.5 if k.endswith("var") else torch.randn_like(v) * 0.05
    return sd


def _to_torchvision_layout(native: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Our names -> pytorch-fid's (written independently of the loader's tables where possible)."""
    from varclip.eval import inception as inc
    rev_stem = {v: k for k, v in inc._TV_STEM.items()}
    rev_block = {v: k for k, v in inc._TV_BLOCKS.items()}
    names = {"weight": "conv.weight", "beta": "bn.bias", "mean": "bn.running_mean", "var": "bn.running_var"}
    tv: dict[str, torch.Tensor] = {}
    for k, v in native.items():
        if k.startswith("output."):
            tv["fc." + k.split(".")[1]] = v
            continue
        parts = k.split(".")
        path, tensor = parts[1:-1], parts[-1]
        if path[0] in rev_stem:
            prefix = rev_stem[path[0]]
        else:
            block = rev_block[path[0]]
            rev_branch = {b: a for a, b in inc._TV_BRANCH[inc._TV_KIND[block]].items()}
            prefix = f"{block}.{rev_branch['.'.join(path[1:])]}"
        tv[f"{prefix}.{names[tensor]}"] = v
        if tensor == "weight":
            tv[f"{prefix}.bn.weight"] = torch.ones(v.shape[0])
            tv[f"{prefix}.bn.num_batches_tracked"] = torch.tensor(0)
    return tv


def test_torchvision_layout_loads_to_the_same_network():
    """pytorch-fid's pt_inception names (Conv2d_1a_3x3 ... fc) map onto ours tensor for tensor."""
    native = _random_native_state(num_classes=1008)
    tv = _to_torchvision_layout(native)
    assert "Mixed_7c.branch3x3dbl_3b.conv.weight" in tv and "Conv2d_4a_3x3.bn.running_var" in tv
    a, b = build_inception(native), build_inception(tv)
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)  # same tensor in every place
    assert a.logits(torch.ones(1, 2048)).shape == (1, 1008)
    tv["Conv2d_1a_3x3.bn.weight"] = torch.full((32,), 2.0)  # a learned BN scale is honoured
    c = build_inception(tv)
    x = torch.randn(1, 3, 9, 9)
    with torch.no_grad():
        assert not torch.allclose(c.layers.conv(x), a.layers.conv(x))
    assert c.layers.conv_1.gamma is None and c.layers.conv.gamma is not None


def test_unknown_weight_files_are_refused(tmp_path):
    from varclip.eval.inception import InceptionError
    torch.save({"foo": torch.zeros(3)}, tmp_path / "x.pth")
    with pytest.raises(InceptionError, match="not an FID Inception"):
        load_feature_extractor(str(tmp_path / "x.pth"))
    with pytest.raises(InceptionError, match="not found"):
        load_feature_extractor(str(tmp_path / "missing.pt"))
    (tmp_path / "junk.pt").write_bytes(b"not a zip")
    with pytest.raises(InceptionError, match="cannot read"):
        load_feature_extractor(str(tmp_path / "junk.pt"))


def test_rfid_metric_plugs_into_recon(extractor):
    from varclip.eval.recon import evaluate_reconstruction
    from varclip.config import named_tokenizer
    from varclip.tokenizer import VQTokenizer
    torch.manual_seed(0)
    tok = VQTokenizer(named_tokenizer("tiny"))
    imgs = torch.from_numpy(synthetic_images(8)).permute(0, 3, 1, 2).float() / 127.5 - 1
    metric = RFIDMetric(extractor)
    res = evaluate_reconstruction(tok, [(imgs, None)], extra_metrics=[metric])
    assert np.isfinite(res.extra["rfid"]) and res.extra["rfid"] > 0
    same = RFIDMetric(extractor)
    same.update((imgs + 1) / 2, (imgs + 1) / 2)
    assert abs(same.compute()["rfid"]) < 1e-6


# ---------------------------------------------------------------------------- command line


def test_cli_fid_table_and_json(tmp_path, images, capsys):
    write_folder(tmp_path / "ref", images)
    np.savez(tmp_path / "s.npz", arr_0=noisy(images, 10))
    assert cli_eval(["fid", str(tmp_path / "ref"), str(tmp_path / "s.npz"), "--inception", "random", "--quiet",
                     "--json", str(tmp_path / "r.json")]) == 0
    out = capsys.readouterr().out
    assert "FID" in out and "precision (k=3)" in out and "IS (samples)" in out
    data = json.loads((tmp_path / "r.json").read_text())
    assert data["fid"] > 0 and 0 <= data["precision"] <= 1 and data["num_sample"] == len(images)
    assert cli_eval(["fid", str(tmp_path / "ref"), str(tmp_path / "ref"), "--inception", "random:0", "--quiet",
                     "--json", "-", "--no-is", "--no-pr"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert abs(data["fid"]) < 1e-6 and data["precision"] is None and data["inception_score"] is None


def test_cli_fid_stats_then_fid(tmp_path, images, capsys):
    write_folder(tmp_path / "ref", images)
    assert cli_eval(["fid-stats", str(tmp_path / "ref"), str(tmp_path / "st.npz"), "--inception", "random",
                     "--quiet"]) == 0
    assert "wrote" in capsys.readouterr().out
    with zipfile.ZipFile(tmp_path / "st.npz") as z:
        assert {"mu.npy", "sigma.npy", "num_images.npy", "extractor.npy"} <= set(z.namelist())
    assert cli_eval(["fid", str(tmp_path / "st.npz"), str(tmp_path / "ref"), "--inception", "random", "--quiet",
                     "--json", "-"]) == 0
    assert abs(json.loads(capsys.readouterr().out)["fid"]) < 1e-6


def test_cli_errors_are_one_line_value_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        cli_eval(["fid", str(tmp_path / "nope"), str(tmp_path / "nope2"), "--inception", "random"])
    (tmp_path / "x.bin").write_bytes(b"123")
    with pytest.raises(ValueError, match="give an image folder"):
        cli_eval(["fid", str(tmp_path / "x.bin"), str(tmp_path / "x.bin"), "--inception", "random"])
    with pytest.raises(ValueError, match="--batch-size must be >= 1"):
        cli_eval(["fid", str(tmp_path), str(tmp_path), "--inception", "random", "--batch-size", "0"])
    with pytest.raises(ValueError, match=r"\.npz"):
        cli_eval(["fid-stats", str(tmp_path), str(tmp_path / "out.txt"), "--inception", "random"])


def test_image_space_fid_equals_the_covariance_route():
    rng = np.random.default_rng(3)
    a = rng.normal(size=(5, 40)).astype(np.float32)
    b = (rng.normal(size=(7, 40)) * 1.5 + 0.3).astype(np.float32)
    sa, sb = Stats.of(a), Stats.of(b)
    assert fid_from_features(a, b) == pytest.approx(frechet_distance(sa.mu, sa.sigma, sb.mu, sb.sigma), rel=1e-9)
    big_a, big_b = rng.normal(size=(50, 6)), rng.normal(size=(60, 6)) + 1  # n_a * n_b >= D^2: covariance route
    sa, sb = Stats.of(big_a), Stats.of(big_b)
    assert fid_from_features(big_a, big_b) == pytest.approx(frechet_distance(sa.mu, sa.sigma, sb.mu, sb.sigma))
