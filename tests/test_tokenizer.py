from __future__ import annotations

import dataclasses

import pytest
import torch

from varclip.config import ConfigError, TokenizerConfig, named_tokenizer, named_transformer
from varclip.tokenizer import VQTokenizer, phi_index


def test_phi_ticks_follow_float64_rounding():
    assert [phi_index(s, 10, 4) for s in range(10)] == [0, 0, 1, 1, 1, 2, 2, 3, 3, 3]
    assert [phi_index(s, 4, 4) for s in range(4)] == [0, 1, 2, 3]
    assert phi_index(3, 4, 1) == 0


@pytest.mark.parametrize("share", [0, 1, 2, 4])
def test_sharing_modes_round_trip(share):
    cfg = TokenizerConfig(vocab_size=32, z_channels=4, ch=32, ch_mult=(1, 2), num_res_blocks=1, attn=False,
                          share_quant_resi=share, patch_nums=(1, 2, 4))
    tok = VQTokenizer(cfg).eval()
    keys = [k for k in tok.state_dict() if "quant_resi" in k]
    expected = {0: "quant_resi.2.weight", 1: "quant_resi.qresi.weight", 2: "qresi_ls.1.weight",
                4: "qresi_ls.3.weight"}[share]
    assert any(k.endswith(expected) for k in keys), keys
    img = torch.rand(2, 3, 8, 8) * 2 - 1
    ids = tok.encode(img)
    assert [t.shape for t in ids] == [(2, 1), (2, 4), (2, 16)]
    # decoding the pyramid gives the same f_hat as the encoder's last cumulative f_hat
    assert torch.allclose(tok.quantize.decode(ids, tok.patch_nums), tok.encode_fhat(img), atol=1e-5)
    assert tok.decode(ids).shape == img.shape


def test_any_schedule_ending_at_latent_side():
    cfg = named_tokenizer("tiny")
    tok = VQTokenizer(cfg).eval()
    img = torch.zeros(1, 3, 32, 32)
    ids = tok.set_schedule((1, 3, 4)).encode(img)
    assert [t.shape[1] for t in ids] == [1, 9, 16] and tok.quantize.ema_vocab_hit_SV.shape[0] == 3
    x = tok.quantize.teacher_forcing_input(ids, (1, 3, 4))
    assert x.shape == (1, 9 + 16, cfg.z_channels)


def test_schedule_not_matching_latent_is_a_clear_error():
    tok = VQTokenizer(named_tokenizer("tiny")).eval()
    with pytest.raises(ValueError, match="last patch number"):
        tok.quantize.encode(torch.zeros(1, 8, 4, 4), (1, 2, 5))
    with pytest.raises(ValueError, match="expected 40 px"):
        tok.set_schedule((1, 2, 5)).encode(torch.zeros(1, 3, 32, 32))
    with pytest.raises(ValueError, match="image size"):
        tok.encode(torch.zeros(1, 3, 48, 48))


def test_one_way_to_reschedule(tmp_path):
    """The trainer's frozen tokenizer follows the transformer's schedule through set_schedule:
    the quantizer's per-scale statistics follow too, so its state fits a cache's quantizer."""
    from varclip.checkpoints import save_model_dir
    from varclip.tokenizer import MultiScaleQuantizer
    from varclip.train.components import load_frozen_tokenizer
    save_model_dir(tmp_path / "tok", tokenizer=VQTokenizer(named_tokenizer("tiny")))
    tcfg = dataclasses.replace(named_transformer("tiny"), patch_nums=(1, 2, 4))
    tok = load_frozen_tokenizer(str(tmp_path / "tok"), tcfg, 32)
    assert tok.patch_nums == (1, 2, 4) and tok.quantize.ema_vocab_hit_SV.shape == (3, 64)
    assert [t.shape[1] for t in tok.encode(torch.zeros(1, 3, 32, 32))] == [1, 4, 16]
    MultiScaleQuantizer(64, 8, 3).load_state_dict(tok.quantize.state_dict())  # what a cache reloads
    per_scale = VQTokenizer(dataclasses.replace(named_tokenizer("tiny"), share_quant_resi=0))
    with pytest.raises(ConfigError, match="one phi per scale"):
        per_scale.set_schedule((1, 2, 4))
    with pytest.raises(ConfigError, match="set_schedule"):  # the quantizer alone cannot re-schedule
        per_scale.quantize(torch.zeros(1, 8, 4, 4), (1, 2, 4))


def test_config_validation():
    with pytest.raises(ConfigError, match="increasing"):
        TokenizerConfig(patch_nums=(2, 1))
    with pytest.raises(ConfigError, match="GroupNorm"):
        TokenizerConfig(ch=20)
    assert TokenizerConfig().image_size == 256 and TokenizerConfig(ch_mult=(1, 2, 2, 4)).downsample == 8


def test_training_pass_has_gradients_and_tracks_usage():
    tok = VQTokenizer(named_tokenizer("tiny")).train()
    img = torch.rand(2, 3, 32, 32) * 2 - 1
    rec, vq_loss, ids = tok(img)
    loss = (rec - img).abs().mean() + vq_loss
    loss.backward()
    assert tok.encoder.conv_in.weight.grad is not None and tok.encoder.conv_in.weight.grad.abs().sum() > 0
    assert tok.quantize.embedding.weight.grad.abs().sum() > 0
    assert tok.quantize.ema_vocab_hit_SV.sum() > 0
