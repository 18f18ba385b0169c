"""The audio tokenizer (EnCodec-style codec)."""
from .encodec import Codec, CodecOutput, StreamingDecoder

__all__ = ["Codec", "CodecOutput", "StreamingDecoder"]
