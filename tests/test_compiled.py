"""The compiled decode step (static KV cache, CFG and Gumbel-max sampling in one graph): the same greedy codes as the
eager path, the same sampling distribution, and a full `torch.compile(fullgraph=True)` capture. On CUDA the step is
also captured in a CUDA graph ("reduce-overhead"); that test is skipped without a GPU."""
from __future__ import annotations

import pytest
import torch

from musicgen_core import MusicGen
from musicgen_core.sampling import GenerationParams, gumbel_noise, sample_next_token, sample_with_noise

PROMPTS = ["calm piano", "an energetic rock song with drums"]


def codes(model: MusicGen, **params) -> torch.Tensor:
    model.set_generation_params(duration=1.0, **params)
    return model.generate(PROMPTS, return_tokens=True, seed=3)[1]


@pytest.mark.parametrize("folder", ["hf_musicgen_dir", "hf_melody_dir"])
def test_static_step_gives_the_eager_greedy_codes(folder, request):
    path = request.getfixturevalue(folder)[1]
    eager, static = MusicGen.from_pretrained(path, device="cpu"), MusicGen.from_pretrained(path, device="cpu")
    static.compile(mode=None)  # the static step, run eagerly
    assert torch.equal(codes(eager, use_sampling=False), codes(static, use_sampling=False))
    assert torch.equal(codes(static, use_sampling=False), codes(static, use_sampling=False))  # cache reuse is clean
    sampled = codes(static)
    assert sampled.shape == (2, 4, 50) and torch.equal(sampled, codes(static))  # seeded


@pytest.mark.parametrize("params", [GenerationParams(top_k=3), GenerationParams(top_k=0, top_p=0.8),
                                    GenerationParams(top_k=5, temperature=0.7)])
def test_gumbel_sampler_draws_the_same_distribution(params):
    torch.manual_seed(0)
    logits = torch.randn(1, 1, 8)
    n = 20000  # draws, as one batch of n rows with the same logits
    gen = torch.Generator().manual_seed(1)
    multinomial = sample_next_token(logits.expand(n, 1, 8), params, gen).flatten()
    gumbel = gumbel_noise((n, 1, 8), gen, torch.device("cpu"))
    noise = sample_with_noise(logits.expand(n, 1, 8), params, gumbel).flatten()
    expected, got = (torch.bincount(t, minlength=8).float() / n for t in (multinomial, noise))
    assert (expected > 0).sum() >= 2 and torch.equal(expected > 0, got > 0)  # the same support
    assert (expected - got).abs().max() < 0.02
    greedy = GenerationParams(use_sampling=False)
    assert torch.equal(sample_with_noise(logits, greedy, gumbel[:1]), logits.argmax(-1))



def test_both_samplers_agree_at_the_edges_and_draw_from_their_own_generator():
    n, cpu = 4000, torch.device("cpu")
    gen = torch.Generator().manual_seed(0)
    logits = torch.tensor([1.5, 1.0, 1.0, 1.0, 0.0, 0.0, -1.0, -1.0]).expand(n, 1, 8)  # n rows of the same logits
    noise = gumbel_noise((n, 1, 8), gen, cpu)
    for greedy in (GenerationParams(use_sampling=False), GenerationParams(temperature=0.0), GenerationParams(top_k=1)):
        assert (sample_next_token(logits, greedy, gen) == 0).all()
        assert (sample_with_noise(logits, greedy, noise) == 0).all()
    assert (sample_with_noise(logits, GenerationParams(), None) == 0).all()  # no noise given: greedy
    everything = GenerationParams(top_k=0)  # no filter: every token is drawn
    assert sample_next_token(logits, everything, gen).unique().numel() == 8
    assert sample_with_noise(logits, everything, noise).unique().numel() == 8
    # top_p keeps the tokens whose preceding probability mass is at most top_p (audiocraft): of 4 equal tokens, 0.5
    # keeps 3 (masses before them 0, 0.25, 0.5)
    uniform, top_p = torch.zeros(n, 1, 4), GenerationParams(top_k=0, top_p=0.5)
    assert sample_next_token(uniform, top_p, gen).unique().numel() == 3
    assert sample_with_noise(uniform, top_p, gumbel_noise((n, 1, 4), gen, cpu)).unique().numel() == 3
    draws = []
    for global_seed in (1, 2):  # torch's global generator is not used
        torch.manual_seed(global_seed)
        draws += [sample_next_token(uniform, top_p, torch.Generator().manual_seed(7)),
                  sample_next_token(logits, GenerationParams(top_k=5), torch.Generator().manual_seed(7))]
    assert torch.equal(draws[0], draws[2]) and torch.equal(draws[1], draws[3])

@pytest.mark.slow
def test_compiled_step_captures_the_whole_graph(hf_melody_dir):
    """fullgraph=True fails on any graph break, so this proves the step is one capturable graph (inductor on CPU)."""
    eager = MusicGen.from_pretrained(hf_melody_dir[1], device="cpu")
    compiled = MusicGen.from_pretrained(hf_melody_dir[1], device="cpu").compile(mode="default")
    assert torch.equal(codes(eager, use_sampling=False), codes(compiled, use_sampling=False))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_cuda_graph_step_matches_eager(hf_musicgen_dir, precision):
    eager = MusicGen.from_pretrained(hf_musicgen_dir[1], device="cuda", precision=precision)
    graphed = MusicGen.from_pretrained(hf_musicgen_dir[1], device="cuda", precision=precision).compile()
    reference = codes(eager, use_sampling=False)
    for _ in range(2):  # warm-up / recording, then replay
        got = codes(graphed, use_sampling=False)
    agreement = (got == reference).float().mean().item()
    assert agreement == 1.0 if precision == "fp32" else agreement > 0.9
