"""Captions of real recordings from measurements: tempo, key, percussiveness, level; real-crop token shards."""
import json

import numpy as np
import pytest
import torch

from musicgen_core.train.describe import PACKAGE_WORDS, describe, real_caption, separate
from musicgen_core.train.real import RealCorpus
from musicgen_core.train.tokens import label_real_shard

SR = 32000


def chord_with_clicks(bpm: float, seconds: float = 8.0, clicks: bool = True) -> np.ndarray:
    """A sustained A minor triad (A3 C4 E4 with a few harmonics), with a loud click on every beat."""
    t = np.arange(int(seconds * SR)) / SR
    x = sum(np.sin(2 * np.pi * f * k * t) / k for f in (220.0, 261.63, 329.63) for k in (1, 2, 3)) * 0.05
    if clicks:
        for beat in np.arange(0.25, seconds, 60 / bpm):
            a = int(beat * SR)
            x[a:a + 200] += np.random.default_rng(a).standard_normal(min(200, len(x) - a)) * 0.8
    return x.astype(np.float32)


def test_a_click_track_is_measured_as_steady_percussive_music_at_its_tempo():
    x = chord_with_clicks(120.0)
    d = describe(x, *separate(x))
    assert d.steady_beat and abs(d.bpm - 120) <= 2
    assert (d.tonic, d.mode) in ((9, "minor"), (0, "major"))  # A minor, or its relative major
    assert d.percussive > 0.3 and d.onsets_per_s == pytest.approx(2.0, abs=0.5)
    assert d.beat_phase == pytest.approx(0.25, abs=0.03)  # the clicks start 0.25 s in: the grid's phase


def test_a_sustained_chord_has_no_percussion_and_its_captions_say_so():
    x = chord_with_clicks(120.0, clicks=False)
    harmonic, percussive = separate(x)
    assert np.sum(percussive ** 2) < 0.1 * np.sum(x ** 2)
    d = describe(x, harmonic, percussive)
    assert d.percussive < 0.1 and d.rms_db == pytest.approx(10 * np.log10(np.mean(x.astype(np.float64) ** 2)))
    captions = [real_caption(d, "hyperrogue-music", np.random.default_rng(i)) for i in range(20)]
    assert all(("without drums" in c or "with no percussion" in c) for c in captions)
    assert len(set(captions)) >= 15 and all(c.endswith(".") and c[0].isupper() for c in captions)
    genres, instruments = PACKAGE_WORDS["hyperrogue-music"]
    assert all(any(g in c for g in genres) for c in captions)
    assert all(sum(i in c for i in instruments) == 2 for c in captions)
    assert not any("BPM" in c for c in captions)  # no steady beat: no tempo number


def test_a_package_without_words_is_captioned_from_measurements_only():
    x = chord_with_clicks(100.0)
    caption = real_caption(describe(x, *separate(x)), "unknown-music", np.random.default_rng(0))
    assert "instrumental music" in caption and "featuring" not in caption


@pytest.mark.slow
def test_real_crops_become_labelled_audio_shards(tmp_path):
    from test_real_music import GPL, _package
    from musicgen_core.train.real import build_corpus

    tree = _package(tmp_path, "hyperrogue-music", GPL, {"usr/share/music/a.wav": 12.0, "usr/share/music/b.wav": 11.0})
    other = _package(tmp_path, "other-music", GPL, {"usr/share/music/c.wav": 10.5})
    build_corpus({"hyperrogue-music": tree, "other-music": other}, tmp_path / "cache", valid_packages=("other-music",))
    shard = label_real_shard(RealCorpus(tmp_path / "cache", "train"), seed=3, n=3, duration=2.0)
    assert shard["audio"].shape == (3, 2 * SR) and shard["audio"].dtype == torch.int16
    assert shard["chroma"].shape == (3, 16) and (shard["chroma"] == 9).float().mean() > 0.9  # the fixture's A 220 Hz
    meta = json.loads(shard["meta"])
    assert {m["style"] for m in meta} == {"real:hyperrogue-music"} and all(len(c) == 4 for c in shard["captions"])
    again = label_real_shard(RealCorpus(tmp_path / "cache", "train"), seed=3, n=3, duration=2.0)
    assert torch.equal(shard["audio"], again["audio"]) and shard["captions"] == again["captions"]
