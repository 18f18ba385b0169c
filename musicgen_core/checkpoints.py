"""Checkpoint loading and saving: our own format, transformers' format and audiocraft's format.

This is the one place that knows checkpoint key names. Weights are read with safetensors or
`torch.load(weights_only=True)` only: loading never unpickles arbitrary objects.

Own format (a folder): `config.json` (`{"format": "musicgen_core", "config": MusicGenConfig}`), `lm.safetensors`,
`codec.safetensors` (weight norm folded), and `text_encoder/` (a transformers encoder + tokenizer) unless the text
encoder is the installed default sentence encoder.
"""
from __future__ import annotations

import dataclasses
import json
import os
import re
import tempfile
from pathlib import Path
from typing import NamedTuple

import torch
import yaml
from safetensors.torch import save_file
from torch import nn
from transformers import AutoTokenizer, EncodecModel, T5Config, T5EncoderModel

from .codec import Codec
from .codec.seanet import remove_weight_norm
from .conditioning.text import TextEncoder, load_text_encoder
from .configs import CodecConfig, LMConfig, MusicGenConfig, TextConfig
from .lm.model import MusicLM
from .lm.transformer import block_wide_inputs
from .quantize import check_precision, set_precision
from .weights import CheckpointError, dropping_read_pages, read_weights

OWN_FORMAT = "musicgen_core"


# --- generic helpers ----------------------------------------------------------------------------------------------
def load_state_dict_strict(module: nn.Module, state_dict: dict[str, torch.Tensor], what: str,
                           assign: bool = False) -> None:
    """load_state_dict that names every missing / unexpected key and every shape mismatch. `assign` adopts the
    tensors instead of copying them (for modules built on the meta device)."""
    own = module.state_dict()
    missing = sorted(set(own) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(own))
    shapes = [f"{k}: checkpoint {tuple(state_dict[k].shape)} vs model {tuple(own[k].shape)}"
              for k in own if k in state_dict and state_dict[k].shape != own[k].shape]
    if missing or unexpected or shapes:
        parts = [f"{name} ({len(keys)}): {', '.join(keys[:12])}{' ...' if len(keys) > 12 else ''}"
                 for name, keys in (("missing keys", missing), ("unexpected keys", unexpected),
                                    ("shape mismatches", shapes)) if keys]
        raise CheckpointError(f"{what} checkpoint does not match the model: " + "; ".join(parts))
    module.load_state_dict(state_dict, strict=True, assign=assign)


def _read_hf_weights(folder: Path) -> dict[str, torch.Tensor]:
    """model.safetensors, sharded safetensors (with index), or pytorch_model.bin."""
    for index_name in ("model.safetensors.index.json", "pytorch_model.bin.index.json"):
        if (folder / index_name).is_file():
            shards = sorted(set(json.loads((folder / index_name).read_text())["weight_map"].values()))
            return {k: v for shard in shards for k, v in read_weights(folder / shard).items()}
    for name in ("model.safetensors", "pytorch_model.bin"):
        if (folder / name).is_file():
            return read_weights(folder / name)
    raise CheckpointError(f"no model.safetensors or pytorch_model.bin in {folder}")


def _sub(sd: dict, prefix: str) -> dict:
    """Take the entries under `prefix` out of sd (so their memory is freed once the model holds them)."""
    return {k[len(prefix):]: sd.pop(k) for k in [k for k in sd if k.startswith(prefix)]}


def _rename(sd: dict, renames: tuple[tuple[str, str], ...]) -> dict:
    out = {}
    for key, value in sd.items():
        for pattern, repl in renames:
            key = re.sub(pattern, repl, key)
        out[key] = value
    return out


def _stack(sd: dict, pattern: str, n: int) -> torch.Tensor:
    try:
        return torch.stack([sd.pop(pattern.format(k)) for k in range(n)])
    except KeyError as e:
        raise CheckpointError(f"missing key {e.args[0]}") from None


def _float32(state_dict: dict) -> dict:
    return {k: v.float() if v.is_floating_point() else v for k, v in state_dict.items()}


# Models are built on the meta device and adopt the checkpoint's tensors (assign): a randomly initialised copy beside
# them would raise peak memory by the model's size.
def _build_codec(cfg: CodecConfig, state_dict: dict, folded: bool) -> Codec:
    with torch.device("meta"):
        codec = Codec(cfg)
    if folded:
        codec.remove_weight_norm()
    load_state_dict_strict(codec, _float32(state_dict), "codec", assign=True)
    remove_weight_norm(codec.decoder)  # folded and laid out for inference (adopted tensors are plain)
    _fold_on_first_use(codec.encoder)  # text-to-music never reads the encoder's weights
    return codec


def _fold_on_first_use(module: nn.Module) -> None:
    def fold(module, args):
        remove_weight_norm(module)
        handle.remove()

    handle = module.register_forward_pre_hook(fold)


def _build_lm(cfg: LMConfig, state_dict: dict) -> MusicLM:
    with torch.device("meta"):
        lm = MusicLM(cfg)
    load_state_dict_strict(lm, _float32(state_dict), "LM", assign=True)
    return lm


# --- transformers format --------------------------------------------------------------------------------------
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
_HF_CODEC_RENAMES = (
    (r"\.codebook\.", "."),
    (r"\.weight_g$", ".parametrizations.weight.original0"),
    (r"\.weight_v$", ".parametrizations.weight.original1"),
)


def hf_codec_config(audio: dict) -> CodecConfig:
    """CodecConfig from a transformers `EncodecConfig` dict."""
    ratios = tuple(audio.get("upsampling_ratios", (8, 5, 4, 4)))
    sr = audio.get("sampling_rate", 24000)
    frame_rate = -(-sr // int(torch.tensor(ratios).prod()))
    bins = audio.get("codebook_size", 1024)
    n_q = int(1000 * max(audio.get("target_bandwidths", [2.2])) // (frame_rate * (bins.bit_length() - 1)))
    return CodecConfig(
        sample_rate=sr, channels=audio.get("audio_channels", 1), dimension=audio.get("hidden_size", 128),
        n_filters=audio.get("num_filters", 32), ratios=ratios, n_residual_layers=audio.get("num_residual_layers", 1),
        kernel_size=audio.get("kernel_size", 7), last_kernel_size=audio.get("last_kernel_size", 7),
        residual_kernel_size=audio.get("residual_kernel_size", 3), dilation_base=audio.get("dilation_growth_rate", 2),
        compress=audio.get("compress", 2), lstm_layers=audio.get("num_lstm_layers", 2),
        causal=audio.get("use_causal_conv", True), pad_mode=audio.get("pad_mode", "reflect"),
        true_skip=not audio.get("use_conv_shortcut", True), n_q=n_q, bins=bins)


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
    return _rename(sd, _HF_CODEC_RENAMES)


def hf_lm_state_dict(sd: dict, cfg: LMConfig) -> dict:
    """`decoder.*` + projections of a transformers MusicGen(-Melody) state dict -> MusicLM keys."""
    dec = _sub(sd, "decoder.")
    out = {"emb": _stack(dec, "model.decoder.embed_tokens.{}.weight", cfg.n_q),
           "heads": _stack(dec, "lm_heads.{}.weight", cfg.n_q)}
    for i in range(cfg.num_layers):
        for attn, fused in (("self_attn", ("q", "k", "v")), ("encoder_attn", ("k", "v"))):
            names = [f"model.decoder.layers.{i}.{attn}.{p}_proj.weight" for p in fused]
            if all(n in dec for n in names):
                target = "self_attn.in_proj" if attn == "self_attn" else "cross_attn.kv_proj"
                out[f"layers.{i}.{target}.weight"] = torch.cat([dec.pop(n) for n in names])
    out.update(_rename(dec, _HF_LM_RENAMES))
    for src, dst in (("enc_to_dec_proj.", "text_proj."), ("audio_enc_to_dec_proj.", "chroma_proj.")):
        out.update({dst + k: v for k, v in _sub(sd, src).items()})
    return out


def load_transformers(folder: Path) -> tuple[MusicGenConfig, MusicLM, Codec, TextEncoder]:
    raw = json.loads((folder / "config.json").read_text())
    cfg = hf_config(raw)
    sd = _read_hf_weights(folder)
    lm = _build_lm(cfg.lm, hf_lm_state_dict(sd, cfg.lm))
    codec = _build_codec(cfg.codec, hf_codec_state_dict(_sub(sd, "audio_encoder.")), folded=False)
    t5_sd = _sub(sd, "text_encoder.")
    shared = t5_sd.get("shared.weight", t5_sd.get("encoder.embed_tokens.weight"))
    t5_sd.update({"shared.weight": shared, "encoder.embed_tokens.weight": shared})
    with torch.device("meta"):
        t5 = T5EncoderModel(T5Config(**{k: v for k, v in raw["text_encoder"].items() if k != "model_type"}))
    load_state_dict_strict(t5, t5_sd, "text encoder", assign=True)
    t5.tie_weights()
    return cfg, lm, codec, TextEncoder(t5, AutoTokenizer.from_pretrained(str(folder)))


# --- audiocraft format --------------------------------------------------------------------------------------------
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
) + _HF_CODEC_RENAMES


def audiocraft_codec_state_dict(sd: dict) -> dict:
    """audiocraft `CompressionModel` keys (compression_state_dict.bin's "best_state") -> Codec keys."""
    return _rename(sd, _AC_CODEC_RENAMES)


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
            bins=rvq["bins"])
    return MusicGenConfig(codec=codec, lm=lm, text=TextConfig("t5", t5.get("name", "t5-base"), t5_dim),
                          max_duration=duration, audio_channels=channels)


def audiocraft_lm_state_dict(sd: dict, cfg: LMConfig) -> dict:
    sd = {k: v for k, v in sd.items() if not k.endswith("chroma.spec.window")}
    out = {"emb": _stack(sd, "emb.{}.weight", cfg.n_q), "heads": _stack(sd, "linears.{}.weight", cfg.n_q)}
    for key in [k for k in sd if k.endswith("cross_attention.in_proj_weight")]:
        w = sd.pop(key)  # [3D, D] = [Wq; Wk; Wv]
        stem = key[: -len("in_proj_weight")]
        sd[stem + "q_proj.weight"], sd[stem + "kv_proj.weight"] = w[: cfg.dim], w[cfg.dim:]
    out.update(_rename(sd, _AC_LM_RENAMES))
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
    lm = _build_lm(cfg.lm, audiocraft_lm_state_dict(dict(pkg["best_state"]), cfg.lm))
    codec = _build_codec(cfg.codec, codec_sd, folded=False)
    t5_dir = folder / "text_encoder"
    if not (t5_dir / "config.json").is_file():
        raise CheckpointError(f"audiocraft checkpoints do not store T5: save {cfg.text.name!r} (T5EncoderModel + its "
                              f"tokenizer, with save_pretrained) in {t5_dir}")
    return cfg, lm, codec, load_text_encoder("t5", t5_dir)


# --- own format -------------------------------------------------------------------------------------------------
def _own_config(folder: Path) -> MusicGenConfig:
    return MusicGenConfig.from_dict(json.loads((folder / "config.json").read_text())["config"])


def load_own_codec(folder: Path) -> Codec:
    """Only the codec of a model folder in our format (a new LM can be shipped with it)."""
    return _build_codec(_own_config(folder).codec, read_weights(folder / "codec.safetensors"), folded=True)


def load_own(folder: Path) -> tuple[MusicGenConfig, MusicLM, Codec, TextEncoder]:
    cfg = _own_config(folder)
    lm = _build_lm(cfg.lm, read_weights(folder / "lm.safetensors"))
    codec = _build_codec(cfg.codec, read_weights(folder / "codec.safetensors"), folded=True)
    text_dir = folder / "text_encoder"
    text = load_text_encoder(cfg.text.kind, text_dir if text_dir.is_dir() else None)
    return cfg, lm, codec, text


def save_model(model, folder: str | Path, dtype: torch.dtype = torch.float32) -> Path:
    """Write `model` (a MusicGen or a LoadedModel: `.config`, `.lm`, `.codec`, `.text_encoder`) in our own format,
    tensors in `dtype` (fp16 halves the files; loading converts back to float32); the codec's weight norm is folded
    first (in place, outputs unchanged). Each file is written to a temp name and renamed."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)

    def atomic(name: str, write) -> None:
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{name}.")
        os.close(fd)
        try:
            write(tmp)
            os.chmod(tmp, 0o644)  # mkstemp's 0600 would make the shipped files private
            os.replace(tmp, folder / name)
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)

    def tensors(module: nn.Module) -> dict:
        return {k: v.detach().to(dtype if v.is_floating_point() else v.dtype).contiguous().cpu()
                for k, v in module.state_dict().items()}

    atomic("lm.safetensors", lambda p: save_file(tensors(model.lm), p))
    atomic("codec.safetensors", lambda p: save_file(tensors(remove_weight_norm(model.codec)), p))
    if model.config.text.kind == "t5":
        model.text_encoder.model.save_pretrained(folder / "text_encoder")
        model.text_encoder.tokenizer.save_pretrained(folder / "text_encoder")
    meta = {"format": OWN_FORMAT, "config": model.config.to_dict()}
    atomic("config.json", lambda p: Path(p).write_text(json.dumps(meta, indent=2)))
    return folder


# --- entry point --------------------------------------------------------------------------------------------------
def detect_format(folder: Path) -> str:
    if (folder / "config.json").is_file():
        meta = json.loads((folder / "config.json").read_text())
        if meta.get("format") == OWN_FORMAT:
            return "own"
        if meta.get("model_type") in ("musicgen", "musicgen_melody"):
            return "transformers"
        raise CheckpointError(f"{folder / 'config.json'}: model_type {meta.get('model_type')!r} is not musicgen or "
                              "musicgen_melody")
    if (folder / "state_dict.bin").is_file():
        return "audiocraft"
    raise CheckpointError(f"{folder} is not a MusicGen checkpoint folder (no config.json or state_dict.bin)")


def default_model_dir() -> Path:
    """The embedded default model: package data inside the installed `musicgen_core`."""
    return Path(__file__).resolve().parent / "assets" / "default"


class LoadedModel(NamedTuple):
    """The parts of a checkpoint, in the order `MusicGen(...)` takes them."""

    lm: MusicLM
    codec: Codec
    text_encoder: TextEncoder
    config: MusicGenConfig
    name: str


def load_folder(folder: str | os.PathLike, device=None, precision: str = "fp32", name: str | None = None
                ) -> LoadedModel:
    """Load a checkpoint folder in any supported format; `precision` as in `quantize.set_precision`. Nothing is
    returned until every part has loaded, so a failure never leaves a half-built model behind."""
    check_precision(precision)
    folder = Path(folder)
    if not folder.is_dir():
        raise CheckpointError(f"no checkpoint folder at {folder}")
    loader = {"own": load_own, "transformers": load_transformers, "audiocraft": load_audiocraft}
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    with dropping_read_pages() as drop:  # peak memory: converted sources are not kept beside their conversions
        cfg, lm, codec, text = loader[detect_format(folder)](folder)
        drop()  # the sources of fused, stacked and folded tensors, before the conversions below read more
        lm, codec, text = set_precision(lm.to(device), precision, drop), codec.to(device), text.to(device)
        if precision == "fp32" and device.type == "cpu":
            block_wide_inputs(lm, drop)
    return LoadedModel(lm, codec, text, cfg, name or folder.name)


def convert(src: str | Path, dst: str | Path) -> Path:
    """Convert a transformers- or audiocraft-format checkpoint folder to our own format."""
    return save_model(load_folder(src, device="cpu"), dst)
