"""Style / lead-family probes: they learn from corpus clips and survive a save/load round trip."""
from __future__ import annotations

import numpy as np

from musicgen_core.eval.classifier import lead_family, load_probes, train_probes


def test_probes_learn_and_round_trip(tmp_path):
    path = tmp_path / "probes.npz"
    scores = train_probes(n_train=150, n_valid=30, duration=2.0, out=path)
    assert scores["style_accuracy"] > 0.25  # chance is 1/19
    probes = load_probes(path)
    assert set(probes) == {"style", "family"} and len(probes["style"].classes) > 10
    x = np.random.default_rng(0).standard_normal((3, probes["style"].mean.shape[0])).astype(np.float32)
    assert all(c in probes["style"].classes for c in probes["style"].predict(x))


def test_lead_families():
    assert lead_family(0) == "keys" and lead_family(73) == "pipe" and lead_family(53) == "voice"
    assert lead_family(78) == "pipe" and lead_family(80) == "synth"


def test_shipped_probes_load():
    from pathlib import Path

    probes = load_probes(Path(__file__).resolve().parent.parent / "assets" / "eval" / "probes.npz")
    assert len(probes["style"].classes) == 19
