"""The demo's figures: pure functions from arrays to matplotlib figures (shapes, axes, labels, colours)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from matplotlib.colors import to_rgba

from musicgen_core import plots
from musicgen_core import get_pattern

SPECIAL, CARD = 2048, 2048


def delay_sequence(frames: int = 60, n_q: int = 4) -> np.ndarray:
    codes = torch.randint(0, CARD, (1, n_q, frames), generator=torch.Generator().manual_seed(0))
    seq, _ = get_pattern("delay", n_q).build(codes, SPECIAL)
    return seq[0].numpy()


def test_token_grid_axes_and_special_tokens():
    seq = delay_sequence()  # [4, 64]: step 0 all special, then the staircase
    fig = plots.token_grid(seq, SPECIAL, frame_rate=50, card=CARD, zoom_steps=10)
    zoom, full = fig.axes[:2]
    assert zoom.get_ylabel() == "codebook" and full.get_xlabel() == "time (s)"
    assert [t for t in full.get_yticks()] == [0, 1, 2, 3]
    assert full.get_xlim() == pytest.approx((0, 64 / 50)) and zoom.get_xlim() == pytest.approx((0, 10 / 50))
    grid = full.images[0].get_array()
    assert grid.shape == (4, 64)
    assert grid.mask[:, 0].all() and grid.mask[3, :4].all() and not grid.mask[0, 1]  # the delay staircase
    assert grid.mask.sum() == (seq == SPECIAL).sum()
    assert full.images[0].get_cmap().get_bad() == pytest.approx(to_rgba(plots.SPECIAL_COLOR))
    assert fig.axes[-1].get_ylabel() == "token id"  # the colour bar
    assert "4 codebooks x 64 steps" in fig.get_suptitle()
    assert [t.get_text() for t in full.get_legend().get_texts()] == ["special token"]


def test_token_grid_rejects_wrong_shapes():
    with pytest.raises(ValueError, match=r"\[K, S\]"):
        plots.token_grid(np.zeros((1, 4, 10), int), SPECIAL, 50)


def test_chromagram_axes():
    chroma = np.eye(12)[np.arange(40) % 12]  # one-hot, rising pitch classes
    fig = plots.chromagram(chroma, frame_rate=32000 / 4096, title="hummed")
    (ax,) = fig.axes
    assert [t.get_text() for t in ax.get_yticklabels()] == list(plots.PITCH_CLASSES)
    assert plots.PITCH_CLASSES[0] == "C" and plots.PITCH_CLASSES[-1] == "B"
    assert ax.get_xlabel() == "time (s)" and ax.get_ylabel() == "pitch class" and ax.get_title() == "hummed"
    assert ax.get_xlim() == pytest.approx((0, 40 / (32000 / 4096)))
    assert ax.images[0].get_array().shape == (12, 40)  # pitch class x time
    with pytest.raises(ValueError, match="12"):
        plots.chromagram(np.zeros((10, 7)), 7.8)


def test_chroma_comparison_loops_the_melody_and_reports_agreement():
    melody = np.eye(12)[[0, 4, 7, 4]]  # 4 frames, looped over the output
    output = np.eye(12)[[0, 4, 7, 4, 0, 4, 2, 2]]  # agrees on 6 of 8 frames
    assert plots.chroma_agreement(melody, output) == pytest.approx(0.75)
    fig = plots.chroma_comparison(melody, output, frame_rate=8.0)
    top, bottom = fig.axes
    assert "75%" in fig.get_suptitle()
    assert top.images[0].get_array().shape == bottom.images[0].get_array().shape == (12, 8)
    assert bottom.get_xlabel() == "time (s)" and top.get_xlim() == pytest.approx((0, 1.0))
    assert [t.get_text() for t in bottom.get_yticklabels()] == list(plots.PITCH_CLASSES)


def test_to_image_is_small_rgb():
    image = plots.to_image(plots.token_grid(delay_sequence(), SPECIAL, 50))
    assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
    assert image.shape[:2] == (260, 800)  # 8 x 2.6 inches at 100 dpi


def test_spectrogram_axes_span_the_audio():
    sr = 32000
    tone = np.sin(2 * np.pi * 1000 * np.arange(2 * sr) / sr)
    ax = plots.spectrogram(np.stack([tone, tone]), sr).axes[0]
    assert ax.get_xlim() == (0, 2.0) and ax.get_ylim() == (0, 16.0)
    db = ax.images[0].get_array()  # [freq, frames]: the 1 kHz bin is the loudest
    assert abs(db.mean(axis=1).argmax() * sr / 1024 - 1000) < sr / 1024
    with pytest.raises(ValueError, match="at least 1024 samples"):
        plots.spectrogram(np.zeros(100), sr)


def test_chromagram_draws_the_notes_heard():
    notes = [(0.0, 0.5, 64), (0.5, 1.0, 67)]  # E4, G4
    ax = plots.chromagram(np.eye(12)[[4] * 5 + [7] * 5], 10.0, notes=notes).axes[0]
    assert [line.get_ydata().tolist() for line in ax.lines] == [[4, 4], [7, 7]]
    assert [t.get_text() for t in ax.texts] == ["E4", "G4"]
    assert plots.note_name(60) == "C4" and plots.note_name(69) == "A4"
