"""The command line, run as a user would: `python -m musicgen_core ...`."""
from __future__ import annotations

import subprocess
import sys

import pytest
import soundfile as sf

from musicgen_core.cli import main


def run(*args):
    return subprocess.run([sys.executable, "-m", "musicgen_core", *args], capture_output=True, text=True, timeout=300)


@pytest.mark.slow
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


@pytest.mark.slow
def test_bad_model_folder_is_a_clean_error(tmp_path):
    r = run("generate", "--model", str(tmp_path / "nope"), "--prompt", "x")
    assert r.returncode != 0
    assert r.stderr.strip().splitlines()[-1].startswith("error: no checkpoint folder at")


def test_in_process_convert_and_a_clean_error(hf_musicgen_dir, tmp_path, capsys):
    """The same entry point without a fresh interpreter: the fast loop's check of the command line."""
    main(["convert", str(hf_musicgen_dir[1]), str(tmp_path / "own")])
    assert capsys.readouterr().out.strip() == f"wrote {tmp_path / 'own'}"
    assert (tmp_path / "own" / "lm.safetensors").is_file()
    with pytest.raises(SystemExit) as exit_:
        main(["generate", "--model", str(tmp_path / "nope"), "--prompt", "x"])
    assert exit_.value.code == (f"error: no checkpoint folder at {tmp_path / 'nope'}, and it is not a Hugging Face Hub "
                                "id (org/name, e.g. facebook/musicgen-small)")
