"""Reading weight files safely and lazily: safetensors as copy-on-write memory maps, `.bin`/`.pt` through the
weights-only unpickler (never arbitrary objects), and a context that hands pages read only for conversion back to
the OS; then the state-dict plumbing every checkpoint format shares: strict loading that names what does not match,
key renames, and building the codec and LM on the meta device around the checkpoint's tensors.
"""
from __future__ import annotations

import contextlib
import contextvars
import ctypes
import json
import mmap
import re
import struct
from pathlib import Path

import torch
from safetensors import safe_open
from torch import nn

from .codec import Codec
from .codec.seanet import remove_weight_norm
from .configs import CodecConfig, LMConfig
from .lm.model import MusicLM


class CheckpointError(ValueError):
    """A checkpoint that is missing, unreadable, or does not match the model it should fill."""


_SAFETENSORS_DTYPES = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
                       "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8,
                       "U8": torch.uint8, "BOOL": torch.bool}


_MAPPINGS: contextvars.ContextVar[list | None] = contextvars.ContextVar("musicgen_core_mappings", default=None)


def read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    """A .safetensors file's tensors as views of a private (copy-on-write) mapping of the file: like transformers'
    lazy loading, a page becomes resident only when first used (a text encoder's embedding rows that no prompt uses
    never are), and in-place updates never reach the file. Inside `dropping_read_pages()` the mapping is released
    from this process's memory at the end of the block."""
    with safe_open(str(path), framework="pt") as f:  # validates the header: offsets, dtypes, shapes
        keys = list(f.keys())
    with open(path, "rb") as fh:
        (size,) = struct.unpack("<Q", fh.read(8))
        header, base = json.loads(fh.read(size)), 8 + size
        mapping = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_COPY)
    out = {}
    for key in keys:
        info = header[key]
        dtype, (start, end) = _SAFETENSORS_DTYPES[info["dtype"]], info["data_offsets"]
        if base + end > len(mapping):
            raise CheckpointError(f"{path.name} is truncated (tensor {key})")
        count = (end - start) // dtype.itemsize
        flat = torch.frombuffer(mapping, dtype=dtype, count=count, offset=base + start) if count else \
            torch.empty(0, dtype=dtype)
        out[key] = flat.view(info["shape"])
    if (collector := _MAPPINGS.get()) is not None:
        collector.append(mapping)
    return out


@contextlib.contextmanager
def dropping_read_pages():
    """Memory used only while loading goes back to the OS: files mapped by `read_safetensors` in this block leave the
    process's resident memory (madvise DONTNEED) when it ends, or at once with the yielded `drop(*tensors)` (those
    tensors' pages; with none, all pages read so far), and each release also returns freed heap memory (glibc keeps
    freed chunks that sit between live ones: up to 1 GB after an int8 conversion). Pages read only to be converted
    (fused, stacked, folded, cast or quantized) are thus not kept beside their conversions, and tensors adopted as they
    are come back from the page cache on first use. Nothing in the block may write to an adopted tensor (DONTNEED would
    drop the private copy)."""
    mappings = []
    token = _MAPPINGS.set(mappings)
    can_drop = hasattr(mmap, "MADV_DONTNEED")

    def drop(*tensors: torch.Tensor) -> None:
        for mapping in mappings if can_drop else ():
            if not tensors:
                mapping.madvise(mmap.MADV_DONTNEED)
                continue
            base = ctypes.addressof(ctypes.c_char.from_buffer(mapping))
            for tensor in tensors:
                start, end = tensor.data_ptr() - base, tensor.data_ptr() + tensor.nbytes - base
                if 0 <= start < len(mapping):
                    start = -(-start // mmap.PAGESIZE) * mmap.PAGESIZE  # whole pages inside the tensor only
                    end = end // mmap.PAGESIZE * mmap.PAGESIZE
                    if end > start:
                        mapping.madvise(mmap.MADV_DONTNEED, start, end - start)
        _trim_heap()

    try:
        yield drop
    finally:
        _MAPPINGS.reset(token)
        drop()


def _trim_heap() -> None:
    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError, TypeError):  # not glibc
        pass


def read_weights(path: Path) -> dict:
    """Tensors from a .safetensors file, or a .bin/.pt file through the restricted (weights-only) unpickler."""
    if not path.is_file():
        raise CheckpointError(f"missing checkpoint file: {path}")
    try:
        if path.suffix == ".safetensors":
            return read_safetensors(path)
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # corrupt file, truncated file, or a pickle that tries to run code
        raise CheckpointError(f"cannot read {path.name}: {type(e).__name__}: {str(e).splitlines()[0][:300]}") from e


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


def take_prefix(sd: dict, prefix: str) -> dict:
    """Take the entries under `prefix` out of sd (so their memory is freed once the model holds them)."""
    return {k[len(prefix):]: sd.pop(k) for k in [k for k in sd if k.startswith(prefix)]}


def rename_keys(sd: dict, renames: tuple[tuple[str, str], ...]) -> dict:
    out = {}
    for key, value in sd.items():
        for pattern, repl in renames:
            key = re.sub(pattern, repl, key)
        out[key] = value
    return out


def stack_keys(sd: dict, pattern: str, n: int) -> torch.Tensor:
    try:
        return torch.stack([sd.pop(pattern.format(k)) for k in range(n)])
    except KeyError as e:
        raise CheckpointError(f"missing key {e.args[0]}") from None


def _float32(state_dict: dict) -> dict:
    return {k: v.float() if v.is_floating_point() else v for k, v in state_dict.items()}


# Models are built on the meta device and adopt the checkpoint's tensors (assign): a randomly initialised copy beside
# them would raise peak memory by the model's size.
def build_codec(cfg: CodecConfig, state_dict: dict, folded: bool) -> Codec:
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


def build_lm(cfg: LMConfig, state_dict: dict) -> MusicLM:
    with torch.device("meta"):
        lm = MusicLM(cfg)
    load_state_dict_strict(lm, _float32(state_dict), "LM", assign=True)
    return lm
