"""The MusicGen facade: text/melody/continuation generation, CFG, sampling, long-form windows, streaming.

Generation follows audiocraft's `LMModel.generate` (MusicGen §2.2-2.4): the codes are laid out with the model's
interleaving pattern, each step feeds the new pattern step through the LM with a static KV cache, classifier-free
guidance runs as one batch-2 forward (`uncond + (cond - uncond) * cfg_coef`), and positions the pattern marks invalid
are forced to the special token. Durations above `max_duration` use audiocraft's sliding windows.
"""
from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Callable, Iterator, Sequence

import torch

from .audio import convert_audio
from .codec import Codec, StreamingDecoder
from .conditioning.chroma import ChromaExtractor, null_chroma
from .conditioning.tempo import bpm_tensor
from .conditioning.text import TextEncoder
from .configs import MusicGenConfig
from .lm.model import Context, MusicLM
from .patterns import Pattern, get_pattern


@dataclass(frozen=True)
class GenerationParams:
    duration: float = 10.0
    use_sampling: bool = True
    top_k: int = 250
    top_p: float = 0.0
    temperature: float = 1.0
    cfg_coef: float = 3.0
    extend_stride: float | None = None  # None: 60 % of max_duration (audiocraft's 18 s for 30 s models)


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


def frame_steps(pattern: Pattern, n_q: int, frames: int) -> torch.Tensor:
    """[K, T] sequence step holding each (codebook, frame) code."""
    ids = torch.arange(n_q * frames).view(1, n_q, frames)
    seq, mask = pattern.build(ids, -1)  # [1, K, S]
    steps = torch.arange(seq.shape[-1]).expand_as(mask)
    out = torch.empty(n_q * frames, dtype=torch.long)
    out[seq[0][mask]] = steps[mask]
    return out.view(n_q, frames)


class MusicGen:
    """Text-to-music model: codec + LM + text encoder (+ chroma extractor for melody models)."""

    def __init__(self, lm: MusicLM, codec: Codec, text_encoder: TextEncoder | None, config: MusicGenConfig,
                 name: str = "musicgen"):
        self.lm, self.compression_model = lm.eval().requires_grad_(False), codec.eval().requires_grad_(False)
        self.text_encoder = text_encoder
        self.config, self.name = config, name
        self.pattern = get_pattern(config.lm.pattern, config.lm.n_q, **dict(config.lm.pattern_kwargs))
        self.chroma = ChromaExtractor(sample_rate=codec.sample_rate).to(self.device) if config.lm.chroma else None
        self.params = GenerationParams()
        self.last_seed: int | None = None
        self._progress: Callable[[int, int], None] | None = None
        self._step: Callable | None = None  # the compiled decode step (see `compile`)
        self._caches: dict[tuple, list] = {}

    @classmethod
    def from_pretrained(cls, name_or_path: str | None = None, device=None, precision: str = "fp32") -> "MusicGen":
        """`None`/"default" -> the embedded default; else a transformers, audiocraft or own-format folder.

        precision: "fp32" (exact: the reference implementations' codes), "bf16" or "int8" (int8 weight-only linear
        layers, bf16 activations), which decode faster and agree with fp32 on most tokens (see quantize.py)."""
        from .checkpoints import load_model

        return load_model(name_or_path, device=device, precision=precision)

    # --- properties -------------------------------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return self.lm.emb.device

    @property
    def sample_rate(self) -> int:
        return self.compression_model.sample_rate

    @property
    def frame_rate(self) -> int:
        return self.compression_model.frame_rate

    @property
    def audio_channels(self) -> int:
        return self.config.codec.channels

    @property
    def max_duration(self) -> float:
        return self.config.max_duration

    @property
    def duration(self) -> float:
        return self.params.duration

    def set_generation_params(self, duration: float = 10.0, use_sampling: bool = True, top_k: int = 250,
                              top_p: float = 0.0, temperature: float = 1.0, cfg_coef: float = 3.0,
                              extend_stride: float | None = None) -> None:
        """Sampling settings for the next calls. Durations above max_duration are generated in windows that advance
        by `extend_stride` seconds (default: 60 % of max_duration, i.e. audiocraft's 18 s for 30 s models)."""
        self.params = GenerationParams(duration, use_sampling, int(top_k), top_p, temperature, cfg_coef,
                                       extend_stride)

    def set_custom_progress_callback(self, callback: Callable[[int, int], None] | None) -> None:
        self._progress = callback

    # --- public generation API --------------------------------------------------------------------------------
    def compile(self, mode: str | None = "reduce-overhead") -> "MusicGen":
        """Decode with one compiled step: LM step over a static KV cache + CFG + sampling, `torch.compile`d with
        fullgraph (on CUDA, "reduce-overhead" captures it in a CUDA graph; gpt-fast's recipe). The prefill and the
        pattern bookkeeping stay eager. Greedy decoding gives the eager path's codes; sampling draws the same
        distribution through Gumbel noise, so a seed gives different (equally likely) music than without compile.
        `mode=None` keeps the static step eager (what the CPU tests check). The static cache is shared, so a compiled
        model serves one request at a time. On CPU the eager path is faster (measured: inductor's code for the
        musicgen-small step ran at 0.4x of eager)."""
        self._step = self._decode_step if mode is None else torch.compile(self._decode_step, mode=mode,
                                                                          fullgraph=True)
        return self

    def generate(self, descriptions: Sequence[str | None] | str, progress: bool = False, return_tokens: bool = False,
                 seed: int | None = None):
        """Text -> wav [B, C, T] (and codes [B, K, F] with return_tokens)."""
        return self._run(_as_list(descriptions), None, None, progress, return_tokens, seed)

    def generate_unconditional(self, num_samples: int, progress: bool = False, return_tokens: bool = False,
                               seed: int | None = None):
        return self._run([None] * num_samples, None, None, progress, return_tokens, seed)

    def generate_with_chroma(self, descriptions, melody_wavs, melody_sample_rate: int, progress: bool = False,
                             return_tokens: bool = False, seed: int | None = None):
        """Follow the melody of `melody_wavs` ([B, C, T] or a list of [C, T] / None) at `melody_sample_rate`."""
        descriptions = _as_list(descriptions)
        return self._run(descriptions, self._melodies(melody_wavs, melody_sample_rate, len(descriptions)), None,
                         progress, return_tokens, seed)

    def generate_continuation(self, prompt: torch.Tensor, prompt_sample_rate: int, descriptions=None,
                              progress: bool = False, return_tokens: bool = False, seed: int | None = None):
        """Continue the audio `prompt` [B, C, T] or [C, T]; the output starts with the re-decoded prompt."""
        prompt_codes = self._encode_prompt(prompt, prompt_sample_rate)
        descriptions = [None] * prompt_codes.shape[0] if descriptions is None else _as_list(descriptions)
        return self._run(descriptions, None, prompt_codes, progress, return_tokens, seed)

    def stream(self, descriptions=None, melody_wavs=None, melody_sample_rate: int | None = None,
               prompt: torch.Tensor | None = None, prompt_sample_rate: int | None = None, seed: int | None = None,
               chunk_duration: float = 0.5, return_tokens: bool = False):
        """Yield wav chunks [B, C, n] while generating (with return_tokens: (wav chunk, codes [B, K, f] of the frames
        it covers)); their concatenation is the whole piece, as `generate` decodes it (`codec.StreamingDecoder`: each
        chunk is decoded once the few frames of look-ahead the codec reads are known)."""
        prompt_codes = None if prompt is None else self._encode_prompt(prompt, prompt_sample_rate)
        n = prompt_codes.shape[0] if prompt_codes is not None else 1
        descriptions = [None] * n if descriptions is None else _as_list(descriptions)
        melodies = None if melody_wavs is None else self._melodies(melody_wavs, melody_sample_rate,
                                                                  len(descriptions))
        frames = self._frame_stream(descriptions, melodies, prompt_codes, self._generator(seed), self._progress)
        for wav, codes in self._decode_stream(frames, max(1, int(chunk_duration * self.frame_rate))):
            yield (wav, codes) if return_tokens else wav

    # --- internals ------------------------------------------------------------------------------------------
    def _run(self, descriptions, melodies, prompt_codes, progress, return_tokens, seed):
        callback = self._progress or (_print_progress if progress else None)
        frames = self._frame_stream(descriptions, melodies, prompt_codes, self._generator(seed), callback)
        codes = torch.cat(list(frames), dim=-1)
        with torch.no_grad():
            wav = self.compression_model.decode(codes)
        return (wav, codes) if return_tokens else wav

    def _generator(self, seed: int | None) -> torch.Generator:
        self.last_seed = random.randrange(2**31) if seed is None else int(seed)
        return torch.Generator(self.device).manual_seed(self.last_seed)

    def _decode_step(self, x: torch.Tensor, ctx: Context, cache: list, pos: torch.Tensor,
                     gumbel: torch.Tensor | None, cfg: bool) -> torch.Tensor:
        """Next tokens [B, K] for pattern step x [B, K, 1] at cache position pos (static shapes throughout)."""
        logits = self.lm.step(torch.cat([x, x]) if cfg else x, ctx, cache, pos)  # [B(*2), K, card]
        return sample_with_noise(guide(logits, self.params.cfg_coef) if cfg else logits, self.params, gumbel)

    def _static_cache(self, batch: int, prefix_len: int) -> list:
        """A KV cache sized for a full window, reused so the captured step keeps seeing the same tensors (stale entries
        beyond the current position are masked). Lengths round up to 64 so varying prompt lengths share one."""
        length = prefix_len + self.pattern.num_steps(int(self.max_duration * self.frame_rate))
        key = (batch, -(-length // 64) * 64)
        if key not in self._caches:
            self._caches[key] = self.lm.new_cache(*key)
        return self._caches[key]

    def _encode_prompt(self, prompt: torch.Tensor, sample_rate: int) -> torch.Tensor:
        prompt = prompt[None] if prompt.dim() == 2 else prompt
        wav = convert_audio(prompt.float().to(self.device), sample_rate, self.sample_rate, self.audio_channels)
        with torch.no_grad():
            return self.compression_model.encode(wav)  # [B, K, Tp]

    def _melodies(self, melody_wavs, sample_rate: int, batch: int) -> list[torch.Tensor | None]:
        if self.chroma is None:
            raise ValueError(f"{self.name} is not a melody model: use generate() or generate_continuation()")
        wavs = list(melody_wavs) if not isinstance(melody_wavs, torch.Tensor) or melody_wavs.dim() == 3 \
            else [melody_wavs]
        if len(wavs) != batch:
            raise ValueError(f"got {len(wavs)} melodies for {batch} descriptions")
        return [None if w is None else convert_audio(w.float().to(self.device), sample_rate, self.sample_rate, 1)[0]
                for w in wavs]

    def _chroma(self, melodies: list[torch.Tensor | None] | None, batch: int, start: float | None) -> torch.Tensor:
        """One-hot chroma [B, F, 12]. Null melodies give one-hot C; `start` (seconds) re-slices each melody into a
        looped `max_duration` window, as audiocraft does for long-form windows."""
        melodies = melodies or [None] * batch
        if start is not None:
            length = int(self.max_duration * self.sample_rate)
            melodies = [None if m is None else
                        m[(torch.arange(length, device=m.device) + int(start * self.sample_rate)) % m.shape[-1]]
                        for m in melodies]
        longest = max([m.shape[-1] for m in melodies if m is not None], default=1)
        wav = torch.zeros(batch, longest, device=self.device)  # shorter melodies are zero-padded, as upstream
        for i, m in enumerate(melodies):
            if m is not None:
                wav[i, :m.shape[-1]] = m
        return self.chroma(wav)

    def _context(self, descriptions, melodies, window_start: float | None, cfg: bool) -> Context:
        B = len(descriptions)
        text, mask = self.text_encoder(list(descriptions))
        chroma = self._chroma(melodies, B, window_start) if self.chroma is not None else None
        bpm = bpm_tensor(descriptions)
        if cfg:  # second half of the batch = null condition: zero text, one-hot-C chroma, unknown tempo
            text, mask = torch.cat([text, torch.zeros_like(text)]), torch.cat([mask, torch.zeros_like(mask)])
            bpm = torch.cat([bpm, torch.full_like(bpm, math.nan)])
            if chroma is not None:
                chroma = torch.cat([chroma, null_chroma(B, chroma.shape[1], chroma.device)])
        t0 = torch.full_like(bpm, window_start or 0.0)  # the music starts on a downbeat
        return self.lm.condition(text.to(self.device), mask.to(self.device), chroma, bpm, t0)

    def _windows(self, total: int, prompt_len: int) -> list[tuple[int, int, int]]:
        """audiocraft's long-form plan: (frame offset, frames incl. prompt, prompt frames) per window."""
        max_frames = int(self.max_duration * self.frame_rate)
        if total <= max_frames:
            return [(0, total, prompt_len)]
        extend = self.params.extend_stride
        extend = 0.6 * self.max_duration if extend is None else extend
        if not 0 < extend < self.max_duration:
            raise ValueError(f"extend_stride must be in (0, max_duration={self.max_duration}) for durations above "
                             f"max_duration, got {extend}")
        stride = int(extend * self.frame_rate)
        plan, offset = [], 0
        while offset + prompt_len < total:
            plan.append((offset, min(total - offset, max_frames), prompt_len))
            prompt_len = plan[-1][1] - stride
            offset += stride
        return plan

    @torch.no_grad()
    def _frame_stream(self, descriptions, melodies, prompt_codes, generator,
                      callback: Callable[[int, int], None] | None) -> Iterator[torch.Tensor]:
        """Yield codes [B, K, n] of newly completed frames, in order, the prompt's first."""
        p, B = self.params, len(descriptions)
        total = int(p.duration * self.frame_rate)
        prompt_len = 0 if prompt_codes is None else prompt_codes.shape[-1]
        if prompt_codes is not None and prompt_codes.shape[0] != B:
            raise ValueError(f"got {prompt_codes.shape[0]} prompts for {B} descriptions")
        if prompt_len > total:
            raise ValueError(f"the prompt ({prompt_len / self.frame_rate:.2f} s) is longer than the duration "
                             f"({p.duration:.2f} s)")
        conditional = any(d is not None for d in descriptions) or melodies is not None
        cfg = conditional and p.cfg_coef != 1.0
        plan = self._windows(total, prompt_len)
        steps_total = sum(self.pattern.num_steps(n) - self.pattern.first_step_with_timestep(t) for _, n, t in plan)
        done = 0

        def on_step():
            nonlocal done
            done += 1
            if callback is not None:
                callback(done, steps_total)

        history = prompt_codes
        if prompt_codes is not None:
            yield prompt_codes
        for offset, n_frames, _ in plan:
            ctx = self._context(descriptions, melodies, offset / self.frame_rate if len(plan) > 1 else None, cfg)
            window_prompt = None if history is None else history[..., offset:]
            for new in self._window(ctx, window_prompt, n_frames, B, cfg, generator, on_step):
                history = new if history is None else torch.cat([history, new], dim=-1)
                yield new

    def _window(self, ctx: Context, prompt: torch.Tensor | None, n_frames: int, B: int, cfg: bool,
                generator: torch.Generator, on_step: Callable[[], None]) -> Iterator[torch.Tensor]:
        """One window of at most max_duration: yields newly completed frames after the prompt."""
        lm, p = self.lm, self.params
        K, special = lm.cfg.n_q, lm.cfg.special_token
        prompt_len = 0 if prompt is None else prompt.shape[-1]
        codes = torch.full((B, K, n_frames), -1, dtype=torch.long, device=self.device)
        if prompt is not None:
            codes[..., :prompt_len] = prompt
        seq, valid = self.pattern.build(codes, special)  # [B, K, S], [K, S]
        S = seq.shape[-1]
        steps = frame_steps(self.pattern, K, n_frames).to(self.device)  # [K, T]
        ready = steps.max(dim=0).values.tolist()  # frame t is complete once step ready[t] is sampled
        start = self.pattern.first_step_with_timestep(prompt_len)
        B2 = B * (2 if cfg else 1)
        static = self._step is not None
        cache = self._static_cache(B2, ctx.prefix_len) if static else lm.new_cache(B2, ctx.prefix_len + S)
        emitted, prev, pos = prompt_len, 0, None
        for offset in range(start, S):
            x = seq[..., prev:offset]
            if static and offset > start:  # after the prefill: the compiled step
                pos = torch.tensor([ctx.prefix_len + prev], device=self.device) if pos is None else pos + 1
                gumbel = None if not p.use_sampling else -torch.log(-torch.log(
                    torch.rand(B, K, lm.cfg.card, generator=generator, device=self.device)))
                nxt = self._step(x, ctx, cache, pos, gumbel, cfg)
            else:
                logits = lm(torch.cat([x, x]) if cfg else x, ctx, cache, start=prev)[:, :, -1]  # [B(*2), K, card]
                nxt = sample_next_token(guide(logits, p.cfg_coef) if cfg else logits, p, generator)
            nxt = torch.where(valid[:, offset], nxt, special)
            cur = seq[..., offset]
            seq[..., offset] = torch.where(cur == -1, nxt, cur)  # never overwrite prompt tokens
            prev = offset
            on_step()
            n_ready = emitted
            while n_ready < n_frames and ready[n_ready] <= offset:
                n_ready += 1
            if n_ready > emitted:
                idx = steps[:, emitted:n_ready]  # [K, n]
                yield seq.gather(2, idx[None].expand(B, -1, -1))
                emitted = n_ready

    def _decode_stream(self, frames: Iterator[torch.Tensor], chunk: int):
        """(wav, codes) per chunk of `chunk` frames, each decoded as soon as the codec's look-ahead is known."""
        decoder, codes = StreamingDecoder(self.compression_model), None
        for new in frames:
            codes = new if codes is None else torch.cat([codes, new], dim=-1)
            while codes.shape[-1] - decoder.start >= chunk + decoder.lookahead:
                start = decoder.start
                yield decoder(codes, start + chunk), codes[..., start:start + chunk]
        if codes is not None and codes.shape[-1] > decoder.start:
            start = decoder.start
            yield decoder(codes, codes.shape[-1], final=True), codes[..., start:]


def _print_progress(done: int, total: int) -> None:
    print(f"{done:6d} / {total:6d}", end="\r" if done < total else "\n")


def _as_list(descriptions) -> list[str | None]:
    return [descriptions] if isinstance(descriptions, str) or descriptions is None else list(descriptions)
