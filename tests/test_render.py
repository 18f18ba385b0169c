"""Preset checks of the synthetic renders: tuning and level measured per preset, sampled drum kits."""
import numpy as np
import pytest

from musicgen_core.train import render
from musicgen_core.train.render import PROBE_DB, calibration, drum_kit_paths, soundfont_paths

TIMGM = next(p for p in soundfont_paths() if p.endswith("TimGM6mb.sf2"))


def level_db(x: np.ndarray) -> float:
    return 20 * np.log10(np.sqrt(np.mean(x.astype(np.float64) ** 2)) + 1e-12)


def test_an_off_pitch_preset_is_measured_and_retuned():
    tuning, _ = calibration(TIMGM, 78)  # TimGM6mb's whistle sounds about a major sixth low
    assert 8.5 <= tuning % 12 <= 9.2  # to the nearest pitch class: -3.35 puts it a minor third down, in tune
    assert calibration(TIMGM, 0)[0] == 0.0  # the piano is in tune


@pytest.mark.parametrize("program,is_drum", [(0, False), (56, False), (81, False), (0, True)])
def test_calibrated_presets_are_no_louder_than_the_probe_level(program, is_drum):
    _, volume = calibration(TIMGM, program, is_drum)
    assert 0 < volume <= 1
    probe = render._probe(TIMGM, program, is_drum, (36, 38) if is_drum else (69,), 16000)
    # (a synth's render of the same note varies by a fraction of a dB with the state other presets left behind)
    assert level_db(probe * volume) <= PROBE_DB + 1.0
    if volume < 1:  # turned down to the probe level
        assert level_db(probe * volume) == pytest.approx(PROBE_DB, abs=1.0)


@pytest.mark.skipif(not drum_kit_paths(), reason="avldrums.lv2-soundfont is not installed")
def test_sampled_kits_play_the_gm_drum_map():
    for kit in drum_kit_paths():
        for key in (36, 38, 42, 49):  # kick, snare, closed hi-hat, crash
            assert level_db(render._probe(kit, 0, True, (key,), 8000)) > -40


@pytest.mark.slow
@pytest.mark.skipif(not drum_kit_paths(), reason="avldrums.lv2-soundfont is not installed")
def test_acoustic_kits_of_about_half_the_pieces_come_from_a_sampled_kit(monkeypatch):
    from musicgen_core.train.data import VALID_SEEDS, compose_example, make_example

    fonts = []
    original = render._render_pass
    monkeypatch.setattr(render, "_render_pass", lambda font, tracks, *a: fonts.append((font, tracks)) or
                        original(font, tracks, *a))
    with_kit = []
    for seed in range(VALID_SEEDS, VALID_SEEDS + 40):
        if not any(t.is_drum and t.program in render.ACOUSTIC_KITS for t in compose_example(seed, 1.0)[0].tracks):
            continue
        fonts.clear()
        make_example(seed, 1.0)
        used = [tracks for font, tracks in fonts if font in drum_kit_paths()]
        assert all(t.is_drum and t.program == 0 for tracks in used for t in tracks)
        with_kit.append(bool(used))
    assert len(with_kit) >= 8 and 0.2 <= np.mean(with_kit) <= 0.8
