"""What a user hears in their tune: the notes of a hummed, whistled or played melody, found by the YIN pitch
tracker, to draw over the chromagram the model follows."""
from __future__ import annotations

import librosa
import numpy as np
import torch

from musicgen_core import convert_audio

RATE, HOP = 16000, 256  # 16 ms frames
FMIN, FMAX = 65.0, 2100.0  # C2 .. C7: low hums to high whistles
MIN_NOTE_S = 0.08  # shorter runs of one pitch are glides or noise
QUIET_DB = -30.0  # frames this far below the loudest are rests


def notes_of(wav: torch.Tensor, sample_rate: int) -> list[tuple[float, float, int]]:
    """wav [C, T] at any rate -> the notes heard, (start s, end s, MIDI number), in time order."""
    mono = convert_audio(wav.float().cpu(), sample_rate, RATE, 1)[0].numpy()
    f0 = librosa.yin(mono, fmin=FMIN, fmax=FMAX, sr=RATE, frame_length=2048, hop_length=HOP)  # [N] Hz
    rms = librosa.feature.rms(y=mono, frame_length=2048, hop_length=HOP)[0][:len(f0)]
    loud = 20 * np.log10(rms / max(rms.max(), 1e-9) + 1e-9) > QUIET_DB
    midi = np.where(loud, np.round(librosa.hz_to_midi(f0)), -1).astype(int)
    midi = np.array([np.bincount(midi[max(0, i - 2):i + 3] + 1).argmax() - 1 for i in range(len(midi))])  # mode of 5
    notes, start = [], 0
    for i in range(1, len(midi) + 1):
        if i == len(midi) or midi[i] != midi[start]:
            if midi[start] >= 0 and (i - start) * HOP / RATE >= MIN_NOTE_S:
                notes.append((start * HOP / RATE, i * HOP / RATE, int(midi[start])))
            start = i
    return notes
