"""The audio tokenizer (EnCodec-style codec)."""
from .encodec import Codec, CodecOutput, from_audiocraft_state_dict, from_hf_state_dict

__all__ = ["Codec", "CodecOutput", "from_audiocraft_state_dict", "from_hf_state_dict"]
