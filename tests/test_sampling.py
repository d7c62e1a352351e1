from __future__ import annotations

import pytest
import torch

from varclip.config import ConfigError, SamplingConfig
from varclip.model import Cond
from varclip.sampling import filter_logits_, generate, guidance_scales, sample_scales


def test_kv_cached_sampler_matches_masked_teacher_forcing(tiny_pipeline):
    model, tok = tiny_pipeline.transformer, tiny_pipeline.tokenizer
    cond = Cond(torch.tensor([1, 5]))
    steps = list(sample_scales(model, tok, cond, 2, SamplingConfig(cfg=0.0, top_k=0, top_p=0.0, seed=3)))
    ids = [s.ids for s in steps]
    cached = torch.cat([s.logits for s in steps], dim=1)
    with torch.no_grad():
        full = model(cond, tok.quantize.teacher_forcing_input(ids, model.patch_nums))
    assert torch.allclose(cached, full, atol=1e-4), (cached - full).abs().max()


def test_same_seed_same_image_and_different_seed_differs(tiny_pipeline):
    a = tiny_pipeline(class_labels=[1, 2], seed=7, top_k=0, top_p=0.0, return_tokens=True)
    b = tiny_pipeline(class_labels=[1, 2], seed=7, top_k=0, top_p=0.0, return_tokens=True)
    c = tiny_pipeline(class_labels=[1, 2], seed=8, top_k=0, top_p=0.0, return_tokens=True)
    assert all(torch.equal(x, y) for x, y in zip(a.tokens, b.tokens))
    assert not all(torch.equal(x, y) for x, y in zip(a.tokens, c.tokens))


def test_per_sample_seeds_do_not_depend_on_batch(tiny_pipeline):
    kw = dict(top_k=0, top_p=0.0, per_sample_seeds=True, return_tokens=True, smooth=True)
    two = tiny_pipeline(class_labels=[3, 4], seed=10, **kw)
    one = tiny_pipeline(class_labels=[4], seed=11, **kw)
    assert all(torch.equal(t2[1], t1[0]) for t2, t1 in zip(two.tokens, one.tokens))
    shared = tiny_pipeline(class_labels=[3, 4], seed=10, top_k=0, top_p=0.0, return_tokens=True)
    assert not all(torch.equal(x, y) for x, y in zip(two.tokens, shared.tokens))


def test_guidance_schedules():
    assert guidance_scales(2.0, "linear", 3) == [0.0, 1.0, 2.0]
    assert guidance_scales(2.0, "constant", 3) == [2.0, 2.0, 2.0]
    assert guidance_scales(2.0, "off_from:2", 3) == [0.0, 1.0, 0.0]
    assert guidance_scales(2.0, [1, 2, 3], 3) == [1.0, 2.0, 3.0]
    assert guidance_scales(2.0, "0.5,1,1.5", 3) == [0.5, 1.0, 1.5]
    with pytest.raises(ConfigError):
        guidance_scales(2.0, [1, 2], 3)
    with pytest.raises(ConfigError):
        guidance_scales(2.0, "cosine", 3)


def test_guidance_off_from_start_equals_no_guidance(tiny_pipeline):
    """off_from:0 drops the unconditional half at once; results equal cfg=0."""
    kw = dict(class_labels=[1, 2], seed=1, top_k=0, top_p=0.0, return_tokens=True)
    a = tiny_pipeline(cfg=5.0, cfg_schedule="off_from:0", **kw)
    b = tiny_pipeline(cfg=0.0, **kw)
    mid = tiny_pipeline(cfg=5.0, cfg_schedule="off_from:2", **kw)
    full = tiny_pipeline(cfg=5.0, **kw)
    assert all(torch.equal(x, y) for x, y in zip(a.tokens, b.tokens))
    assert all(torch.equal(x, y) for x, y in zip(mid.tokens[:2], full.tokens[:2]))


def test_filter_top_k_then_top_p():
    logits = torch.tensor([[[0.0, 1.0, 2.0, 3.0, 4.0]]])
    out = filter_logits_(logits.clone(), top_k=3, top_p=0.0)
    assert torch.isinf(out[0, 0, :2]).all() and torch.isfinite(out[0, 0, 2:]).all()
    out = filter_logits_(logits.clone(), top_k=0, top_p=0.5)
    assert torch.isfinite(out[0, 0, 4]) and torch.isinf(out[0, 0, 0])
    out = filter_logits_(logits.clone(), top_k=1, top_p=0.99)
    assert torch.isfinite(out).sum() == 1


def test_temperature_and_bf16_autocast_run(tiny_pipeline):
    model, tok = tiny_pipeline.transformer, tiny_pipeline.tokenizer
    img, ids, _ = generate(model, tok, Cond(torch.tensor([0])), 1, SamplingConfig(temperature=0.7, seed=0),
                           autocast_dtype=torch.bfloat16)
    assert img.shape == (1, 3, 32, 32) and img.dtype == torch.float32
    assert 0 <= img.min() and img.max() <= 1


def test_sampling_config_rejects_bad_values():
    with pytest.raises(ConfigError, match="top_p"):
        SamplingConfig(top_p=1.5)
    with pytest.raises(ConfigError, match="top_k"):
        SamplingConfig(top_k=-1)
    with pytest.raises(ConfigError, match="temperature"):
        SamplingConfig(temperature=0)


def test_callback_sees_every_scale(tiny_pipeline):
    seen = []
    out = tiny_pipeline(class_labels=[0], seed=0, callback_on_scale=lambda s, k, imgs: seen.append((s, k, len(imgs))))
    assert seen == [(s, 4, 1) for s in range(4)] and len(out.images) == 1


def test_invalid_class_id(tiny_pipeline):
    with pytest.raises(ValueError, match="invalid class id 10"):
        tiny_pipeline(class_labels=[10])
