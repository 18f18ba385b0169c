"""Models by Hugging Face Hub id: resolve `facebook/musicgen-small` (or any repo in transformers' or audiocraft's
format) to a local snapshot folder in huggingface_hub's cache.

Only the files one format needs are fetched (transformers' safetensors first), with huggingface_hub's progress bars
and resumable downloads; `revision`, `cache_dir`, `token`, `local_files_only`, HF_HOME / HF_HUB_CACHE /
HF_HUB_OFFLINE / HF_ENDPOINT are honoured as in transformers. Before any weight is downloaded, the model's size is
checked against the memory of the device it will load on and the cache's free disk space. Every failure a user can
meet raises `HubError` with what to do about it.
"""
from __future__ import annotations

import errno
import fnmatch
import json
import os
import re
import shutil
import warnings
from pathlib import Path

import httpx2 as httpx  # huggingface_hub's HTTP client
import torch
from huggingface_hub import HfApi, constants, hf_hub_download, snapshot_download
from huggingface_hub.errors import (GatedRepoError, HfHubHTTPError, LocalEntryNotFoundError, OfflineModeIsEnabled,
                                    RepositoryNotFoundError, RevisionNotFoundError)

from .weights import CheckpointError

OFFICIAL = tuple(f"facebook/musicgen-{name}" for name in (
    "small", "medium", "large", "melody", "melody-large",
    "stereo-small", "stereo-medium", "stereo-large", "stereo-melody", "stereo-melody-large"))
SHORT_NAMES = {name: f"facebook/musicgen-{name}" for name in ("small", "medium", "large", "melody")}  # audiocraft's

_TRANSFORMERS = ("config.json", "generation_config.json", "preprocessor_config.json", "tokenizer.json",
                 "tokenizer_config.json", "special_tokens_map.json", "spiece.model", "added_tokens.json")
_WEIGHTS = (("model.safetensors", "model.safetensors.index.json", "model-*-of-*.safetensors"),
            ("pytorch_model.bin", "pytorch_model.bin.index.json", "pytorch_model-*-of-*.bin"))
_AUDIOCRAFT = ("state_dict.bin", "compression_state_dict.bin", "text_encoder/*")
BYTES_PER_PARAM = {"fp32": 4.0, "bf16": 2.0, "int8": 1.3, "int4": 1.0}  # the LM once loaded (+ rest)
_ON_DISK = {"float32": 4, "float16": 2, "bfloat16": 2}
_REPO_ID = re.compile(r"^[\w.-]+/[\w.-]+$")


class HubError(CheckpointError):
    """A model that cannot be fetched from the Hub or its cache; the message says what to do."""


def hub_id(name: str) -> str | None:
    """The Hub repo id `name` stands for (audiocraft's short names map to facebook/musicgen-*, with a warning), or
    None when it is not one."""
    if name in SHORT_NAMES:
        warnings.warn(f"MusicGen pretrained model relying on deprecated checkpoint mapping: use the full id "
                      f"{SHORT_NAMES[name]!r} instead of {name!r}", DeprecationWarning, stacklevel=3)
        return SHORT_NAMES[name]
    return name if _REPO_ID.match(name) else None


def download(repo_id: str, revision: str | None = None, cache_dir: str | os.PathLike | None = None,
             token: str | bool | None = None, local_files_only: bool = False, device=None,
             precision: str = "fp32") -> Path:
    """The snapshot folder of `repo_id` holding one complete checkpoint format, downloaded if needed."""
    cache = Path(cache_dir or constants.HF_HUB_CACHE)
    if local_files_only or constants.HF_HUB_OFFLINE:
        return _cached(repo_id, revision, cache, "downloading is off (HF_HUB_OFFLINE=1 or local_files_only=True)")
    try:
        info = HfApi().model_info(repo_id, revision=revision, token=token, files_metadata=True)
    except (GatedRepoError, RepositoryNotFoundError, RevisionNotFoundError) as e:
        raise _explain(e, repo_id, revision) from None
    except (httpx.TransportError, OSError, HfHubHTTPError) as e:  # the Hub cannot be reached: use the cache
        return _cached(repo_id, revision, cache, f"the Hub cannot be reached ({_first_line(e)})")
    sizes = {s.rfilename: s.size or 0 for s in info.siblings or ()}
    patterns = _format_files(repo_id, sizes)
    wanted = {name: size for name, size in sizes.items() if _matches(name, patterns)}  # this format's files
    kwargs = dict(revision=info.sha, cache_dir=cache, token=token)
    try:
        dtype = "float32"
        if "config.json" in patterns:
            dtype = _check_model_type(repo_id, Path(hf_hub_download(repo_id, "config.json", **kwargs)))
        weights = sum(size for name, size in wanted.items() if name.endswith((".safetensors", ".bin")))
        check_memory(repo_id, weights / _ON_DISK.get(dtype, 4), device, precision)
        _check_disk(repo_id, cache, sum(wanted.values()))
        names = sorted(wanted, key=wanted.get)
        paths = [Path(hf_hub_download(repo_id, name, **kwargs)) for name in names]  # each with a byte progress bar
        return paths[0].parents[len(Path(names[0]).parts) - 1]  # the snapshot folder
    except (GatedRepoError, RepositoryNotFoundError, RevisionNotFoundError) as e:
        raise _explain(e, repo_id, revision) from None
    except OSError as e:
        if e.errno == errno.ENOSPC:
            raise _disk_full(repo_id, cache) from None
        raise _interrupted(repo_id, cache, e) from None
    except (httpx.HTTPError, HfHubHTTPError) as e:
        raise _interrupted(repo_id, cache, e) from None


def _format_files(repo_id: str, sizes: dict[str, int]) -> tuple[str, ...]:
    """Patterns of the files of the first complete format in the repo: transformers (safetensors, else .bin), then
    audiocraft's."""
    if "config.json" in sizes:
        for weights in _WEIGHTS:
            if any(_matches(name, weights) for name in sizes):
                return _TRANSFORMERS + weights
    if all(name in sizes for name in _AUDIOCRAFT[:2]):
        return _AUDIOCRAFT
    raise HubError(f"{repo_id} is not a MusicGen repository: it has neither transformers' files (config.json + "
                   f"model.safetensors or pytorch_model.bin) nor audiocraft's (state_dict.bin + "
                   f"compression_state_dict.bin). Its files: {', '.join(sorted(sizes)[:10]) or 'none'}.")


def _check_model_type(repo_id: str, config: Path) -> str:
    """Refuse a config.json that is not MusicGen's; return the dtype its weights are stored in."""
    meta = json.loads(config.read_text())
    if meta.get("model_type") not in ("musicgen", "musicgen_melody"):
        raise HubError(f"{repo_id} is not a MusicGen repository: its config.json has model_type "
                       f"{meta.get('model_type')!r} (expected 'musicgen' or 'musicgen_melody').")
    return meta.get("torch_dtype") or meta.get("dtype") or "float32"


def check_memory(repo_id: str, params: float, device, precision: str) -> None:
    """Refuse a model of `params` weights that cannot fit in the memory of the device it will load on."""
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    needed, available = params * BYTES_PER_PARAM[precision], available_memory(device)
    if needed > available:
        raise HubError(f"{repo_id} does not fit in memory: it needs about {needed / 1e9:.1f} GB in {precision} on "
                       f"{device.type}, and {available / 1e9:.1f} GB is available. Choose a smaller model (e.g. "
                       f"facebook/musicgen-small), precision='int8' or 'bf16', or free memory.")


def available_memory(device: torch.device) -> int:
    """Bytes that can still be allocated on `device` (MemAvailable on the CPU)."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def _check_disk(repo_id: str, cache: Path, total: int) -> None:
    cache.mkdir(parents=True, exist_ok=True)
    blobs = cache / f"models--{repo_id.replace('/', '--')}" / "blobs"  # complete and partial downloads
    have = sum(p.stat().st_size for p in blobs.iterdir()) if blobs.is_dir() else 0
    if shutil.disk_usage(cache).free < total - have:
        raise _disk_full(repo_id, cache, total)


def _cached(repo_id: str, revision: str | None, cache: Path, why: str) -> Path:
    try:
        folder = Path(snapshot_download(repo_id, revision=revision, cache_dir=cache, local_files_only=True))
    except (LocalEntryNotFoundError, OfflineModeIsEnabled, OSError):
        folder = None
    if folder is not None and _complete(folder):
        return folder
    raise HubError(f"{repo_id}{'@' + revision if revision else ''} is not in the Hugging Face cache ({cache}) and "
                   f"{why}: download it once with a connection (`musicgen download {repo_id}`), or point HF_HOME / "
                   f"cache_dir to a cache that has it.")


def _complete(folder: Path) -> bool:
    """Whether a cached snapshot holds one whole checkpoint."""
    if (folder / "config.json").is_file():
        for single, index, _ in _WEIGHTS:
            if (folder / index).is_file():
                shards = set(json.loads((folder / index).read_text())["weight_map"].values())
                return all((folder / shard).is_file() for shard in shards)
            if (folder / single).is_file():
                return True
        return False
    return all((folder / name).is_file() for name in _AUDIOCRAFT[:2])


def _explain(e: Exception, repo_id: str, revision: str | None) -> HubError:
    if isinstance(e, GatedRepoError):
        return HubError(f"{repo_id} is gated: accept its conditions on {constants.ENDPOINT}/{repo_id} while logged "
                        f"in, then pass token= (or set HF_TOKEN, or run `hf auth login`).")
    if isinstance(e, RevisionNotFoundError):
        return HubError(f"{repo_id} has no revision {revision!r}: use a branch, tag or commit of that repository.")
    return HubError(f"{repo_id} was not found on the Hugging Face Hub: check the id (official MusicGen models: "
                    f"{', '.join(OFFICIAL[:5])}, ...). If it is private, pass token= (or set HF_TOKEN, or run "
                    f"`hf auth login`).")


def _interrupted(repo_id: str, cache: Path, e: Exception) -> HubError:
    return HubError(f"downloading {repo_id} was interrupted ({_first_line(e)}): check the connection and run the "
                    f"same command again; the files already downloaded are kept in {cache}.")


def _disk_full(repo_id: str, cache: Path, total: int | None = None) -> HubError:
    need = f" needs {total / 1e9:.2f} GB and" if total else ""
    return HubError(f"not enough disk space for {repo_id}: it{need} {shutil.disk_usage(cache).free / 1e9:.2f} GB "
                    f"is free in {cache}. Free some space, or set HF_HUB_CACHE (or cache_dir) to a larger disk.")


def _matches(name: str, patterns) -> bool:
    return any(fnmatch.fnmatch(name, p) for p in patterns)


def _first_line(e: Exception) -> str:
    return (str(e).splitlines() or [type(e).__name__])[0][:200]
