"""A frame-rate decoder that predicts an STFT and inverts it (Vocos, Siuzdak 2023).

Latent [B, D, F] at the codec frame rate -> ConvNeXt blocks at that rate -> per-frame magnitude and phase of an STFT
with hop = the codec hop -> inverse STFT -> waveform [B, 1, F * hop]. Almost all the work happens at 50 Hz, which
makes it much cheaper on a CPU than SEANet's upsampling stack, at the same token interface.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..configs import CodecConfig


class ConvNeXtBlock(nn.Module):
    def __init__(self, dim: int, hidden: int, layer_scale: float):
        super().__init__()
        self.dwconv = nn.Conv1d(dim, dim, kernel_size=7, padding=3, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.pwconv1 = nn.Linear(dim, hidden)
        self.pwconv2 = nn.Linear(hidden, dim)
        self.gamma = nn.Parameter(torch.full((dim,), layer_scale))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, C, F]
        y = self.norm(self.dwconv(x).transpose(1, 2))  # [B, F, C]
        y = self.pwconv2(F.gelu(self.pwconv1(y))) * self.gamma
        return x + y.transpose(1, 2)


class ISTFTDecoder(nn.Module):
    """Latent [B, dimension, F] -> waveform [B, 1, F * hop] through a predicted STFT (n_fft = cfg.istft_n_fft)."""

    def __init__(self, cfg: CodecConfig):
        super().__init__()
        if cfg.channels != 1:
            raise ValueError("the iSTFT decoder is mono")
        dim, self.hop, self.n_fft = cfg.istft_dim, cfg.hop_length, cfg.istft_n_fft
        self.embed = nn.Conv1d(cfg.dimension, dim, kernel_size=7, padding=3)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.blocks = nn.ModuleList(ConvNeXtBlock(dim, 3 * dim, 1 / cfg.istft_layers) for _ in range(cfg.istft_layers))
        self.final_norm = nn.LayerNorm(dim, eps=1e-6)
        self.head = nn.Linear(dim, self.n_fft + 2)  # log-magnitude and phase of n_fft/2 + 1 bins

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm(self.embed(x).transpose(1, 2)).transpose(1, 2)  # [B, C, F]
        for block in self.blocks:
            x = block(x)
        log_mag, phase = self.head(self.final_norm(x.transpose(1, 2))).float().chunk(2, dim=-1)  # [B, F, bins] each
        spec = torch.polar(log_mag.exp().clamp(max=100.0), phase).transpose(1, 2)  # [B, bins, F]
        frames = spec.shape[-1]
        window = torch.hann_window(self.n_fft, device=x.device)
        wav = torch.istft(spec, self.n_fft, self.hop, window=window, center=True, length=frames * self.hop)
        return wav[:, None]

    def streaming_parts(self):
        """As `SEANetDecoder.streaming_parts`: no recurrence, so all of it is `post`; a frame's samples depend on the
        latent frames within the convs' kernels (the embedding's and each block's) and the overlapping windows."""
        convs = [self.embed] + [block.dwconv for block in self.blocks]
        reach = sum(conv.padding[0] for conv in convs) + -(-self.n_fft // (2 * self.hop)) + 1
        return nn.Identity(), None, self, (0, 0, reach)
