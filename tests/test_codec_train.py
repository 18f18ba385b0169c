"""Codec training: loss sanity, export round trip, and a short resumable run on the synthetic corpus."""
from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from musicgen_core.codec import Codec
from musicgen_core.configs import CodecConfig
from musicgen_core.train import codec as trainer
from musicgen_core.train.losses import (MultiResolutionMelLoss, MultiResolutionSTFTLoss, MultiScaleSTFTDiscriminator,
                                        discriminator_loss, generator_losses, si_sdr)

TINY = CodecConfig(n_filters=4, dimension=16, lstm_layers=1, bins=64)


def test_losses_rank_identical_above_noisy():
    torch.manual_seed(0)
    x = torch.randn(2, 1, 8000) * 0.1
    noisy = x + 0.05 * torch.randn_like(x)
    for loss in (MultiResolutionMelLoss(), MultiResolutionSTFTLoss()):
        assert loss(x, x) < 1e-4 < loss(noisy, x)
    assert (si_sdr(x, x) > 60).all() and (si_sdr(noisy, x) < si_sdr(x + 0.01 * torch.randn_like(x), x)).all()


def test_discriminator_losses():
    disc = MultiScaleSTFTDiscriminator((256, 128), filters=4)
    x = torch.randn(2, 1, 4000)
    real, fake = disc(x), disc(x.flip(-1))
    assert len(real) == 2 and all(logits.dim() == 4 for logits, _ in real)
    assert discriminator_loss(real, fake) > 0
    adv, feat = generator_losses(real, fake)
    assert adv > 0 and feat > 0
    assert generator_losses(real, real)[1] == 0


@pytest.mark.parametrize("decoder", ["seanet", "istft"])
def test_export_round_trip(decoder, tmp_path):
    codec = Codec(dataclasses.replace(TINY, decoder=decoder, istft_dim=16, istft_layers=2))
    for layer in codec.quantizer.layers:
        layer.embed.normal_()
    path = trainer.export_codec(codec, tmp_path, dtype=torch.float32)
    cfg = CodecConfig(**{**json.loads((tmp_path / "codec_config.json").read_text()), "ratios": (8, 5, 4, 4)})
    loaded = Codec(cfg).remove_weight_norm()
    from safetensors.torch import load_file

    loaded.load_state_dict(load_file(path), strict=False)
    x = torch.randn(1, 1, 6400)
    with torch.no_grad():
        torch.testing.assert_close(loaded.decode(codec.encode(x)), codec.decode(codec.encode(x)), atol=1e-5, rtol=0)


def test_short_run_resumes(tmp_path):
    cfg = dataclasses.replace(trainer.PRESETS["cpu-istft"], codec=dataclasses.replace(TINY, decoder="istft",
                              istft_dim=16, istft_layers=2), batch_size=2, clips_per_batch=1, segment=0.25,
                              adv_start=2, disc_filters=4, disc_ffts=(256, 128), log_every=1, val_every=1000,
                              val_clips=2, val_duration=1.0, workers=0)
    metrics = trainer.train(cfg, tmp_path, max_steps=3)
    assert {"mel", "si_sdr", "chroma_cos", "usage0", "ppl0"} <= set(metrics)
    state = torch.load(tmp_path / "latest.pt", weights_only=True)
    assert state["step"] == 3
    trainer.train(cfg, tmp_path, max_steps=5)  # resumes at step 3
    assert torch.load(tmp_path / "latest.pt", weights_only=True)["step"] == 5
    rows = (tmp_path / "train.csv").read_text().splitlines()
    assert rows[0].startswith("step,") and [r.split(",")[0] for r in rows[1:]] == ["1", "2", "3", "4", "5"]


def test_warm_start_from_exported_weights_is_exact(tmp_path):
    codec = Codec(TINY)
    for layer in codec.quantizer.layers:
        layer.embed.normal_()
    from safetensors.torch import load_file

    path = trainer.export_codec(codec, tmp_path, dtype=torch.float32)
    warm = Codec(TINY)
    warm.load_state_dict(trainer.warm_start_state(warm, load_file(path)))
    x = torch.randn(1, 1, 6400)
    with torch.no_grad():
        torch.testing.assert_close(warm.decode(warm.encode(x)), codec.decode(codec.encode(x)), atol=1e-5, rtol=0)
    assert all(layer.inited.item() == 1 for layer in warm.quantizer.layers)


def test_freeze_tokens_trains_only_the_decoder(tmp_path):
    cfg = dataclasses.replace(trainer.PRESETS["cpu-seanet"], codec=TINY, batch_size=2, clips_per_batch=1,
                              segment=0.25, adv_start=1, disc_filters=4, disc_ffts=(256, 128), val_every=2,
                              val_clips=2, val_duration=1.0, workers=0)
    trainer.train(cfg, tmp_path, max_steps=2)
    before = torch.load(tmp_path / "latest.pt", weights_only=True)["codec"]
    trainer.train(dataclasses.replace(cfg, freeze_tokens=True), tmp_path, max_steps=5)  # validates at step 4 too
    after = torch.load(tmp_path / "latest.pt", weights_only=True)["codec"]
    frozen = [k for k in before if k.startswith(("encoder.", "quantizer."))]
    assert frozen and all(torch.equal(before[k], after[k]) for k in frozen)  # codebooks and their EMA stats too
    assert any(not torch.equal(before[k], after[k]) for k in before if k.startswith("decoder."))
