"""Load: `python app.py` in its own process, 8 concurrent gradio_client clients, 80 requests (text, melody and
cancelled ones): no failures, flat memory after warm-up, no temp-file growth, nothing written outside temp folders.
And at concurrency 2 (as on a GPU), requests running side by side give exactly what they give one at a time."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from gradio_client import Client, handle_file

from demo import ui

ROOT = Path(__file__).resolve().parents[1]
HUM = str(ui.EXAMPLES / "ode_to_joy_hum.wav")
CLIENTS, WARMUP, ROUNDS = 8, 4, 4  # rounds per measured phase (two phases)
SKIP = {".git", ".venv", "runs", "__pycache__", ".pytest_cache", ".hypothesis"}


def files_under(root: Path) -> set[str]:
    out = set()
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if d not in SKIP]
        out |= {str(Path(folder, f).relative_to(root)) for f in files}
    return out


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def connect(port: int, proc: subprocess.Popen, timeout: float = 180.0) -> Client:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"app.py exited: {proc.stdout.read()}")
        try:
            return Client(f"http://127.0.0.1:{port}/", verbose=False)
        except Exception:
            time.sleep(0.5)
    raise TimeoutError("the server did not come up")


def start_app(port: int, *args: str, env: dict | None = None, cwd: Path = ROOT) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(ROOT / "app.py"), "--no-hub", "--port", str(port), *args], cwd=cwd,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def request(client: Client, i: int, round_: int) -> str:
    """One request of a mixed workload; returns 'ok' or 'cancelled'."""
    kind = (i + round_) % 4
    if kind == 3:  # submitted, then cancelled by the user
        job = client.submit(prompt=f"cancel me {i}", duration=3, seed=i, api_name="/generate")
        time.sleep(0.05)
        job.cancel()
        return "cancelled"
    melody = handle_file(HUM) if kind == 2 else None
    files, grid, _, seed, stats, *_ = client.predict(prompt=f"client {i} round {round_} 🎶", melody=melody,
                                                     duration=1, seed=round_, api_name="/generate")
    assert Path(files[0]).is_file() and Path(grid).is_file() and seed == round_ and "real time" in stats
    return "ok"


@pytest.mark.slow
@pytest.mark.load
@pytest.mark.skipif(not Path("/proc/self/status").is_file(), reason="needs /proc to read the server's memory")
def test_eight_concurrent_clients(hf_melody_dir, tmp_path):
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    env = {**os.environ, "TMPDIR": str(tmp), "GRADIO_TEMP_DIR": str(tmp_path / "gradio")}
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    port, before_files = free_port(), files_under(ROOT)
    proc = start_app(port, "--model", str(hf_melody_dir[1]), env=env, cwd=cwd)
    try:
        clients = [connect(port, proc) for _ in range(CLIENTS)]
        results, errors = [], []

        def worker(i: int, rounds: range) -> None:
            for r in rounds:
                try:
                    results.append(request(clients[i], i, r))
                except Exception as e:  # noqa: BLE001 - collected and reported below
                    errors.append(f"client {i} round {r}: {type(e).__name__}: {e}")

        def load(rounds: range) -> None:
            threads = [threading.Thread(target=worker, args=(i, rounds)) for i in range(CLIENTS)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(timeout=600)
            time.sleep(1.0)  # let cancelled work unwind

        load(range(WARMUP))  # every code path, and the allocator's arenas, warmed up
        rss = [rss_mb(proc.pid)]
        for phase in (1, 2):
            load(range(WARMUP + (phase - 1) * ROUNDS, WARMUP + phase * ROUNDS))
            rss.append(rss_mb(proc.pid))
        assert not errors, errors
        total = CLIENTS * (WARMUP + 2 * ROUNDS)
        assert len(results) == total and results.count("ok") == total * 3 // 4
        print(f"server RSS {' -> '.join(f'{m:.0f}' for m in rss)} MB, {CLIENTS * ROUNDS} requests per phase")
        # A leak grows in every phase; the allocator's arenas settle (a busy machine can add tens of MB once)
        assert min(rss[1] - rss[0], rss[2] - rss[1]) < 40, f"server memory kept growing: {rss} MB"
        deadline = time.monotonic() + 60  # a finished request's folder goes when Gradio resumes its generator
        while list(tmp.glob("musicgen-demo-*")) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert not list(tmp.glob("musicgen-demo-*")), "the demo left temporary folders behind"
        assert request(clients[0], 0, 0) == "ok"  # still serving
        # New files only: the source files of a working tree may be edited while the test runs.
        written = sorted(files_under(ROOT) - before_files) + sorted(files_under(cwd))
        assert not written, f"the server wrote outside its temp folders: {written}"
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.mark.slow
@pytest.mark.load
def test_concurrency_two_gives_the_outputs_of_sequential_runs(hf_melody_dir):
    """Per-call settings: two generations side by side (different prompts, settings, takes, a melody) each equal
    the same request run alone."""
    port = free_port()
    proc = start_app(port, "--model", str(hf_melody_dir[1]), "--concurrency", "2")
    requests = [dict(prompt="fast drums", duration=3, seed=1, top_k=50, takes=2),
                dict(prompt="slow strings", duration=3, seed=2, temperature=0.7, cfg_coef=5, melody=handle_file(HUM)),
                dict(prompt="fast drums", duration=3, seed=1, top_p=0.9, loudness=False),
                dict(prompt="ambient pads", duration=3, seed=3, takes=3, temperature=1.3)]
    try:
        clients = [connect(port, proc), connect(port, proc)]

        def audio(result) -> list[np.ndarray]:
            return [sf.read(f, dtype="int16")[0] for f in result[0]]

        alone = [audio(clients[0].predict(api_name="/generate", **r)) for r in requests]
        for a, b in ((0, 1), (2, 3)):
            jobs = [clients[i].submit(api_name="/generate", **requests[n]) for i, n in enumerate((a, b))]
            firsts = []  # whether each job has streamed a chunk: both have, before either ends, when run side by side
            while not all(job.done() for job in jobs):
                firsts = [job.outputs() != [] for job in jobs]
                if all(firsts) and not any(job.done() for job in jobs):
                    break
                time.sleep(0.01)
            assert all(firsts) and not any(j.done() for j in jobs), "the two requests did not run side by side"
            together = [audio(job.result()) for job in jobs]
            for n, got in zip((a, b), together):
                assert len(got) == len(alone[n]) and all(np.array_equal(x, y) for x, y in zip(got, alone[n])), n
    finally:
        proc.terminate()
        proc.wait(timeout=30)
