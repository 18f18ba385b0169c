"""Figures for the demo and the trainers: pure functions, numpy arrays in, matplotlib `Figure` out.

Figures are built with the object-oriented API on the Agg canvas (no pyplot, so no global figure registry to leak
and nothing shared between threads), small and at 100 dpi so a 2-vCPU host renders them in a few tens of ms.
`to_image` rasterises a figure to an RGB array.
"""
from __future__ import annotations

import os
import tempfile

os.environ.setdefault("MPLCONFIGDIR", os.path.join(tempfile.gettempdir(), "matplotlib"))  # no writes to $HOME

import numpy as np  # noqa: E402
from matplotlib import colormaps  # noqa: E402
from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402

PITCH_CLASSES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
SPECIAL_COLOR = "#ff4f8b"
DPI = 100


def _figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def token_grid(seq: np.ndarray, special: int, frame_rate: float, card: int | None = None,
               zoom_steps: int = 40) -> Figure:
    """The interleaved token sequence seq [K, S] (from `pattern.build`): codebooks x steps, colour = token id.

    Positions holding the `special` token are drawn in a distinct colour. The right panel shows the whole sequence,
    the left one its first `zoom_steps` steps, where the delay staircase is visible. x axis: seconds (step / frame
    rate); y axis: codebook.
    """
    seq = np.asarray(seq)
    if seq.ndim != 2:
        raise ValueError(f"expected a token sequence [K, S], got shape {seq.shape}")
    n_q, steps = seq.shape
    card = card or special
    cmap = colormaps["viridis"].with_extremes(bad=SPECIAL_COLOR)
    grid = np.ma.masked_equal(seq, special)
    fig = _figure(8.0, 2.6)
    zoom_ax, full_ax = fig.subplots(1, 2, width_ratios=[1, 3])
    for ax, n, title in ((zoom_ax, min(steps, zoom_steps), "start"), (full_ax, steps, "whole sequence")):
        image = ax.imshow(grid[:, :n], aspect="auto", interpolation="nearest", origin="lower", cmap=cmap,
                          vmin=0, vmax=card - 1, extent=(0, n / frame_rate, -0.5, n_q - 0.5))
        ax.set_yticks(range(n_q))
        ax.set_xlabel("time (s)")
        ax.set_title(f"{title} ({n} steps)", fontsize=9)
    zoom_ax.set_ylabel("codebook")
    fig.colorbar(image, ax=full_ax, label="token id", pad=0.01)
    full_ax.legend(handles=[Patch(color=SPECIAL_COLOR, label="special token")], loc="upper right", fontsize=7,
                   framealpha=0.9)
    fig.suptitle(f"Codebook tokens: {n_q} codebooks x {steps} steps", fontsize=10)
    return fig


def _chroma_axes(ax, chroma: np.ndarray, frame_rate: float, cmap: str = "Blues") -> None:
    ax.imshow(chroma.T, aspect="auto", interpolation="nearest", origin="lower", cmap=cmap, vmin=0, vmax=1,
              extent=(0, len(chroma) / frame_rate, -0.5, 11.5))
    ax.set_yticks(range(12), PITCH_CLASSES, fontsize=7)
    ax.set_ylabel("pitch class")


def _check_chroma(chroma: np.ndarray, name: str) -> np.ndarray:
    chroma = np.asarray(chroma, dtype=np.float32)
    if chroma.ndim != 2 or chroma.shape[1] != 12 or len(chroma) == 0:
        raise ValueError(f"expected {name} [frames, 12], got shape {chroma.shape}")
    return chroma


def note_name(midi: int) -> str:
    """MIDI note number -> scientific pitch name (60 -> C4)."""
    return f"{PITCH_CLASSES[midi % 12]}{midi // 12 - 1}"


def chromagram(chroma: np.ndarray, frame_rate: float, title: str = "Melody chromagram",
               notes: list[tuple[float, float, int]] = ()) -> Figure:
    """chroma [F, 12] (e.g. the argmax one-hot the model follows) as pitch class C..B x time in seconds, with the
    `notes` heard (start s, end s, MIDI number) drawn over it as labelled bars on their pitch class."""
    chroma = _check_chroma(chroma, "chroma")
    fig = _figure(8.0, 2.6)
    ax = fig.subplots()
    _chroma_axes(ax, chroma, frame_rate)
    for start, end, midi in notes:
        ax.plot([start, end], [midi % 12] * 2, color="#e8590c", linewidth=3, solid_capstyle="butt")
        ax.text(start, midi % 12 + 0.35, note_name(midi), fontsize=6, color="#a13d00")
    ax.set_xlabel("time (s)")
    ax.set_title(title, fontsize=10)
    return fig


def chroma_agreement(input_chroma: np.ndarray, output_chroma: np.ndarray) -> float:
    """Fraction of output frames whose strongest pitch class is the input's (the input looped to the output length,
    as the model conditions on it)."""
    reference = np.resize(input_chroma, output_chroma.shape)  # tiles along time
    return float(np.mean(reference.argmax(1) == output_chroma.argmax(1)))


def chroma_comparison(input_chroma: np.ndarray, output_chroma: np.ndarray, frame_rate: float) -> Figure:
    """Two panels sharing the time axis: the melody's chroma (looped to the output length) above the generated
    audio's; the title gives the fraction of frames whose strongest pitch class agrees."""
    input_chroma = _check_chroma(input_chroma, "input chroma")
    output_chroma = _check_chroma(output_chroma, "output chroma")
    reference = np.resize(input_chroma, output_chroma.shape)
    fig = _figure(8.0, 4.4)
    top, bottom = fig.subplots(2, 1, sharex=True)
    _chroma_axes(top, reference, frame_rate, cmap="Blues")
    _chroma_axes(bottom, output_chroma, frame_rate, cmap="Oranges")
    top.set_title("melody (input)", fontsize=9, loc="left")
    bottom.set_title("generated audio", fontsize=9, loc="left")
    bottom.set_xlabel("time (s)")
    fig.suptitle(f"Melody vs output: pitch class agrees on {chroma_agreement(input_chroma, output_chroma):.0%} "
                 "of frames", fontsize=10)
    return fig


def spectrogram(wav: np.ndarray, sample_rate: int, n_fft: int = 1024, hop: int = 320) -> Figure:
    """Log-magnitude spectrogram (dB, 80 dB range) of a mono signal wav [T] (or the mean of [C, T]), frequency in
    kHz x time in seconds."""
    wav = np.asarray(wav, dtype=np.float32)
    wav = wav.mean(axis=0) if wav.ndim == 2 else wav
    if wav.ndim != 1 or len(wav) < n_fft:
        raise ValueError(f"expected audio [T] or [C, T] of at least {n_fft} samples, got shape {wav.shape}")
    frames = np.lib.stride_tricks.sliding_window_view(wav, n_fft)[::hop] * np.hanning(n_fft)  # [N, n_fft]
    db = 20 * np.log10(np.abs(np.fft.rfft(frames, axis=-1)) + 1e-8)  # [N, n_fft / 2 + 1]
    fig = _figure(8.0, 2.6)
    ax = fig.subplots()
    image = ax.imshow(db.T, aspect="auto", origin="lower", cmap="magma", vmin=db.max() - 80, vmax=db.max(),
                      extent=(0, len(wav) / sample_rate, 0, sample_rate / 2000))
    fig.colorbar(image, ax=ax, label="dB", pad=0.01)
    ax.set_xlabel("time (s)")
    ax.set_ylabel("kHz")
    ax.set_title("Spectrogram of the result", fontsize=10)
    return fig


def to_image(fig: Figure) -> np.ndarray:
    """Rasterise a figure -> RGB uint8 array [H, W, 3]."""
    fig.canvas.draw()
    return np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()
