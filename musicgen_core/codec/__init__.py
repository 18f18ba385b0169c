"""The audio tokenizer (EnCodec-style codec)."""
from .encodec import Codec, CodecOutput

__all__ = ["Codec", "CodecOutput"]
