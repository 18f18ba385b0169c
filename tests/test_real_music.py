"""Real-music corpus (licence check, split by package, manifest, crops) on a generated fake package tree; the level
augmentation; a codec run mixing the real cache with synthetic clips."""
from __future__ import annotations

import csv
import dataclasses
import json
import zipfile

import numpy as np
import pytest
import soundfile as sf
import torch

from musicgen_core.configs import CodecConfig
from musicgen_core.train import codec as trainer
from musicgen_core.train.codec_data import LevelAugment, TrainBatches, at_level, augment, rms_db, set_level
from musicgen_core.train.real import RealCorpus, build_corpus, music_files, read_licence

GPL = "This program is free software; you can redistribute it under the GNU General Public License, version 2.\n"
DEP5_CC = ("Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n\nFiles: *\n"
           "Copyright: 2010 Someone\nLicense: CC-BY-SA-3.0\n\nFiles: music/*\nLicense: CC0\n")
NON_FREE = ("Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n\nFiles: *\n"
            "License: CC-BY-NC-SA-3.0\n")


def _tone(seconds: float, sr: int, freq: float = 220.0, stereo: bool = False) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    x = 0.3 * np.sin(2 * np.pi * freq * t).astype(np.float32)
    return np.stack([x, 0.5 * x], axis=1) if stereo else x


def _package(root, name: str, copyright_text: str, files: dict[str, float]):
    """A fake unpacked package: its copyright file and short audio files {relative path: seconds}."""
    tree = root / name
    doc = tree / "usr" / "share" / "doc" / name
    doc.mkdir(parents=True)
    (doc / "copyright").write_text(copyright_text)
    for rel, seconds in files.items():
        path = tree / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.suffix == ".pk3":  # a game archive holding an ogg
            member = root / "member.ogg"
            sf.write(member, _tone(seconds, 44100), 44100, format="OGG", subtype="VORBIS")
            with zipfile.ZipFile(path, "w") as z:
                z.write(member, "sound/cdtracks/track1.ogg")
        else:
            sr = 44100 if path.suffix == ".ogg" else 22050
            sf.write(path, _tone(seconds, sr, stereo=True), sr)
    return tree


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("packages")
    trees = {
        "game-music": _package(root, "game-music", GPL, {"usr/share/game/music/a.ogg": 12.0,
                                                         "usr/share/game/music/b.wav": 11.0,
                                                         "usr/share/game/music/jingle.wav": 2.0}),
        "game-data": _package(root, "game-data", DEP5_CC, {"usr/share/data/music/theme.ogg": 10.5,
                                                           "usr/share/data/sounds/boom.wav": 10.5}),
        "other-music": _package(root, "other-music", GPL, {"usr/share/other/music.pk3": 10.5}),
        "nc-music": _package(root, "nc-music", NON_FREE, {"usr/share/nc/music/x.ogg": 10.5}),
    }
    out = root / "cache"
    return build_corpus(trees, out, valid_packages=("other-music",), info={"game-music": {"section": "games"}}), out


def test_licences_are_read_from_the_copyright_file():
    assert read_licence(GPL).free and read_licence(GPL).names == ("GPL",)
    assert read_licence(DEP5_CC).free and {"CC-BY-SA", "public-domain"} == set(read_licence(DEP5_CC).names)
    assert not read_licence(NON_FREE).free and "non-commercial" in read_licence(NON_FREE).reason
    assert not read_licence(DEP5_CC.replace("CC0", "Some-Proprietary-EULA")).free  # unknown names are not trusted
    assert not read_licence("All rights reserved.\n").free


def test_corpus_keeps_free_music_and_splits_by_package(corpus):
    manifest, out = corpus
    by_name = {p["package"]: p for p in manifest["packages"]}
    assert set(by_name) == {"game-music", "game-data", "other-music"}
    assert [r["package"] for r in manifest["rejected"]] == ["nc-music"]  # CC-BY-NC: not free
    assert by_name["game-music"]["tracks"] == 2  # the 2 s jingle is too short
    assert by_name["game-data"]["tracks"] == 1  # music/ only: the sound effect is left out
    assert by_name["other-music"]["tracks"] == 1  # read from inside the zip archive
    assert manifest["held_out"] == ["other-music"] and by_name["other-music"]["split"] == "valid"
    assert {t["split"] for t in manifest["tracks"] if t["package"] != "other-music"} == {"train"}
    assert by_name["game-music"]["hours"] == pytest.approx(23.0 / 3600, abs=1e-3)
    assert manifest["hours"]["train"] == pytest.approx((23.0 + 10.5) / 3600, abs=2e-3)
    assert by_name["game-music"]["section"] == "games" and by_name["game-data"]["licence"] == ["CC-BY-SA",
                                                                                                "public-domain"]
    assert json.loads((out / "manifest.json").read_text()) == manifest
    track = np.load(out / manifest["tracks"][0]["path"], mmap_mode="r")  # 32 kHz mono int16, memory-mappable
    assert track.dtype == np.int16 and track.ndim == 1 and len(track) == pytest.approx(12.0 * 32000, abs=64)
    assert len(music_files(out.parent / "game-data")) == 1


def test_corpus_needs_a_held_out_package(corpus, tmp_path):
    _, out = corpus
    tree = _package(tmp_path, "solo", GPL, {"music/a.wav": 10.5})
    with pytest.raises(ValueError, match="held-out"):
        build_corpus({"solo": tree}, tmp_path / "cache", valid_packages=("missing",))


def test_real_crops_and_validation_clips(corpus):
    _, out = corpus
    train, valid = RealCorpus(out, "train"), RealCorpus(out, "valid")
    crops = train.crops(np.random.default_rng(0), 5, 8000)
    assert crops.shape == (5, 8000) and crops.dtype == np.float32 and np.abs(crops).max() <= 1
    assert np.array_equal(crops, train.crops(np.random.default_rng(0), 5, 8000))
    clips = valid.clips(3, 32000)
    assert clips.shape == (3, 32000) and (rms_db(clips) > -50).all()


def test_loud_crops_skip_quiet_passages(corpus):
    _, out = corpus
    train = RealCorpus(out, "train")
    quiet_then_loud = np.concatenate([np.zeros(32000, np.int16), np.full(32000, 8000, np.int16)])  # then -12 dBFS
    train._arrays = {i: quiet_then_loud for i in range(len(train.tracks))}
    rng = np.random.default_rng(0)
    for _ in range(20):
        i, offset, crop = train.loud_crop(rng, 16000, -30.0, tracks=[1])
        assert i == 1 and crop.shape == (16000,) and crop.dtype == np.float32 and rms_db(crop) >= -30
        assert offset > 16000 and np.array_equal(crop, quiet_then_loud[offset:offset + 16000] / 32768.0)
    i, offset, crop = train.loud_crop(rng, 70000, -30.0)  # longer than the track: zero-padded
    assert offset == 0 and crop.shape == (70000,) and not crop[64000:].any()


def test_level_augmentation_spans_the_range_with_silence_and_fades():
    rng = np.random.default_rng(0)
    x = np.stack([_tone(0.5, 32000, f) for f in (110, 220, 330, 440)] * 16)  # [64, 16000]
    y = augment(x, rng, LevelAugment((-40.0, -10.0), p_silence=0, p_fade=0, p_noise=0))
    levels = rms_db(y)
    assert (levels >= -40.01).all() and (levels <= -9.99).all() and levels.max() - levels.min() > 20
    assert np.abs(set_level(x[:2], 0.0)).max() <= 1.0  # a 0 dBFS RMS sine is peak-limited, not clipped
    quiet = set_level(x[:1] * 1e-6, -10.0)  # near-silence is not boosted into loud noise
    assert rms_db(quiet)[0] < -60
    silent = augment(x, rng, LevelAugment((-30.0, -30.0), p_silence=1, p_fade=0, p_noise=0))
    assert all((s[:1600] == 0).all() or (s[-1600:] == 0).all() for s in silent)
    faded = augment(x, rng, LevelAugment((-20.0, -20.0), p_silence=0, p_fade=1, p_noise=0))
    head, tail = np.abs(faded[:, :800]).max(1), np.abs(faded[:, -800:]).max(1)
    assert ((head < 0.1 * tail) | (tail < 0.1 * head)).all()
    noisy = augment(np.zeros((8, 16000), np.float32), rng, LevelAugment(p_silence=0, p_fade=0, p_noise=1))
    assert ((rms_db(noisy) > -81) & (rms_db(noisy) < -49)).all()
    at = at_level(torch.from_numpy(x[:3, None]), -30.0)
    assert at.shape == (3, 1, 16000) and np.allclose(rms_db(at[:, 0].numpy()), -30.0, atol=0.01)


TINY = CodecConfig(n_filters=4, dimension=16, lstm_layers=1, card=64)


@pytest.mark.slow
def test_codec_run_mixes_real_and_synthetic_and_validates_per_level(corpus, tmp_path):
    _, out = corpus
    cfg = dataclasses.replace(trainer.PRESETS["cpu-seanet"], codec=TINY, batch_size=4, clips_per_batch=2,
                              segment=0.25, adv_start=1, disc_filters=4, disc_ffts=(256, 128), val_clips=2,
                              val_duration=1.0, workers=0, log_every=1, real=str(out), real_fraction=0.5,
                              gain_range=(-40.0, 0.0), val_levels=(-40.0, 0.0), val_level_clips=1)
    batch = next(iter(TrainBatches(dataclasses.replace(cfg, gain_range=None), 0)))
    assert batch.shape == (4, 1, 8000)
    peaks = np.abs(np.fft.rfft(batch[:, 0].numpy(), axis=-1)).argmax(-1) * 32000 / 8000  # Hz
    assert list(peaks[2:]) == [220.0, 220.0]  # the last half: crops of the fixture's 220 Hz tracks
    trainer.train(cfg, tmp_path, max_steps=2)
    row = list(csv.DictReader((tmp_path / "valid.csv").read_text().splitlines()))[-1]
    for prefix in ("", "real_", "syn-40_", "syn+0_", "real-40_", "real+0_"):
        assert float(row[f"{prefix}mel"]) > 0 and -1 <= float(row[f"{prefix}chroma_argmax"]) <= 1, prefix
        assert row[f"{prefix}level_db"] != ""
    assert "real_usage0" in row and "real-40_usage0" not in row
    assert torch.load(tmp_path / "latest.pt", weights_only=True)["config"]["real"] == str(out)
