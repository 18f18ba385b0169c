"""Shared fixtures: tiny random models built with transformers' own classes and saved to disk (no download)."""
from __future__ import annotations

import pytest
import torch

from musicgen_core.conditioning.text import minilm_folder


def tiny_hf_musicgen(melody: bool, seed: int = 0, stereo: bool = False):
    """A tiny MusicgenForConditionalGeneration / MusicgenMelodyForConditionalGeneration with random weights (stereo:
    8 codebooks interleaving left and right, as facebook/musicgen-stereo-*).

    The T5 text encoder uses the BERT vocabulary (30522) of the installed all-MiniLM-L6-v2 tokenizer.
    """
    from transformers import EncodecConfig, T5Config

    torch.manual_seed(seed)
    text = T5Config(vocab_size=30522, d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4, pad_token_id=0)
    audio = EncodecConfig(sampling_rate=32000, upsampling_ratios=[8, 5, 4, 4], target_bandwidths=[2.2], num_filters=4,
                          hidden_size=16, codebook_size=2048, use_causal_conv=False, normalize=False,
                          use_conv_shortcut=False)
    dec_kw = dict(vocab_size=2048, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, ffn_dim=256,
                  num_codebooks=8 if stereo else 4, audio_channels=2 if stereo else 1, pad_token_id=2048,
                  bos_token_id=2048, decoder_start_token_id=2048)
    if melody:
        from transformers import (MusicgenMelodyConfig, MusicgenMelodyDecoderConfig,
                                  MusicgenMelodyForConditionalGeneration as Model)
        cfg = MusicgenMelodyConfig(text_encoder=text, audio_encoder=audio,
                                   decoder=MusicgenMelodyDecoderConfig(**dec_kw))
    else:
        from transformers import MusicgenConfig, MusicgenDecoderConfig, MusicgenForConditionalGeneration as Model
        cfg = MusicgenConfig(text_encoder=text, audio_encoder=audio, decoder=MusicgenDecoderConfig(**dec_kw))
    model = Model(cfg).eval()
    with torch.no_grad():  # transformers zero-initialises codebooks: give decode something to reproduce
        for layer in model.audio_encoder.quantizer.layers:
            layer.codebook.embed.normal_()
    return model


@pytest.fixture(scope="session")
def bert_tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(minilm_folder()))


def _save(model, tokenizer, folder):
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def hf_musicgen_dir(tmp_path_factory, bert_tokenizer):
    model = tiny_hf_musicgen(melody=False)
    return model, _save(model, bert_tokenizer, tmp_path_factory.mktemp("hf_musicgen"))


@pytest.fixture(scope="session")
def hf_melody_dir(tmp_path_factory, bert_tokenizer):
    model = tiny_hf_musicgen(melody=True, seed=1)
    return model, _save(model, bert_tokenizer, tmp_path_factory.mktemp("hf_melody"))


@pytest.fixture(scope="session")
def hf_stereo_dir(tmp_path_factory, bert_tokenizer):
    model = tiny_hf_musicgen(melody=False, seed=2, stereo=True)
    return model, _save(model, bert_tokenizer, tmp_path_factory.mktemp("hf_stereo"))


@pytest.fixture(scope="session")
def hf_stereo_melody_dir(tmp_path_factory, bert_tokenizer):
    model = tiny_hf_musicgen(melody=True, seed=3, stereo=True)
    return model, _save(model, bert_tokenizer, tmp_path_factory.mktemp("hf_stereo_melody"))
