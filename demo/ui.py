"""The Gradio demo: a prompt and an optional hummed, whistled or played tune in, streamed music out, with the
melody's chromagram and the codebook token grid beside the player.

Callbacks only validate inputs (`musicgen_core.validation`), call the library's public API (`MusicGen.stream`,
`pattern.build`) and format outputs (`demo.plots`).
"""
from __future__ import annotations

import io
import logging
import random
import shutil
import tempfile
import threading
import time
from collections import OrderedDict
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path

import gradio as gr
import numpy as np
import soundfile as sf
import torch

from musicgen_core import MusicGen, convert_audio, plots, save_audio
from musicgen_core.conditioning.chroma import ChromaExtractor
from musicgen_core.conditioning.tempo import parse_bpm
from musicgen_core.validation import (MAX_FILE_MB, MAX_SEED, SAMPLING_RANGES, InputError, check_continuation,
                                      check_duration, check_prompt, check_sampling, check_seed, read_audio)


logger = logging.getLogger(__name__)

FOLLOW, CONTINUE = "follow this melody", "continue this audio"
CHROMA_RATE = 32000  # MusicGen melody models' chromagram: 32 kHz audio, hop 4096 samples
CHROMA_FPS = CHROMA_RATE / 4096
CHUNK_SECONDS = 1.0  # streamed chunk length; also how soon Cancel takes effect
MAX_FILE_SIZE = f"{MAX_FILE_MB}mb"
EXAMPLES = Path(__file__).resolve().parent.parent / "assets" / "examples"
EXAMPLES_ROWS = [  # label, prompt, melody file (in assets/examples), mode
    ("lo-fi hip hop", "lo-fi hip hop beat with a mellow electric piano and vinyl crackle", None, FOLLOW),
    ("folk with fiddle", "upbeat folk tune with fiddle, acoustic guitar and hand claps", None, FOLLOW),
    ("hummed Ode to Joy, orchestral", "epic orchestral theme with brass and timpani", "ode_to_joy_hum.wav",
     FOLLOW),
    ("whistled Twinkle, music box", "gentle lullaby on a music box with soft strings", "twinkle_whistle.wav",
     FOLLOW),
    ("piano Frere Jacques, jazz trio", "jazz trio with upright bass and brushed drums", "frere_jacques_piano.wav",
     FOLLOW),
    ("continue the piano as ragtime", "lively ragtime piano", "frere_jacques_piano.wav", CONTINUE),
]
THEME = gr.themes.Soft(primary_hue="indigo", font=["ui-sans-serif", "system-ui", "sans-serif"],
                       font_mono=["ui-monospace", "monospace"])  # system fonts: the page works offline
PLOT = {"format": "png", "interactive": False, "show_label": False, "buttons": ["download", "fullscreen"]}
CSS = """
#stats { min-height: 2.5em; }
#download { max-height: 125px; overflow: hidden; }
#generate-row button { min-height: 3em; }
"""


class ModelCache:
    """Checkpoints by display name, loaded on first use (at `precision`, see `MusicGen.from_pretrained`); keeps the
    `max_loaded` most recently used in memory."""

    def __init__(self, models: dict[str, str | None], max_loaded: int = 1, precision: str = "fp32"):
        if not models:
            raise ValueError("no models to serve")
        self.paths, self.max_loaded, self.precision = dict(models), max_loaded, precision
        self._loaded: OrderedDict[str, MusicGen] = OrderedDict()
        self._lock = threading.Lock()

    @property
    def names(self) -> list[str]:
        return list(self.paths)

    def get(self, name: str) -> MusicGen:
        if name not in self.paths:
            raise InputError(f"Unknown model {name!r}: pick one of {', '.join(self.paths)}.")
        with self._lock:
            if name not in self._loaded:
                while len(self._loaded) >= self.max_loaded:
                    self._loaded.popitem(last=False)
                self._loaded[name] = MusicGen.from_pretrained(self.paths[name], precision=self.precision)
            self._loaded.move_to_end(name)
            return self._loaded[name]


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
    except Exception as e:
        logger.exception("%s failed", action)
        raise gr.Error(f"{action} failed: {type(e).__name__}: {e}") from None


def stream_inputs(lm: MusicGen, name: str, melody: tuple[torch.Tensor, int] | None, mode: str,
                  duration: float) -> dict:
    """`MusicGen.stream` keyword arguments for a melody to follow or audio to continue (none without audio)."""
    if melody is None:
        return {}
    wav, sr = melody
    if mode == FOLLOW:
        if lm.chroma is None:
            raise InputError(f"The model {name!r} cannot follow a melody (it has no chroma conditioning): pick a "
                             f"melody model, or choose {CONTINUE!r}.")
        return {"melody_wavs": [wav], "melody_sample_rate": sr}
    check_continuation(wav.shape[-1] / sr, duration, lm.max_duration)
    return {"prompt": wav[None], "prompt_sample_rate": sr}


def figures(lm: MusicGen, wav: torch.Tensor, codes: torch.Tensor,
            melody: tuple[torch.Tensor, int] | None) -> tuple[np.ndarray, dict]:
    """The token grid of the generated codes [K, F] (laid out by the model's pattern) and, for a followed melody, the
    melody-vs-output chroma comparison (else a hidden, empty image)."""
    special = lm.config.lm.special_token
    seq, _ = lm.pattern.build(codes[None], special)
    grid = plots.to_image(plots.token_grid(seq[0].cpu().numpy(), special, lm.frame_rate, card=lm.config.lm.card))
    if melody is None:
        return grid, gr.update(value=None, visible=False)
    figure = plots.chroma_comparison(chroma_of(*melody), chroma_of(wav, lm.sample_rate), CHROMA_FPS)
    return grid, gr.update(value=plots.to_image(figure), visible=True)


def _progress_callback(progress: gr.Progress):
    """Adapt the library's (done, total) step callback to the progress bar, about every 1% of the steps."""
    def report(done: int, total: int) -> None:
        if done == total or done % max(1, total // 100) == 0:
            progress((done, total), desc="Generating", unit="steps")
    return report


def build_demo(models: dict[str, str | None] | ModelCache, *, streaming: bool | None = None) -> gr.Blocks:
    """The demo's Blocks, queued (one generation at a time, at most 16 waiting). Launch with `launch`.

    models: display name -> checkpoint folder (None = the embedded default), or a ModelCache over them.
    streaming: play audio while it is generated (needs ffmpeg, which Gradio uses to encode the stream); None = when
    ffmpeg is on the PATH. Without it the player gets the whole piece at the end.
    """
    cache = models if isinstance(models, ModelCache) else ModelCache(models)
    streaming = shutil.which("ffmpeg") is not None if streaming is None else streaming

    with gr.Blocks(title="MusicGen", analytics_enabled=False, delete_cache=(900, 3600)) as demo:
        gr.Markdown("# MusicGen\nDescribe the music, optionally hum, whistle or upload a tune, and press "
                    "**Generate**: the music plays while it is being made.")
        with gr.Row(equal_height=False):
            with gr.Column(scale=5):
                prompt = gr.Textbox(label="Prompt", lines=2, max_length=1000, elem_id="prompt",
                                    placeholder="e.g. calm piano with soft strings, 80 bpm")
                melody = gr.Audio(sources=["microphone", "upload"], type="filepath", elem_id="melody",
                                  label="Melody (optional): hum, whistle or upload",
                                  waveform_options=gr.WaveformOptions(sample_rate=CHROMA_RATE), render=False)
                mode = gr.Radio([FOLLOW, CONTINUE], value=FOLLOW, label="Use the melody to", elem_id="mode",
                                info="following needs a melody model; trim the melody with the scissors first",
                                render=False)
                rows = [row for row in EXAMPLES_ROWS if row[2] is None or (EXAMPLES / row[2]).is_file()]
                gr.Examples([[p, m and str(EXAMPLES / m), md] for _, p, m, md in rows], [prompt, melody, mode],
                            example_labels=[row[0] for row in rows], label="Examples: click one, then Generate")
                melody.render()
                melody_chroma = gr.Image(label="Melody chromagram", visible=False, elem_id="melody-chroma",
                                         **PLOT)
                mode.render()
                with gr.Row():
                    model = gr.Dropdown(cache.names, value=cache.names[0], label="Model", elem_id="model",
                                        interactive=len(cache.names) > 1)
                    duration = gr.Slider(1, 120, value=10, step=1, label="Duration (s)", elem_id="duration",
                                         info="long pieces: overlapping windows")
                    seed = gr.Textbox(label="Seed", placeholder="random", info="empty = random", max_lines=1,
                                      elem_id="seed")
                with gr.Accordion("Advanced", open=False):
                    with gr.Row():
                        top_k = gr.Number(SAMPLING_RANGES["top_k"][2], label="Top-k", info="0 = off")
                        top_p = gr.Number(SAMPLING_RANGES["top_p"][2], label="Top-p", info="> 0 overrides top-k")
                        temperature = gr.Number(SAMPLING_RANGES["temperature"][2], label="Temperature")
                        cfg_coef = gr.Number(SAMPLING_RANGES["cfg_coef"][2], label="Classifier-free guidance")
                with gr.Row(elem_id="generate-row"):
                    generate_btn = gr.Button("Generate", variant="primary", elem_id="generate", scale=3)
                    cancel_btn = gr.Button("Cancel", variant="stop", elem_id="cancel", scale=1)
            with gr.Column(scale=6):
                player = gr.Audio(label="Music", streaming=streaming, autoplay=True, interactive=False,
                                  elem_id="player", buttons=[] if streaming else ["download"])
                stats = gr.Markdown(label="Stats", elem_id="stats")
                download = gr.File(label="Download (WAV)", elem_id="download")
                seed_used = gr.Number(label="Seed used", visible=False)  # for API clients; the stats line shows it
                token_grid = gr.Image(label="Codebook tokens", elem_id="token-grid", **PLOT)
                chroma_cmp = gr.Image(label="Melody vs generated chroma", visible=False,
                                      elem_id="chroma-comparison", **PLOT)

        def show_melody(path: str | None):
            if not path:
                return gr.update(value=None, visible=False)
            with user_errors("Reading the melody"):
                wav, sr, notes = read_audio(path)
                for note in notes:
                    gr.Warning(note)
                chroma = chroma_of(wav, sr)
                title = f"Melody chromagram ({wav.shape[-1] / sr:.1f} s): the pitch class the model follows"
                return gr.update(value=plots.to_image(plots.chromagram(chroma, CHROMA_FPS, title)),
                                 visible=True)

        def generate(prompt: str, melody: str | None = None, duration: float = 10.0, seed: str | None = None,
                     top_k: float = 250, top_p: float = 0.0, temperature: float = 1.0, cfg_coef: float = 3.0,
                     mode: str = FOLLOW, model: str = cache.names[0], progress=gr.Progress()):
            with user_errors("Generation"):
                audio, notes = None, []
                if melody:
                    wav, sr, notes = read_audio(melody)
                    audio = (wav, sr)
                text = check_prompt(prompt, required=audio is None)
                seconds, seed = check_duration(duration), check_seed(seed)
                sampling = check_sampling(top_k, top_p, temperature, cfg_coef)
                progress(0, desc=f"Loading {model}")
                lm = cache.get(model)
                inputs = stream_inputs(lm, model, audio, mode, seconds)
                for note in notes:
                    gr.Warning(note)
                seed = random.randrange(MAX_SEED + 1) if seed is None else seed
                sr, chunks, tokens, start, first = lm.sample_rate, [], [], time.perf_counter(), None
                stream = lm.stream([text], seed=seed, chunk_duration=CHUNK_SECONDS, return_tokens=True,
                                   progress=_progress_callback(progress), duration=seconds, **sampling, **inputs)
                try:  # one yield per chunk: a Cancel closes this generator there, which closes the stream
                    for chunk, codes in stream:
                        chunks.append(chunk[0].float().cpu())
                        tokens.append(codes[0].cpu())
                        first = first or time.perf_counter() - start
                        done = sum(c.shape[-1] for c in chunks) / sr
                        yield {player: wav_bytes(chunks[-1], sr) if streaming else gr.skip(),
                               stats: f"Generating... {done:.1f} s of {seconds:g} s"}
                finally:
                    stream.close()
                elapsed, wav, used_seed = time.perf_counter() - start, torch.cat(chunks, dim=-1), seed

                progress(1.0, desc="Drawing")
                grid, comparison = figures(lm, wav, torch.cat(tokens, dim=-1),
                                           audio if "melody_wavs" in inputs else None)
                seconds = wav.shape[-1] / sr
                summary = (f"**{seconds:.1f} s** of audio in {elapsed:.1f} s: **{seconds / elapsed:.2f}x real time**, "
                           f"first audio after {first:.1f} s. Seed **{used_seed}**, model {model}.")
                if lm.lm.cfg.tempo and (bpm := parse_bpm(text)):  # models with a beat grid read the number
                    summary += f" Tempo **{bpm:g} BPM**, read from the prompt."
                with tempfile.TemporaryDirectory(prefix="musicgen-demo-") as tmp:  # Gradio copies it to its cache
                    path = str(Path(tmp) / f"musicgen_{used_seed}.wav")
                    save_audio(path, wav, sr)
                    yield {download: path, token_grid: grid, chroma_cmp: comparison, seed_used: used_seed,
                           stats: summary, player: gr.skip() if streaming else path}

        melody.change(show_melody, melody, melody_chroma, api_name="melody_chromagram")
        event = generate_btn.click(
            generate, [prompt, melody, duration, seed, top_k, top_p, temperature, cfg_coef, mode, model],
            [download, token_grid, chroma_cmp, seed_used, stats, player], api_name="generate",
            show_progress_on=[token_grid])
        # The message is written after the cancellation, so a chunk still in flight cannot overwrite it.
        cancel_btn.click(None, None, None, cancels=[event], queue=False, api_visibility="private").then(
            lambda: "Cancelled.", None, stats, queue=False, api_visibility="private")
    return demo.queue(max_size=16, default_concurrency_limit=1)


def launch(demo: gr.Blocks, host: str = "127.0.0.1", port: int | None = None, share: bool = False, **kwargs):
    """Launch with the demo's theme, CSS and upload size limit; extra keyword arguments go to `Blocks.launch`."""
    return demo.launch(server_name=host, server_port=port, share=share, theme=THEME, css=CSS,
                       max_file_size=MAX_FILE_SIZE, **kwargs)
