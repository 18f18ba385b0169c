"""The offline Hub fixtures behave like the Hub for huggingface_hub's own download and API code."""
from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from huggingface_hub import (HfApi, constants, hf_api, hf_hub_download, hf_hub_url, list_repo_files, scan_cache_dir,
                             snapshot_download)
from huggingface_hub.errors import (EntryNotFoundError, GatedRepoError, LocalEntryNotFoundError,
                                    RemoteEntryNotFoundError, RepositoryNotFoundError, RevisionNotFoundError)

from hub_cache import build_hub_cache
from hub_fixtures import FakeHub, fake_hub  # noqa: F401  (fixture)

FILES = {"config.json": b'{"model_type": "musicgen"}', "model.safetensors": bytes(range(256)) * 8,
         "tokenizer/vocab.txt": b"a\nb\n"}


def test_patch_endpoint_reaches_import_time_copies_and_is_undone(monkeypatch):
    before = constants.ENDPOINT, hf_api.api.endpoint
    with FakeHub() as hub:
        hub.patch_endpoint(monkeypatch)
        assert constants.ENDPOINT == hf_api.api.endpoint == HfApi().endpoint == os.environ["HF_ENDPOINT"] == hub.url
        assert hf_hub_url("org/model", "config.json") == f"{hub.url}/org/model/resolve/main/config.json"
        monkeypatch.undo()
    assert (constants.ENDPOINT, hf_api.api.endpoint) == before


def test_download_regular_and_lfs_files(fake_hub, tmp_path):
    commit = fake_hub.add_repo("org/model", FILES)
    for name, data in FILES.items():
        path = hf_hub_download("org/model", name, cache_dir=tmp_path, token=False)
        assert path == str(tmp_path / "models--org--model" / "snapshots" / commit / name)
        assert open(path, "rb").read() == data
    assert (tmp_path / "models--org--model" / "refs" / "main").read_text() == commit
    # LFS content comes from the CDN stand-in, after a redirect
    assert fake_hub.counts[f"/lfs/{hashlib.sha256(FILES['model.safetensors']).hexdigest()}/model.safetensors"] == 1
    # a second call only asks for metadata
    hf_hub_download("org/model", "config.json", cache_dir=tmp_path, token=False)
    assert [r.method for r in fake_hub.requests if r.path == "/org/model/resolve/main/config.json"] == \
        ["HEAD", "GET", "HEAD"]


def test_snapshot_download_allow_patterns(fake_hub, tmp_path):
    fake_hub.add_repo("org/model", FILES)
    folder = snapshot_download("org/model", cache_dir=tmp_path, allow_patterns=["*.json", "tokenizer/*"], token=False)
    got = {p.relative_to(folder).as_posix() for p in Path(folder).rglob("*") if p.is_file()}
    assert got == {"config.json", "tokenizer/vocab.txt"}
    assert not any(r.path.endswith("model.safetensors") for r in fake_hub.requests)


def test_model_info_and_file_listing(fake_hub):
    commit = fake_hub.add_repo("org/model", FILES)
    info = HfApi().model_info("org/model", revision="main", files_metadata=True, token=False)
    assert info.sha == commit and info.id == "org/model" and not info.private
    sizes = {s.rfilename: s.size for s in info.siblings}
    assert sizes == {name: len(data) for name, data in FILES.items()}
    lfs = {s.rfilename: s.lfs for s in info.siblings}
    assert lfs["config.json"] is None and lfs["model.safetensors"].size == len(FILES["model.safetensors"])
    assert HfApi().model_info("org/model", token=False).siblings[0].size is None
    assert sorted(list_repo_files("org/model", token=False)) == sorted(FILES)


def test_private_repo_needs_its_token(fake_hub, tmp_path):
    fake_hub.add_repo("org/private", FILES, private=True, token="hf_secret")
    for token in (False, "hf_other"):
        with pytest.raises(RepositoryNotFoundError):
            hf_hub_download("org/private", "config.json", cache_dir=tmp_path, token=token)
        with pytest.raises(RepositoryNotFoundError):
            HfApi().model_info("org/private", token=token)
    path = hf_hub_download("org/private", "model.safetensors", cache_dir=tmp_path, token="hf_secret")
    assert open(path, "rb").read() == FILES["model.safetensors"]
    # as on the Hub, the token is not sent to the CDN
    auth = {r.path.split("/")[1]: r.headers.get("authorization") for r in fake_hub.requests[-2:]}
    assert auth == {"org": "Bearer hf_secret", "lfs": None}


def test_error_types(fake_hub, tmp_path):
    fake_hub.add_repo("org/model", FILES)
    fake_hub.add_repo("org/gated", FILES, gated=True, token="hf_granted")
    with pytest.raises(RepositoryNotFoundError) as e:
        hf_hub_download("org/missing", "config.json", cache_dir=tmp_path, token=False)
    assert not isinstance(e.value, GatedRepoError)
    with pytest.raises(RemoteEntryNotFoundError) as e:
        hf_hub_download("org/model", "missing.json", cache_dir=tmp_path, token=False)
    assert isinstance(e.value, EntryNotFoundError)
    with pytest.raises(RevisionNotFoundError):
        hf_hub_download("org/model", "config.json", revision="v9", cache_dir=tmp_path, token=False)
    with pytest.raises(RevisionNotFoundError):
        HfApi().model_info("org/model", revision="v9", token=False)
    for token in (False, "hf_other"):
        with pytest.raises(GatedRepoError):
            hf_hub_download("org/gated", "config.json", cache_dir=tmp_path, token=token)
    assert HfApi().model_info("org/gated", token=False).gated == "auto"
    assert hf_hub_download("org/gated", "config.json", cache_dir=tmp_path, token="hf_granted")


def test_interrupted_download_resumes_with_range(fake_hub, tmp_path, monkeypatch):
    # huggingface_hub resumes after the last whole chunk it wrote: small chunks let a small file show it
    monkeypatch.setattr(constants, "DOWNLOAD_CHUNK_SIZE", 256)
    fake_hub.add_repo("org/model", FILES)
    fake_hub.fail_after("model.safetensors", 1024)
    path = hf_hub_download("org/model", "model.safetensors", cache_dir=tmp_path, token=False)
    assert open(path, "rb").read() == FILES["model.safetensors"]
    content = [r for r in fake_hub.requests if r.method == "GET" and r.path.startswith("/lfs/")]
    assert [r.range for r in content] == [None, "bytes=1024-"]


def test_a_held_download_waits_for_its_release(fake_hub, tmp_path):
    fake_hub.add_repo("org/model", FILES)
    release, paths = fake_hub.hold_after("model.safetensors", 1024), []
    thread = threading.Thread(target=lambda: paths.append(
        hf_hub_download("org/model", "model.safetensors", cache_dir=tmp_path, token=False)))
    thread.start()
    thread.join(1.0)
    assert thread.is_alive() and not paths  # the body stopped after 1024 bytes
    release.set()
    thread.join(30)
    assert open(paths[0], "rb").read() == FILES["model.safetensors"]
    assert [r.range for r in fake_hub.requests if r.method == "GET" and r.path.startswith("/lfs/")] == [None]


def test_build_hub_cache_local_files_only(tmp_path):
    snapshot = build_hub_cache(tmp_path, "org/model", FILES)
    path = hf_hub_download("org/model", "tokenizer/vocab.txt", cache_dir=tmp_path, local_files_only=True)
    assert path == str(snapshot / "tokenizer" / "vocab.txt") and os.path.islink(path)
    assert open(path, "rb").read() == FILES["tokenizer/vocab.txt"]
    assert snapshot_download("org/model", cache_dir=tmp_path, local_files_only=True) == str(snapshot)
    repo, = scan_cache_dir(tmp_path).repos
    assert repo.repo_id == "org/model" and repo.size_on_disk == sum(map(len, FILES.values()))
    assert {r.commit_hash for r in repo.revisions} == {snapshot.name} and repo.refs.keys() == {"main"}
    with pytest.raises(LocalEntryNotFoundError):
        hf_hub_download("org/model", "missing.json", cache_dir=tmp_path, local_files_only=True)


def test_build_hub_cache_matches_what_the_hub_serves(fake_hub, tmp_path):
    snapshot = build_hub_cache(tmp_path, "org/model", FILES)
    fake_hub.add_repo("org/model", FILES)
    assert hf_hub_download("org/model", "model.safetensors", cache_dir=tmp_path, token=False) == \
        str(snapshot / "model.safetensors")
    assert [r.method for r in fake_hub.requests if "model.safetensors" in r.path] == ["HEAD"]


def test_build_hub_cache_found_through_hf_home_offline(tmp_path):
    snapshot = build_hub_cache(tmp_path / "hub", "org/model", FILES, revision_name="v1")
    code = ("from huggingface_hub import hf_hub_download, snapshot_download; "
            "print(hf_hub_download('org/model', 'config.json', revision='v1')); "
            "print(snapshot_download('org/model', revision='v1'))")
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE")}
    out = subprocess.run([sys.executable, "-c", code], env={**env, "HF_HOME": str(tmp_path), "HF_HUB_OFFLINE": "1"},
                         capture_output=True, text=True, check=True).stdout.split()
    assert out == [str(snapshot / "config.json"), str(snapshot)]
