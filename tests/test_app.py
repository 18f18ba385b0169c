"""The web demo end to end: gradio_client against a launched server with tiny random models, and the input validation
behind it (the parts without a server: tests/test_demo_parts.py)."""
from __future__ import annotations

import glob
import re
import socket
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from gradio_client import Client, handle_file

from demo import callbacks as cb
from demo import ui
from demo.melody import notes_of
from hub_fixtures import FakeHub
from musicgen_core import catalog, hub, plots
from musicgen_core import validation as v
from musicgen_core.audio import loudness
from musicgen_core.checkpoints import default_model_dir

HUM = str(ui.EXAMPLES / "ode_to_joy_hum.wav")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve(demo):
    port = free_port()
    ui.launch(demo, port=port, prevent_thread_lock=True, quiet=True)
    return Client(f"http://127.0.0.1:{port}/", verbose=False)


@pytest.fixture(scope="module")
def cache(hf_musicgen_dir, hf_melody_dir, hf_stereo_dir):
    return ui.ModelCache({"tiny": str(hf_musicgen_dir[1]), "tiny-melody": str(hf_melody_dir[1]),
                          "tiny-stereo": str(hf_stereo_dir[1])})


@pytest.fixture(scope="module")
def client(cache):
    demo = ui.build_demo(cache)  # streams when ffmpeg is installed, as deployed
    yield serve(demo)
    demo.close()


@pytest.fixture(scope="module")
def audio_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("audio")
    t = np.arange(32000) / 32000
    tone = 0.3 * np.sin(2 * np.pi * 440 * t)
    files = {"silent.wav": (np.zeros(16000), 16000), "short.wav": (tone[:6400], 32000),
             "long.wav": (0.3 * np.sin(np.arange(181 * 1000)), 1000),
             "tone_3ch_8k.wav": (np.stack([tone[::4]] * 3, axis=1), 8000)}
    for name, (data, sr) in files.items():
        sf.write(folder / name, data, sr, subtype="PCM_16")
    bad = tone.copy()
    bad[100] = np.nan
    sf.write(folder / "nan.wav", bad, 32000, subtype="FLOAT")
    (folder / "notes.wav").write_text("these are not audio samples")
    with open(folder / "huge.wav", "wb") as f:  # over the 20 MB upload limit
        f.truncate(21 * 1024 * 1024)
    return {name: str(folder / name) for name in [*files, "nan.wav", "notes.wav", "huge.wav"]}


def read(path) -> tuple[np.ndarray, int]:
    data, sr = sf.read(path, dtype="float32", always_2d=True)
    return data.T, sr


def first_take(result) -> np.ndarray:
    return read(result[0][0])[0]


@pytest.fixture(scope="module")
def reference(client) -> np.ndarray:
    """A fixed request's output: later requests must still give exactly this (nothing leaks between requests)."""
    return first_take(client.predict(prompt="still up", duration=1, seed=5, api_name="/generate"))


# --- validation (pure functions) -----------------------------------------------------------------------------------
def test_request_validation():
    assert v.check_prompt("  jazz  ") == "jazz" and v.check_prompt(" ", required=False) is None
    assert v.check_duration("7") == 7.0 and v.check_seed("") is None and v.check_seed(" 42 ") == 42
    assert v.check_sampling(250.0, 0, 1, 3) == {"top_k": 250, "top_p": 0.0, "temperature": 1.0, "cfg_coef": 3.0}
    for call, message in [(lambda: v.check_prompt(" \n "), "prompt is empty"),
                          (lambda: v.check_prompt("x" * 1001), "1001 characters"),
                          (lambda: v.check_duration(0.5), "between 1 and 120"),
                          (lambda: v.check_duration(float("nan")), "finite"),
                          (lambda: v.check_duration(None), "Duration is empty"),
                          (lambda: v.check_seed(-1), "whole number"),
                          (lambda: v.check_seed("abc"), "must be a number"),
                          (lambda: v.check_sampling(-1, 0, 1, 3), "Top-k must be between 0 and 2048"),
                          (lambda: v.check_sampling(2.5, 0, 1, 3), "Top-k must be a whole number"),
                          (lambda: v.check_sampling(250, 1.5, 1, 3), "Top-p must be between 0 and 1"),
                          (lambda: v.check_sampling(250, 0, float("inf"), 3), "Temperature must be a finite"),
                          (lambda: v.check_sampling(250, 0, 1, None), "guidance is empty"),
                          (lambda: v.check_continuation(5.0, 4.0, 30.0), "at least 6 s"),
                          (lambda: v.check_continuation(31.0, 60.0, 30.0), "at most 29.5 s")]:
        with pytest.raises(v.InputError, match=message):
            call()


def test_audio_validation_converts_and_rejects():
    pcm = (np.sin(np.arange(48000) / 5) * 20000).astype(np.int16)
    wav, notes = v.check_audio(np.stack([pcm, pcm]), 48000)  # int16 stereo at 48 kHz: accepted as float [C, T]
    assert wav.dtype == torch.float32 and wav.shape == (2, 48000) and abs(wav.abs().max() - 20000 / 32768) < 1e-3
    assert notes == []
    loud, notes = v.check_audio(np.clip(np.sin(np.arange(8000) / 3) * 3, -2, 2), 8000)  # clipped, peak 2
    assert loud.abs().max() == pytest.approx(1.0) and "clipped" in notes[0]
    tone = np.sin(np.arange(16000) / 4).astype(np.float32)
    for wav, sr, message in [(tone[:4000], 16000, "too short"), (np.zeros(16000), 16000, "silent"),
                             (np.tile(tone, 200), 16000, "too long"), (np.r_[tone, np.nan], 16000, "NaN"),
                             (tone, 500, "sample rate"), (tone.astype(bool), 16000, "not audio")]:
        with pytest.raises(v.InputError, match=message):
            v.check_audio(wav, sr)


# --- end to end with gradio_client ---------------------------------------------------------------------------------
# /generate returns: files, token grid, chroma comparison, seed, stats, player, spectrogram, takes 1-4, history
@pytest.mark.slow  # through a launched server
def test_api_signature(client):
    info = client.view_api(print_info=False, return_format="dict")["named_endpoints"]["/generate"]
    names = [p["parameter_name"] for p in info["parameters"]]
    assert names == ["prompt", "melody", "duration", "seed", "top_k", "top_p", "temperature", "cfg_coef", "mode",
                     "model", "takes", "loudness"]
    assert all(p["parameter_has_default"] for p in info["parameters"][1:])
    assert [r["label"] for r in info["returns"]] == [
        "Download (WAV)", "Codebook tokens", "Melody vs generated chroma", "Seed used", "Stats", "Music",
        "Spectrogram", "Take 1", "Take 2", "Take 3", "Take 4", "Earlier takes"]


@pytest.mark.slow  # through a launched server
def test_text_only(client):
    before = set(glob.glob(str(Path(tempfile.gettempdir()) / "musicgen-demo-*")))
    job = client.submit(prompt="calm piano with soft strings", duration=1, seed=7, api_name="/generate")
    files, grid, comparison, seed, stats, _, spectrogram, *takes, history = job.result()
    wav, sr = read(files[0])
    assert len(files) == 1 and sr == 32000 and wav.shape == (1, 32000) and seed == 7
    assert "1.0 s" in stats and "real time" in stats and "Seed **7**" in stats and "-14 LUFS" in stats
    assert Path(grid).suffix == ".png" and Path(spectrogram).suffix == ".png"
    assert comparison["value"] is None and not any(t["visible"] for t in takes)  # one take: the player is enough
    assert [label for label, _ in history["choices"]][0].endswith("'calm piano with soft strings', take 1/1, seed 7, "
                                                                  "tiny")
    progress = [o[4] for o in job.outputs()[:-1]]
    assert progress and progress[-1] == "Generating... 1.0 s of 1 s"  # one update per streamed chunk
    again = client.predict(prompt="calm piano with soft strings", duration=1, seed=7, api_name="/generate")
    assert np.array_equal(first_take(again), wav)  # the seed reproduces the piece
    assert set(glob.glob(str(Path(tempfile.gettempdir()) / "musicgen-demo-*"))) <= before  # temp files removed


@pytest.mark.slow  # through a launched server
def test_variations_in_one_batch(client):
    files, *_, seed, stats, _, _, t1, t2, t3, t4, history = client.predict(
        prompt="lo-fi beat", duration=1, seed=11, takes=3, api_name="/generate")
    wavs = [read(f)[0] for f in files]
    assert len(wavs) == 3 and all(w.shape == (1, 32000) for w in wavs) and "x 3 takes" in stats
    assert not np.array_equal(wavs[0], wavs[1]) and not np.array_equal(wavs[1], wavs[2])
    assert [t["visible"] for t in (t1, t2, t3, t4)] == [True, True, True, False]
    assert t2["label"] == "Take 2 of 3 (seed 12)" and np.array_equal(read(t2["value"])[0], wavs[1])
    assert seed == 11 and "Seeds **11, 12, 13**" in stats
    assert [label.split(", ")[1:3] for label, _ in history["choices"][:3]] == [
        ["take 1/3", "seed 11"], ["take 2/3", "seed 12"], ["take 3/3", "seed 13"]]
    alone = client.predict(prompt="lo-fi beat", duration=1, seed=13, api_name="/generate")
    # each take is its own seed's piece, made again alone (same tokens; the batch of 3 decodes with other float
    # rounding, a few 16-bit steps apart)
    np.testing.assert_allclose(first_take(alone), wavs[2], atol=1e-3)


@pytest.mark.slow  # through a launched server
def test_loudness_normalisation_is_on_by_default_and_can_be_switched_off(client):
    on = first_take(client.predict(prompt="drums", duration=2, seed=4, api_name="/generate"))
    off = first_take(client.predict(prompt="drums", duration=2, seed=4, loudness=False, api_name="/generate"))
    assert loudness(torch.from_numpy(on), 32000) == pytest.approx(-14, abs=1)  # tanh soft-clips a noisy model's peaks
    assert abs(loudness(torch.from_numpy(off), 32000) + 14) > 1  # the model's own level
    assert np.corrcoef(on[0], off[0])[0, 1] > 0.99  # the same take, scaled


@pytest.mark.slow  # through a launched server
def test_the_model_parameter_and_stereo(client, reference):
    stereo = client.predict(prompt="still up", duration=1, seed=5, model="tiny-stereo", api_name="/generate")
    wav = first_take(stereo)
    assert wav.shape == (2, 32000) and not np.array_equal(wav[0], wav[1])  # stereo download, two channels
    assert "model tiny-stereo" in stereo[4]
    assert not np.array_equal(first_take(client.predict(prompt="still up", duration=1, seed=5, model="tiny-melody",
                                                         api_name="/generate")), reference)


@pytest.mark.slow  # through a launched server
@pytest.mark.parametrize("prompt", ["música suave para piano 🎹🎶", "מוזיקה שקטה לפסנתר", "静かなピアノ"])
def test_non_ascii_prompts_work(client, prompt):
    assert first_take(client.predict(prompt=prompt, duration=1, seed=3, api_name="/generate")).shape == (1, 32000)


@pytest.mark.slow  # through a launched server
def test_boundary_sampling_values_are_meaningful(client):
    """temperature 0 is greedy (the seed no longer matters, top-k 1 gives the same); top-k 0 samples unfiltered."""
    def run(**kwargs):
        return first_take(client.predict(prompt="x", duration=1, api_name="/generate", **kwargs))

    greedy = run(seed=1, temperature=0)
    assert np.array_equal(run(seed=2, temperature=0), greedy) and np.array_equal(run(seed=3, top_k=1), greedy)
    assert not np.array_equal(run(seed=1, top_k=0), greedy)


@pytest.mark.slow  # through a launched server
@pytest.mark.skipif(not (default_model_dir() / "config.json").is_file(), reason="the default model is not built")
def test_the_stats_name_the_tempo_the_default_model_read():
    """The default model has a beat grid: the demo says which tempo it took from the prompt."""
    demo = ui.build_demo(ui.ModelCache([catalog.DEFAULT]))
    try:
        stats = serve(demo).predict(prompt="folk with fiddle, 96 BPM", duration=1, seed=0, api_name="/generate")[4]
    finally:
        demo.close()
    assert "Tempo **96 BPM**, read from the prompt." in stats


@pytest.mark.slow  # through a launched server
def test_random_seed_is_reported(client):
    result = client.predict(prompt="lo-fi beat", duration=1, api_name="/generate")
    seed, stats = result[3], result[4]
    assert isinstance(seed, int) and 0 <= seed < 2**31 and f"Seed **{seed}**" in stats
    again = client.predict(prompt="lo-fi beat", duration=1, seed=str(seed), api_name="/generate")
    assert np.array_equal(first_take(again), first_take(result))  # the reported seed is the one used


@pytest.mark.slow  # through a launched server
def test_melody(client):
    files, grid, comparison, *_ = client.predict(
        prompt="", melody=handle_file(HUM), duration=1.0, model="tiny-melody", api_name="/generate")
    assert read(files[0])[0].shape == (1, 32000)
    assert comparison["visible"] and Path(comparison["value"]).suffix == ".png"
    chroma = client.predict(handle_file(HUM), api_name="/melody_chromagram")
    assert Path(chroma["value"]).is_file()


def test_the_notes_heard_in_a_hum():
    wav, sr, _ = v.read_audio(HUM)  # Ode to Joy: E E F G G F E D C C D E E D D, repeated notes merge
    names = [plots.note_name(midi) for _, _, midi in notes_of(wav, sr)]
    assert names[:9] == ["E3", "F3", "G3", "F3", "E3", "D3", "C3", "D3", "E3"]


@pytest.mark.slow  # through a launched server
def test_continuation_with_any_channels_and_rate(client, audio_files):
    result = client.predict(prompt="keep going", melody=handle_file(audio_files["tone_3ch_8k.wav"]), duration=2,
                            mode=cb.CONTINUE, takes=2, api_name="/generate")
    assert [read(f)[0].shape for f in result[0]] == [(1, 64000)] * 2


@pytest.mark.parametrize("kwargs, message", [
    ({"prompt": "   "}, "prompt is empty"),
    ({"prompt": "x" * 1001}, "limit is 1000"),
    ({"prompt": "x", "duration": 500}, "maximum value 120"),
    ({"prompt": "x", "duration": -3}, "minimum value 1"),
    ({"prompt": "x", "seed": "1.5"}, "Seed must be a whole number"),
    ({"prompt": "x", "top_k": -5}, "Top-k must be between 0 and 2048"),
    ({"prompt": "x", "top_p": 2}, "Top-p must be between 0 and 1"),
    ({"prompt": "x", "temperature": -1}, "Temperature must be between"),
    ({"prompt": "x", "cfg_coef": 100}, "guidance must be between"),
    ({"prompt": "x", "melody": "notes.wav"}, "Could not read notes.wav as audio"),
    ({"prompt": "x", "melody": "silent.wav"}, "silent"),
    ({"prompt": "x", "melody": "short.wav"}, "too short"),
    ({"prompt": "x", "melody": "long.wav"}, "too long"),
    ({"prompt": "x", "melody": "nan.wav"}, "NaN"),
    ({"prompt": "x", "melody": "huge.wav"}, "size|large|413"),
    ({"prompt": "x", "melody": "tone_3ch_8k.wav", "model": "tiny"}, "cannot follow a melody"),
    ({"prompt": "x", "melody": "tone_3ch_8k.wav", "mode": cb.CONTINUE, "duration": 1}, "at least 2 s"),
    ({"prompt": "x", "takes": 5}, re.escape("Value: 5 (type: <class 'int'>) is not in the list of choices: "
                                            "[1, 2, 3, 4]")),
    ({"prompt": "x", "takes": 1.5}, re.escape("Value: 1.5 (type: <class 'float'>) is not in the list of choices")),
    ({"prompt": "x", "takes": None}, "^Takes must be a whole number from 1 to 4, got None.$"),
    ({"prompt": "x", "model": "nope"}, re.escape("Value: nope is not in the list of choices: ['tiny', 'tiny-melody', "
                                                 "'tiny-stereo']")),
    ({"prompt": "x", "loudness": "yes"}, "^Loudness normalisation must be true or false, got 'yes'.$"),
])
@pytest.mark.slow  # through a launched server
def test_bad_inputs_are_errors_and_the_server_stays_up(client, audio_files, reference, kwargs, message):
    if "melody" in kwargs:
        kwargs["melody"] = handle_file(audio_files[kwargs["melody"]])
    with pytest.raises(Exception, match=message):  # AppError (gr.Error), or the client's upload size check
        client.predict(api_name="/generate", **{"duration": 1, **kwargs})
    assert np.array_equal(first_take(client.predict(prompt="still up", duration=1, seed=5, api_name="/generate")),
                          reference)


@pytest.mark.slow  # through a launched server
def test_cancel_stops_the_worker(client, cache, reference):
    steps = []
    hook = cache.get("tiny").lm.register_forward_hook(lambda *args: steps.append(time.monotonic()))
    try:
        client.predict(prompt="still up", duration=1, seed=5, api_name="/generate")
        one_request, steps[:] = len(steps), []
        job = client.submit(prompt="a very long piece", duration=120, api_name="/generate")
        deadline = time.monotonic() + 60
        while not job.outputs() and time.monotonic() < deadline:  # the first streamed chunk
            time.sleep(0.02)
        assert job.outputs(), "no audio streamed"
        job.cancel()
        cancelled_at = time.monotonic()
        time.sleep(1.5)
        # the generator is closed at its next yield (at most one 1 s chunk away), which closes the library's stream
        late = [t for t in steps if t > cancelled_at + 0.5]
        assert not late, f"{len(late)} LM steps after the cancel"
        assert len(steps) < 120 * 50 / 4  # far from the 6000 steps of the whole piece
        n = len(steps)
        after = client.predict(prompt="still up", duration=1, seed=5, api_name="/generate")
        assert len(steps) - n == one_request  # only the new request's steps: the cancelled one is not running
    finally:
        hook.remove()
    assert np.array_equal(first_take(after), reference)  # and it left nothing behind


@pytest.mark.slow  # through a launched server
def test_without_ffmpeg_the_player_gets_the_file(cache):
    demo = ui.build_demo(cache, streaming=False)
    try:
        result = serve(demo).predict(prompt="x", duration=1, seed=1, api_name="/generate")
        assert Path(result[5]).suffix == ".wav" and read(result[5])[0].shape == (1, 32000)
    finally:
        demo.close()


# --- models from the Hub --------------------------------------------------------------------------------------------
@pytest.mark.slow  # through a launched server
def test_an_official_model_from_the_hub_with_its_licence_and_clear_failures(hf_musicgen_dir, tmp_path, monkeypatch):
    """facebook/musicgen-small served by a local Hub (a tiny model under that id): picking it downloads it into the
    cache; a model missing from the Hub and one too large for the machine give the loader's messages."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    small, medium, large = (next(e for e in catalog.OFFICIAL_MODELS if e.name == f"facebook/musicgen-{size}")
                            for size in ("small", "medium", "large"))
    with FakeHub() as fake:
        fake.patch_endpoint(monkeypatch)
        fake.add_repo(small.name, {p.name: p for p in Path(hf_musicgen_dir[1]).iterdir() if p.is_file()})
        monkeypatch.setattr(hub, "available_memory", lambda device: 10 * 10**9)  # medium fits, large does not
        demo = ui.build_demo(ui.ModelCache([catalog.DEFAULT, small, medium, large]))
        try:
            client = serve(demo)
            size = (Path(hf_musicgen_dir[1]) / "model.safetensors").stat().st_size
            release = fake.hold_after("model.safetensors", size - 1000)  # the download waits while the page shows it
            job, bars, deadline = client.submit(small.name, api_name="/load_model"), set(), time.monotonic() + 120
            while ("model.safetensors", size, "B") not in bars and not job.done() and time.monotonic() < deadline:
                # huggingface_hub's per-file byte bars, shown as the page's progress bar
                bars |= {(p.desc.rsplit("/", 1)[-1], p.length, p.unit) for p in job.status().progress_data or ()}
                time.sleep(0.005)
            release.set()
            info = job.result()
            assert ("model.safetensors", size, "B") in bars
            assert info.startswith("**facebook/musicgen-small · 300M params · ~1.9 GB · CC-BY-NC 4.0 · fits this "
                                   "machine**. Loaded: 1 channel(s)")
            assert "licensed **CC-BY-NC 4.0**: non-commercial use only" in info
            assert any(r.path.endswith("model.safetensors") for r in fake.requests)
            assert (tmp_path / "models--facebook--musicgen-small").is_dir()
            result = client.predict(prompt="x", duration=1, seed=2, model=small.name, api_name="/generate")
            assert read(result[0][0])[0].shape == (1, 32000) and "model facebook/musicgen-small" in result[4]
            with pytest.raises(Exception, match=r"^facebook/musicgen-medium was not found on the Hugging Face Hub"):
                client.predict(medium.name, api_name="/load_model")
            with pytest.raises(Exception, match=r"^facebook/musicgen-large does not fit in memory: it needs about "
                                                r"13\.9 GB in fp32 on cpu, and 10\.0 GB is available\."):
                client.predict(prompt="x", duration=1, model=large.name, api_name="/generate")
        finally:
            demo.close()
