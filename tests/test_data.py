"""The synthetic training corpus: determinism, exact lengths, audible clips, truthful captions, melody labels that
match the lead-only audio, and validation seeds/tunes that the training stream never produces."""
from __future__ import annotations

import argparse
import dataclasses
import json

import numpy as np
import pytest
import soundfile as sf
import torch

from musicgen_core.train import data
from musicgen_core.train.captions import TEMPO_WORDS, caption, tempo_class
from musicgen_core.train.compose import compose, parse_chord
from musicgen_core.train.data import VALID_SEEDS, SyntheticMusic, make_example, melody_chroma
from musicgen_core.train.render import SAMPLE_RATE
from musicgen_core.train.styles import BASS, COMP, DRUMS, INSTRUMENT_NAMES, PROGRESSIONS, STYLES, VOICE_LEADS

TRAIN0 = VALID_SEEDS  # first training seed


def test_style_table_is_complete():
    assert len(STYLES) >= 15 and len({s.name for s in STYLES}) == len(STYLES)
    for s in STYLES:
        assert s.progressions in PROGRESSIONS and all(m in PROGRESSIONS[s.progressions] for m in s.modes)
        for table, part in ((DRUMS, s.drums), (BASS, s.bass), (COMP, s.comp), (COMP, s.pad)):
            if part is not None:
                assert all(p in table for p in part.patterns if p), (s.name, part.patterns)
        pitched = [p for part in (s.lead, s.bass, s.comp, s.pad, s.counter) if part for p in part.programs]
        assert all(p in INSTRUMENT_NAMES for p in pitched + list(VOICE_LEADS)), s.name
    for family in PROGRESSIONS.values():  # every chord symbol parses
        for progs in family.values():
            for prog in progs:
                [parse_chord(c, 0) for c in prog.split()]


def test_deterministic_per_seed():
    a, b, c = make_example(TRAIN0 + 7, 1.5), make_example(TRAIN0 + 7, 1.5), make_example(TRAIN0 + 8, 1.5)
    assert np.array_equal(a.audio, b.audio) and np.array_equal(a.lead, b.lead)
    assert a.caption == b.caption and a.metadata == b.metadata
    assert not np.array_equal(a.audio, c.audio) and a.caption != c.caption


@pytest.mark.parametrize("duration", [0.5, 1.0, 2.37, 5.0])
def test_exact_duration_and_audible(duration):
    for seed in range(TRAIN0 + 100, TRAIN0 + 104):
        ex = make_example(seed, duration)
        n = round(duration * SAMPLE_RATE)
        assert ex.audio.shape == (n,) and ex.lead.shape == (n,)
        assert ex.audio.dtype == np.float32 and ex.lead.dtype == np.float32
        assert np.isfinite(ex.audio).all() and np.abs(ex.audio).max() <= 1.0
        assert np.sqrt(np.mean(ex.audio ** 2)) > 0.02, ex.metadata  # loudness-normalised, never silent
        assert ex.metadata["melody"], ex.metadata  # a lead plays in every clip


@pytest.mark.slow
def test_no_silent_stretch_in_any_style():
    """One 4 s clip per style: no 0.5 s window of the mix below -50 dBFS."""
    seen = {}
    seed = TRAIN0
    while len(seen) < len(STYLES):
        style = STYLES[np.random.default_rng([seed, 0]).integers(len(STYLES))].name
        seen.setdefault(style, seed)
        seed += 1
    for style, seed in seen.items():
        ex = make_example(seed, 4.0)
        assert ex.metadata["style"] == style
        frames = ex.audio[: len(ex.audio) // 8000 * 8000].reshape(-1, 8000)
        assert (np.sqrt(np.mean(frames ** 2, axis=1)) > 10 ** (-50 / 20)).all(), ex.metadata


def test_caption_names_style_instruments_and_tempo():
    for i in range(300):
        style = STYLES[i % len(STYLES)]
        piece = compose(np.random.default_rng([i, 5]), style, 10.0)
        text = caption(piece, np.random.default_rng([i, 6]))
        low = text.lower()
        assert any(s.lower() in low for s in style.synonyms), text
        for name in piece.instruments:
            assert name in low, (name, text)
        assert str(piece.bpm) in text or any(w in low for w in TEMPO_WORDS[tempo_class(piece.bpm)]), text
    ex = make_example(TRAIN0 + 3, 1.0)
    assert ex.caption == ex.metadata["caption"] and all(n in ex.caption for n in ex.metadata["instruments"])


def test_captions_vary():
    texts = {make_example(TRAIN0 + i, 0.5).caption.split()[0] for i in range(12)}
    assert len(texts) >= 4  # several templates, not one


def test_melody_notes_match_lead_chroma():
    """Pitch classes of the exact melody notes vs the chroma of the lead-only render: mean cosine >= 0.8."""
    import librosa

    n_fft, hop, scores = 4096, 2048, []
    for seed in range(TRAIN0 + 200, TRAIN0 + 212):
        ex = make_example(seed, 3.0)
        chroma = librosa.feature.chroma_stft(y=ex.lead, sr=SAMPLE_RATE, n_fft=n_fft, hop_length=hop, tuning=0.0).T
        notes = melody_chroma(ex.metadata["melody"], len(chroma), hop / SAMPLE_RATE, n_fft / SAMPLE_RATE)
        keep = notes.sum(1) > 0.25 * n_fft / SAMPLE_RATE  # frames mostly covered by a melody note
        a, b = chroma[keep], notes[keep]
        cos = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1) + 1e-9)
        scores.append(cos.mean())
    assert min(scores) > 0.2 and np.mean(scores) >= 0.8, scores


def test_melody_chroma_one_hot_frames():
    c = melody_chroma([(60, 0.0, 1.0), (67, 1.0, 2.0)], 5, 0.5)
    assert c.tolist() == [[1.0] + [0.0] * 11] * 2 + [[0.0] * 7 + [1.0] + [0.0] * 4] * 2 + [[0.0] * 12]


def test_validation_seeds_never_in_training_stream():
    for seed in (0, 1, 12345):
        stream = SyntheticMusic("train", seed=seed)
        seeds = [stream.clip_seed(i) for i in range(20_000)]
        assert min(seeds) >= VALID_SEEDS and len(set(seeds)) == len(seeds)
    assert [SyntheticMusic("valid", seed=3).clip_seed(i) for i in range(4)] == [0, 1, 2, 3]
    assert make_example(5, 0.5).metadata["split"] == "valid" and make_example(TRAIN0, 0.5).metadata["split"] == "train"
    train, held = data._tune_split()
    if not train:
        pytest.skip("melody database not built")
    assert not {id(m) for m in train} & {id(m) for m in held}
    for style in STYLES:  # validation clips draw only held-out tunes, training clips only the rest
        for pool, other in ((data._tunes("train", style.name), held), (data._tunes("valid", style.name), train)):
            assert not {id(m) for m in pool[0] + pool[1]} & {id(m) for m in other}


def test_real_tunes_and_chorales(monkeypatch):
    train, _ = data._tune_split()
    if not train:
        pytest.skip("melody database not built")
    folk = next(m for m in train if m.voices is None and tuple(m.meter) == (3, 4))
    chorale = next(m for m in train if m.voices is not None)
    waltz = next(s for s in STYLES if s.name == "waltz")
    piece = compose(np.random.default_rng(0), dataclasses.replace(waltz, corpus=1.0), 6.0, folk=(folk,))
    assert piece.melody_source == "folk" and piece.melody_title == folk.title and piece.meter == (3, 4)
    quartet = next(s for s in STYLES if s.name == "string_quartet")
    piece = compose(np.random.default_rng(0), dataclasses.replace(quartet, chorale=1.0), 6.0, chorales=(chorale,))
    assert piece.melody_source == "chorale" and {t.role for t in piece.tracks} == {"lead", "comp", "pad", "bass"}
    assert all(t.notes for t in piece.tracks)


def test_without_melody_database_clips_are_procedural(monkeypatch):
    from musicgen_core.train import melodies

    monkeypatch.setattr(melodies, "DEFAULT_PATH", melodies.DEFAULT_PATH.with_name("missing.json.gz"))
    melodies.load_melodies.cache_clear()
    data._tune_split.cache_clear()
    data._tunes.cache_clear()
    try:
        assert data._tunes("train", "folk") == ((), ())
        assert make_example(TRAIN0 + 1, 0.5).metadata["melody_source"] == "procedural"
    finally:
        melodies.load_melodies.cache_clear()
        data._tune_split.cache_clear()
        data._tunes.cache_clear()


def test_worker_sharding_covers_each_index_once():
    ds = SyntheticMusic("valid", duration=0.25, length=6)
    loader = torch.utils.data.DataLoader(ds, batch_size=None, num_workers=2)
    items = list(loader)
    assert sorted(int(it["seed"]) for it in items) == list(range(6))
    assert items[0]["wav"].shape == (1, round(0.25 * SAMPLE_RATE)) and isinstance(items[0]["caption"], str)
    ranks = [[int(it["seed"]) for it in SyntheticMusic("valid", 0.25, length=6, rank=r, world_size=2)] for r in (0, 1)]
    assert ranks == [[0, 2, 4], [1, 3, 5]]


def test_cli_make_data_and_bench(tmp_path, capsys):
    parser = argparse.ArgumentParser()
    data.add_cli(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["make-data", "--n", "2", "--dur", "0.5", "--out", str(tmp_path), "--split", "valid"])
    args.func(args)
    meta = json.loads((tmp_path / "1.json").read_text())
    assert meta["seed"] == 1 and meta["split"] == "valid" and meta["caption"]
    assert {"style", "bpm", "key", "mode", "instruments", "melody", "soundfont"} <= set(meta)
    audio, sr = sf.read(tmp_path / "0.wav")
    assert sr == SAMPLE_RATE and len(audio) == SAMPLE_RATE // 2 and (tmp_path / "0.lead.wav").is_file()
    args = parser.parse_args(["bench-data", "--n", "2", "--dur", "0.5"])
    args.func(args)
    assert "audio_s_per_wall_s=" in capsys.readouterr().out
