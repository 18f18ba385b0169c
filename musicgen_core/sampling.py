"""Per-call generation settings and the token samplers: top-k / top-p / temperature, and classifier-free guidance.

`sample_next_token` draws with a torch.Generator (the eager decode loop); `sample_with_noise` draws the same
distribution from given Gumbel noise, so the compiled decode step holds no generator and no host synchronisation.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class GenerationParams:
    """Settings of one generation call (audiocraft's `set_generation_params` arguments)."""

    duration: float = 10.0
    use_sampling: bool = True
    top_k: int = 250
    top_p: float = 0.0
    temperature: float = 1.0
    cfg_coef: float = 3.0
    extend_stride: float | None = None  # None: 60 % of max_duration (audiocraft's 18 s for 30 s models)
    two_step_cfg: bool = False  # audiocraft's two forwards per step; one batched forward computes the same logits


def sample_next_token(logits: torch.Tensor, p: GenerationParams, generator: torch.Generator | None) -> torch.Tensor:
    """logits [B, K, card] -> tokens [B, K]. top_p > 0 overrides top_k; temperature 0 or no sampling is greedy."""
    if not p.use_sampling or p.temperature <= 0:
        return logits.argmax(dim=-1)
    probs = torch.softmax(logits / p.temperature, dim=-1)
    if p.top_p > 0:
        sorted_probs, order = probs.sort(dim=-1, descending=True)
        drop = sorted_probs.cumsum(dim=-1) - sorted_probs > p.top_p  # the top token is always kept
        sorted_probs = sorted_probs.masked_fill(drop, 0.0)
        pick = torch.multinomial(sorted_probs.flatten(0, -2), 1, generator=generator)
        return order.flatten(0, -2).gather(-1, pick).view(logits.shape[:-1])
    if p.top_k > 0:
        kth = probs.topk(min(p.top_k, probs.shape[-1]), dim=-1).values[..., -1:]
        probs = probs * (probs >= kth)  # ties at the threshold are kept, as in audiocraft
    return torch.multinomial(probs.flatten(0, -2), 1, generator=generator).view(logits.shape[:-1])


def gumbel_noise(shape: tuple[int, ...], generator: torch.Generator, device: torch.device) -> torch.Tensor:
    """Gumbel(0, 1) noise of `shape`, drawn from `generator` (the input of `sample_with_noise`)."""
    return -torch.log(-torch.log(torch.rand(shape, generator=generator, device=device)))


def sample_rows(logits: torch.Tensor, p: GenerationParams, generators: list[torch.Generator]) -> torch.Tensor:
    """`sample_next_token` drawing from one generator for the whole batch, or from one per row (a row then gets
    exactly the tokens it would get alone with its generator)."""
    if len(generators) == 1:
        return sample_next_token(logits, p, generators[0])
    return torch.cat([sample_next_token(row[None], p, g) for row, g in zip(logits, generators)])


def noise_rows(shape: tuple[int, ...], generators: list[torch.Generator], device: torch.device) -> torch.Tensor:
    """`gumbel_noise` of `shape` [B, ...] from one generator, or row by row from one generator per row."""
    if len(generators) == 1:
        return gumbel_noise(shape, generators[0], device)
    return torch.cat([gumbel_noise((1, *shape[1:]), g, device) for g in generators])


def sample_with_noise(logits: torch.Tensor, p: GenerationParams, gumbel: torch.Tensor | None) -> torch.Tensor:
    """The distribution of `sample_next_token`, drawn by Gumbel-max from given Gumbel(0, 1) noise [B, K, card]: no
    generator and no host synchronisation inside, so it can live in a compiled / CUDA-graph step."""
    if gumbel is None or not p.use_sampling or p.temperature <= 0:
        return logits.argmax(dim=-1)
    logits = logits / p.temperature
    if p.top_p > 0:
        sorted_logits, order = logits.sort(dim=-1, descending=True)
        probs = sorted_logits.softmax(dim=-1)
        drop = probs.cumsum(dim=-1) - probs > p.top_p  # the top token is always kept
        logits = logits.scatter(-1, order, sorted_logits.masked_fill(drop, float("-inf")))
    elif p.top_k > 0:
        kth = logits.topk(min(p.top_k, logits.shape[-1]), dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))  # ties at the threshold are kept
    return (logits + gumbel).argmax(dim=-1)


def guide(logits: torch.Tensor, cfg_coef: float) -> torch.Tensor:
    """Classifier-free guidance over a [conditional; unconditional] batch: [2B, ...] -> [B, ...]."""
    cond, uncond = logits.chunk(2)
    return uncond + (cond - uncond) * cfg_coef
