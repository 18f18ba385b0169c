"""Faults: a training run killed with SIGKILL leaves a readable checkpoint and resumes from it."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

SCRIPT = """
import dataclasses, sys
from pathlib import Path
from musicgen_core.configs import CodecConfig
from musicgen_core.train import codec as trainer
cfg = dataclasses.replace(trainer.PRESETS["cpu-seanet"], codec=CodecConfig(n_filters=4, dimension=16, lstm_layers=1,
                          card=64), batch_size=2, clips_per_batch=1, segment=0.25, adv_start=10**9, log_every=1,
                          val_every=10**9, val_clips=1, val_duration=0.5, workers=0, ckpt_minutes=0.0)
trainer.train(cfg, Path(sys.argv[1]), max_steps=int(sys.argv[2]))
"""


def run(run_dir: Path, steps: int) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    return subprocess.Popen([sys.executable, "-c", SCRIPT, str(run_dir), str(steps)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


@pytest.mark.slow
@pytest.mark.training
def test_sigkill_mid_training_resumes_from_last_checkpoint(tmp_path):
    ckpt = tmp_path / "latest.pt"
    proc = run(tmp_path, 10_000)  # checkpoints after every step
    deadline = time.time() + 240
    while time.time() < deadline and not (ckpt.exists() and torch.load(ckpt, weights_only=True)["step"] >= 3):
        time.sleep(0.2)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    state = torch.load(ckpt, weights_only=True)  # atomic writes: never a half-written file
    killed_at = state["step"]
    assert killed_at >= 3
    resumed = run(tmp_path, killed_at + 2)
    assert resumed.wait(timeout=240) == 0, resumed.stderr.read().decode()[-2000:]
    assert torch.load(ckpt, weights_only=True)["step"] == killed_at + 2
    steps = [int(r.split(",")[0]) for r in (tmp_path / "train.csv").read_text().splitlines()[1:]]
    assert steps[-2:] == [killed_at + 1, killed_at + 2]
