"""Codec training losses: multi-resolution mel and STFT reconstruction, chroma agreement, SI-SDR, and a multi-scale
STFT discriminator with hinge and feature-matching losses (EnCodec §3.4, Défossez et al. 2022)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
import torchaudio
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

from ..conditioning.chroma import ChromaExtractor


class MultiResolutionMelLoss(nn.Module):
    """Mean over scales of L1(log10 mel) + L1(mel), windows 2^7 .. 2^12 samples (hop = window / 4), with
    window / 16 mel bands (at most 80, 160 at 4096) so that no band falls between two FFT bins. The 4096-sample scale
    (7.8 Hz bins, 160 bands) resolves neighbouring semitones down to the bass register, which the chroma needs."""

    def __init__(self, sample_rate: int = 32000, windows: tuple[int, ...] = (128, 256, 512, 1024, 2048, 4096)):
        super().__init__()
        self.mels = nn.ModuleList(
            torchaudio.transforms.MelSpectrogram(sample_rate, n_fft=w, hop_length=w // 4,
                                                 n_mels=min(80 * max(1, w // 2048), w // 16), f_min=0.0, power=1.0,
                                                 center=True, normalized=False)
            for w in windows)

    def forward(self, y_hat: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        loss = 0.0
        for mel in self.mels:
            a, b = mel(y_hat.float()), mel(y.float())
            loss = loss + F.l1_loss(torch.log10(a.clamp(min=1e-5)), torch.log10(b.clamp(min=1e-5))) + F.l1_loss(a, b)
        return loss / len(self.mels)


class MultiResolutionSTFTLoss(nn.Module):
    """Spectral convergence + log-magnitude L1 over several FFT sizes (Yamamoto et al., Parallel WaveGAN)."""

    def __init__(self, ffts: tuple[int, ...] = (512, 1024, 2048, 4096)):
        super().__init__()
        self.ffts = ffts

    def forward(self, y_hat: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        loss = 0.0
        for n in self.ffts:
            win = torch.hann_window(n, device=y.device)
            a, b = (torch.stft(s.float().flatten(0, -2), n, n // 4, window=win, return_complex=True).abs()
                    for s in (y_hat, y))
            sc = torch.linalg.norm(b - a) / torch.linalg.norm(b).clamp(min=1e-7)
            loss = loss + sc + F.l1_loss(torch.log(a.clamp(min=1e-5)), torch.log(b.clamp(min=1e-5)))
        return loss / len(self.ffts)


class ChromaLoss(nn.Module):
    """1 - frame-wise cosine between the soft chromagrams (MusicGen's extractor, 2^14-sample windows) of the
    reconstruction and the input. The mel losses weigh every band alike and tolerate partials a few Hz off; the
    melody conditioning reads exactly this pitch-class profile, so the codec is asked to keep it."""

    def __init__(self, sample_rate: int = 32000):
        super().__init__()
        self.chroma = ChromaExtractor(sample_rate, argmax=False)

    def forward(self, y_hat: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        a, b = self.chroma(y_hat.flatten(0, -2)), self.chroma(y.flatten(0, -2))  # [B, frames, 12]
        return 1 - F.cosine_similarity(a, b, dim=-1, eps=1e-8).mean()


def si_sdr(y_hat: torch.Tensor, y: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Scale-invariant SDR in dB per item, signals [..., T]."""
    y_hat, y = y_hat - y_hat.mean(-1, keepdim=True), y - y.mean(-1, keepdim=True)
    target = (y_hat * y).sum(-1, keepdim=True) / ((y * y).sum(-1, keepdim=True) + eps) * y
    return 10 * torch.log10((target.pow(2).sum(-1) + eps) / ((y_hat - target).pow(2).sum(-1) + eps))


class STFTDiscriminator(nn.Module):
    """One scale of EnCodec's MS-STFT discriminator: complex STFT (real, imag) -> 2-D convs -> logits."""

    def __init__(self, n_fft: int, filters: int):
        super().__init__()
        self.n_fft = n_fft
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)
        c = filters
        self.convs = nn.ModuleList([
            nn.Conv2d(2, c, (3, 9), padding=(1, 4)),
            weight_norm(nn.Conv2d(c, c, (3, 9), stride=(1, 2), dilation=(1, 1), padding=(1, 4))),
            weight_norm(nn.Conv2d(c, c, (3, 9), stride=(1, 2), dilation=(2, 1), padding=(2, 4))),
            weight_norm(nn.Conv2d(c, c, (3, 9), stride=(1, 2), dilation=(4, 1), padding=(4, 4))),
            weight_norm(nn.Conv2d(c, c, (3, 3), padding=(1, 1))),
        ])
        self.post = weight_norm(nn.Conv2d(c, 1, (3, 3), padding=(1, 1)))

    def forward(self, wav: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        spec = torch.stft(wav.float().flatten(0, -2), self.n_fft, self.n_fft // 4, window=self.window,
                          normalized=True, center=False, return_complex=True)  # [B, F, T]
        x = torch.stack([spec.real, spec.imag], dim=1).transpose(2, 3).to(wav.dtype)  # [B, 2, T, F]
        features = []
        for conv in self.convs:
            x = F.leaky_relu(conv(x), 0.2)
            features.append(x)
        return self.post(x), features


class MultiScaleSTFTDiscriminator(nn.Module):
    def __init__(self, ffts: tuple[int, ...] = (1024, 2048, 512, 256, 128), filters: int = 32):
        super().__init__()
        self.discriminators = nn.ModuleList(STFTDiscriminator(n, filters) for n in ffts)

    def forward(self, wav: torch.Tensor) -> list[tuple[torch.Tensor, list[torch.Tensor]]]:
        return [d(wav) for d in self.discriminators]


def discriminator_loss(real: list, fake: list) -> torch.Tensor:
    """Hinge loss: mean over scales of relu(1 - D(y)) + relu(1 + D(y_hat))."""
    return sum(F.relu(1 - r).mean() + F.relu(1 + f).mean() for (r, _), (f, _) in zip(real, fake)) / len(real)


def generator_losses(real: list, fake: list) -> tuple[torch.Tensor, torch.Tensor]:
    """(adversarial hinge loss relu(1 - D(y_hat)), L1 feature matching normalised by the real features' magnitude).
    The real features are treated as constants."""
    adv = sum(F.relu(1 - f).mean() for f, _ in fake) / len(fake)
    feat = 0.0
    for (_, real_feats), (_, fake_feats) in zip(real, fake):
        feat = feat + sum(F.l1_loss(b, a.detach()) / (a.detach().abs().mean() + 1e-6)
                          for a, b in zip(real_feats, fake_feats)) / len(real_feats)
    return adv, feat / len(fake)
