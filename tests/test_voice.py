"""The training voice model: tunes moved by octaves only, every kind audible at a fixed level, pitch classes heard."""
import numpy as np
import pytest
import torch

from musicgen_core.conditioning.chroma import ChromaExtractor
from musicgen_core.train.data import melody_chroma
from musicgen_core.train.voice import KINDS, REGISTERS, SR, Voice, fit_register, glottal_table, random_voice, sing

SCALE = [(60 + p, 0.4 * i, 0.4 * i + 0.36) for i, p in enumerate([0, 2, 4, 5, 7, 9, 11, 12, 11, 9, 7, 5, 4, 2, 0])]


def pitch_class_accuracy(audio: np.ndarray, notes) -> float:
    """Fraction of sounding frames whose argmax chroma is the note's pitch class."""
    extractor = ChromaExtractor(SR)
    heard = extractor(torch.from_numpy(audio)[None])[0].argmax(-1).numpy()
    truth = melody_chroma(notes, len(heard), extractor.hop_length / SR)
    sounding = truth.sum(1) > 0
    return float((heard[sounding] == truth[sounding].argmax(1)).mean())


def test_fit_register_moves_by_whole_octaves_to_the_nearest_median():
    moved = fit_register(SCALE, 55.0)  # the median is 65: -10 is nearest -12
    assert [p - q for (p, _, _), (q, _, _) in zip(moved, SCALE)] == [-12] * len(SCALE)
    assert [t for _, *t in moved] == [t for _, *t in SCALE]
    assert fit_register(SCALE, 66.0) == [(int(p), s, e) for p, s, e in SCALE]


@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_sings_at_the_fixed_level_and_is_deterministic(kind):
    voice = random_voice(np.random.default_rng(3), kind=kind)
    a = sing(SCALE, 7.0, np.random.default_rng(1), voice)
    assert a.dtype == np.float32 and a.shape == (7 * SR,) and np.isfinite(a).all()
    assert 20 * np.log10(np.sqrt(np.mean(a.astype(np.float64) ** 2))) == pytest.approx(-20.0, abs=0.01)
    np.testing.assert_array_equal(a, sing(SCALE, 7.0, np.random.default_rng(1), voice))
    assert np.abs(a[int(6.2 * SR):]).max() < np.abs(a).max() / 3  # silent after the tune ends (room tail, noise)


@pytest.mark.parametrize("kind,register", [("hum", "high"), ("vowel", "high"), ("whistle", "whistle"),
                                           ("hum", "mid")])
def test_a_careful_singer_is_heard_on_the_right_pitch_classes(kind, register):
    steady = Voice(kind=kind, register=register, median_midi=float(np.mean(REGISTERS[register][0])),
                   intonation_cents=5, drift_cents=5, scoop_cents=40, snr_db=40)
    assert pitch_class_accuracy(sing(SCALE, 6.0, np.random.default_rng(0), steady), SCALE) >= 0.8


def test_random_voices_cover_every_kind_and_register():
    voices = [random_voice(np.random.default_rng(i)) for i in range(300)]
    assert {v.kind for v in voices} == set(KINDS)
    assert {v.register for v in voices} == set(REGISTERS)
    assert all(v.register == "whistle" for v in voices if v.kind == "whistle")


def test_glottal_pulse_is_one_zero_mean_period_with_unit_peak():
    table = glottal_table(0.6)
    assert abs(table.mean()) < 1e-12 and np.abs(table).max() == pytest.approx(1.0)
    assert table[int(0.7 * len(table)):].std() < 1e-3  # the closed phase: no flow change


def test_no_notes_give_silence():
    assert not sing([], 1.0, np.random.default_rng(0)).any()
