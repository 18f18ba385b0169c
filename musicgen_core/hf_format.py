"""transformers' MusicGen / MusicGen-Melody checkpoint format: config.json, (sharded) safetensors or
pytorch_model.bin, tokenizer files; and text encoders saved with save_pretrained. The key mapping onto our modules
lives here and nowhere else."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import torch
from transformers import AutoModel, AutoTokenizer, T5Config, T5EncoderModel

from .codec import Codec
from .conditioning.text import TextEncoder, minilm_folder
from .configs import CodecConfig, LMConfig, MusicGenConfig, TextConfig
from .lm.model import MusicLM
from .weights import (CheckpointError, build_codec, build_lm, load_state_dict_strict, read_weights, rename_keys,
                      stack_keys, take_prefix)


def read_hf_weights(folder: Path) -> dict[str, torch.Tensor]:
    """model.safetensors, sharded safetensors (with index), or pytorch_model.bin."""
    for index_name in ("model.safetensors.index.json", "pytorch_model.bin.index.json"):
        if (folder / index_name).is_file():
            shards = sorted(set(json.loads((folder / index_name).read_text())["weight_map"].values()))
            return {k: v for shard in shards for k, v in read_weights(folder / shard).items()}
    for name in ("model.safetensors", "pytorch_model.bin"):
        if (folder / name).is_file():
            return read_weights(folder / name)
    raise CheckpointError(f"no model.safetensors or pytorch_model.bin in {folder}")


_HF_LM_RENAMES = (
    (r"^model\.decoder\.layer_norm\.", "out_norm."),
    (r"^model\.decoder\.layers\.", "layers."),
    (r"\.self_attn_layer_norm\.", ".norm1."),
    (r"\.encoder_attn_layer_norm\.", ".norm_cross."),
    (r"\.final_layer_norm\.", ".norm2."),
    (r"\.encoder_attn\.", ".cross_attn."),
    (r"\.fc1\.", ".linear1."),
    (r"\.fc2\.", ".linear2."),
)
HF_CODEC_RENAMES = (
    (r"\.codebook\.", "."),
    (r"\.weight_g$", ".parametrizations.weight.original0"),
    (r"\.weight_v$", ".parametrizations.weight.original1"),
)


def hf_codec_config(audio: dict) -> CodecConfig:
    """CodecConfig from a transformers `EncodecConfig` dict."""
    ratios = tuple(audio.get("upsampling_ratios", (8, 5, 4, 4)))
    sr = audio.get("sampling_rate", 24000)
    card = audio.get("codebook_size", 1024)
    cfg = CodecConfig(
        sample_rate=sr, channels=audio.get("audio_channels", 1), dimension=audio.get("hidden_size", 128),
        n_filters=audio.get("num_filters", 32), ratios=ratios, n_residual_layers=audio.get("num_residual_layers", 1),
        kernel_size=audio.get("kernel_size", 7), last_kernel_size=audio.get("last_kernel_size", 7),
        residual_kernel_size=audio.get("residual_kernel_size", 3), dilation_base=audio.get("dilation_growth_rate", 2),
        compress=audio.get("compress", 2), lstm_layers=audio.get("num_lstm_layers", 2),
        causal=audio.get("use_causal_conv", True), pad_mode=audio.get("pad_mode", "reflect"),
        true_skip=not audio.get("use_conv_shortcut", True), card=card)
    bits_per_step = cfg.frame_rate * (card.bit_length() - 1)  # n_q codebooks at the largest bandwidth
    return dataclasses.replace(cfg, n_q=int(1000 * max(audio.get("target_bandwidths", [2.2])) // bits_per_step))


def hf_config(cfg: dict) -> MusicGenConfig:
    """MusicGenConfig from a transformers `config.json` (model_type musicgen or musicgen_melody)."""
    dec, text = cfg["decoder"], cfg["text_encoder"]
    channels = dec.get("audio_channels", 1)
    if channels not in (1, 2):
        raise CheckpointError(f"decoder.audio_channels is {channels}: only mono (1) and stereo (2) exist")
    codec = hf_codec_config(cfg["audio_encoder"])
    melody = cfg["model_type"] == "musicgen_melody"
    text_dim = text.get("d_model", text.get("hidden_size"))
    lm = LMConfig(
        dim=dec["hidden_size"], num_heads=dec["num_attention_heads"], num_layers=dec["num_hidden_layers"],
        ffn_dim=dec["ffn_dim"], n_q=dec["num_codebooks"], card=dec["vocab_size"], cond_dim=text_dim,
        cross_attention=not melody, chroma=melody, n_chroma=cfg.get("num_chroma", 12),
        chroma_length=cfg.get("chroma_length", 235), mask_text_padding=True,
        pattern_kwargs=_stereo_delays(dec["num_codebooks"]) if channels == 2 else ())
    return MusicGenConfig(codec=codec, lm=lm, text=TextConfig("t5", text.get("_name_or_path", "t5"), text_dim),
                          audio_channels=channels)


def _stereo_delays(n_q: int) -> tuple:
    """Stereo codebooks interleave the channels (L0, R0, L1, R1, ...); pair k is delayed k steps."""
    return (("delays", tuple(k // 2 for k in range(n_q))),)


def hf_codec_state_dict(sd: dict) -> dict:
    """transformers `EncodecModel` keys (without the `audio_encoder.` prefix) -> Codec keys."""
    return rename_keys(sd, HF_CODEC_RENAMES)


def hf_lm_state_dict(sd: dict, cfg: LMConfig) -> dict:
    """`decoder.*` + projections of a transformers MusicGen(-Melody) state dict -> MusicLM keys."""
    dec = take_prefix(sd, "decoder.")
    out = {"emb": stack_keys(dec, "model.decoder.embed_tokens.{}.weight", cfg.n_q),
           "heads": stack_keys(dec, "lm_heads.{}.weight", cfg.n_q)}
    for i in range(cfg.num_layers):
        for attn, fused in (("self_attn", ("q", "k", "v")), ("encoder_attn", ("k", "v"))):
            names = [f"model.decoder.layers.{i}.{attn}.{p}_proj.weight" for p in fused]
            if all(n in dec for n in names):
                target = "self_attn.in_proj" if attn == "self_attn" else "cross_attn.kv_proj"
                out[f"layers.{i}.{target}.weight"] = torch.cat([dec.pop(n) for n in names])
    out.update(rename_keys(dec, _HF_LM_RENAMES))
    for src, dst in (("enc_to_dec_proj.", "text_proj."), ("audio_enc_to_dec_proj.", "chroma_proj.")):
        out.update({dst + k: v for k, v in take_prefix(sd, src).items()})
    return out


def load_transformers(folder: Path) -> tuple[MusicGenConfig, MusicLM, Codec, TextEncoder]:
    raw = json.loads((folder / "config.json").read_text())
    cfg = hf_config(raw)
    sd = read_hf_weights(folder)
    lm = build_lm(cfg.lm, hf_lm_state_dict(sd, cfg.lm))
    codec = build_codec(cfg.codec, hf_codec_state_dict(take_prefix(sd, "audio_encoder.")), folded=False)
    t5_sd = take_prefix(sd, "text_encoder.")
    shared = t5_sd.get("shared.weight", t5_sd.get("encoder.embed_tokens.weight"))
    t5_sd.update({"shared.weight": shared, "encoder.embed_tokens.weight": shared})
    with torch.device("meta"):
        t5 = T5EncoderModel(T5Config(**{k: v for k, v in raw["text_encoder"].items() if k != "model_type"}))
    load_state_dict_strict(t5, t5_sd, "text encoder", assign=True)
    t5.tie_weights()
    return cfg, lm, codec, TextEncoder(t5, AutoTokenizer.from_pretrained(str(folder)))


def load_text_encoder(kind: str, folder: str | Path | None = None) -> TextEncoder:
    """A frozen encoder saved with save_pretrained: kind "t5" (T5EncoderModel) or "sentence" (a BERT-like AutoModel;
    the folder defaults to the installed all-MiniLM-L6-v2)."""
    if kind == "sentence":
        folder = folder or minilm_folder()
        return TextEncoder(AutoModel.from_pretrained(folder), AutoTokenizer.from_pretrained(str(folder)))
    if kind == "t5":
        return TextEncoder(T5EncoderModel.from_pretrained(folder), AutoTokenizer.from_pretrained(str(folder)))
    raise ValueError(f"unknown text encoder kind {kind!r} (expected 't5' or 'sentence')")
