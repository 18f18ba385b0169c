"""The demo's callbacks: they validate the form (`musicgen_core.validation`), call the library's public API
(`MusicGen.stream`, `pattern.build`, `audio_write`) and format the outputs (`musicgen_core.plots`). `build_demo`
binds the model cache and streaming flag with functools.partial; Gradio reads the API from the remaining signature.
"""
from __future__ import annotations

import io
import logging
import random
import tempfile
import time
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path

import gradio as gr
import numpy as np
import soundfile as sf
import torch

from musicgen_core import audio_write, convert_audio, plots
from musicgen_core.conditioning.chroma import ChromaExtractor
from musicgen_core.conditioning.tempo import parse_bpm
from musicgen_core.validation import (MAX_SEED, InputError, check_continuation, check_duration, check_prompt,
                                      check_sampling, check_seed, read_audio)
from musicgen_core.weights import CheckpointError

from .melody import notes_of
from .models import ModelCache

try:  # on a ZeroGPU Space a GPU is attached for each generation; elsewhere the decorator does nothing
    import spaces
    on_gpu = spaces.GPU(duration=120)
except ImportError:
    def on_gpu(fn):
        return fn

logger = logging.getLogger(__name__)

FOLLOW, CONTINUE = "follow this melody", "continue this audio"
CHROMA_RATE = 32000  # MusicGen melody models' chromagram: 32 kHz audio, hop 4096 samples
CHROMA_FPS = CHROMA_RATE / 4096
CHUNK_SECONDS = 1.0  # streamed chunk length; also how soon Cancel takes effect
MAX_TAKES = 4
HISTORY_SIZE = 12  # takes kept per browser session ...
HISTORY_SECONDS = 300  # ... and at most this much audio (int16: ~19 MB mono), so long pieces cannot fill the memory
LUFS = -14  # audiocraft's loudness strategy: loudness_headroom_db=14
# What `generate` fills, in the order of its outputs (the history State is not part of the API).
OUTPUTS = ("files", "token_grid", "chroma_cmp", "seed_used", "stats", "player", "spectrogram",
           *(f"take_{i}" for i in range(MAX_TAKES)), "history", "history_picker")
FORM = ("prompt", "melody", "duration", "seed", "top_k", "top_p", "temperature", "cfg_coef", "mode", "model", "takes",
        "loudness")  # what a history entry loads back into the form, in `generate`'s argument order


def outputs(**values) -> tuple:
    """`generate`'s outputs with `values` set and the others left as they are."""
    unknown = set(values) - set(OUTPUTS)
    assert not unknown, unknown
    return tuple(values.get(name, gr.skip()) for name in OUTPUTS)


@lru_cache(maxsize=2)
def _extractor(sample_rate: int) -> ChromaExtractor:
    return ChromaExtractor(sample_rate=sample_rate)


def chroma_of(wav: torch.Tensor, sample_rate: int) -> np.ndarray:
    """The argmax one-hot chromagram [F, 12] a melody model follows, of wav [C, T] at any rate."""
    mono = convert_audio(wav.float().cpu(), sample_rate, CHROMA_RATE, 1)
    with torch.no_grad():
        return _extractor(CHROMA_RATE)(mono)[0].numpy()


def wav_bytes(wav: torch.Tensor, sample_rate: int) -> bytes:
    """wav [C, T] -> 16-bit WAV file bytes (a streamed chunk, played as is: no per-chunk normalisation)."""
    buffer = io.BytesIO()
    sf.write(buffer, wav.clamp(-1, 1).T.numpy(), sample_rate, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


@contextmanager
def user_errors(action: str):
    """Show every failure as a gr.Error with a specific message (never Gradio's generic one)."""
    try:
        yield
    except gr.Error:
        raise
    except InputError as e:
        raise gr.Error(str(e), title="Please check the input", print_exception=False) from None
    except CheckpointError as e:  # includes hub.HubError: not downloadable, too large, offline, ...
        raise gr.Error(str(e), title="This model cannot be loaded", print_exception=False) from None
    except Exception as e:
        logger.exception("%s failed", action)
        raise gr.Error(f"{action} failed: {type(e).__name__}: {e}") from None


def check_takes(takes) -> int:
    if takes is None or isinstance(takes, bool) or not float(takes).is_integer() or not 1 <= takes <= MAX_TAKES:
        raise InputError(f"Takes must be a whole number from 1 to {MAX_TAKES}, got {takes!r}.")
    return int(takes)


def stream_inputs(lm, name: str, melody: tuple[torch.Tensor, int] | None, mode: str, duration: float,
                  takes: int) -> dict:
    """`MusicGen.stream` keyword arguments for a melody to follow or audio to continue, once per take."""
    if melody is None:
        return {}
    wav, sr = melody
    if mode == FOLLOW:
        if lm.chroma is None:
            raise InputError(f"The model {name!r} cannot follow a melody (it has no chroma conditioning): pick a "
                             f"melody model, or choose {CONTINUE!r}.")
        return {"melody_wavs": [wav] * takes, "melody_sample_rate": sr}
    check_continuation(wav.shape[-1] / sr, duration, lm.max_duration)
    return {"prompt": wav[None].repeat(takes, 1, 1), "prompt_sample_rate": sr}


def figures(lm, wav: torch.Tensor, codes: torch.Tensor, melody: tuple[torch.Tensor, int] | None) -> tuple:
    """Of one take, wav [C, T] with codes [K, F]: the token grid (laid out by the model's pattern), the spectrogram
    and, for a followed melody, the melody-vs-output chroma comparison (else a hidden, empty image)."""
    special = lm.config.lm.special_token
    seq, _ = lm.pattern.build(codes[None], special)
    grid = plots.to_image(plots.token_grid(seq[0].cpu().numpy(), special, lm.frame_rate, card=lm.config.lm.card))
    spectrogram = plots.to_image(plots.spectrogram(wav.numpy(), lm.sample_rate))
    if melody is None:
        return grid, spectrogram, gr.update(value=None, visible=False)
    figure = plots.chroma_comparison(chroma_of(*melody), chroma_of(wav, lm.sample_rate), CHROMA_FPS)
    return grid, spectrogram, gr.update(value=plots.to_image(figure), visible=True)


def _progress_callback(progress: gr.Progress):
    """Adapt the library's (done, total) step callback to the progress bar, about every 1% of the steps."""
    def report(done: int, total: int) -> None:
        if done == total or done % max(1, total // 100) == 0:
            progress((done, total), desc="Generating", unit="steps")
    return report


def show_melody(path: str | None):
    """The melody's chromagram with the notes heard over it, or nothing without a melody."""
    if not path:
        return gr.update(value=None, visible=False)
    with user_errors("Reading the melody"):
        wav, sr, warnings = read_audio(path)
        for note in warnings:
            gr.Warning(note)
        notes = notes_of(wav, sr)
        names = " ".join(plots.note_name(midi) for _, _, midi in notes[:12]) + " ..." * (len(notes) > 12)
        title = f"Notes heard (bars): {names or 'none'}; shading: the pitch class the model follows"
        return gr.update(value=plots.to_image(plots.chromagram(chroma_of(wav, sr), CHROMA_FPS, title, notes)),
                         visible=True)


def load_model(cache: ModelCache, model: str, progress=gr.Progress(track_tqdm=True)) -> str:
    """Load (and download, with a progress bar) the model picked; its description and licence."""
    with user_errors("Loading the model"):
        progress(0, desc=f"Loading {model}")
        lm = cache.get(model)
        entry = cache.entry(model)
        note = (" The official weights are licensed **CC-BY-NC 4.0**: non-commercial use only."
                if entry.official else "")
        return (f"**{cache.describe(model)}**. Loaded: {lm.audio_channels} channel(s), "
                f"{'follows melodies' if lm.chroma is not None else 'text and continuation only'}, up to "
                f"{lm.max_duration:g} s per window.{note}")


def cancelled() -> str:
    return "Cancelled."


def history_entry(form: list, wav_path: str, label: str) -> dict:
    data, sr = sf.read(wav_path, dtype="int16", always_2d=True)  # [T, C], half the memory of float
    return {"label": label, "audio": (sr, data), "form": form}


def keep_recent(history: list[dict]) -> list[dict]:
    """The newest entries, at most HISTORY_SIZE of them and HISTORY_SECONDS of audio (the newest always stays)."""
    kept, seconds = [], 0.0
    for entry in history[:HISTORY_SIZE]:
        sr, data = entry["audio"]
        seconds += len(data) / sr
        if kept and seconds > HISTORY_SECONDS:
            break
        kept.append(entry)
    return kept


def replay(history: list[dict], index: int | None):
    """Play a take of the history (with its download), and say how it was made."""
    if not history or index is None or not 0 <= index < len(history):
        return gr.update(value=None), ""
    entry = history[index]
    form = dict(zip(FORM, entry["form"]))
    settings = [f"{k} {form[k]}" for k in FORM if k not in ("prompt", "melody", "mode", "loudness")]
    if form["melody"] is not None:
        settings.append(f"melody: {form['mode']}")
    settings.append(f"loudness {f'{LUFS} LUFS' if form['loudness'] else 'as generated'}")
    return entry["audio"], f"{entry['label']}. {', '.join(settings)}."


def restore(history: list[dict], index: int | None):
    """The form as it was for a take of the history."""
    if not history or index is None or not 0 <= index < len(history):
        raise gr.Error("Pick a generation in the history first.", print_exception=False)
    return tuple(history[index]["form"])


@on_gpu
def generate(cache: ModelCache, streaming: bool, prompt: str, melody: str | None = None, duration: float = 10.0,
             seed: str | None = None, top_k: float = 250, top_p: float = 0.0, temperature: float = 1.0,
             cfg_coef: float = 3.0, mode: str = FOLLOW, model: str | None = None, takes: float = 1,
             loudness: bool = True, history: list[dict] | None = None, progress=gr.Progress(track_tqdm=True)):
    """Generate `takes` variations of one request in one batch, streaming the first; yields `outputs(...)`."""
    with user_errors("Generation"):
        model = model or cache.names[0]
        audio, warnings = None, []
        if melody:
            wav, sr, warnings = read_audio(melody)
            audio = (wav, sr)
        text = check_prompt(prompt, required=audio is None)
        seconds, seed, takes = check_duration(duration), check_seed(seed), check_takes(takes)
        sampling = check_sampling(top_k, top_p, temperature, cfg_coef)
        if not isinstance(loudness, bool):
            raise InputError(f"Loudness normalisation must be true or false, got {loudness!r}.")
        progress(0, desc=f"Loading {model}")
        lm = cache.get(model)
        inputs = stream_inputs(lm, model, audio, mode, seconds, takes)
        for note in warnings:
            gr.Warning(note)
        seed = random.randrange(MAX_SEED + 1) if seed is None else seed
        seeds = [(seed + i) % (MAX_SEED + 1) for i in range(takes)]  # take i is what its seed gives alone
        sr, chunks, tokens, start, first = lm.sample_rate, [], [], time.perf_counter(), None
        stream = lm.stream([text] * takes, seed=seeds, chunk_duration=CHUNK_SECONDS, return_tokens=True,
                           progress=_progress_callback(progress), duration=seconds, **sampling, **inputs)
        try:  # one yield per chunk: a Cancel closes this generator there, which closes the stream
            for chunk, codes in stream:
                chunks.append(chunk.float().cpu())
                tokens.append(codes.cpu())
                first = first or time.perf_counter() - start
                done = sum(c.shape[-1] for c in chunks) / sr
                yield outputs(player=wav_bytes(chunks[-1][0], sr) if streaming else gr.skip(),
                              stats=f"Generating... {done:.1f} s of {seconds:g} s")
        finally:
            stream.close()
        elapsed, wavs, codes = time.perf_counter() - start, torch.cat(chunks, dim=-1), torch.cat(tokens, dim=-1)

        progress(1.0, desc="Drawing")
        seconds = wavs.shape[-1] / sr
        summary = (f"**{seconds:.1f} s** of audio{f' x {takes} takes' * (takes > 1)} in {elapsed:.1f} s: "
                   f"**{seconds / elapsed:.2f}x real time**, first audio after {first:.1f} s. "
                   f"Seed{'s' * (takes > 1)} **{', '.join(map(str, seeds))}**, "
                   f"model {model}{', loudness -14 LUFS' * loudness}.")
        if lm.lm.cfg.tempo and (bpm := parse_bpm(text)):  # models with a beat grid read the number
            summary += f" Tempo **{bpm:g} BPM**, read from the prompt."
        forms = [[prompt, melody, duration, str(s), top_k, top_p, temperature, cfg_coef, mode, model, 1, loudness]
                 for s in seeds]  # each take loads back as itself: its own seed, one take
        with tempfile.TemporaryDirectory(prefix="musicgen-demo-") as tmp:  # Gradio copies them to its cache
            paths = [str(audio_write(Path(tmp) / f"musicgen_{seeds[i]}_take{i + 1}", wav, sr,
                                     strategy="loudness" if loudness else "clip", peak_clip_headroom_db=0,
                                     loudness_headroom_db=-LUFS, loudness_compressor=True, log_clipping=False))
                     for i, wav in enumerate(wavs)]
            stamp = time.strftime("%H:%M:%S")
            new = [history_entry(forms[i], path, f"{stamp} {(text or 'melody only')[:40]!r}, take {i + 1}/{takes}, "
                                                 f"seed {seeds[i]}, {model}") for i, path in enumerate(paths)]
            history = keep_recent(new + list(history or []))
            grid, spectrogram, comparison = figures(lm, torch.from_numpy(_read(paths[0])), codes[0],
                                                    audio if "melody_wavs" in inputs else None)
            slots = {f"take_{i}": gr.update(value=paths[i], visible=True,
                                            label=f"Take {i + 1} of {takes} (seed {seeds[i]})")
                     if takes > 1 and i < takes else gr.update(value=None, visible=False) for i in range(MAX_TAKES)}
            yield outputs(files=paths, token_grid=grid, chroma_cmp=comparison, seed_used=seed, stats=summary,
                          player=gr.skip() if streaming else paths[0], spectrogram=spectrogram, history=history,
                          history_picker=gr.update(choices=[(e["label"], i) for i, e in enumerate(history)], value=0),
                          **slots)


def _read(path: str) -> np.ndarray:
    data, _ = sf.read(path, dtype="float32", always_2d=True)
    return data.T
