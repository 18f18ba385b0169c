"""Will streaming keep up? A short measurement of a loaded model on this machine, before a request is streamed.

Streaming plays each chunk as soon as it is decoded, so playback has no gaps when audio is made faster than it plays:
real-time factor (audio seconds per wall second) >= 1. A slower model can still play without gaps if the player
waits before starting: a piece of D seconds made at factor r < 1 is done after D / r seconds, so starting D / r - D
seconds late (`wait_s`) lets the last chunk arrive just in time.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Realtime:
    """Measured speed of one model and batch size: LM steps/s (CFG included) and codec seconds per audio second."""

    steps_per_s: float
    decode_s_per_s: float
    frame_rate: float
    batch: int

    @property
    def rtf(self) -> float:
        """Audio seconds made per wall second (one LM step per frame, plus decoding)."""
        return 1 / (self.frame_rate / self.steps_per_s + self.decode_s_per_s)

    @property
    def keeps_up(self) -> bool:
        return self.rtf >= 1

    def wait_s(self, duration: float) -> float:
        """Seconds to buffer before playing `duration` seconds so that playback never waits for audio."""
        return max(0.0, duration * (1 / self.rtf - 1))

    def message(self, duration: float) -> str:
        speed = f"{self.rtf:.1f}x real time" if self.rtf >= 0.95 else f"{self.rtf:.2f}x real time"
        if self.keeps_up:
            return f"Streams without gaps on this machine ({speed})."
        return (f"Too slow to stream without gaps on this machine ({speed}): {duration:g} s of music takes about "
                f"{duration / self.rtf:.0f} s; playback starts after about {self.wait_s(duration):.0f} s of buffering.")


@torch.no_grad()
def measure_realtime(model, batch: int = 1, steps: int = 8) -> Realtime:
    """Time `steps` cached LM decoding steps (batch x 2 rows with CFG, as generation runs them) and the codec
    decoding one second of frames, after a warm-up of each. Takes about (steps + 1) / steps_per_s + 2 decodes."""
    lm, codec = model.lm, model.compression_model
    K, special = lm.cfg.n_q, lm.cfg.special_token
    ctx = model._context(["music"] * batch, None, None, cfg=True)
    cache = lm.new_cache(2 * batch, ctx.prefix_len + steps + 2)
    x = torch.full((2 * batch, K, 1), special, dtype=torch.long, device=model.device)
    lm(x, ctx, cache, start=0)  # prefill (and warm-up)
    lm(x, ctx, cache, start=1)
    start = time.perf_counter()
    for i in range(2, steps + 2):
        lm(x, ctx, cache, start=i)
    steps_per_s = steps / (time.perf_counter() - start)
    frames = int(model.frame_rate)
    codes = torch.randint(0, lm.cfg.card, (batch, K, frames), device=model.device)
    codec.decode(codes[..., :4])  # warm-up
    start = time.perf_counter()
    codec.decode(codes)
    return Realtime(steps_per_s, time.perf_counter() - start, float(model.frame_rate), batch)
