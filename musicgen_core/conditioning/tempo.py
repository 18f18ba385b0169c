"""Tempo conditioning: the BPM number a description states, as Fourier features of its log.

A sentence encoder hardly tells "72 BPM" from "124 BPM" apart, so models with `LMConfig.tempo` also get the number
itself: `parse_bpm` reads it from the text (the same function at training and generation time, so a description
without a number, or one whose number was dropped, is "tempo unknown" in both), `tempo_features` embeds it. The LM adds
a projection of the features to every audio-token embedding (audiocraft's "sum" fuser).
"""
from __future__ import annotations

import math
import re

import torch

BPM_RANGE = (30.0, 300.0)  # numbers outside it are not read as tempi
N_FREQS = 12  # frequencies from 1/4 to 16 cycles per octave of tempo: resolves ~2 % steps
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


def tempo_features(bpm: torch.Tensor) -> torch.Tensor:
    """bpm [B] (NaN = unknown) -> [B, 2 * N_FREQS] cos/sin of log2(bpm) at several frequencies; zeros if unknown."""
    known = ~bpm.isnan()
    octaves = torch.log2(torch.where(known, bpm, 120.0) / 120.0)  # [B]
    freqs = 2 * math.pi * torch.logspace(-2, 4, N_FREQS, base=2.0, device=bpm.device)  # [F]
    args = octaves[:, None] * freqs[None]  # [B, F]
    return torch.cat([args.cos(), args.sin()], dim=-1) * known[:, None]
