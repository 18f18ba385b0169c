"""Checkpoint loading and saving: where a model comes from (the embedded default, a folder, a Hub id), which format
a folder holds, our own format, and conversion. transformers' and audiocraft's key mappings live in hf_format.py and
audiocraft_format.py. Weights are read with safetensors or `torch.load(weights_only=True)` only: loading never
unpickles arbitrary objects.

Own format (a folder): `config.json` (`{"format": "musicgen_core", "config": MusicGenConfig}`), `lm.safetensors`,
`codec.safetensors` (weight norm folded), and `text_encoder/` (a transformers encoder + tokenizer) unless the text
encoder is the installed default sentence encoder.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import NamedTuple

import torch
from safetensors.torch import save_file
from torch import nn

from . import hub
from .audiocraft_format import load_audiocraft
from .codec import Codec
from .codec.seanet import remove_weight_norm
from .conditioning.text import TextEncoder
from .configs import MusicGenConfig
from .fast_linear import block_wide_inputs, matvec_pays
from .hf_format import load_text_encoder, load_transformers
from .lm.model import MusicLM
from .quantize import check_precision, set_precision
from .weights import CheckpointError, build_codec, build_lm, dropping_read_pages, read_weights

OWN_FORMAT = "musicgen_core"


# --- own format -------------------------------------------------------------------------------------------------
def _own_config(folder: Path) -> MusicGenConfig:
    return MusicGenConfig.from_dict(json.loads((folder / "config.json").read_text())["config"])


def load_own_codec(folder: Path) -> Codec:
    """Only the codec of a model folder in our format (a new LM can be shipped with it)."""
    return build_codec(_own_config(folder).codec, read_weights(folder / "codec.safetensors"), folded=True)


def load_own(folder: Path) -> tuple[MusicGenConfig, MusicLM, Codec, TextEncoder]:
    cfg = _own_config(folder)
    lm = build_lm(cfg.lm, read_weights(folder / "lm.safetensors"))
    codec = build_codec(cfg.codec, read_weights(folder / "codec.safetensors"), folded=True)
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


def resolve(name_or_path: str | os.PathLike | None, revision: str | None = None, cache_dir=None,
            token: str | bool | None = None, local_files_only: bool = False, device=None,
            precision: str = "fp32") -> tuple[Path, str | None]:
    """(checkpoint folder, Hub id or None) for `None`/"default" (the embedded default), a local folder, or a Hub id
    (or audiocraft short name), fetched through huggingface_hub's cache (see hub.py)."""
    if name_or_path in (None, "default"):
        folder = default_model_dir()
        if not (folder / "config.json").is_file():
            raise CheckpointError(f"the embedded default model is missing from this installation ({folder}): "
                                  f"reinstall musicgen-core from a complete source (pip install --force-reinstall"
                                  f" ...), or pass a checkpoint folder or a Hub id.")
        return folder, None
    if os.path.exists(name_or_path):
        return Path(name_or_path), None
    if (name := hub.hub_id(str(name_or_path))) is not None:
        return hub.download(name, revision=revision, cache_dir=cache_dir, token=token,
                            local_files_only=local_files_only, device=device, precision=precision), name
    raise CheckpointError(f"no checkpoint folder at {name_or_path}, and it is not a Hugging Face Hub id "
                          f"(org/name, e.g. facebook/musicgen-small)")


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
        if precision == "fp32" and device.type == "cpu" and matvec_pays():
            block_wide_inputs(lm, drop)
    return LoadedModel(lm, codec, text, cfg, name or folder.name)


def convert(src: str | Path, dst: str | Path) -> Path:
    """Convert a transformers- or audiocraft-format checkpoint folder to our own format."""
    return save_model(load_folder(src, device="cpu"), dst)
