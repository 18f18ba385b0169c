"""The audio tokenizer: EnCodec (Défossez et al. 2022, "High Fidelity Neural Audio Compression").

SEANet encoder -> residual vector quantiser -> SEANet decoder. MusicGen's 32 kHz model: hop 640 (50 frames/s),
K = 4 codebooks of 2048 entries, no input renormalisation (`CodecConfig.input_rms_db` adds it), non-causal
convolutions.

State-dict layout (identical to transformers' `EncodecModel` minus `codebook.`):
`encoder.layers.{N}...`, `decoder.layers.{N}...` (see `seanet.py`), `quantizer.layers.{k}.{embed, embed_avg,
cluster_size, inited}`. `hf_format.py` and `audiocraft_format.py` map the official layouts onto it.
"""
from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from ..configs import CodecConfig
from .istft import ISTFTDecoder
from .quantizer import ResidualVectorQuantizer
from .seanet import SEANetDecoder, SEANetEncoder, remove_weight_norm


MAX_BOOST_DB = 30.0  # renormalisation lifts a near-silent input by at most this much (not its noise to full level)


def level_gain(wav: torch.Tensor, rms_db: float | None) -> torch.Tensor:
    """Gain [B, 1, 1] that brings each item of wav [B, C, T] to `rms_db` dBFS RMS, with at most MAX_BOOST_DB of boost
    (ones for None)."""
    if rms_db is None:
        return wav.new_ones(wav.shape[0], 1, 1)
    rms = wav.float().pow(2).mean(dim=(1, 2), keepdim=True).sqrt()  # [B, 1, 1]
    return (10 ** (rms_db / 20) / rms.clamp_min(1e-12)).clamp(max=10 ** (MAX_BOOST_DB / 20)).to(wav.dtype)


class CodecOutput(NamedTuple):
    wav: torch.Tensor  # [B, C, T] reconstruction, trimmed to the input length
    codes: torch.Tensor  # [B, K, F]
    penalty: torch.Tensor  # commitment loss (scalar)


class Codec(nn.Module):
    """EnCodec-style codec: `encode(wav [B, C, T]) -> codes [B, K, F]`, `decode(codes) -> wav [B, C, F * hop]`,
    with F = ceil(T / hop)."""

    def __init__(self, cfg: CodecConfig = CodecConfig()):
        super().__init__()
        self.cfg = cfg
        self.encoder = SEANetEncoder(cfg)
        if cfg.decoder not in ("seanet", "istft"):
            raise ValueError(f"unknown codec decoder {cfg.decoder!r} (expected 'seanet' or 'istft')")
        self.decoder = SEANetDecoder(cfg) if cfg.decoder == "seanet" else ISTFTDecoder(cfg)
        self.quantizer = ResidualVectorQuantizer(cfg.dimension, cfg.n_q, cfg.card)

    @property
    def sample_rate(self) -> int:
        return self.cfg.sample_rate

    @property
    def channels(self) -> int:
        return self.cfg.channels

    @property
    def hop_length(self) -> int:
        return self.cfg.hop_length

    @property
    def frame_rate(self) -> int:
        return self.cfg.frame_rate

    @property
    def n_q(self) -> int:
        return self.cfg.n_q

    @property
    def cardinality(self) -> int:
        return self.cfg.card

    def _check_wav(self, wav: torch.Tensor) -> None:
        if wav.dim() != 3 or wav.shape[1] != self.channels:
            raise ValueError(f"expected wav [B, {self.channels}, T], got {tuple(wav.shape)}")

    def input_gain(self, wav: torch.Tensor) -> torch.Tensor:
        """[B, 1, 1]: what `encode` multiplies wav [B, C, T] by (ones unless `cfg.input_rms_db` is set); divide the
        decoded audio by it to give it the input's level back."""
        return level_gain(wav, self.cfg.input_rms_db)

    def encode(self, wav: torch.Tensor, n_q: int | None = None) -> torch.Tensor:
        """wav [B, C, T] at `sample_rate` -> codes [B, K, ceil(T / hop)] (int64); K = n_q or all codebooks. Coded
        at `cfg.input_rms_db` when that is set (see `input_gain`)."""
        self._check_wav(wav)
        if self.cfg.input_rms_db is not None:
            wav = wav * self.input_gain(wav)
        return self.quantizer.encode(self.encoder(wav), n_q)

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """codes [B, K, F] -> wav [B, C, F * hop]. Not trimmed: slice to the wanted length yourself."""
        return self.decoder(self.quantizer.decode(codes))

    def forward(self, wav: torch.Tensor, n_q: int | None = None) -> CodecOutput:
        """Training pass: reconstruct wav [B, C, T] through the quantiser (EMA codebooks update in train mode), at the
        input's level."""
        self._check_wav(wav)
        gain = self.input_gain(wav.float())
        with torch.autocast(wav.device.type, enabled=False):  # tokens in fp32, as at inference; decoder may autocast
            quantized, codes, penalty = self.quantizer(self.encoder(wav.float() * gain), n_q)
        y = self.decoder(quantized)[..., : wav.shape[-1]]
        return CodecOutput(y / gain.to(y.dtype), codes, penalty)

    def remove_weight_norm(self) -> "Codec":
        """Fold weight norm into plain conv weights for inference (outputs unchanged). Load weights first."""
        remove_weight_norm(self)
        return self


class StereoCodec(nn.Module):
    """Stereo through a mono codec, as audiocraft's `InterleaveStereoCompressionModel` and transformers' stereo
    MusicGen: each channel is coded on its own and the codebooks interleave the channels, L0, R0, L1, R1, ...
    `encode(wav [B, 2, T]) -> codes [B, 2K, F]` (left = codes[:, 0::2], right = codes[:, 1::2]); `decode` inverts."""

    channels = 2

    def __init__(self, mono: Codec):
        super().__init__()
        self.mono = mono

    sample_rate = property(lambda self: self.mono.sample_rate)
    hop_length = property(lambda self: self.mono.hop_length)
    frame_rate = property(lambda self: self.mono.frame_rate)
    cardinality = property(lambda self: self.mono.cardinality)
    n_q = property(lambda self: 2 * self.mono.n_q)

    def input_gain(self, wav: torch.Tensor) -> torch.Tensor:
        return self.mono.input_gain(wav)  # one gain for both channels keeps their balance

    def encode(self, wav: torch.Tensor) -> torch.Tensor:
        if wav.dim() != 3 or wav.shape[1] != 2:
            raise ValueError(f"expected wav [B, 2, T], got {tuple(wav.shape)}")
        x = (wav * self.input_gain(wav)).flatten(0, 1)[:, None]  # [B * 2, 1, T], rows L, R, L, R, ...
        codes = self.mono.quantizer.encode(self.mono.encoder(x))  # [B * 2, K, F]
        B, (_, K, F) = wav.shape[0], codes.shape
        return codes.view(B, 2, K, F).transpose(1, 2).reshape(B, 2 * K, F)

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        return join_channels(self.mono.decode(split_channels(codes)))


def split_channels(codes: torch.Tensor) -> torch.Tensor:
    """Interleaved stereo codes [B, 2K, F] -> mono codes [2B, K, F], the left channels first."""
    return torch.cat([codes[:, 0::2], codes[:, 1::2]])


def join_channels(wav: torch.Tensor) -> torch.Tensor:
    """[2B, 1, T] (left channels first) -> [B, 2, T]."""
    return torch.cat(wav.chunk(2), dim=1)


class StreamingDecoder:
    """Decodes codes that arrive in order, chunk by chunk, into the waveform that decoding them whole gives (up to
    float rounding), decoding each frame about once: the convolutions get the few frames of context they read on
    either side of a chunk and the decoder's LSTM carries its state from chunk to chunk. Chunk [start, stop) can be
    decoded once the codes up to stop + `lookahead` (or the end) are known."""

    def __init__(self, codec: Codec | StereoCodec):
        self.stereo = isinstance(codec, StereoCodec)
        codec = codec.mono if self.stereo else codec
        self.quantizer, self.hop = codec.quantizer, codec.hop_length
        self.pre, self.lstm, self.post, (self.pre_left, self.pre_right, self.reach) = codec.decoder.streaming_parts()
        self.lookahead = self.pre_right + self.reach
        self.start, self.state = 0, None  # the next chunk's first frame; LSTM state at max(0, start - reach)

    @torch.no_grad()
    def __call__(self, codes: torch.Tensor, stop: int, final: bool = False) -> torch.Tensor:
        """wav [B, C, (stop - start) * hop] of frames [start, stop) of codes [B, K, n], the codes known so far (the
        whole piece with final, else n >= stop + lookahead); the next call continues at stop."""
        codes = split_channels(codes) if self.stereo else codes
        start, n = self.start, codes.shape[-1]
        if not start < stop <= n or not (final or n >= stop + self.lookahead):
            raise ValueError(f"cannot decode frames [{start}, {stop}) from {n} frames (look-ahead {self.lookahead})")
        first, end = max(0, start - self.reach), n if final else stop + self.reach  # LSTM frames `post` reads
        lo, hi = max(0, first - self.pre_left), min(n, end + self.pre_right)
        x = self.pre(self.quantizer.decode(codes[..., lo:hi]))[..., first - lo:end - lo]  # [B, D, end - first]
        if self.lstm is not None:
            carry = max(0, stop - self.reach) - first  # frames up to the next chunk's first LSTM frame
            head, state = self.lstm.run(x[..., :carry], self.state) if carry else (x[..., :0], self.state)
            tail, _ = self.lstm.run(x[..., carry:], state)
            x, self.state = torch.cat([head, tail], dim=-1), state
        self.start = stop
        wav = self.post(x)[..., (start - first) * self.hop:(stop - first) * self.hop]
        return join_channels(wav) if self.stereo else wav
