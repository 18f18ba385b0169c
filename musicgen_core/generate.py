"""The MusicGen facade: text/melody/continuation generation, CFG, sampling, long-form windows, streaming.

Generation follows audiocraft's `LMModel.generate` (MusicGen §2.2-2.4): the codes are laid out with the model's
interleaving pattern, each step feeds the new pattern step through the LM with a static KV cache, classifier-free
guidance runs as one batch-2 forward (`uncond + (cond - uncond) * cfg_coef`), and positions the pattern marks invalid
are forced to the special token. Durations above `max_duration` use audiocraft's sliding windows.
"""
from __future__ import annotations

import dataclasses
import math
import os
from typing import Callable, Iterator, Sequence

import torch

from .audio import convert_audio
from .checkpoints import load_folder, resolve
from .codec import Codec, StereoCodec, StreamingDecoder
from .conditioning.chroma import ChromaExtractor, null_chroma
from .conditioning.tempo import bpm_tensor
from .conditioning.text import TextEncoder
from .configs import MusicGenConfig
from .fast_linear import matvec_pays
from .lm.model import Context, MusicLM
from .patterns import Pattern, get_pattern
from .realtime import Realtime, measure_realtime
from .sampling import GenerationParams, guide, noise_rows, sample_rows, sample_with_noise
from .validation import InputError, check_continuation, check_descriptions, check_params, check_waveform


def frame_steps(pattern: Pattern, n_q: int, frames: int) -> torch.Tensor:
    """[K, T] sequence step holding each (codebook, frame) code."""
    ids = torch.arange(n_q * frames).view(1, n_q, frames)
    seq, mask = pattern.build(ids, -1)  # [1, K, S]
    steps = torch.arange(seq.shape[-1]).expand_as(mask)
    out = torch.empty(n_q * frames, dtype=torch.long)
    out[seq[0][mask]] = steps[mask]
    return out.view(n_q, frames)


Seed = int | Sequence[int] | None  # one seed for a batch, or one per piece

class MusicGen:
    """Text-to-music model: codec + LM + text encoder (+ chroma extractor for melody models).

    Holds weights only: every generation call takes its settings as `params=` / keyword arguments (defaults: those of
    `set_generation_params`), so concurrent calls never see each other's settings."""

    def __init__(self, lm: MusicLM, codec: Codec, text_encoder: TextEncoder | None, config: MusicGenConfig,
                 name: str = "musicgen"):
        self.lm, self.codec = lm.eval().requires_grad_(False), codec.eval().requires_grad_(False)
        self.compression_model = StereoCodec(codec) if config.audio_channels == 2 else codec
        self.text_encoder = text_encoder
        self.config, self.name = config, name
        self.pattern = get_pattern(config.lm.pattern, config.lm.n_q, **dict(config.lm.pattern_kwargs))
        self.chroma = ChromaExtractor(sample_rate=codec.sample_rate).to(self.device) if config.lm.chroma else None
        self.params = GenerationParams(duration=min(15.0, config.max_duration))  # audiocraft's default: 15 s
        self.last_seed: int | None = None  # the seed of the latest call, for scripts (concurrent callers pass seed=)
        self._progress: Callable[[int, int], None] | None = None
        self._step: Callable | None = None  # the compiled decode step (see `compile`)
        self._caches: dict[tuple, list] = {}

    @classmethod
    def from_pretrained(cls, name_or_path: str | os.PathLike | None = None, device=None, dtype=None,
                        precision: str | None = None, revision: str | None = None, cache_dir=None,
                        token: str | bool | None = None, local_files_only: bool = False) -> "MusicGen":
        """Load a model: `None`/"default" -> the embedded default; a folder in transformers', audiocraft's or our
        format; or a Hugging Face Hub id (`facebook/musicgen-small`, ...; audiocraft's short names small / medium /
        large / melody too), fetched through huggingface_hub's cache (`revision`, `cache_dir`, `token`,
        `local_files_only`, HF_HUB_OFFLINE as in transformers; see hub.py).

        precision: "fp32" (exact: the reference implementations' codes), "bf16" or "int8" (int8 weight-only linear
        layers), which decode faster and agree with fp32 on >= 90 % of top-1 tokens (see quantize.py and bench.py);
        "int4" (4-bit feed-forward layers, CPU) is measured but agrees less; `dtype=torch.bfloat16` is the same as
        precision="bf16"."""
        precision = precision or {None: "fp32", torch.float32: "fp32", torch.bfloat16: "bf16"}.get(dtype)
        if precision is None:
            raise ValueError(f"dtype {dtype} is not supported: use torch.float32 or torch.bfloat16 (or precision=)")
        folder, name = resolve(name_or_path, revision, cache_dir, token, local_files_only, device, precision)
        return cls(*load_folder(folder, device=device, precision=precision, name=name))

    @classmethod
    def get_pretrained(cls, name: str = "facebook/musicgen-melody", device=None) -> "MusicGen":
        """audiocraft's loader: a Hub id (or short name) or a local folder."""
        return cls.from_pretrained(name, device=device)

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
        return self.config.audio_channels

    @property
    def max_duration(self) -> float:
        return self.config.max_duration

    @property
    def duration(self) -> float:
        return self.params.duration

    def set_generation_params(self, use_sampling: bool = True, top_k: int = 250, top_p: float = 0.0,
                              temperature: float = 1.0, duration: float = 30.0, cfg_coef: float = 3.0,
                              cfg_coef_beta: float | None = None, two_step_cfg: bool = False,
                              extend_stride: float | None = None) -> None:
        """This model's default settings for later calls (audiocraft's signature and defaults; a call's own
        `params=` or keyword arguments override them). Durations above max_duration are generated in windows that
        advance by `extend_stride` seconds (default: 60 % of max_duration, i.e. audiocraft's 18 s for 30 s
        models). `cfg_coef_beta` (MusicGen-Style's double guidance) is not supported."""
        if cfg_coef_beta is not None:
            raise ValueError("cfg_coef_beta (MusicGen-Style's double classifier-free guidance) is not supported: "
                             "leave it None")
        self.params = check_params(GenerationParams(duration, use_sampling, top_k, top_p, temperature, cfg_coef,
                                                    extend_stride, two_step_cfg), self.max_duration)

    def measure_realtime(self, batch: int = 1) -> Realtime:
        """Whether `stream` keeps up on this machine at this batch size: a short timing (realtime.py) giving the
        real-time factor, the buffering a slower model needs before playback, and a message saying so."""
        return measure_realtime(self, batch)

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
        matvec_pays()  # measured now: a timing cannot be traced
        self._step = self._decode_step if mode is None else torch.compile(self._decode_step, mode=mode,
                                                                          fullgraph=True)
        return self

    def generate(self, descriptions: Sequence[str | None], progress: bool = False, return_tokens: bool = False,
                 seed: Seed = None, params: GenerationParams | None = None, **settings):
        """Text -> wav [B, C, T] (and codes [B, K, F] with return_tokens). `settings` (duration, top_k, ...) or
        `params` apply to this call only; `progress` is True (print steps) or a callable(done, total); `seed` is one
        seed for the batch or a list of one per piece (piece i is then what seed[i] gives it alone: variations)."""
        return self._run(check_descriptions(descriptions), None, None, progress, return_tokens, seed,
                         self._params(params, settings))

    def generate_unconditional(self, num_samples: int, progress: bool = False, return_tokens: bool = False,
                               seed: Seed = None, params: GenerationParams | None = None, **settings):
        if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 1:
            raise InputError(f"num_samples must be a whole number >= 1, got {num_samples!r}.")
        return self._run([None] * num_samples, None, None, progress, return_tokens, seed,
                         self._params(params, settings))

    def generate_with_chroma(self, descriptions, melody_wavs, melody_sample_rate: int, progress: bool = False,
                             return_tokens: bool = False, seed: Seed = None,
                             params: GenerationParams | None = None, **settings):
        """Follow the melody of `melody_wavs` ([B, C, T] or a list of [C, T] / None) at `melody_sample_rate`."""
        descriptions = check_descriptions(descriptions)
        return self._run(descriptions, self._melodies(melody_wavs, melody_sample_rate, len(descriptions)), None,
                         progress, return_tokens, seed, self._params(params, settings))

    def generate_continuation(self, prompt: torch.Tensor, prompt_sample_rate: int, descriptions=None,
                              progress: bool = False, return_tokens: bool = False, seed: Seed = None,
                              params: GenerationParams | None = None, **settings):
        """Continue the audio `prompt` [B, C, T] or [C, T]; the output starts with the re-decoded prompt. A prompt
        longer than the model's window keeps its last part as the window's context, as long-form windows do."""
        p = self._params(params, settings)
        prompt_codes, gain = self._encode_prompt(prompt, prompt_sample_rate, p)
        descriptions = [None] * prompt_codes.shape[0] if descriptions is None else check_descriptions(descriptions)
        return self._run(descriptions, None, prompt_codes, progress, return_tokens, seed, p, gain)

    def stream(self, descriptions=None, melody_wavs=None, melody_sample_rate: int | None = None,
               prompt: torch.Tensor | None = None, prompt_sample_rate: int | None = None, seed: Seed = None,
               chunk_duration: float = 0.5, return_tokens: bool = False, progress=False,
               params: GenerationParams | None = None, **settings):
        """Yield wav chunks [B, C, n] while generating (with return_tokens: (wav chunk, codes [B, K, f] of the frames
        it covers)); their concatenation is the whole piece, as `generate` decodes it (`codec.StreamingDecoder`: each
        chunk is decoded once the few frames of look-ahead the codec reads are known). `progress`, `params` and
        `settings` as in `generate`."""
        p = self._params(params, settings)
        prompt_codes, gain = (None, 1.0) if prompt is None else self._encode_prompt(prompt, prompt_sample_rate, p)
        n = prompt_codes.shape[0] if prompt_codes is not None else 1
        descriptions = [None] * n if descriptions is None else check_descriptions(descriptions)
        melodies = None if melody_wavs is None else self._melodies(melody_wavs, melody_sample_rate,
                                                                  len(descriptions))
        frames = self._frame_stream(descriptions, melodies, prompt_codes, seed, self._callback(progress), p)
        for wav, codes in self._decode_stream(frames, max(1, int(chunk_duration * self.frame_rate))):
            yield (wav / gain, codes) if return_tokens else wav / gain

    # --- internals ------------------------------------------------------------------------------------------
    def _params(self, params: GenerationParams | None, settings: dict) -> GenerationParams:
        """This call's settings: `params` (or the model's defaults) with `settings` replaced, validated."""
        unknown = set(settings) - {f.name for f in dataclasses.fields(GenerationParams)}
        if unknown:
            raise TypeError(f"unknown generation setting(s) {', '.join(sorted(unknown))}: expected "
                            f"{', '.join(f.name for f in dataclasses.fields(GenerationParams))}")
        return check_params(dataclasses.replace(params or self.params, **settings), self.max_duration)

    def _callback(self, progress) -> Callable[[int, int], None] | None:
        """`progress`: a callable(done, total) for this call, or True for the model's (audiocraft's printout)."""
        return progress if callable(progress) else self._progress or (_print_progress if progress else None)

    def _run(self, descriptions, melodies, prompt_codes, progress, return_tokens, seed, p: GenerationParams,
             gain: torch.Tensor | float = 1.0):
        frames = self._frame_stream(descriptions, melodies, prompt_codes, seed, self._callback(progress), p)
        codes = torch.cat(list(frames), dim=-1)
        with torch.no_grad():
            wav = self.compression_model.decode(codes) / gain
        return (wav, codes) if return_tokens else wav

    def _generators(self, seed: Seed, batch: int) -> list[torch.Generator]:
        """One generator for the batch seeded with `seed` (None: a seed drawn from torch's global RNG, so that
        `torch.manual_seed(n)` before a call reproduces it, as in audiocraft), or one per row for a list of seeds:
        row i is then the music seed[i] gives alone."""
        if seed is None:
            seed = int(torch.randint(2**31 - 1, ()).item())
        per_row = isinstance(seed, Sequence) and not isinstance(seed, str)
        seeds = [int(s) for s in seed] if per_row else [int(seed)]
        if per_row and len(seeds) != batch:
            raise InputError(f"got {len(seeds)} seeds for {batch} pieces: give one seed, or one per piece.")
        self.last_seed = seeds if per_row else seeds[0]
        return [torch.Generator(self.device).manual_seed(s) for s in seeds]

    def _decode_step(self, x: torch.Tensor, ctx: Context, cache: list, pos: torch.Tensor,
                     gumbel: torch.Tensor | None, cfg: bool, p: GenerationParams) -> torch.Tensor:
        """Next tokens [B, K] for pattern step x [B, K, 1] at cache position pos (static shapes throughout)."""
        logits = self.lm.step(torch.cat([x, x]) if cfg else x, ctx, cache, pos)  # [B(*2), K, card]
        return sample_with_noise(guide(logits, p.cfg_coef) if cfg else logits, p, gumbel)

    def _static_cache(self, batch: int, prefix_len: int) -> list:
        """A KV cache sized for a full window, reused so the captured step keeps seeing the same tensors (stale entries
        beyond the current position are masked). Lengths round up to 64 so varying prompt lengths share one."""
        length = prefix_len + self.pattern.num_steps(int(self.max_duration * self.frame_rate))
        key = (batch, -(-length // 64) * 64)
        if key not in self._caches:
            self._caches[key] = self.lm.new_cache(*key)
        return self._caches[key]

    def _encode_prompt(self, prompt: torch.Tensor, sample_rate: int, p: GenerationParams):
        """(codes [B, K, Tp], the codec's input gain [B, 1, 1]: decoded audio / gain has the prompt's level)."""
        prompt = check_waveform(prompt, sample_rate, "The audio to continue", batched=True)
        check_continuation(prompt.shape[-1] / sample_rate, p.duration, margin=0.0)
        wav = convert_audio(prompt.to(self.device), sample_rate, self.sample_rate, self.audio_channels)
        with torch.no_grad():
            return self.compression_model.encode(wav), self.compression_model.input_gain(wav)

    def _melodies(self, melody_wavs, sample_rate: int, batch: int) -> list[torch.Tensor | None]:
        if self.chroma is None:
            raise ValueError(f"{self.name} is not a melody model: use generate() or generate_continuation()")
        wavs = list(melody_wavs) if not isinstance(melody_wavs, torch.Tensor) or melody_wavs.dim() == 3 \
            else [melody_wavs]
        if len(wavs) != batch:
            raise ValueError(f"got {len(wavs)} melodies for {batch} descriptions")
        return [None if w is None else convert_audio(check_waveform(w, sample_rate, "The melody").to(self.device),
                                                     sample_rate, self.sample_rate, 1)[0] for w in wavs]

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
        return self.lm.condition(text.to(self.device), mask.to(self.device), chroma, bpm, t0, self.frame_rate)

    def _windows(self, total: int, prompt_len: int, p: GenerationParams) -> list[tuple[int, int, int]]:
        """audiocraft's long-form plan: (frame offset, frames incl. prompt, prompt frames) per window. Each window
        after the first keeps the last max_duration - extend_stride seconds as its prompt; so does the first when the
        given prompt is longer than that."""
        max_frames = int(self.max_duration * self.frame_rate)
        if total <= max_frames:
            return [(0, total, prompt_len)]
        extend = 0.6 * self.max_duration if p.extend_stride is None else p.extend_stride
        stride = int(extend * self.frame_rate)
        offset = max(0, prompt_len - (max_frames - stride))
        plan, prompt_len = [], prompt_len - offset
        while offset + prompt_len < total:
            plan.append((offset, min(total - offset, max_frames), prompt_len))
            prompt_len = plan[-1][1] - stride
            offset += stride
        return plan

    @torch.no_grad()
    def _frame_stream(self, descriptions, melodies, prompt_codes, seed,
                      callback: Callable[[int, int], None] | None, p: GenerationParams) -> Iterator[torch.Tensor]:
        """Yield codes [B, K, n] of newly completed frames, in order, the prompt's first."""
        B = len(descriptions)
        generators = self._generators(seed, B)
        total = max(1, int(p.duration * self.frame_rate))
        prompt_len = 0 if prompt_codes is None else prompt_codes.shape[-1]
        if prompt_codes is not None and prompt_codes.shape[0] != B:
            raise ValueError(f"got {prompt_codes.shape[0]} prompts for {B} descriptions")
        conditional = any(d is not None for d in descriptions) or melodies is not None
        cfg = conditional and p.cfg_coef != 1.0
        plan = self._windows(total, min(prompt_len, total), p)
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
            for new in self._window(ctx, window_prompt, n_frames, B, cfg, generators, on_step, p):
                history = new if history is None else torch.cat([history, new], dim=-1)
                yield new

    def _window(self, ctx: Context, prompt: torch.Tensor | None, n_frames: int, B: int, cfg: bool,
                generators: list[torch.Generator], on_step: Callable[[], None], p: GenerationParams
                ) -> Iterator[torch.Tensor]:
        """One window of at most max_duration: yields newly completed frames after the prompt."""
        lm = self.lm
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
                gumbel = noise_rows((B, K, lm.cfg.card), generators, self.device) if p.use_sampling else None
                nxt = self._step(x, ctx, cache, pos, gumbel, cfg, p)
            else:
                logits = lm(torch.cat([x, x]) if cfg else x, ctx, cache, start=prev)[:, :, -1]  # [B(*2), K, card]
                nxt = sample_rows(guide(logits, p.cfg_coef) if cfg else logits, p, generators)
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
