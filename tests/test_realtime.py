"""Will streaming keep up: the arithmetic of the estimate and the measurement on a loaded model."""
from __future__ import annotations

import math

import pytest

from musicgen_core import MusicGen
from musicgen_core.realtime import Realtime


def test_a_model_faster_than_real_time_streams_without_waiting():
    fast = Realtime(steps_per_s=100.0, decode_s_per_s=0.1, frame_rate=50.0, batch=1)
    assert fast.rtf == pytest.approx(1 / 0.6) and fast.keeps_up and fast.wait_s(30.0) == 0.0
    assert fast.message(10.0) == "Streams without gaps on this machine (1.7x real time)."


def test_a_slow_model_says_how_long_playback_must_wait():
    slow = Realtime(steps_per_s=25.0, decode_s_per_s=0.5, frame_rate=50.0, batch=1)  # 2.5 s per audio second
    assert slow.rtf == pytest.approx(0.4) and not slow.keeps_up
    assert slow.wait_s(10.0) == pytest.approx(15.0)  # done after 25 s: starting 15 s late, the last chunk is on time
    assert slow.message(10.0) == ("Too slow to stream without gaps on this machine (0.40x real time): 10 s of music "
                                  "takes about 25 s; playback starts after about 15 s of buffering.")


@pytest.mark.parametrize("folder", ["hf_musicgen_dir", "hf_melody_dir"])
def test_measurement_runs_the_lm_as_generation_does(folder, request):
    model = MusicGen.from_pretrained(request.getfixturevalue(folder)[1], device="cpu")
    rows = []
    hook = model.lm.register_forward_hook(lambda m, args, out: rows.append(out.shape[0]))
    estimate = model.measure_realtime(batch=2)
    hook.remove()
    assert rows == [4] * 10  # prefill + warm-up + 8 timed steps, CFG doubling the batch of 2
    assert estimate.batch == 2 and estimate.frame_rate == model.frame_rate
    assert all(math.isfinite(v) and v > 0 for v in (estimate.steps_per_s, estimate.decode_s_per_s, estimate.rtf))
