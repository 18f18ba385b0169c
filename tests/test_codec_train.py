"""Codec training: loss sanity, export round trip, and a short resumable run on the synthetic corpus."""
from __future__ import annotations

import csv
import dataclasses
import json

import pytest
import torch

from musicgen_core.codec import Codec
from musicgen_core.configs import CodecConfig
from musicgen_core.train import codec as trainer
from musicgen_core.train.losses import (ChromaLoss, MultiResolutionMelLoss, MultiResolutionSTFTLoss,
                                        MultiScaleSTFTDiscriminator, discriminator_loss, generator_losses, si_sdr)
from musicgen_core.train.runtime import append_csv

TINY = CodecConfig(n_filters=4, dimension=16, lstm_layers=1, card=64)


def test_losses_rank_identical_above_noisy():
    torch.manual_seed(0)
    x = torch.randn(2, 1, 8000) * 0.1
    noisy = x + 0.05 * torch.randn_like(x)
    for loss in (MultiResolutionMelLoss(), MultiResolutionSTFTLoss()):
        assert loss(x, x) < 1e-4 < loss(noisy, x)
    assert (si_sdr(x, x) > 60).all() and (si_sdr(noisy, x) < si_sdr(x + 0.01 * torch.randn_like(x), x)).all()


def test_chroma_loss_hears_pitch_not_loudness():
    t = torch.arange(32000) / 32000
    a4, a4_quiet, b_flat4 = (g * torch.sin(2 * torch.pi * f * t)[None, None] for g, f in
                             ((0.5, 440.0), (0.05, 440.0), (0.5, 466.16)))
    loss = ChromaLoss()
    assert loss(a4_quiet, a4) < 1e-4 < 0.5 < loss(b_flat4, a4)
    wrong = b_flat4.clone().requires_grad_()
    loss(wrong, a4).backward()
    assert torch.isfinite(wrong.grad).all() and wrong.grad.abs().sum() > 0


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


@pytest.mark.slow
@pytest.mark.training
def test_short_run_resumes_exactly(tmp_path):
    cfg = dataclasses.replace(trainer.PRESETS["cpu-istft"], codec=dataclasses.replace(TINY, decoder="istft",
                              istft_dim=16, istft_layers=2), batch_size=2, clips_per_batch=1, segment=0.25,
                              adv_start=2, disc_filters=4, disc_ffts=(256, 128), w_chroma=1.0, log_every=1,
                              val_every=1000, val_clips=2, val_duration=1.0, workers=0)
    metrics = trainer.train(cfg, tmp_path / "resumed", max_steps=3)
    assert {"mel", "si_sdr", "chroma_cos", "usage0", "ppl0"} <= set(metrics)
    assert torch.load(tmp_path / "resumed" / "latest.pt", weights_only=True)["step"] == 3
    trainer.train(cfg, tmp_path / "resumed", max_steps=5)  # resumes at step 3
    trainer.train(cfg, tmp_path / "straight", max_steps=5)
    resumed, straight = (torch.load(tmp_path / run / "latest.pt", weights_only=True) for run in ("resumed", "straight"))
    assert resumed["step"] == straight["step"] == 5
    for part in ("codec", "disc"):  # the same weights, codebooks and EMA statistics as an uninterrupted run
        assert all(torch.equal(resumed[part][k], straight[part][k]) for k in straight[part])
    logs = [list(csv.DictReader((tmp_path / run / "train.csv").read_text().splitlines()))
            for run in ("resumed", "straight")]
    assert [row["step"] for row in logs[0]] == ["1", "2", "3", "4", "5"]
    for a, b in zip(*logs):  # identical losses, the next step after the resume included
        assert all(a[k] == b[k] for k in trainer.LOSSES) and a["chroma"]


@pytest.mark.slow
@pytest.mark.training
def test_a_few_steps_lower_the_held_out_loss(tmp_path):
    cfg = dataclasses.replace(trainer.PRESETS["cpu-seanet"], codec=TINY, batch_size=2, clips_per_batch=1,
                              segment=0.25, adv_start=1000, val_every=5, val_clips=4, val_duration=1.0, workers=0)
    trainer.train(cfg, tmp_path, max_steps=30)
    rows = csv.DictReader((tmp_path / "valid.csv").read_text().splitlines())
    mel = {int(row["step"]): float(row["mel"]) for row in rows}
    assert mel[30] < 0.9 * mel[5]  # measured 4.71 vs 5.56


def test_csv_gains_columns_when_a_resumed_run_logs_more(tmp_path):
    path = tmp_path / "train.csv"
    append_csv(path, {"step": 1, "mel": 2.0})
    append_csv(path, {"step": 2, "mel": 1.5, "chroma": 0.25})
    append_csv(path, {"step": 3, "mel": 1.25})
    assert path.read_text().splitlines() == ["step,mel,chroma", "1,2.0,", "2,1.5,0.25", "3,1.25,"]


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
    # a new kind of decoder for the same tokens: encoder and codebooks come from the file, the decoder is fresh
    istft = Codec(dataclasses.replace(TINY, decoder="istft", istft_dim=16, istft_layers=2))
    fresh = {k: v.clone() for k, v in istft.state_dict().items() if k.startswith("decoder.")}
    istft.load_state_dict(trainer.warm_start_state(istft, load_file(path)))
    assert torch.equal(istft.encode(x), codec.encode(x))
    assert all(torch.equal(v, istft.state_dict()[k]) for k, v in fresh.items())


@pytest.mark.slow
@pytest.mark.training
def test_freeze_tokens_trains_only_the_decoder(tmp_path):
    cfg = dataclasses.replace(trainer.PRESETS["cpu-seanet"], codec=TINY, batch_size=2, clips_per_batch=1,
                              segment=0.25, adv_start=1, disc_filters=4, disc_ffts=(256, 128), val_every=2,
                              val_clips=2, val_duration=1.0, workers=0)
    trainer.train(cfg, tmp_path, max_steps=2)
    before = torch.load(tmp_path / "latest.pt", weights_only=True)["codec"]
    # resumed for the decoder only, at a lower learning rate; validates at step 4 too
    trainer.train(dataclasses.replace(cfg, freeze_tokens=True, lr=1e-4), tmp_path, max_steps=5)
    state = torch.load(tmp_path / "latest.pt", weights_only=True)
    assert {g["lr"] for opt in ("opt_g", "opt_d") for g in state[opt]["param_groups"]} == {1e-4}
    after = state["codec"]
    frozen = [k for k in before if k.startswith(("encoder.", "quantizer."))]
    assert frozen and all(torch.equal(before[k], after[k]) for k in frozen)  # codebooks and their EMA stats too
    assert any(not torch.equal(before[k], after[k]) for k in before if k.startswith("decoder."))


@pytest.mark.slow
def test_eval_codec_command_repeats_the_trainers_validation(tmp_path, capsys):
    from musicgen_core.cli import main

    cfg = dataclasses.replace(trainer.PRESETS["cpu-seanet"], codec=TINY, batch_size=2, clips_per_batch=1,
                              segment=0.25, val_clips=2, val_duration=1.0, workers=0)
    trainer.train(cfg, tmp_path, max_steps=1)
    last = list(csv.DictReader((tmp_path / "valid.csv").read_text().splitlines()))[-1]
    capsys.readouterr()
    main(["eval-codec", "--codec", str(tmp_path / "latest.pt"), "--n", "2", "--dur", "1", "--threads", "1",
          "--plots", str(tmp_path / "plots"), "--n-plots", "1", "--speed"])
    measured = json.loads(capsys.readouterr().out)
    assert [p.name for p in (tmp_path / "plots").iterdir()] == ["clip_0.png"]  # input vs reconstruction
    speed = {k: measured.pop(k) for k in ("encode_x_realtime", "decode_x_realtime", "round_trip_x_realtime")}
    assert all(v > 0 for v in speed.values())
    assert measured.keys() == last.keys() - {"step", "minutes"}
    for key, value in measured.items():  # weight norm folded on loading: equal up to float rounding
        assert value == pytest.approx(float(last[key]), rel=1e-3, abs=1e-3), key
    with pytest.raises(SystemExit, match="^error: validation seeds are 0..9999999$"):
        main(["eval-codec", "--codec", str(tmp_path / "latest.pt"), "--seed", "9999999", "--n", "2"])


def test_train_codec_command_scales_clips_with_the_batch(tmp_path, monkeypatch):
    from musicgen_core.cli import main

    seen = []
    monkeypatch.setattr(trainer, "train", lambda cfg, *args: seen.append(cfg))
    main(["train-codec", "--run-dir", str(tmp_path), "--batch-size", "64", "--workers", "7", "--input-rms-db", "-20"])
    main(["train-codec", "--run-dir", str(tmp_path)])
    preset = trainer.PRESETS["cpu-seanet"]
    assert [(c.batch_size, c.clips_per_batch, c.workers, c.codec) for c in seen] == [
        (64, 64 * preset.clips_per_batch // preset.batch_size, 7, dataclasses.replace(preset.codec, input_rms_db=-20)),
        (preset.batch_size, preset.clips_per_batch, preset.workers, preset.codec)]
    with pytest.raises(SystemExit, match="^error: --batch-size must be a multiple of 4 \\(crops per rendered clip\\)$"):
        main(["train-codec", "--run-dir", str(tmp_path), "--batch-size", "50"])
    assert len(seen) == 2
