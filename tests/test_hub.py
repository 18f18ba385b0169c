"""Models by Hub id through huggingface_hub, with no internet: a Hub cache built by the test and a local server that
answers the Hub's endpoints (tests/hub_fixtures.py). Each failure a user can meet has its message."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from huggingface_hub import constants

from hub_cache import build_hub_cache
from hub_fixtures import FakeHub, fake_hub  # noqa: F401 (fixture)
from musicgen_core import MusicGen, hub
from musicgen_core.cli import main as cli
from musicgen_core.hub import HubError
from test_parity_transformers import hf_greedy

ROOT = Path(__file__).resolve().parent.parent
REPO = "facebook/musicgen-small"
AUDIOCRAFT_FILES = {"state_dict.bin": b"a" * 1000, "compression_state_dict.bin": b"b" * 1000}


def files_of(folder: Path) -> dict[str, Path]:
    return {p.name: p for p in folder.iterdir() if p.is_file()}


@pytest.fixture
def official(fake_hub, hf_musicgen_dir):  # noqa: F811
    """A repo laid out as the official ones: transformers' files and audiocraft's beside them."""
    fake_hub.add_repo(REPO, {**files_of(hf_musicgen_dir[1]), **AUDIOCRAFT_FILES})
    return fake_hub


def weight_gets(server) -> list[str]:
    return [r.path for r in server.requests if r.method == "GET" and r.path.endswith((".safetensors", ".bin"))]


def test_by_id_fetches_one_format_and_matches_transformers(official, hf_musicgen_dir, bert_tokenizer, tmp_path,
                                                           capfd, monkeypatch):
    monkeypatch.setenv("TQDM_POSITION", "-1")  # progress bars as on a terminal
    model = MusicGen.from_pretrained(REPO, device="cpu", cache_dir=tmp_path)
    assert model.name == REPO
    fetched = {Path(p).name for p in weight_gets(official)}
    assert fetched == {"model.safetensors"}  # not audiocraft's copies
    assert "model.safetensors" in capfd.readouterr().err  # huggingface_hub's progress bar
    snapshot = next((tmp_path / "models--facebook--musicgen-small" / "snapshots").iterdir())
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= {p.name for p in snapshot.iterdir()}
    hf_codes, _ = hf_greedy(hf_musicgen_dir[0], bert_tokenizer, ["lo-fi piano"], 10)
    _, codes = model.generate(["lo-fi piano"], return_tokens=True, duration=0.2, use_sampling=False)
    assert torch.equal(codes, hf_codes)
    again = MusicGen.from_pretrained(REPO, device="cpu", cache_dir=tmp_path)  # cached: no second download
    assert len(weight_gets(official)) == 1 and again.name == REPO


def test_sharded_safetensors_and_revision(fake_hub, hf_musicgen_dir, tmp_path):  # noqa: F811
    model, folder = hf_musicgen_dir
    sharded = tmp_path / "sharded"
    model.save_pretrained(sharded, max_shard_size="1MB")
    files = {**files_of(sharded), **{k: v for k, v in files_of(folder).items() if "model" not in k}}
    assert "model.safetensors.index.json" in files
    fake_hub.add_repo("someone/musicgen-sharded", files_of(folder))
    fake_hub.add_repo("someone/musicgen-sharded", files, revision="v2")
    ours = MusicGen.from_pretrained("someone/musicgen-sharded", device="cpu", cache_dir=tmp_path / "c", revision="v2")
    shards = {Path(p).name for p in weight_gets(fake_hub)}
    assert len(shards) > 1 and all(s.startswith("model-") for s in shards)
    plain = MusicGen.from_pretrained(folder, device="cpu")
    kw = dict(return_tokens=True, duration=0.2, use_sampling=False)
    assert torch.equal(ours.generate(["x"], **kw)[1], plain.generate(["x"], **kw)[1])


def test_short_names_map_to_official_ids_with_a_warning(official, tmp_path, monkeypatch):
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    with pytest.warns(DeprecationWarning, match="use the full id 'facebook/musicgen-small'"):
        model = MusicGen.get_pretrained("small", device="cpu")
    assert model.name == REPO


@pytest.mark.slow
def test_cache_built_by_the_test_loads_offline_in_a_fresh_process(hf_musicgen_dir, tmp_path):
    build_hub_cache(tmp_path / "home" / "hub", REPO, files_of(hf_musicgen_dir[1]))
    env = {**os.environ, "HF_HOME": str(tmp_path / "home"), "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    out = tmp_path / "out.wav"
    run = subprocess.run([sys.executable, "-m", "musicgen_core", "generate", "--model", REPO, "--prompt", "jazz",
                          "--duration", "0.3", "--seed", "1", "--out", str(out)], env=env, cwd=tmp_path,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert out.is_file() and "seed=1" in run.stdout


def test_local_files_only_uses_the_cache(hf_musicgen_dir, tmp_path):
    build_hub_cache(tmp_path, REPO, files_of(hf_musicgen_dir[1]))
    assert MusicGen.from_pretrained(REPO, device="cpu", cache_dir=tmp_path, local_files_only=True).name == REPO


def test_download_command(official, tmp_path, capsys):
    cli(["download", REPO, "--cache-dir", str(tmp_path)])
    folder = Path(capsys.readouterr().out.strip().splitlines()[-1])
    assert (folder / "model.safetensors").is_file() and not (folder / "state_dict.bin").exists()


def test_gated_and_private_repos_need_a_token(fake_hub, hf_musicgen_dir, tmp_path):  # noqa: F811
    files = files_of(hf_musicgen_dir[1])
    fake_hub.add_repo("org/gated-musicgen", files, gated=True, token="hf_secret")
    fake_hub.add_repo("org/private-musicgen", files, private=True, token="hf_secret")
    with pytest.raises(HubError, match=r"org/gated-musicgen is gated: accept its conditions on .*/org/gated-musicgen"
                                       r" while logged in, then pass token="):
        MusicGen.from_pretrained("org/gated-musicgen", device="cpu", cache_dir=tmp_path)
    with pytest.raises(HubError, match="org/private-musicgen was not found on the Hugging Face Hub: check the id .* "
                                       "If it is private, pass token="):
        MusicGen.from_pretrained("org/private-musicgen", device="cpu", cache_dir=tmp_path)
    for repo in ("org/gated-musicgen", "org/private-musicgen"):
        assert MusicGen.from_pretrained(repo, device="cpu", cache_dir=tmp_path, token="hf_secret").name == repo


def test_unknown_id_and_revision(official, tmp_path):
    with pytest.raises(HubError, match=r"facebook/musicgen-smal was not found on the Hugging Face Hub: check the id "
                                       r"\(official MusicGen models: facebook/musicgen-small, "):
        MusicGen.from_pretrained("facebook/musicgen-smal", device="cpu", cache_dir=tmp_path)
    with pytest.raises(HubError, match="facebook/musicgen-small has no revision 'nope': use a branch, tag or commit"):
        MusicGen.from_pretrained(REPO, device="cpu", cache_dir=tmp_path, revision="nope")


def test_not_a_musicgen_repo(fake_hub, tmp_path):  # noqa: F811
    fake_hub.add_repo("org/bert", {"config.json": json.dumps({"model_type": "bert"}).encode(),
                                   "model.safetensors": b"0" * 64})
    fake_hub.add_repo("org/dataset-like", {"README.md": b"# hello", "data.csv": b"a,b"})
    with pytest.raises(HubError, match=r"org/bert is not a MusicGen repository: its config.json has model_type "
                                       r"'bert' \(expected 'musicgen' or 'musicgen_melody'\)"):
        MusicGen.from_pretrained("org/bert", device="cpu", cache_dir=tmp_path)
    with pytest.raises(HubError, match=r"org/dataset-like is not a MusicGen repository: it has neither transformers' "
                                       r"files .* Its files: README.md, data.csv"):
        MusicGen.from_pretrained("org/dataset-like", device="cpu", cache_dir=tmp_path)
    assert not weight_gets(fake_hub)


def test_offline_and_not_cached(tmp_path, monkeypatch):
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(HubError, match=rf"facebook/musicgen-large is not in the Hugging Face cache \({tmp_path}\) "
                                       r"and downloading is off \(HF_HUB_OFFLINE=1 or local_files_only=True\): "
                                       r"download it once with a connection \(`musicgen download "
                                       r"facebook/musicgen-large`\)"):
        MusicGen.from_pretrained("facebook/musicgen-large", device="cpu", cache_dir=tmp_path)


def test_hub_unreachable_falls_back_to_the_cache(hf_musicgen_dir, tmp_path, monkeypatch):
    with FakeHub() as server:  # a port that answers nothing once closed
        server.patch_endpoint(monkeypatch)
    with pytest.raises(HubError, match=r"is not in the Hugging Face cache .* and the Hub cannot be reached"):
        MusicGen.from_pretrained(REPO, device="cpu", cache_dir=tmp_path)
    build_hub_cache(tmp_path, REPO, files_of(hf_musicgen_dir[1]))
    assert MusicGen.from_pretrained(REPO, device="cpu", cache_dir=tmp_path).name == REPO


def test_too_large_for_memory_is_refused_before_downloading(official, tmp_path, monkeypatch):
    monkeypatch.setattr(hub, "available_memory", lambda device: 10**6)
    with pytest.raises(HubError, match=r"facebook/musicgen-small does not fit in memory: it needs about 0\.\d GB in "
                                       r"fp32 on cpu, and 0\.0 GB is available\. Choose a smaller model"):
        MusicGen.from_pretrained(REPO, device="cpu", cache_dir=tmp_path)
    assert not weight_gets(official)


def test_disk_full_is_refused_before_downloading(official, tmp_path, monkeypatch):
    usage = hub.shutil.disk_usage(tmp_path)
    monkeypatch.setattr(hub.shutil, "disk_usage", lambda path: usage._replace(free=1000))
    with pytest.raises(HubError, match=rf"not enough disk space for facebook/musicgen-small: it needs 0\.\d\d GB and "
                                       rf"0\.00 GB is free in {tmp_path}\. Free some space, or set HF_HUB_CACHE"):
        MusicGen.from_pretrained(REPO, device="cpu", cache_dir=tmp_path)
    assert not weight_gets(official)


@pytest.mark.slow
def test_interrupted_download_resumes_or_says_what_to_do(official, tmp_path, monkeypatch):
    monkeypatch.setattr(constants, "DOWNLOAD_CHUNK_SIZE", 4096)
    official.fail_after("model.safetensors", 50_000)  # one drop: huggingface_hub resumes with a Range request
    assert MusicGen.from_pretrained(REPO, device="cpu", cache_dir=tmp_path / "a").name == REPO
    assert any(r.range and r.range.startswith("bytes=") for r in official.requests)
    official.fail_after("model.safetensors", 0, times=20)  # the connection keeps dropping: give up, say so
    with pytest.raises(HubError, match=r"downloading facebook/musicgen-small was interrupted \(.*\): check the "
                                       r"connection and run the same command again"):
        MusicGen.from_pretrained(REPO, device="cpu", cache_dir=tmp_path / "b")
    assert not list((tmp_path / "b").rglob("model.safetensors"))  # nothing half-loaded or half-written is left
