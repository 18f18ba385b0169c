"""The Gradio demo's layout: a prompt, an optional hummed, whistled or played tune and a model from the catalogue in;
streamed music out, with variations, a session history, the token grid, spectrogram and chroma plots. The callbacks
live in `demo.callbacks`."""
from __future__ import annotations

import shutil
from functools import partial
from pathlib import Path

import gradio as gr
import torch

from musicgen_core.validation import MAX_FILE_MB, SAMPLING_RANGES

from . import callbacks as cb
from .models import ModelCache

MAX_FILE_SIZE = f"{MAX_FILE_MB}mb"
EXAMPLES = Path(__file__).resolve().parent.parent / "assets" / "examples"
EXAMPLES_ROWS = [  # label, prompt, melody file (in assets/examples), mode
    ("lo-fi hip hop", "lo-fi hip hop beat with a mellow electric piano and vinyl crackle", None, cb.FOLLOW),
    ("folk with fiddle", "upbeat folk tune with fiddle, acoustic guitar and hand claps", None, cb.FOLLOW),
    ("hummed Ode to Joy, orchestral", "epic orchestral theme with brass and timpani", "ode_to_joy_hum.wav",
     cb.FOLLOW),
    ("whistled Twinkle, music box", "gentle lullaby on a music box with soft strings", "twinkle_whistle.wav",
     cb.FOLLOW),
    ("piano Frere Jacques, jazz trio", "jazz trio with upright bass and brushed drums", "frere_jacques_piano.wav",
     cb.FOLLOW),
    ("continue the piano as ragtime", "lively ragtime piano", "frere_jacques_piano.wav", cb.CONTINUE),
]
THEME = gr.themes.Soft(primary_hue="indigo", font=["ui-sans-serif", "system-ui", "sans-serif"],
                       font_mono=["ui-monospace", "monospace"])  # system fonts: the page works offline
PLOT = {"format": "png", "interactive": False, "show_label": False, "buttons": ["download", "fullscreen"]}
CSS = """
#stats { min-height: 2.5em; }
#generate-row button { min-height: 3em; }
"""


def default_concurrency() -> int:
    """Generations at once: 1 on a CPU (one already uses every core), 2 on a GPU (per-call settings make it safe)."""
    return 2 if torch.cuda.is_available() else 1


def _form(cache: ModelCache) -> dict[str, gr.components.Component]:
    """The request's inputs, named as `generate`'s arguments (`cb.FORM`)."""
    c = {"prompt": gr.Textbox(label="Prompt", lines=2, max_length=1000, elem_id="prompt",
                              placeholder="e.g. calm piano with soft strings, 80 bpm"),
         "melody": gr.Audio(sources=["microphone", "upload"], type="filepath", elem_id="melody", render=False,
                            label="Melody (optional): hum, whistle or upload",
                            waveform_options=gr.WaveformOptions(sample_rate=cb.CHROMA_RATE)),
         "mode": gr.Radio([cb.FOLLOW, cb.CONTINUE], value=cb.FOLLOW, label="Use the melody to", elem_id="mode",
                          info="following needs a melody model; trim the melody with the scissors first", render=False)}
    rows = [row for row in EXAMPLES_ROWS if row[2] is None or (EXAMPLES / row[2]).is_file()]
    gr.Examples([[p, m and str(EXAMPLES / m), md] for _, p, m, md in rows], [c["prompt"], c["melody"], c["mode"]],
                example_labels=[row[0] for row in rows], label="Examples: click one, then Generate")
    c["melody"].render()
    c["melody_view"] = gr.Image(label="Melody: notes heard and chromagram", visible=False, elem_id="melody-chroma",
                                **PLOT)
    c["mode"].render()
    c["model"] = gr.Dropdown([(cache.describe(n), n) for n in cache.names], value=cache.names[0], label="Model",
                             elem_id="model", interactive=len(cache.names) > 1)
    c["model_info"] = gr.Markdown(elem_id="model-info")
    with gr.Row():
        c["duration"] = gr.Slider(1, 120, value=10, step=1, label="Duration (s)", elem_id="duration",
                                  info="long pieces: overlapping windows")
        c["takes"] = gr.Radio(list(range(1, cb.MAX_TAKES + 1)), value=1, label="Takes", elem_id="takes",
                              info="variations in one batch")
        c["seed"] = gr.Textbox(label="Seed", placeholder="random", info="empty = random", max_lines=1,
                               elem_id="seed")
    with gr.Accordion("Advanced", open=False):
        with gr.Row():
            for name, label, info in [("top_k", "Top-k", "0 = off"), ("top_p", "Top-p", "> 0 overrides top-k"),
                                      ("temperature", "Temperature", None), ("cfg_coef", "Classifier-free guidance",
                                                                            None)]:
                c[name] = gr.Number(SAMPLING_RANGES[name][2], label=label, info=info)
        c["loudness"] = gr.Checkbox(True, label="Normalise loudness to -14 LUFS (as audiocraft)", elem_id="loudness")
    return c


def _results(streaming: bool) -> dict[str, gr.components.Component]:
    """`cb.OUTPUTS` and the history's replay controls."""
    c = {"player": gr.Audio(label="Music", streaming=streaming, autoplay=True, interactive=False, elem_id="player",
                            buttons=[] if streaming else ["download"]),
         "stats": gr.Markdown(label="Stats", elem_id="stats")}
    with gr.Row():
        for i in range(cb.MAX_TAKES):
            c[f"take_{i}"] = gr.Audio(label=f"Take {i + 1}", visible=False, interactive=False, elem_id=f"take-{i}",
                                      buttons=["download"])
    c["files"] = gr.File(label="Download (WAV)", file_count="multiple", elem_id="download")
    c["seed_used"] = gr.Number(label="Seed used", visible=False)  # for API clients; the stats line shows it
    with gr.Tab("Tokens"):
        c["token_grid"] = gr.Image(label="Codebook tokens", elem_id="token-grid", **PLOT)
    with gr.Tab("Spectrogram"):
        c["spectrogram"] = gr.Image(label="Spectrogram", elem_id="spectrogram", **PLOT)
    c["chroma_cmp"] = gr.Image(label="Melody vs generated chroma", visible=False, elem_id="chroma-comparison", **PLOT)
    with gr.Accordion("History (this session)", open=True):
        c["history"] = gr.State([], time_to_live=3600)  # a session's takes, dropped an hour after its last change
        c["history_picker"] = gr.Dropdown([], label="Earlier takes", elem_id="history", type="value")
        c["history_player"] = gr.Audio(label="Replay", interactive=False, elem_id="history-player",
                                       buttons=["download"])
        c["history_info"] = gr.Markdown(elem_id="history-info")
        c["restore"] = gr.Button("Load into the form", elem_id="restore", size="sm")
    return c


def build_demo(models: dict[str, str | None] | ModelCache, *, streaming: bool | None = None,
               concurrency: int | None = None) -> gr.Blocks:
    """The demo's Blocks, queued (at most 16 waiting). Launch with `launch`.

    models: display name -> checkpoint folder or Hub id (None = the embedded default), or a ModelCache.
    streaming: play audio while it is generated (needs ffmpeg, which Gradio uses to encode the stream); None = when
    ffmpeg is on the PATH. concurrency: generations at once (None: `default_concurrency()`).
    """
    cache = models if isinstance(models, ModelCache) else ModelCache(models)
    streaming = shutil.which("ffmpeg") is not None if streaming is None else streaming
    with gr.Blocks(title="MusicGen", analytics_enabled=False, delete_cache=(900, 3600)) as demo:
        gr.Markdown("# MusicGen\nDescribe the music, optionally hum, whistle or upload a tune, pick a model and press "
                    "**Generate**: the music plays while it is being made.")
        with gr.Row(equal_height=False):
            with gr.Column(scale=5):
                form = _form(cache)
                with gr.Row(elem_id="generate-row"):
                    generate_btn = gr.Button("Generate", variant="primary", elem_id="generate", scale=3)
                    cancel_btn = gr.Button("Cancel", variant="stop", elem_id="cancel", scale=1)
            with gr.Column(scale=6):
                out = _results(streaming)
        inputs = [form[name] for name in cb.FORM]
        form["melody"].change(cb.show_melody, form["melody"], form["melody_view"], api_name="melody_chromagram")
        load = partial(cb.load_model, cache)
        form["model"].change(load, form["model"], form["model_info"], api_name="load_model",
                             show_progress_on=[form["model_info"]])
        demo.load(load, form["model"], form["model_info"], api_visibility="private")  # the first model's card
        event = generate_btn.click(partial(cb.generate, cache, streaming), [*inputs, out["history"]],
                                   [out[name] for name in cb.OUTPUTS], api_name="generate",
                                   concurrency_limit=concurrency or default_concurrency(),
                                   show_progress_on=[out["token_grid"]])
        replay = (cb.replay, [out["history"], out["history_picker"]], [out["history_player"], out["history_info"]])
        event.then(*replay, api_visibility="private")  # the newest take, also when the picker's value stays 0
        # The message is written after the cancellation, so a chunk still in flight cannot overwrite it.
        cancel_btn.click(None, None, None, cancels=[event], queue=False, api_visibility="private").then(
            cb.cancelled, None, out["stats"], queue=False, api_visibility="private")
        out["history_picker"].input(*replay, api_visibility="private")
        out["restore"].click(cb.restore, [out["history"], out["history_picker"]], inputs, api_visibility="private")
    return demo.queue(max_size=16, default_concurrency_limit=1)


def launch(demo: gr.Blocks, host: str = "127.0.0.1", port: int | None = None, share: bool = False, **kwargs):
    """Launch with the demo's theme, CSS and upload size limit; extra keyword arguments go to `Blocks.launch`."""
    return demo.launch(server_name=host, server_port=port, share=share, theme=THEME, css=CSS,
                       max_file_size=MAX_FILE_SIZE, **kwargs)
