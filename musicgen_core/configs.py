"""Frozen dataclass configs and the name -> config table.

One config per part: `CodecConfig` (the EnCodec-style audio tokenizer), `LMConfig` (the transformer LM and its
conditioning inputs), `TextConfig` (which text encoder feeds the LM) and `MusicGenConfig` bundling them.
Sizes of the official checkpoints follow Copet et al. (2023), Table 1 / audiocraft's `model_scale` configs.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
import math


@dataclass(frozen=True)
class CodecConfig:
    """SEANet encoder/decoder + residual vector quantiser (EnCodec, Défossez et al. 2022)."""

    sample_rate: int = 32000
    channels: int = 1
    dimension: int = 128  # latent / codebook dimension
    n_filters: int = 64
    ratios: tuple[int, ...] = (8, 5, 4, 4)  # decoder order; the encoder uses them reversed
    n_residual_layers: int = 1
    kernel_size: int = 7
    last_kernel_size: int = 7
    residual_kernel_size: int = 3
    dilation_base: int = 2
    compress: int = 2
    lstm_layers: int = 2
    causal: bool = False
    pad_mode: str = "constant"  # audiocraft: "constant"; transformers' EncodecConfig: "reflect"
    true_skip: bool = True
    n_q: int = 4
    card: int = 2048  # codebook size (the codec's `cardinality`, audiocraft's `bins`)
    decoder: str = "seanet"  # "seanet" (EnCodec's) or "istft" (frame-rate ConvNeXt + inverse STFT, Vocos-style)
    istft_dim: int = 256
    istft_layers: int = 8
    istft_n_fft: int = 2560
    # Level the encoder hears: each input is scaled to this RMS (dBFS) before encoding and decoded audio is divided by
    # that gain again (EnCodec's 24 kHz model renormalises likewise). None: as given, as MusicGen's 32 kHz codec.
    input_rms_db: float | None = None

    @classmethod
    def from_dict(cls, d: dict) -> "CodecConfig":
        """From `dataclasses.asdict` output read back from JSON (lists become tuples again; `bins`, the codebook
        size's name in files written before it was `card`, is read as `card`)."""
        d = {("card" if k == "bins" else k): v for k, v in d.items()}
        return cls(**{**d, "ratios": tuple(d["ratios"])})

    @property
    def hop_length(self) -> int:
        return math.prod(self.ratios)

    @property
    def frame_rate(self) -> int:
        return math.ceil(self.sample_rate / self.hop_length)


@dataclass(frozen=True)
class LMConfig:
    """Decoder-only transformer over K parallel codebook streams (MusicGen §2.2-2.3)."""

    dim: int = 1024
    num_heads: int = 16
    num_layers: int = 24
    ffn_dim: int = 4096
    n_q: int = 4
    card: int = 2048  # codebook size; token `card` is the special token
    cond_dim: int = 768  # width of the text encoder's output, projected to `dim`
    cross_attention: bool = True  # text models: cross-attention; melody models: prepended prefix instead
    chroma: bool = False  # melody model: a chroma prefix of `chroma_length` frames precedes the text
    n_chroma: int = 12
    chroma_length: int = 235
    tempo: bool = False  # our default: a beat grid of the stated BPM is added to the audio-token embeddings
    mask_text_padding: bool = True  # transformers masks padded text keys; audiocraft does not (DESIGN §4)
    max_period: float = 10000.0
    pattern: str = "delay"
    pattern_kwargs: tuple = ()  # sorted (key, value) pairs, e.g. (("delays", (0, 1, 2, 3)),)

    @classmethod
    def from_dict(cls, d: dict) -> "LMConfig":
        """From `dataclasses.asdict` output read back from JSON (pattern_kwargs become nested tuples again). Files
        written before the frame rate had one source (the codec's) carry a `frame_rate`, which is dropped."""
        d = {k: v for k, v in d.items() if k != "frame_rate"}
        return cls(**{**d, "pattern_kwargs": tuple((k, _tuplify(v)) for k, v in d.get("pattern_kwargs", ()))})

    @property
    def head_dim(self) -> int:
        return self.dim // self.num_heads

    @property
    def special_token(self) -> int:
        return self.card


@dataclass(frozen=True)
class TextConfig:
    """Which text encoder produces the conditioning: "t5" (official) or "sentence" (our default, MiniLM)."""

    kind: str = "t5"
    name: str = "t5-base"  # informational for official checkpoints; a folder or package name for ours
    dim: int = 768


@dataclass(frozen=True)
class MusicGenConfig:
    codec: CodecConfig = field(default_factory=CodecConfig)
    lm: LMConfig = field(default_factory=LMConfig)
    text: TextConfig = field(default_factory=TextConfig)
    max_duration: float = 30.0
    audio_channels: int = 1  # 2: stereo, the LM's codebooks interleave left and right codes of the mono codec

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "MusicGenConfig":
        return cls(codec=CodecConfig.from_dict(d["codec"]), lm=LMConfig.from_dict(d["lm"]),
                   text=TextConfig(**d["text"]), max_duration=float(d["max_duration"]),
                   audio_channels=int(d.get("audio_channels", 1)))


def _tuplify(v):
    return tuple(_tuplify(x) for x in v) if isinstance(v, (list, tuple)) else v


def _lm(dim: int, heads: int, layers: int, **kw) -> LMConfig:
    return LMConfig(dim=dim, num_heads=heads, num_layers=layers, ffn_dim=4 * dim, **kw)


CONFIGS: dict[str, MusicGenConfig] = {
    "small": MusicGenConfig(lm=_lm(1024, 16, 24)),
    "medium": MusicGenConfig(lm=_lm(1536, 24, 48)),
    "large": MusicGenConfig(lm=_lm(2048, 32, 48)),
    "melody": MusicGenConfig(lm=_lm(1536, 24, 48, cross_attention=False, chroma=True)),
    "melody-large": MusicGenConfig(lm=_lm(2048, 32, 48, cross_attention=False, chroma=True)),
}


def get_config(name: str) -> MusicGenConfig:
    if name not in CONFIGS:
        raise KeyError(f"unknown config {name!r}; known: {', '.join(CONFIGS)}")
    return CONFIGS[name]
