"""The evaluation harness: melody queries that carry the tune, the Fréchet distance, and `musicgen eval` end to end on
a tiny model."""
from __future__ import annotations

import dataclasses
import json

import librosa
import numpy as np
import pytest
import torch

from musicgen_core.checkpoints import save_model
from musicgen_core.cli import main
from musicgen_core.codec import Codec
from musicgen_core.conditioning.chroma import ChromaExtractor
from musicgen_core.configs import CodecConfig, LMConfig
from musicgen_core.eval import metrics
from musicgen_core.eval.report import QUERIES, REGISTER_MEDIAN, eval_items, melody_query
from musicgen_core.lm.model import MusicLM
from musicgen_core.train import lm as trainer
from musicgen_core.train.data import melody_chroma


@pytest.mark.parametrize("voice,register", [QUERIES[0], *(pytest.param(*q, marks=pytest.mark.slow)
                                                           for q in QUERIES[1:])])  # one query in the fast loop
def test_melody_queries_carry_the_tune_in_their_register(voice, register):
    (ex,) = eval_items(1, 6.0, tunes_only=True)
    assert ex.metadata["melody_source"] in ("folk", "chorale") and ex.metadata["seed"] < 10_000_000
    query = melody_query(ex, voice, 6.0, register)
    f0, voiced, _ = librosa.pyin(query, fmin=60, fmax=2500, sr=32000, frame_length=4096)
    sounding = np.median(librosa.hz_to_midi(f0[voiced]))  # where the tune sounds
    expected = REGISTER_MEDIAN[register] + (12 if voice == "whistle" else 0)
    assert abs(sounding - expected) <= 7, sounding
    assert query.shape == (6 * 32000,) and np.isfinite(query).all()
    extractor = ChromaExtractor(32000)
    heard = extractor(torch.from_numpy(query)[None])[0].argmax(-1).numpy()  # [frames]
    window = extractor.n_fft / 32000
    truth = melody_chroma(ex.metadata["melody"], len(heard), extractor.hop_length / 32000, window)  # seconds
    held = truth.max(1) > window / 2  # frames where one pitch class sounds for most of the analysis window
    assert held.sum() > 10
    assert (heard[held] == truth[held].argmax(1)).mean() > 0.7  # chance: 1/12


def test_frechet_distance():
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((400, 6)), rng.standard_normal((400, 6))
    assert metrics.frechet_distance(x, x) == pytest.approx(0.0, abs=1e-6)
    same = metrics.frechet_distance(x, y)
    assert same < 0.2
    d = x.mean(0) - y.mean(0)  # shifting y moves only the mean term
    assert metrics.frechet_distance(x, y + 1.0) == pytest.approx(same - d @ d + (d - 1) @ (d - 1), rel=1e-6)
    assert metrics.frechet_distance(x, 3 * y) > same + 6.0  # wider spread


@pytest.mark.slow
def test_eval_cli_end_to_end(tmp_path, capsys):
    torch.manual_seed(0)
    lm_cfg = LMConfig(dim=32, num_heads=2, num_layers=1, ffn_dim=64, card=64, cond_dim=384, cross_attention=False,
                      chroma=True, chroma_length=8)
    codec = Codec(CodecConfig(n_filters=4, dimension=16, lstm_layers=1, card=64)).remove_weight_norm()
    cfg = dataclasses.replace(trainer.LMTrainConfig(lm=lm_cfg), max_duration=1.0)
    save_model(trainer.music_model(MusicLM(lm_cfg), codec, cfg), tmp_path / "tiny", dtype=torch.float32)
    out = tmp_path / "report"
    main(["eval", "--model", str(tmp_path / "tiny"), "--n", "3", "--dur", "1", "--melody", "--batch", "2",
          "--out", str(out), "--precision", "fp32", "--precision", "int8", "--cfg-coef", "3", "--cfg-coef", "1",
          "--plain"])
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert line.startswith("style_accuracy=") and "chroma_with_melody=" in line and "real_time_factor=" in line
    summary = json.loads((out / "summary.json").read_text())
    figures = summary["models"]["tiny-cfg3"]["summary"]
    for key in ("style_accuracy", "family_accuracy", "frechet_distance", "chroma_with_melody",
                "chroma_without_melody", "chroma_with_melody_hum", "clips_with_silence", "real_time_factor",
                "style_accuracy_real_via_codec", "family_accuracy_real_via_codec"):
        assert np.isfinite(figures[key]), key
    assert 0.0 <= figures["chroma_with_melody"] <= 1.0
    clips = summary["models"]["tiny-cfg3"]["clips"]
    assert [(c["voice"], c["register"]) for c in clips] == list(QUERIES[:3]) and len({c["seed"] for c in clips}) == 3
    assert np.isfinite(figures["chroma_with_melody_low"]) and np.isfinite(figures["chroma_with_melody_high"])
    assert figures["plain_prompts"] == 40 and 0 <= figures["plain_prompts_landed"] <= 40
    plain = summary["models"]["tiny-cfg3"]["plain"]
    assert len(plain) == 40 and all(r["landed"] == (r["landed_on"] in [t.split(":")[1] for t in r["targets"]])
                                    for r in plain)
    report = (out / "report.md").read_text()
    assert report.count("| plain-language prompt |") == 4 and "tiny-cfg3_spectrograms.png" in report
    assert (out / "tiny-cfg3_spectrograms.png").stat().st_size > 10_000
    assert {"style_accuracy", "frechet_distance"} <= set(summary["reference"])
    assert list(summary["models"]) == ["tiny-cfg3", "tiny-cfg1", "tiny-int8-cfg3", "tiny-int8-cfg1"]
    assert summary["settings"]["cfg_coefs"] == "3, 1"
    ceiling = {k: v for k, v in figures.items() if k.endswith("_real_via_codec")}  # one codec for every variant
    assert len(ceiling) == 3 and all(
        {k: m["summary"][k] for k in ceiling} == ceiling for m in summary["models"].values())
    for name in ("tiny-cfg1", "tiny-int8-cfg3"):  # guidance off / the fast mode, on the same prompts and seeds
        assert np.isfinite(summary["models"][name]["summary"]["chroma_with_melody"])
        assert [c["seed"] for c in summary["models"][name]["clips"]] == [c["seed"] for c in clips]
    report = (out / "report.md").read_text()
    assert "| figure | tiny-cfg3 | tiny-cfg1 | tiny-int8-cfg3 | tiny-int8-cfg1 | real clips |" in report
    assert "| chroma_with_melody |" in report and "| style_accuracy_real_via_codec |" in report
    for png in ("tiny-cfg3_style_confusion.png", "tiny-cfg3_tempo.png", "tiny-cfg3_chroma.png"):
        assert (out / png).stat().st_size > 5000 and f"]({png})" in report
