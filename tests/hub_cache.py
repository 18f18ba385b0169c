"""How a Hugging Face Hub repo's files are stored: blobs in git or LFS (`LFS_PATTERNS`), their ids and the commit
hash that `FakeHub` (hub_fixtures.py) serves, and `build_hub_cache`, which lays them out as huggingface_hub's cache
does."""
from __future__ import annotations

import fnmatch
import hashlib
import json
import os
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

LFS_PATTERNS = ("*.safetensors", "*.bin", "*.pt", "*.pth", "*.ckpt", "*.h5", "*.onnx", "*.npy", "*.npz",
                "*.msgpack", "*.model", "*.wav", "*.flac", "*.mp3", "*.ogg", "*.gz", "*.zip", "*.tar")


def git_oid(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass
class Blob:
    """A file of a repo: stored in git, or in LFS when its name matches `LFS_PATTERNS`."""

    data: bytes
    lfs: bool

    @cached_property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    @cached_property
    def pointer(self) -> bytes:
        return f"version https://git-lfs.github.com/spec/v1\noid sha256:{self.sha256}\nsize {len(self.data)}\n".encode()

    @cached_property
    def oid(self) -> str:
        """Git blob id: of the LFS pointer for LFS files, as on the Hub."""
        return git_oid(self.pointer if self.lfs else self.data)

    @property
    def etag(self) -> str:
        """The ETag the Hub serves, which names the blob in the cache."""
        return self.sha256 if self.lfs else self.oid

    def lfs_info(self) -> dict:
        return {"size": len(self.data), "sha256": self.sha256, "pointerSize": len(self.pointer)}


def blobs_of(files: dict[str, Path | bytes]) -> dict[str, Blob]:
    return {name: Blob(data if isinstance(data, bytes) else Path(data).read_bytes(),
                        any(fnmatch.fnmatch(name.rsplit("/", 1)[-1], p) for p in LFS_PATTERNS))
            for name, data in files.items()}


def commit_hash(blobs: dict[str, Blob]) -> str:
    return hashlib.sha1(json.dumps(sorted((n, b.oid) for n, b in blobs.items())).encode()).hexdigest()


def build_hub_cache(cache_dir: Path, repo_id: str, files: dict[str, Path | bytes], revision_name: str = "main",
                    commit: str | None = None) -> Path:
    """Write `files` of a model repo into a huggingface_hub cache folder and return the snapshot folder.

    Layout: `models--{org}--{name}/blobs/<etag>`, `snapshots/<commit>/<filename>` (relative symlinks to the blobs)
    and `refs/<revision_name>` holding the commit. Etags and the default commit match what `FakeHub` serves for the
    same files.
    """
    blobs = blobs_of(files)
    commit = commit or commit_hash(blobs)
    repo_dir = Path(cache_dir) / ("models--" + repo_id.replace("/", "--"))
    snapshot = repo_dir / "snapshots" / commit
    for name, blob in blobs.items():
        blob_path = repo_dir / "blobs" / blob.etag
        blob_path.parent.mkdir(parents=True, exist_ok=True)
        blob_path.write_bytes(blob.data)
        pointer = snapshot / name
        pointer.parent.mkdir(parents=True, exist_ok=True)
        pointer.unlink(missing_ok=True)
        pointer.symlink_to(os.path.relpath(blob_path, pointer.parent))
    ref = repo_dir / "refs" / revision_name
    ref.parent.mkdir(parents=True, exist_ok=True)
    ref.write_text(commit)
    return snapshot
