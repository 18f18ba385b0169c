"""A real browser against `python app.py`: Playwright drives Debian's chromium (installed by .ci/run) through the
demo: prompt, melody upload and its chromagram, Generate, the audio, the token grid and the chroma comparison."""
from __future__ import annotations

import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]
# streamed: an <audio> fed by HLS; not streamed (no ffmpeg): the waveform player shows the duration
AUDIO_READY = """() => {
    const audio = document.querySelector('#player audio'), shown = document.querySelector('#player time#duration');
    return (audio && audio.duration > 0) || (shown && shown.textContent.trim() !== '0:00');
}"""


@pytest.fixture(scope="module")
def server(hf_melody_dir, hf_musicgen_dir, tmp_path_factory):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = tmp_path_factory.mktemp("server") / "app.log"
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, str(ROOT / "app.py"), "--model", str(hf_melody_dir[1]),
                                 "--model", str(hf_musicgen_dir[1]), "--port", str(port)],
                                cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
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


def test_generate_in_the_browser(server, tmp_path):
    if not Path(CHROMIUM).is_file():
        pytest.skip(f"{CHROMIUM} is missing: apt-get install chromium (as .ci/run does)")
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(60_000)
            page.goto(server)
            page.locator("#prompt textarea").fill("gentle lullaby on a music box")
            page.locator("#melody button[aria-label='Upload file']").click()
            page.locator("#melody input[type=file]").set_input_files(str(ROOT / "assets/examples/twinkle_whistle.wav"))
            expect(page.locator("#melody-chroma img")).to_be_visible()  # what the model will follow
            duration = page.locator("#duration input[type=number]")
            duration.fill("2")
            duration.press("Enter")
            page.locator("#generate").click()
            expect(page.locator("#token-grid img")).to_be_visible()
            expect(page.locator("#chroma-comparison img")).to_be_visible()
            expect(page.locator("#stats")).to_contain_text("real time")
            expect(page.locator("#download")).to_contain_text(".wav")
            page.wait_for_function(AUDIO_READY)
            expect(page.locator("#stats")).to_contain_text("Seed")
            page.mouse.move(0, 0)  # no hover highlight in the screenshot
            shot = tmp_path / "demo.png"
            page.screenshot(path=str(shot), full_page=True)

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
    (ROOT / "runs").mkdir(exist_ok=True)
    shutil.copy(shot, ROOT / "runs" / "demo_screenshot.png")
