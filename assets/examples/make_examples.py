"""Make the demo's example melodies (public-domain tunes, synthesised here): `python assets/examples/make_examples.py`.

- ode_to_joy_hum.wav: a hummed voice (harmonics shaped by nasal "mm" formants, vibrato, glides, breath);
- twinkle_whistle.wav: a whistle (near-pure tone with scoops into notes and breath noise);
- frere_jacques_piano.wav: a General-MIDI acoustic grand piano rendered with tinysoundfont (FluidR3 Mono when Debian's
  fluidr3mono-gm-soundfont is installed, else the TimGM6mb font inside the pretty_midi wheel).

Each is mono 32 kHz 16-bit WAV, under 8 s. The random generator is seeded, so the files are reproducible.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import soundfile as sf

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root, for musicgen_core
from musicgen_core.eval.voices import SR, hum, instrument, whistle  # noqa: E402
from musicgen_core.train.render import finish  # noqa: E402

OUT = Path(__file__).resolve().parent
# (MIDI pitch, beats); public-domain tunes
ODE_TO_JOY = [(64, 1), (64, 1), (65, 1), (67, 1), (67, 1), (65, 1), (64, 1), (62, 1),
              (60, 1), (60, 1), (62, 1), (64, 1), (64, 1.5), (62, 0.5), (62, 2)]
TWINKLE = [(72, 1), (72, 1), (79, 1), (79, 1), (81, 1), (81, 1), (79, 2),
           (77, 1), (77, 1), (76, 1), (76, 1), (74, 1), (74, 1), (72, 2)]
FRERE_JACQUES = [(65, 1), (67, 1), (69, 1), (65, 1), (65, 1), (67, 1), (69, 1), (65, 1),
                 (69, 1), (70, 1), (72, 2), (69, 1), (70, 1), (72, 2)]


def timeline(notes, bpm: float, lead_in: float = 0.3) -> list[tuple[int, float, float]]:
    """(pitch, start_s, end_s) per note."""
    out, t = [], lead_in
    for pitch, beats in notes:
        out.append((pitch, t, t + beats * 60 / bpm))
        t += beats * 60 / bpm
    return out


def main() -> None:
    rng = np.random.default_rng(1785)
    clips = {
        "ode_to_joy_hum.wav": hum(timeline(ODE_TO_JOY, 132), rng, 7.9),
        "twinkle_whistle.wav": whistle(timeline(TWINKLE, 132), rng, 7.9),
        "frere_jacques_piano.wav": instrument(timeline(FRERE_JACQUES, 132), 0, 7.9),
    }
    for name, audio in clips.items():
        sf.write(OUT / name, finish(audio, -20.0), SR, subtype="PCM_16")
        print(f"wrote {OUT / name}")


if __name__ == "__main__":
    main()
