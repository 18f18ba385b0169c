"""LM training: token shards from a (tiny) codec, the per-codebook loss, a resumable run that learns."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from musicgen_core.codec import Codec
from musicgen_core.configs import CodecConfig, LMConfig
from musicgen_core.train import lm as trainer
from musicgen_core.train.codec import export_codec
from musicgen_core.train.remap import remap_model
from musicgen_core.train.tokens import load_codec, load_shards, write_shards

TINY_LM = LMConfig(dim=32, num_heads=2, num_layers=1, ffn_dim=64, card=64, cond_dim=384, cross_attention=False,
                   chroma=True, chroma_length=8, tempo=True)
CFG = dataclasses.replace(trainer.LMTrainConfig(lm=TINY_LM), batch_size=4, warmup=2, total_steps=50, lr=3e-3,
                          log_every=1, val_every=1000, sample_every=40, max_duration=1.0)


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    root = tmp_path_factory.mktemp("tokens")
    torch.manual_seed(0)
    codec = Codec(CodecConfig(n_filters=4, dimension=16, lstm_layers=1, card=64))
    for layer in codec.quantizer.layers:
        layer.embed.normal_()
    export_codec(codec, root / "codec", dtype=torch.float32)
    write_shards(root / "train", n=4, duration=1.0, split="train", shard_size=2, codec_path=str(root / "codec"))
    write_shards(root / "valid", n=2, duration=1.0, split="valid", shard_size=2, codec_path=str(root / "codec"))
    return root


def test_shards_layout(shards):
    data = load_shards(shards / "train")
    assert data["codes"].shape == (4, 4, 50) and data["codes"].dtype == torch.int16
    assert data["chroma"].shape == (4, 8) and int(data["chroma"].max()) < 12
    assert len(data["captions"]) == 4 and all(len(c) == 4 for c in data["captions"])
    assert {"style", "bpm", "start", "key"} <= set(data["meta"][0])
    assert {m["melody_source"] for m in data["meta"]} <= {"voice", "lead", "mix"}
    assert sorted(p.name for p in (shards / "train").iterdir()) == ["audio_00000.pt", "audio_00001.pt",
                                                                    "shard_00000.pt", "shard_00001.pt"]


def test_audio_shards_made_before_the_codec_give_the_same_token_shards(shards, tmp_path):
    write_shards(tmp_path, n=2, duration=1.0, split="valid", shard_size=2)  # no codec yet: labelled audio only
    assert [p.name for p in tmp_path.iterdir()] == ["audio_00000.pt"]
    write_shards(tmp_path, n=2, duration=1.0, split="valid", shard_size=2, codec_path=str(shards / "codec"))
    once, twice = load_shards(shards / "valid"), load_shards(tmp_path)
    assert torch.equal(once["codes"], twice["codes"]) and torch.equal(once["chroma"], twice["chroma"])
    assert once["captions"] == twice["captions"] and once["meta"] == twice["meta"]


def test_batch_dropout_and_validation_batches(shards):
    data = load_shards(shards / "train")
    cfg = dataclasses.replace(CFG, text_dropout=1.0, melody_dropout=1.0)
    codes, texts, chroma, t0 = trainer.make_batch(data, np.arange(4), cfg, np.random.default_rng(0))
    assert texts == [None] * 4 and (chroma.argmax(-1) == 0).all()
    assert t0.tolist() == pytest.approx([m["start"] for m in data["meta"]])  # the tempo grid's phase
    codes, texts, chroma, _ = trainer.make_batch(data, np.arange(4), cfg, None)  # validation: nothing dropped
    assert texts == [c[0] for c in data["captions"]]
    assert torch.equal(chroma.argmax(-1), data["chroma"].long())


def test_learning_rate_schedule():
    lrs = [trainer.lr_at(s, CFG) for s in range(60)]
    assert lrs[0] < lrs[1] == pytest.approx(CFG.lr) and lrs[3] < CFG.lr and lrs[30] < lrs[10]
    assert lrs[-1] == pytest.approx(0.1 * CFG.lr)


@pytest.mark.slow
@pytest.mark.training
def test_run_learns_resumes_samples_and_ships(shards, tmp_path):
    run = tmp_path / "run"
    first = trainer.train(CFG, shards / "train", shards / "valid", run, max_steps=1)
    metrics = trainer.train(CFG, shards / "train", shards / "valid", run, max_steps=40,
                            codec_path=str(shards / "codec"))  # resumes at 1; samples at step 40
    assert torch.load(run / "latest.pt", weights_only=True)["step"] == 40
    rows = (run / "train.csv").read_text().splitlines()[1:]
    assert [int(r.split(",")[0]) for r in rows] == list(range(1, 41))
    losses = [float(r.split(",")[3]) for r in rows]
    assert np.mean(losses[-5:]) < np.mean(losses[:5]) - 0.3  # it learns the 4 clips
    assert {"ce", "ce0", "ppl3"} <= set(metrics) and metrics["ce"] < first["ce"]
    assert sorted(p.name for p in (run / "samples").iterdir()) == [
        "step_40_0.png", "step_40_0.wav", "step_40_1.png", "step_40_1.wav"]

    from musicgen_core import MusicGen

    folder = trainer.export_default(str(shards / "codec"), run / "latest.pt", tmp_path / "default")
    model = MusicGen.from_pretrained(folder, device="cpu")
    assert model.config.text.kind == "sentence" and model.max_duration == 1.0
    shipped = model.compression_model.state_dict()  # a model folder also serves as the codec of a new export
    assert all(torch.equal(v, shipped[k]) for k, v in load_codec(folder).state_dict().items())
    model.set_generation_params(duration=0.5)
    wav = model.generate_with_chroma(["folk"], [torch.randn(1, 16000) * 0.1], 32000, seed=0)
    assert wav.shape == (1, 1, 25 * 640) and torch.isfinite(wav).all()
    bpm = model._context(["folk at 96 BPM", "folk"], None, None, cfg=True).bpm  # [2B]
    assert bpm[0] == 96 and bpm[1:].isnan().all()  # "folk" and the null half state no tempo
    assert model.generate(["folk at 96 BPM"], seed=0).shape == (1, 1, 25 * 640)

    # remap-lm onto the tokens of the codec the LM was trained on changes nothing; train-lm --init starts from it
    remapped = remap_model(folder, shards / "train", n=4)["ema"]
    shipped_lm = model.lm.state_dict()
    assert set(remapped) == set(shipped_lm) and all(torch.equal(v, shipped_lm[k]) for k, v in remapped.items())
    torch.save({"ema": remapped}, tmp_path / "remapped.pt")
    trainer.train(CFG, shards / "train", shards / "valid", tmp_path / "tuned", max_steps=1,
                  init=tmp_path / "remapped.pt")
    tuned = torch.load(tmp_path / "tuned" / "latest.pt", weights_only=True)["lm"]
    assert max((tuned[k] - v).abs().max() for k, v in shipped_lm.items()) < 1.5 * trainer.lr_at(0, CFG)

    # a new decoder for the same tokens ships beside the shipped LM (export-default --lm <model folder>)
    from musicgen_core.train.codec import warm_start_state

    istft = Codec(dataclasses.replace(model.compression_model.cfg, decoder="istft", istft_dim=16, istft_layers=2))
    istft.load_state_dict(warm_start_state(istft, load_file(folder / "codec.safetensors")))
    export_codec(istft, tmp_path / "istft", dtype=torch.float32)
    reshipped = MusicGen.from_pretrained(trainer.export_default(str(tmp_path / "istft"), folder, tmp_path / "v2"))
    assert reshipped.config.codec.decoder == "istft" and reshipped.config.lm == model.config.lm
    assert all(torch.equal(v, model.lm.state_dict()[k]) for k, v in reshipped.lm.state_dict().items())
    x = torch.randn(1, 1, 3200)
    assert torch.equal(reshipped.compression_model.encode(x), model.compression_model.encode(x))


def test_new_run_starts_from_another_runs_weights(shards, tmp_path):
    """`--init`: a tempo run warm-started from a run without tempo begins as that run's EMA (one Adam step away,
    at most about the learning rate per weight), the new projection from zero, which it then learns."""
    plain = dataclasses.replace(CFG, lm=dataclasses.replace(TINY_LM, tempo=False))
    trainer.train(plain, shards / "train", shards / "valid", tmp_path / "plain", max_steps=2)
    ema = torch.load(tmp_path / "plain" / "latest.pt", weights_only=True)["ema"]
    trainer.train(CFG, shards / "train", shards / "valid", tmp_path / "tempo", max_steps=1,
                  init=tmp_path / "plain" / "latest.pt")
    lm = torch.load(tmp_path / "tempo" / "latest.pt", weights_only=True)["lm"]
    step = 1.5 * trainer.lr_at(0, CFG)  # Adam's first update is lr * sign(grad), plus a little weight decay
    assert set(lm) == set(ema) | {"tempo_proj.weight"}
    assert max((lm[k] - v).abs().max() for k, v in ema.items()) < step
    assert 0 < lm["tempo_proj.weight"].abs().max() < step
