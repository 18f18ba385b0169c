"""Installed as a user installs it: a wheel of the project in a fresh virtual environment carries the `musicgen`
command and the embedded default model, and generates from another folder."""
from __future__ import annotations

import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_wheel_in_a_fresh_venv_generates_from_another_folder(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", str(ROOT), "-w", str(tmp_path / "dist")],
                   check=True, cwd=tmp_path, timeout=600)
    venv.create(tmp_path / "env", with_pip=True)
    python = tmp_path / "env" / "bin" / "python"
    env_site = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                              capture_output=True, text=True, check=True).stdout.strip()
    # The dependencies come from this environment (no second torch download); the project itself only from the wheel.
    Path(env_site, "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    wheel = next((tmp_path / "dist").glob("musicgen_core-*.whl"))
    subprocess.run([python, "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)], check=True,
                   timeout=300)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    run = subprocess.run([tmp_path / "env" / "bin" / "musicgen", "generate", "--prompt", "calm piano", "--duration",
                          "0.5", "--seed", "0", "--out", "x.wav"], cwd=elsewhere, capture_output=True, text=True,
                         timeout=600)
    assert run.returncode == 0, run.stderr
    assert (elsewhere / "x.wav").is_file() and "seed=0" in run.stdout
    where = subprocess.run([python, "-c", "import musicgen_core; print(musicgen_core.__file__)"], cwd=elsewhere,
                           capture_output=True, text=True, check=True).stdout
    assert str(tmp_path / "env") in where  # the installed copy, not the source tree
