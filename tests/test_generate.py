"""Generation features: sampling rules, continuation, long-form windows, streaming, progress, melody batches."""
from __future__ import annotations

import copy
import dataclasses

import pytest
import torch

from musicgen_core import MusicGen
from musicgen_core.sampling import GenerationParams, guide, sample_next_token
from musicgen_core.validation import InputError


@pytest.fixture(scope="module")
def model(hf_musicgen_dir) -> MusicGen:
    return MusicGen.from_pretrained(hf_musicgen_dir[1], device="cpu")


@pytest.fixture(scope="module")
def melody_model(hf_melody_dir) -> MusicGen:
    return MusicGen.from_pretrained(hf_melody_dir[1], device="cpu")


@pytest.fixture(autouse=True)
def shared_models_stay_untouched(request):
    """The module's models are shared: a test may not leave settings behind for the next one."""
    models = [request.getfixturevalue(n) for n in ("model", "melody_model") if n in request.fixturenames]
    before = [(m.params, m._progress, m._step) for m in models]
    yield
    assert [(m.params, m._progress, m._step) for m in models] == before


def short_windows(m: MusicGen, max_duration: float) -> MusicGen:
    """The same weights with a shorter max_duration, so long-form windowing is cheap to exercise."""
    return MusicGen(m.lm, m.codec, m.text_encoder, dataclasses.replace(m.config, max_duration=max_duration))


def test_top_k_top_p_and_greedy():
    torch.manual_seed(0)
    logits = torch.randn(3, 4, 50)
    g = torch.Generator().manual_seed(0)
    top = logits.topk(5, dim=-1).indices
    for _ in range(20):
        tok = sample_next_token(logits, GenerationParams(top_k=5), g)
        assert (tok[..., None] == top).any(-1).all()
    probs = torch.softmax(logits, -1).sort(-1, descending=True)
    # top_p overrides top_k: with p tiny only the most likely token survives
    tok = sample_next_token(logits, GenerationParams(top_k=50, top_p=1e-6), g)
    assert torch.equal(tok, probs.indices[..., 0])
    assert torch.equal(sample_next_token(logits, GenerationParams(temperature=0.0), g), logits.argmax(-1))
    assert torch.equal(sample_next_token(logits, GenerationParams(use_sampling=False), g), logits.argmax(-1))


def test_temperature_zero_is_greedy_and_top_k_zero_is_no_filter():
    torch.manual_seed(0)
    logits = torch.randn(4, 3, 16)
    for p in (GenerationParams(temperature=0.0), GenerationParams(temperature=-1.0), GenerationParams(top_k=1),
              GenerationParams(use_sampling=False, top_p=0.9)):
        assert torch.equal(sample_next_token(logits, p, torch.Generator().manual_seed(1)), logits.argmax(-1)), p
    for top_k in (0, 16, 100):  # no filter, a filter keeping every token, one larger than the vocabulary
        draws = sample_next_token(logits, GenerationParams(top_k=top_k), torch.Generator().manual_seed(1))
        unfiltered = torch.multinomial(logits.softmax(-1).flatten(0, 1), 1, generator=torch.Generator().manual_seed(1))
        assert torch.equal(draws, unfiltered.view(4, 3)), top_k


def test_temperature_scales_the_distribution():
    logits = torch.tensor([[[2.0, 1.0, 0.0]]])
    for temperature in (0.5, 2.0):
        g = torch.Generator().manual_seed(2)
        draws = sample_next_token(logits, GenerationParams(top_k=0, temperature=temperature), g)
        expected = torch.multinomial((logits / temperature).softmax(-1).flatten(0, 1), 1,
                                     generator=torch.Generator().manual_seed(2))
        assert torch.equal(draws, expected.view(1, 1))


def test_top_k_keeps_exactly_the_k_most_likely():
    logits = torch.tensor([[[4.0, 3.0, 2.0, 1.0, 0.0]]])
    g = torch.Generator().manual_seed(0)
    seen = {int(sample_next_token(logits, GenerationParams(top_k=2, temperature=8.0), g)) for _ in range(300)}
    assert seen == {0, 1}


def test_guidance_mixes_conditional_and_unconditional():
    cond, uncond = torch.tensor([[1.0, 4.0]]), torch.tensor([[2.0, 0.0]])
    torch.testing.assert_close(guide(torch.cat([cond, uncond]), 3.0), uncond + (cond - uncond) * 3.0)
    torch.testing.assert_close(guide(torch.cat([cond, uncond]), 1.0), cond)


def test_top_p_keeps_the_nucleus():
    probs = torch.tensor([[[0.5, 0.3, 0.15, 0.05]]])
    g = torch.Generator().manual_seed(0)
    seen = {int(sample_next_token(probs.log(), GenerationParams(top_p=0.7), g)) for _ in range(200)}
    assert seen == {0, 1}


def test_bare_string_and_shapes(model):
    wav, codes = model.generate("a single prompt", return_tokens=True, seed=0, duration=0.2)
    assert codes.shape == (1, 4, 10) and wav.shape == (1, 1, 10 * 640)
    assert wav.dtype == torch.float32 and model.last_seed == 0


def test_continuation_keeps_the_prompt(model):
    prompt = torch.randn(2, 1, 3000) * 0.1  # 0.09375 s -> 5 frames
    prompt_codes = model.compression_model.encode(prompt)
    wav, codes = model.generate_continuation(prompt, 32000, ["folk", None], return_tokens=True, duration=0.4,
                                             use_sampling=False)
    assert codes.shape == (2, 4, 20)
    assert torch.equal(codes[..., :5], prompt_codes)
    assert wav.shape[-1] == 20 * 640
    with pytest.raises(ValueError, match=r"The audio to continue is 0\.09 s long: set the duration to at least 1 s"):
        model.generate_continuation(prompt, 32000, duration=0.05)


def test_a_renormalising_codec_continues_a_quiet_prompt_at_its_level(model):
    """The prompt is coded at the codec's level and the output given the prompt's level back: a 16 times quieter
    prompt (exactly, a power of two) continues into the same music 16 times quieter, in generate and stream alike."""
    norm = copy.deepcopy(model.codec)
    norm.cfg = dataclasses.replace(norm.cfg, input_rms_db=-20.0)
    m = MusicGen(model.lm, norm, model.text_encoder, model.config)
    prompt, p = torch.randn(1, 1, 3200) * 0.1, GenerationParams(duration=0.3, use_sampling=False)
    loud, loud_codes = m.generate_continuation(prompt, 32000, return_tokens=True, params=p)
    quiet, quiet_codes = m.generate_continuation(prompt / 16, 32000, return_tokens=True, params=p)
    assert torch.equal(quiet_codes, loud_codes) and torch.allclose(quiet * 16, loud, atol=1e-6)
    streamed = torch.cat(list(m.stream(prompt=prompt / 16, prompt_sample_rate=32000, params=p)), dim=-1)
    assert torch.allclose(streamed, quiet, atol=1e-6)


def test_continuation_resamples_and_downmixes(model):
    wav = model.generate_continuation(torch.randn(2, 1600) * 0.1, 16000, seed=1, duration=0.3)  # [C, T] at 16 kHz
    assert wav.shape == (1, 1, 15 * 640)


def test_long_form_windows(model):
    short = short_windows(model, max_duration=0.4)  # 20 frames a window
    p = GenerationParams(duration=1.0, use_sampling=False, extend_stride=0.2)
    assert short._windows(50, 0, p) == [(0, 20, 0), (10, 20, 10), (20, 20, 10), (30, 20, 10)]
    _, codes = short.generate(["jazz"], return_tokens=True, params=p)
    assert codes.shape == (1, 4, 50)
    _, first = short.generate(["jazz"], return_tokens=True, params=dataclasses.replace(p, duration=0.4))
    assert torch.equal(codes[..., :20], first)  # the first window is an ordinary generation


def test_a_prompt_longer_than_the_window_keeps_its_last_part(model):
    short = short_windows(model, max_duration=0.4)  # 20 frames a window, stride 12: later windows keep 8 frames
    p = GenerationParams(duration=0.6, use_sampling=False)
    assert short._windows(30, 22, p) == [(14, 16, 8)]  # the last 8 prompt frames, then 8 new ones
    prompt = torch.randn(1, 1, 22 * 640) * 0.1
    _, codes = short.generate_continuation(prompt, 32000, ["jazz"], return_tokens=True, params=p)
    assert codes.shape == (1, 4, 30)
    assert torch.equal(codes[..., :22], short.compression_model.encode(prompt))


def test_long_form_with_melody(melody_model):
    short = short_windows(melody_model, max_duration=0.4)
    melody = torch.sin(torch.arange(20000) / 32000 * 2 * torch.pi * 440)[None]
    wav, codes = short.generate_with_chroma(["a tune"], [melody], 32000, return_tokens=True, seed=3, duration=0.9,
                                            extend_stride=0.2)
    assert codes.shape == (1, 4, 45)


def test_progress_callback_counts_every_step(model):
    calls, printed = [], []
    model.generate(["x"], seed=0, duration=0.2, progress=lambda done, total: calls.append((done, total)))
    assert [d for d, _ in calls] == list(range(1, len(calls) + 1))
    assert calls[-1][0] == calls[-1][1] == 10 + 3  # 10 frames + 3 delay steps
    model.set_custom_progress_callback(lambda done, total: printed.append(done))  # audiocraft's way
    try:
        model.generate(["x"], seed=0, duration=0.2, progress=True)
    finally:
        model.set_custom_progress_callback(None)
    assert printed == [d for d, _ in calls]


def test_stream_equals_generate(model):
    full = model.generate(["rock"], seed=7, duration=0.6)
    chunks = list(model.stream(["rock"], seed=7, chunk_duration=0.1, duration=0.6))
    assert len(chunks) > 3
    torch.testing.assert_close(torch.cat(chunks, dim=-1), full, atol=1e-5, rtol=0)
    _, codes = model.generate(["rock"], seed=7, return_tokens=True, duration=0.6)
    pairs = list(model.stream(["rock"], seed=7, chunk_duration=0.1, return_tokens=True, duration=0.6))
    assert torch.equal(torch.cat([c for _, c in pairs], dim=-1), codes)


def test_unconditional(model):
    wav = model.generate_unconditional(3, seed=0, duration=0.2)
    assert wav.shape == (3, 1, 10 * 640) and torch.isfinite(wav).all()


def test_melody_batch_with_missing_and_unequal_melodies(melody_model):
    melodies = [torch.randn(1, 40000) * 0.1, None, torch.randn(2, 9000) * 0.1]
    wav = melody_model.generate_with_chroma(["a", "b", "c"], melodies, 32000, seed=0, duration=0.2)
    assert wav.shape == (3, 1, 10 * 640)


def test_melody_errors(model, melody_model):
    with pytest.raises(ValueError, match="is not a melody model"):
        model.generate_with_chroma(["a"], [torch.randn(1, 1000)], 32000)
    with pytest.raises(ValueError, match="got 2 melodies for 1 descriptions"):
        melody_model.generate_with_chroma(["a"], [torch.randn(1, 1000)] * 2, 32000)


def test_cfg_coef_one_skips_the_unconditional_pass(model):
    calls = []
    handle = model.lm.register_forward_hook(lambda m, args, out: calls.append(args[0].shape[0]))
    try:
        model.generate(["a", "b"], seed=0, duration=0.1, cfg_coef=1.0)
        model.generate(["a", "b"], seed=0, duration=0.1, cfg_coef=3.0)
    finally:
        handle.remove()
    n = len(calls) // 2
    assert set(calls[:n]) == {2} and set(calls[n:]) == {4}


def test_default_extend_stride_is_sixty_percent_of_the_window(model):
    short = short_windows(model, max_duration=0.4)  # 20 frames a window, default stride 12 frames
    assert short._windows(40, 0, GenerationParams(duration=0.8)) == [(0, 20, 0), (12, 20, 8), (24, 16, 8)]
    assert short.generate(["jazz"], seed=0, duration=0.8).shape[-1] == 40 * 640


def test_one_seed_per_piece_gives_each_piece_what_its_seed_gives_alone(model):
    _, both = model.generate(["rock", "rock"], seed=[11, 12], return_tokens=True, duration=0.3)
    assert model.last_seed == [11, 12]
    for row, seed in enumerate((11, 12)):
        _, alone = model.generate(["rock"], seed=seed, return_tokens=True, duration=0.3)
        assert torch.equal(both[row], alone[0])
    assert not torch.equal(both[0], both[1])
    _, shared = model.generate(["rock", "rock"], seed=11, return_tokens=True, duration=0.3)
    assert not torch.equal(shared[1], both[1])  # one seed draws the whole batch from one generator
    with pytest.raises(InputError, match=r"^got 3 seeds for 2 pieces: give one seed, or one per piece\.$"):
        model.generate(["a", "b"], seed=[1, 2, 3], duration=0.2)


def test_one_seed_per_piece_through_the_static_step(hf_musicgen_dir):
    static = MusicGen.from_pretrained(hf_musicgen_dir[1]).compile(mode=None)  # the Gumbel-noise step, eager
    _, both = static.generate(["jazz", "jazz"], seed=[5, 6], return_tokens=True, duration=0.3)
    for row, seed in enumerate((5, 6)):
        assert torch.equal(both[row], static.generate(["jazz"], seed=seed, return_tokens=True, duration=0.3)[1][0])
