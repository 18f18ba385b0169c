"""The command line, run as a user would: `python -m musicgen_core ...`."""
from __future__ import annotations

import subprocess
import sys

import soundfile as sf


def run(*args):
    return subprocess.run([sys.executable, "-m", "musicgen_core", *args], capture_output=True, text=True, timeout=300)


def test_generate_and_convert(hf_musicgen_dir, tmp_path):
    out = tmp_path / "song.wav"
    r = run("generate", "--model", str(hf_musicgen_dir[1]), "--prompt", "lofi beat", "--duration", "0.3",
            "--seed", "5", "--out", str(out))
    assert r.returncode == 0, r.stderr
    assert "seed=5" in r.stdout and "rtf=" in r.stdout
    data, sr = sf.read(out)
    assert sr == 32000 and len(data) == 15 * 640

    r = run("convert", str(hf_musicgen_dir[1]), str(tmp_path / "own"))
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "own" / "lm.safetensors").is_file()


def test_bad_model_folder_is_a_clean_error(tmp_path):
    r = run("generate", "--model", str(tmp_path / "nope"), "--prompt", "x")
    assert r.returncode != 0
    assert r.stderr.strip().splitlines()[-1].startswith("error: no checkpoint folder at")
