"""Style / lead-family probes: they learn from corpus clips and survive a save/load round trip."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from musicgen_core.codec import Codec
from musicgen_core.configs import CodecConfig
from musicgen_core.eval.classifier import corpus_features, lead_family, load_probes, train_probes
from musicgen_core.eval.metrics import codec_round_trip


@pytest.mark.slow
def test_probes_learn_and_round_trip(tmp_path):
    path = tmp_path / "probes.npz"
    scores = train_probes(n_train=150, n_valid=30, duration=2.0, out=path)
    assert scores["style_accuracy"] > 0.25  # chance is 1/19
    probes = load_probes(path)
    assert set(probes) == {"style", "family"} and len(probes["style"].classes) > 10
    x = np.random.default_rng(0).standard_normal((3, probes["style"].mean.shape[0])).astype(np.float32)
    assert all(c in probes["style"].classes for c in probes["style"].predict(x))


@pytest.mark.slow
def test_probes_fitted_through_a_codec(tmp_path):
    torch.manual_seed(0)
    codec = Codec(CodecConfig(n_filters=4, dimension=16, lstm_layers=1, card=64)).remove_weight_norm().eval()
    x, coded, styles, _ = corpus_features([3, 4], 1.0, codec)
    assert x.shape == coded.shape == (2, 144) and len(styles) == 2 and not np.allclose(x, coded)
    assert corpus_features([3], 1.0)[1].shape == (0, 144)
    wav = np.random.default_rng(0).standard_normal(8000).astype(np.float32)
    with torch.no_grad():
        expected = codec.decode(codec.encode(torch.from_numpy(wav)[None, None]))[0, 0, :8000].numpy()
    np.testing.assert_array_equal(codec_round_trip(codec, wav), expected)
    scores = train_probes(n_train=40, n_valid=10, duration=1.0, out=tmp_path / "p.npz", codec=codec)
    assert set(scores) == {"style_accuracy", "family_accuracy", "style_accuracy_via_codec",
                           "family_accuracy_via_codec"}


def test_lead_families():
    assert lead_family(0) == "keys" and lead_family(73) == "pipe" and lead_family(53) == "voice"
    assert lead_family(78) == "pipe" and lead_family(80) == "synth"


def test_shipped_probes_load():
    from pathlib import Path

    probes = load_probes(Path(__file__).resolve().parent.parent / "musicgen_core" / "eval" / "probes.npz")
    assert len(probes["style"].classes) == 19


@pytest.mark.slow
def test_real_packages_become_style_classes(tmp_path):
    """Two fake packages that sound apart (a low drone and bright noise) are told apart by the style probe."""
    import soundfile as sf

    from musicgen_core.train.real import build_corpus

    rng, t = np.random.default_rng(0), np.arange(12 * 22050) / 22050
    sounds = {"drone-music": 0.3 * np.sin(2 * np.pi * 110 * t), "noise-music": 0.1 * rng.standard_normal(len(t)),
              "held-music": 0.3 * np.sin(2 * np.pi * 440 * t)}
    trees = {}
    for name, audio in sounds.items():
        tree = tmp_path / name
        (tree / "usr/share/doc" / name).mkdir(parents=True)
        (tree / "usr/share/doc" / name / "copyright").write_text("License: GPL-2+\n")
        (tree / "usr/share/game/music").mkdir(parents=True)
        sf.write(tree / "usr/share/game/music/a.wav", audio.astype(np.float32), 22050)
        trees[name] = tree
    build_corpus(trees, tmp_path / "cache", valid_packages=("held-music",))
    scores = train_probes(n_train=40, n_valid=10, duration=1.0, out=tmp_path / "p.npz", real=str(tmp_path / "cache"),
                          n_real=10)
    probes = load_probes(tmp_path / "p.npz")
    assert {"real:drone-music", "real:noise-music"} <= set(probes["style"].classes)
    assert not any("held-music" in c for c in probes["style"].classes)  # held-out packages never become classes
    assert "real:" not in "".join(probes["family"].classes) and scores["real_package_accuracy"] == 1.0
