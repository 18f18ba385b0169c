"""Tempo conditioning: the BPM number a description states, as a beat grid over the audio frames.

A sentence encoder hardly tells "72 BPM" from "124 BPM" apart, so models with `LMConfig.tempo` also get the number
itself: `parse_bpm` reads it from the text (the same function at training and generation time, so a description
without a number, or one whose number was dropped, is "tempo unknown" in both). `tempo_features` turns it into, per
frame, Fourier features of log-tempo plus the phase of a grid ticking at 1/4 to 4 cycles per beat, counted from a
downbeat; the LM adds a projection of them to the audio-token embedding of each step (audiocraft's "sum" fuser, time
aligned). Training clips start anywhere in a bar, so training passes each clip's offset from its downbeat (`t0`) and
the grid marks where the clip's beats really fall; generation starts on a downbeat (t0 = the window's start), and
the model plays its beats on the grid.
"""
from __future__ import annotations

import math
import re

import torch

BPM_RANGE = (30.0, 300.0)  # numbers outside it are not read as tempi
N_FREQS = 12  # frequencies from 1/4 to 16 cycles per octave of tempo: resolves ~2 % steps
BEAT_RATES = (0.25, 0.5, 1.0, 2.0, 4.0)  # grid cycles per beat: 4-beat bars, half notes, beats, 8ths, 16ths
N_FEATURES = 2 * (N_FREQS + len(BEAT_RATES))
_BPM = re.compile(r"(?<![\d.])(\d{2,3}(?:\.\d+)?)\s*bpm\b", re.IGNORECASE)


def parse_bpm(description: str | None) -> float | None:
    """The tempo a description asks for ("... at 96 BPM", "120bpm"), or None."""
    m = _BPM.search(description or "")
    bpm = float(m.group(1)) if m else None
    return bpm if bpm is not None and BPM_RANGE[0] <= bpm <= BPM_RANGE[1] else None


def bpm_tensor(descriptions, device=None) -> torch.Tensor:
    """[B] float32, NaN where a description states no tempo."""
    return torch.tensor([math.nan if (b := parse_bpm(d)) is None else b for d in descriptions],
                        dtype=torch.float32, device=device)


def tempo_features(bpm: torch.Tensor, t0: torch.Tensor, steps: torch.Tensor, frame_rate: float) -> torch.Tensor:
    """bpm [B] (NaN = unknown), t0 [B] seconds from a downbeat to step 0, sequence steps [S] -> [B, S, N_FEATURES]:
    cos/sin of log2(bpm) at several frequencies, then cos/sin of the beat grid's phase at each step; all zero where
    the tempo is unknown."""
    known = ~bpm.isnan()
    bpm = torch.where(known, bpm, 120.0)
    freqs = 2 * math.pi * torch.logspace(-2, 4, N_FREQS, base=2.0, device=bpm.device)  # [F]
    rate = torch.log2(bpm / 120.0)[:, None] * freqs  # [B, F]
    rate = torch.cat([rate.cos(), rate.sin()], dim=-1)[:, None].expand(-1, len(steps), -1)  # [B, S, 2F]
    seconds = t0.to(bpm.device)[:, None] + steps.to(bpm.device, torch.float32)[None] / frame_rate  # [B, S]
    grid = 2 * math.pi * (bpm[:, None] / 60.0 * seconds)[..., None] * torch.tensor(BEAT_RATES, device=bpm.device)
    return torch.cat([rate, grid.cos(), grid.sin()], dim=-1) * known[:, None, None]  # grid: [B, S, R] each
