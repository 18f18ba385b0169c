"""musicgen_core: a compact, fast re-implementation of MusicGen (Copet et al., 2023).

Public API: `MusicGen` (from_pretrained / get_pretrained / generate / generate_with_chroma / generate_continuation /
generate_unconditional / stream), `GenerationParams`, `get_pattern`, `audio_write` (audiocraft's), `load_audio`,
`convert_audio`, configs. audiocraft scripts run with `from musicgen_core import MusicGen, audio_write`.
"""
from .audio import audio_write, convert_audio, load_audio, save_audio
from .configs import CONFIGS, CodecConfig, LMConfig, MusicGenConfig, TextConfig, get_config
from .generate import GenerationParams, MusicGen
from .patterns import get_pattern

__all__ = ["MusicGen", "GenerationParams", "get_pattern", "audio_write", "load_audio", "save_audio", "convert_audio",
           "CONFIGS", "get_config", "MusicGenConfig", "CodecConfig", "LMConfig", "TextConfig"]
