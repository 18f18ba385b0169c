"""Melody conditioning: chromagram with an argmax information bottleneck (MusicGen, Copet et al. 2023, §3.2).

Matches audiocraft's `ChromaExtractor` and transformers' `MusicgenMelodyFeatureExtractor`: power spectrogram
(n_fft = win = 2**14, hop 2**12, periodic Hann, centred with reflect padding, normalised by the window norm),
librosa's chroma filterbank (tuning 0), per-frame inf-norm, then one-hot of the strongest pitch class.
"""
from __future__ import annotations

import math

import librosa
import torch
import torch.nn.functional as F
import torchaudio
from torch import nn


class ChromaExtractor(nn.Module):
    """wav [B, T] or [B, 1, T] at `sample_rate` -> chroma [B, 1 + T // hop, n_chroma] (one-hot when `argmax`).

    The filterbank and the window are non-persistent buffers: they never enter a state dict.
    """

    def __init__(self, sample_rate: int = 32000, n_chroma: int = 12, radix2_exp: int = 14, argmax: bool = True):
        super().__init__()
        self.sample_rate, self.n_chroma, self.argmax = sample_rate, n_chroma, argmax
        self.n_fft = 2 ** radix2_exp
        self.hop_length = self.n_fft // 4
        fbanks = librosa.filters.chroma(sr=sample_rate, n_fft=self.n_fft, tuning=0, n_chroma=n_chroma)
        self.register_buffer("filterbank", torch.from_numpy(fbanks).float(), persistent=False)  # [n_chroma, n_fft/2+1]
        self.register_buffer("window", torch.hann_window(self.n_fft), persistent=False)  # periodic

    def num_frames(self, num_samples: int) -> int:
        """Frames produced for a wav of `num_samples` (inputs shorter than one window are padded to it)."""
        return 1 + max(num_samples, self.n_fft) // self.hop_length

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        if wav.dim() == 3:
            if wav.shape[1] != 1:
                raise ValueError(f"expected mono wav [B, 1, T], got {tuple(wav.shape)}")
            wav = wav[:, 0]
        wav = wav.float()  # computed in float32 even if the module was cast to half precision
        if wav.shape[-1] < self.n_fft:  # too short for one window: zero-pad symmetrically
            pad = self.n_fft - wav.shape[-1]
            wav = F.pad(wav, (pad // 2, pad - pad // 2))
        spec = torchaudio.functional.spectrogram(
            wav, pad=0, window=self.window.float(), n_fft=self.n_fft, hop_length=self.hop_length, win_length=self.n_fft,
            power=2.0, normalized=True, center=True, pad_mode="reflect", onesided=True)  # [B, n_fft/2+1, frames]
        chroma = torch.einsum("cf,bft->bct", self.filterbank.float(), spec)
        chroma = F.normalize(chroma, p=float("inf"), dim=-2, eps=1e-6).transpose(1, 2)  # [B, frames, n_chroma]
        if not self.argmax:
            return chroma
        return F.one_hot(chroma.argmax(-1), self.n_chroma).to(chroma.dtype)  # all-zero frames -> bin 0


def fit_chroma_length(chroma: torch.Tensor, length: int = 235) -> torch.Tensor:
    """chroma [B, F, n] -> [B, length, n]: longer ones keep their first `length` frames, shorter ones are tiled."""
    n_frames = chroma.shape[1]
    if n_frames < length:
        chroma = chroma.repeat(1, math.ceil(length / n_frames), 1)
    return chroma[:, :length]


def null_chroma(batch_size: int, length: int = 235, device: torch.device | str | None = None,
                n_chroma: int = 12) -> torch.Tensor:
    """The chroma of silence / of a missing melody: one-hot C on every frame, [B, length, n_chroma]."""
    chroma = torch.zeros(batch_size, length, n_chroma, device=device)
    chroma[..., 0] = 1
    return chroma
