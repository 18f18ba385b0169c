"""A real browser against `python app.py`: Playwright drives Debian's chromium (installed by .ci/run) through the
demo: prompt, melody upload with its notes and chromagram, Generate, the audio, the token grid and the chroma
comparison; then an official model picked from a (test) Hub cache, two variations, and one replayed from the history
and loaded back into the form; Cancel. DEMO_SCREENSHOTS=<folder> keeps a screenshot of each step."""
from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from hub_cache import build_hub_cache

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]
# streamed: an <audio> fed by HLS; not streamed (no ffmpeg): the waveform player shows the duration
AUDIO_READY = """(id) => {
    const audio = document.querySelector(`#${id} audio`), shown = document.querySelector(`#${id} time#duration`);
    return (audio && audio.duration > 0) || (shown && shown.textContent.trim() !== '0:00');
}"""
SMALL = "facebook/musicgen-small"


@pytest.fixture(scope="module")
def server(hf_melody_dir, hf_musicgen_dir, tmp_path_factory):
    """app.py serving a melody model and the official ids, with facebook/musicgen-small (a tiny model under that id)
    in an offline Hub cache."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    home = tmp_path_factory.mktemp("hf_home")
    build_hub_cache(home / "hub", SMALL, {p.name: p for p in Path(hf_musicgen_dir[1]).iterdir() if p.is_file()})
    env = {**os.environ, "HF_HOME": str(home), "HF_HUB_OFFLINE": "1"}
    log = tmp_path_factory.mktemp("server") / "app.log"
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, str(ROOT / "app.py"), "--model", str(hf_melody_dir[1]),
                                 "--port", str(port)], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 90
    while True:
        try:
            urllib.request.urlopen(url, timeout=2)
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"app.py did not start:\n{log.read_text()[-3000:]}")
            time.sleep(0.5)
    yield url
    proc.terminate()
    proc.wait(timeout=30)


@pytest.mark.slow
@pytest.mark.browser
def test_generate_in_the_browser(server, tmp_path):
    if not Path(CHROMIUM).is_file():
        pytest.skip(f"{CHROMIUM} is missing: apt-get install chromium (as .ci/run does)")
    from playwright.sync_api import expect, sync_playwright

    shots = []

    def shoot(page, name: str) -> None:
        page.mouse.move(0, 0)  # no hover highlight
        shots.append(tmp_path / f"{len(shots) + 1}_{name}.png")
        page.screenshot(path=str(shots[-1]), full_page=True)

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(60_000)
            page.goto(server)
            expect(page.locator("#model input")).to_have_value(re.compile(r"^hf_melody"))
            expect(page.locator("#model-info")).to_contain_text("Loaded: 1 channel(s), follows melodies")
            shoot(page, "start")
            page.locator("#prompt textarea").fill("gentle lullaby on a music box")
            page.locator("#melody button[aria-label='Upload file']").click()
            page.locator("#melody input[type=file]").set_input_files(str(ROOT / "assets/examples/twinkle_whistle.wav"))
            expect(page.locator("#melody-chroma img")).to_be_visible()  # the notes heard, what the model will follow
            duration = page.locator("#duration input[type=number]")
            duration.fill("2")
            duration.press("Enter")
            page.locator("#generate").click()
            expect(page.locator("#token-grid img")).to_be_visible()
            expect(page.locator("#chroma-comparison img")).to_be_visible()
            expect(page.locator("#stats")).to_contain_text("real time")
            expect(page.locator("#download")).to_contain_text(".wav")
            page.wait_for_function(AUDIO_READY, arg="player")
            expect(page.locator("#stats")).to_contain_text("Seed")
            shoot(page, "melody_generated")

            page.locator("#melody button[aria-label='Clear']").click()  # text only with an official model
            page.locator("#model input").click()
            page.locator("#model input").fill("musicgen-small")
            page.get_by_role("option", name=f"{SMALL} · 300M params").click()
            expect(page.locator("#model-info")).to_contain_text("Loaded: 1 channel(s)")
            expect(page.locator("#model-info")).to_contain_text("non-commercial use only")
            page.get_by_label("2", exact=True).check()  # two takes
            page.locator("#seed input").fill("21")
            page.locator("#generate").click()
            expect(page.locator("#stats")).to_contain_text("x 2 takes")
            expect(page.locator("#stats")).to_contain_text(f"model {SMALL}")
            for take, seed in (("take-0", 21), ("take-1", 22)):  # each take has its own seed
                expect(page.locator(f"#{take}")).to_be_visible()
                expect(page.locator(f"#{take}")).to_contain_text(f"of 2 (seed {seed})")
            expect(page.locator("#take-2")).to_be_hidden()
            shoot(page, "two_takes")

            page.locator("#history input").click()  # replay the second take from the history
            page.get_by_role("option", name="take 2/2, seed 22").click()
            expect(page.locator("#history-info")).to_contain_text("take 2/2, seed 22")
            page.wait_for_function(AUDIO_READY, arg="history-player")
            page.locator("#seed input").fill("")
            page.locator("#prompt textarea").fill("something else")
            page.locator("#restore").click()  # and load it back into the form
            expect(page.locator("#seed input")).to_have_value("22")  # the take alone: its seed, one take
            expect(page.locator("#prompt textarea")).to_have_value("gentle lullaby on a music box")
            shoot(page, "history_replay")

            duration.fill("120")  # Cancel: the stream stops, no further chunk arrives
            duration.press("Enter")
            page.locator("#generate").click()
            expect(page.locator("#stats")).to_contain_text(re.compile(r"Generating\.\.\. \d+\.0 s of 120 s"))
            page.locator("#cancel").click()
            expect(page.locator("#stats")).to_have_text("Cancelled.", timeout=15_000)
            time.sleep(2)
            expect(page.locator("#stats")).to_have_text("Cancelled.")
        finally:
            browser.close()
    if folder := os.environ.get("DEMO_SCREENSHOTS"):
        Path(folder).mkdir(parents=True, exist_ok=True)
        for shot in shots:
            shutil.copy(shot, Path(folder) / shot.name)
