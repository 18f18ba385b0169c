"""The audio tokenizer (EnCodec-style codec)."""
from .encodec import Codec, CodecOutput, StereoCodec, StreamingDecoder

__all__ = ["Codec", "CodecOutput", "StereoCodec", "StreamingDecoder"]
