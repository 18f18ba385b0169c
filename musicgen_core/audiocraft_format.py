"""audiocraft's MusicGen checkpoint format: state_dict.bin + compression_state_dict.bin (each with its `xp.cfg`
YAML), T5 saved beside them in text_encoder/. The key mapping onto our modules lives here and nowhere else."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import yaml
from transformers import EncodecModel

from .codec import Codec
from .conditioning.text import TextEncoder
from .configs import CodecConfig, LMConfig, MusicGenConfig, TextConfig
from .hf_format import HF_CODEC_RENAMES, hf_codec_config, hf_codec_state_dict, load_text_encoder
from .lm.model import MusicLM
from .weights import CheckpointError, build_codec, build_lm, read_weights, rename_keys, stack_keys


_AC_LM_RENAMES = (
    (r"^transformer\.layers\.", "layers."),
    (r"\.self_attn\.in_proj_weight$", ".self_attn.in_proj.weight"),
    (r"\.cross_attention\.", ".cross_attn."),
    (r"^condition_provider\.conditioners\.description\.output_proj\.", "text_proj."),
    (r"^condition_provider\.conditioners\.self_wav\.output_proj\.", "chroma_proj."),
)
_AC_CODEC_RENAMES = (
    (r"^(encoder|decoder)\.model\.", r"\1.layers."),
    (r"\.(conv\.conv|convtr\.convtr)\.", ".conv."),
    (r"^quantizer\.vq\.layers\.(\d+)\._codebook\.", r"quantizer.layers.\1."),
) + HF_CODEC_RENAMES


def audiocraft_codec_state_dict(sd: dict) -> dict:
    """audiocraft `CompressionModel` keys (compression_state_dict.bin's "best_state") -> Codec keys."""
    return rename_keys(sd, _AC_CODEC_RENAMES)


def audiocraft_config(xp: dict, codec_xp: dict | None, lm_sd: dict) -> MusicGenConfig:
    """MusicGenConfig from the `xp.cfg` YAML stored in audiocraft's state_dict.bin / compression_state_dict.bin."""
    t = xp["transformer_lm"]
    channels = xp.get("channels", 1)
    if channels not in (1, 2):
        raise CheckpointError(f"channels is {channels}: only mono (1) and stereo (2) exist")
    melody = "self_wav" in (xp.get("conditioners") or {})
    pattern = xp.get("codebooks_pattern", {}).get("modeling") or "parallel"
    kwargs = tuple(sorted((k, tuple(v) if isinstance(v, list) else v)
                          for k, v in (xp["codebooks_pattern"].get(pattern) or {}).items()))
    t5 = xp.get("conditioners", {}).get("description", {}).get("t5", {})
    proj = lm_sd.get("condition_provider.conditioners.description.output_proj.weight")
    if proj is None:
        raise CheckpointError("state_dict.bin: missing key condition_provider.conditioners.description.output_proj"
                              ".weight (the text projection)")
    t5_dim = proj.shape[1]
    duration = float(xp.get("dataset", {}).get("segment_duration", 30))
    lm = LMConfig(dim=t["dim"], num_heads=t["num_heads"], num_layers=t["num_layers"],
                  ffn_dim=int(t["dim"] * t.get("hidden_scale", 4)), n_q=t["n_q"], card=t["card"], cond_dim=t5_dim,
                  cross_attention=not melody, chroma=melody, chroma_length=1 + int(duration * 32000) // 4096,
                  mask_text_padding=False, pattern=pattern, pattern_kwargs=kwargs)
    codec = CodecConfig()
    if codec_xp is not None:
        se, rvq, enc = codec_xp["seanet"], codec_xp["rvq"], codec_xp.get("encodec", {})
        codec = CodecConfig(
            sample_rate=codec_xp["sample_rate"], channels=codec_xp.get("channels", 1), dimension=se["dimension"],
            n_filters=se["n_filters"], ratios=tuple(se["ratios"]), n_residual_layers=se["n_residual_layers"],
            kernel_size=se["kernel_size"], last_kernel_size=se["last_kernel_size"],
            residual_kernel_size=se["residual_kernel_size"], dilation_base=se["dilation_base"],
            compress=se["compress"], lstm_layers=se["lstm"], causal=enc.get("causal", False),
            pad_mode=se.get("pad_mode", "constant"), true_skip=se.get("true_skip", True), n_q=rvq["n_q"],
            card=rvq["bins"])
    return MusicGenConfig(codec=codec, lm=lm, text=TextConfig("t5", t5.get("name", "t5-base"), t5_dim),
                          max_duration=duration, audio_channels=channels)


def audiocraft_lm_state_dict(sd: dict, cfg: LMConfig) -> dict:
    sd = {k: v for k, v in sd.items() if not k.endswith("chroma.spec.window")}
    out = {"emb": stack_keys(sd, "emb.{}.weight", cfg.n_q), "heads": stack_keys(sd, "linears.{}.weight", cfg.n_q)}
    for key in [k for k in sd if k.endswith("cross_attention.in_proj_weight")]:
        w = sd.pop(key)  # [3D, D] = [Wq; Wk; Wv]
        stem = key[: -len("in_proj_weight")]
        sd[stem + "q_proj.weight"], sd[stem + "kv_proj.weight"] = w[: cfg.dim], w[cfg.dim:]
    out.update(rename_keys(sd, _AC_LM_RENAMES))
    return out


def load_audiocraft(folder: Path) -> tuple[MusicGenConfig, MusicLM, Codec, TextEncoder]:
    pkg, cpkg = read_weights(folder / "state_dict.bin"), read_weights(folder / "compression_state_dict.bin")
    if "pretrained" in cpkg:  # exported as a reference to transformers' EnCodec
        sub = folder / Path(cpkg["pretrained"]).name
        if not (sub / "config.json").is_file():
            raise CheckpointError(f"compression_state_dict.bin refers to {cpkg['pretrained']!r}: put that EnCodec "
                                  f"model (transformers format) in {sub}")
        hf = EncodecModel.from_pretrained(sub)
        cfg = audiocraft_config(yaml.safe_load(pkg["xp.cfg"]), None, pkg["best_state"])
        cfg = dataclasses.replace(cfg, codec=hf_codec_config(hf.config.to_dict()))
        codec_sd = hf_codec_state_dict(hf.state_dict())
    else:
        cfg = audiocraft_config(yaml.safe_load(pkg["xp.cfg"]), yaml.safe_load(cpkg["xp.cfg"]),
                                pkg["best_state"])
        codec_sd = audiocraft_codec_state_dict(cpkg["best_state"])
    lm = build_lm(cfg.lm, audiocraft_lm_state_dict(dict(pkg["best_state"]), cfg.lm))
    codec = build_codec(cfg.codec, codec_sd, folded=False)
    t5_dir = folder / "text_encoder"
    if not (t5_dir / "config.json").is_file():
        raise CheckpointError(f"audiocraft checkpoints do not store T5: save {cfg.text.name!r} (T5EncoderModel + its "
                              f"tokenizer, with save_pretrained) in {t5_dir}")
    return cfg, lm, codec, load_text_encoder("t5", t5_dir)
