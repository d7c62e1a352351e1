"""The `--fast` preset: every option, its fallbacks, and that exact mode stays exact."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from varclip import fast as fastmod
from varclip.config import ConfigError, SamplingConfig, named_tokenizer, named_transformer
from varclip.fast import FastConfig, FastRunner, fast_config, pivotal_tokens, restore_pruned
from varclip.model import Cond, VARTransformer
from varclip.pipeline import VARPipeline
from varclip.sampling import generate
from varclip.tokenizer import VQTokenizer

PLAIN = dict(autocast="off", quantize="off", compile="off", prune_scales=0, cfg_off_last=0, channels_last="off")


@pytest.fixture(scope="module")
def models():
    torch.manual_seed(0)
    model, tok = VARTransformer(named_transformer("tiny")).eval(), VQTokenizer(named_tokenizer("tiny")).eval()
    with torch.no_grad():  # sharper logits than the tiny init, so that changes show in the tokens
        model.head.weight.mul_(200)
    return model, tok


def _tokens(models, fast=None, **kw):
    model, tok = models
    sc = SamplingConfig(seed=3, **kw)
    img, ids, _ = generate(model, tok, Cond(torch.tensor([1, 7])), 2, sc, fast=fast)
    assert torch.isfinite(img).all()
    return ids


@pytest.mark.parametrize("kw, word", [
    (dict(autocast="fp8"), "autocast"), (dict(compile="fast"), "compile"), (dict(quantize="int4"), "quantize"),
    (dict(prune_scales=-1), "prune_scales"), (dict(prune_keep=0.0), "prune_keep"), (dict(prune_keep=1.5), "prune_keep"),
    (dict(cfg_off_last=True), "cfg_off_last"), (dict(channels_last="yes"), "channels_last"),
])
def test_bad_settings_are_one_line_errors(kw, word):
    with pytest.raises(ConfigError, match=word) as e:
        FastConfig(**kw)
    assert "\n" not in str(e.value)


def test_bad_combinations_and_values():
    with pytest.raises(ConfigError, match="do not combine"):
        FastConfig(autocast="bf16", quantize="int8").resolve(torch.device("cpu"))
    with pytest.raises(ConfigError, match="prune"):
        fast_config({"prune": 2})
    with pytest.raises(ConfigError, match="fast must be"):
        fast_config("yes")
    assert fast_config(False) is None and fast_config(True) == FastConfig()
    assert fast_config({"prune_scales": 1}).prune_scales == 1


def test_auto_resolves_per_device(monkeypatch):
    monkeypatch.setattr(fastmod, "_cpu_bf16", lambda: True)
    r = FastConfig().resolve(torch.device("cpu"))
    assert (r.autocast, r.quantize, r.compile) == ("bf16", "off", "off")  # compile does not pay on CPU
    assert FastConfig().resolve(torch.device("cpu"), width=256).autocast == "off"  # narrow: bf16 does not pay
    assert FastConfig().resolve(torch.device("cpu"), width=256).quantize == "off"
    monkeypatch.setattr(fastmod, "_cpu_bf16", lambda: False)
    r = FastConfig().resolve(torch.device("cpu"))
    assert (r.autocast, r.quantize) == ("off", "int8")  # no native bf16: int8 Linear layers instead
    assert FastConfig(autocast="off", quantize="off").resolve(torch.device("cpu")).quantize == "off"


def test_pivotal_tokens_and_restore():
    x = torch.zeros(1, 9, 2)
    x[0, 4] = 5.0  # the centre differs most from the mean, then the corner
    x[0, 8] = 2.0
    assert pivotal_tokens(x, 2).tolist() == [[4, 8]]
    h_prev = torch.arange(4.0).view(1, 4, 1)  # 2x2 grid
    kept = torch.full((1, 2, 1), -1.0)
    full = restore_pruned(h_prev, torch.tensor([[0, 8]]), kept, 3)
    assert full.shape == (1, 9, 1)
    assert full[0, 0, 0] == -1 and full[0, 8, 0] == -1
    assert full[0, 1:8, 0].min() >= 0 and full[0, 1:8, 0].max() <= 3  # the rest: upsampled h_prev


def test_plain_runner_is_exact(models):
    exact = _tokens(models)
    for kw in (PLAIN, dict(PLAIN, prune_scales=2, prune_keep=1.0)):
        same = _tokens(models, FastRunner(models[0], FastConfig(**kw)))
        assert all(torch.equal(a, b) for a, b in zip(exact, same))


def test_pruning_runs_fewer_tokens(models, monkeypatch):
    runner = FastRunner(models[0], FastConfig(**dict(PLAIN, prune_scales=2, prune_keep=0.5)))
    seen = []
    step = runner.step
    monkeypatch.setattr(runner, "step", lambda x, *a: (seen.append(x.shape[1]), step(x, *a))[1])
    exact, fast = _tokens(models), _tokens(models, runner)
    assert seen == [1, 4, round(9 * 0.5), round(16 * 0.5)]  # tiny schedule 1,2,3,4: the last 2 pruned
    assert all(torch.equal(a, b) for a, b in zip(exact[:2], fast[:2]))
    assert not all(torch.equal(a, b) for a, b in zip(exact[2:], fast[2:]))
    assert runner.kept(0, 1, 4) is None and runner.kept(3, 4, 4) == 8


def test_cfg_off_last_is_off_from(models):
    runner = FastRunner(models[0], FastConfig(**dict(PLAIN, cfg_off_last=1)))
    fast = _tokens(models, runner, cfg=3.0)
    ref = _tokens(models, cfg=3.0, cfg_schedule="off_from:3")
    assert all(torch.equal(a, b) for a, b in zip(fast, ref))
    assert runner.guidance([1.0, 2.0, 3.0]) == [1.0, 2.0, 0.0]


def test_bf16_copy_leaves_the_exact_model_alone(models):
    model = models[0]
    before = {k: v.clone() for k, v in model.state_dict().items()}
    runner = FastRunner(model, FastConfig(**dict(PLAIN, autocast="bf16")))
    assert runner.model is not model and runner.model.blocks[0].ffn.fc1.weight.dtype == torch.bfloat16
    assert runner.model.head.weight.dtype == torch.float32  # the head runs outside autocast
    ids = _tokens(models, runner)
    assert [t.shape for t in ids] == [(2, p * p) for p in model.patch_nums]
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())


def test_int8_quantises_linear_layers(models):
    runner = FastRunner(models[0], FastConfig(**dict(PLAIN, quantize="int8")))
    from torch.ao.nn.quantized.dynamic import Linear as QLinear
    assert isinstance(runner.model.blocks[0].ffn.fc1, QLinear)
    assert isinstance(runner.model.blocks[0].attn.mat_qkv, torch.nn.Linear)  # read by weight: stays float
    assert runner.cfg.quantize == "int8"
    _tokens(models, runner)


def test_int8_failure_falls_back_with_one_line(models, monkeypatch, caplog):
    def broken(model):
        raise RuntimeError("no int8 kernel here\nsecond line")
    monkeypatch.setattr(fastmod, "quantize_int8", broken)
    with caplog.at_level(logging.WARNING, logger="varclip.fast"):
        runner = FastRunner(models[0], FastConfig(**dict(PLAIN, quantize="int8")))
    assert runner.model is models[0] and runner.cfg.quantize == "off"
    assert len(caplog.records) == 1 and "\n" not in caplog.records[0].getMessage()
    assert "int8" in caplog.records[0].getMessage()


def test_compile_on_cpu_matches_eager(models):
    torch._dynamo.reset()
    runner = FastRunner(models[0], FastConfig(**dict(PLAIN, compile="default", compile_backend="aot_eager")))
    assert runner._compiled is not None
    compiled = _tokens(models, runner)
    assert runner._compiled is not None  # no fallback happened
    eager = _tokens(models, FastRunner(models[0], FastConfig(**PLAIN)))
    assert all(torch.equal(a, b) for a, b in zip(compiled, eager))


def test_compile_failure_falls_back_with_one_line(models, caplog):
    torch._dynamo.reset()

    def broken_backend(gm, example_inputs):
        raise RuntimeError("compiler exploded\nwith a long story")

    runner = FastRunner(models[0], FastConfig(**dict(PLAIN, compile="default", compile_backend=broken_backend)))
    with caplog.at_level(logging.WARNING, logger="varclip.fast"):
        ids = _tokens(models, runner)
    assert runner._compiled is None
    msgs = [r.getMessage() for r in caplog.records if r.name == "varclip.fast"]
    assert len(msgs) == 1 and "torch.compile" in msgs[0] and "\n" not in msgs[0]
    plain = _tokens(models, FastRunner(models[0], FastConfig(**PLAIN)))
    assert all(torch.equal(a, b) for a, b in zip(ids, plain))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs (compile mode reduce-overhead) need a GPU")
def test_cuda_graph_capture(models):
    model, tok = VARTransformer(named_transformer("tiny")).cuda().eval(), VQTokenizer(named_tokenizer("tiny")).cuda()
    runner = FastRunner(model, FastConfig(compile="auto", prune_scales=0))
    assert runner.cfg.compile == "reduce-overhead"
    sc = SamplingConfig(seed=0)
    for _ in range(3):  # warm-up, record, replay
        img, ids, _ = generate(model, tok, Cond(torch.tensor([1, 2], device="cuda")), 2, sc, fast=runner)
    assert runner._compiled is not None and torch.isfinite(img).all()


def test_pipeline_fast_switch(models):
    model, tok = models
    pipe = VARPipeline(tok, model)
    pipe.set_progress_bar_config(disable=True)
    exact = pipe(class_labels=[1, 7], seed=3, return_tokens=True).tokens
    pipe.enable_fast(dict(PLAIN, prune_scales=2))
    fast = pipe(class_labels=[1, 7], seed=3, return_tokens=True).tokens
    assert not all(torch.equal(a, b) for a, b in zip(exact, fast))
    per_call = pipe(class_labels=[1, 7], seed=3, return_tokens=True, fast=False).tokens
    assert all(torch.equal(a, b) for a, b in zip(exact, per_call))
    pipe.enable_fast(False)
    again = pipe(class_labels=[1, 7], seed=3, return_tokens=True).tokens
    assert all(torch.equal(a, b) for a, b in zip(exact, again))
    out = pipe(class_labels=[1], seed=0, fast=True)  # the preset on this device
    assert len(out.images) == 1
    with pytest.raises(ConfigError):
        pipe(class_labels=[1], fast={"prune_keep": 2})


def test_in_place_cast_shares_the_weights_and_closes_exact_mode():
    torch.manual_seed(0)
    model, tok = VARTransformer(named_transformer("tiny")).eval(), VQTokenizer(named_tokenizer("tiny")).eval()
    copy_runner = FastRunner(model, FastConfig(**dict(PLAIN, autocast="bf16")))
    want = _tokens((copy_runner.model, tok), copy_runner)
    pipe = VARPipeline(tok, model)
    pipe.set_progress_bar_config(disable=True)
    pipe.enable_fast(dict(PLAIN, autocast="bf16"), keep_exact=False)
    got = pipe(class_labels=[1, 7], seed=3, return_tokens=True).tokens
    assert pipe._fast_runner.model is model and model.blocks[0].ffn.fc1.weight.dtype == torch.bfloat16
    assert model.head.weight.dtype == torch.float32
    assert all(torch.equal(a, b) for a, b in zip(want, got))  # the same tokens as the copy
    for fast in (False, {"autocast": "bf16", "cfg_off_last": 1}):
        with pytest.raises(ConfigError, match="load the model again"):
            pipe(class_labels=[1], seed=0, fast=fast)


def test_channels_last_decoder_is_close_and_leaves_the_tokenizer_alone(models):
    model, tok = models
    f = torch.randn(2, tok.cfg.z_channels, 8, 8)
    runner = FastRunner(model, FastConfig(**dict(PLAIN, channels_last="on")))
    assert FastConfig().resolve(torch.device("cpu"), 256).channels_last == "on"
    with torch.no_grad():
        want, got = tok.fhat_to_img(f), runner.decode(tok, f)
    assert (want - got).abs().max() < 1e-3
    assert all(p.is_contiguous() for p in tok.parameters())  # the exact tokenizer keeps its layout
    decoder = runner._decoders[1]
    assert decoder is not tok and decoder.decoder.conv_in.weight.is_contiguous(memory_format=torch.channels_last)
    pipe = VARPipeline(tok, model)
    pipe.set_progress_bar_config(disable=True)
    exact = pipe(class_labels=[1, 7], seed=3).images
    fast = pipe(class_labels=[1, 7], seed=3, fast=dict(PLAIN, channels_last="on")).images
    for a, b in zip(exact, fast):  # the same picture to within one grey level
        assert np.abs(np.asarray(a, dtype=np.int16) - np.asarray(b, dtype=np.int16)).max() <= 1
