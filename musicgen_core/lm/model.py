"""MusicLM: K summed codebook embeddings -> transformer -> K output heads (MusicGen §2.2-2.3).

Conditioning enters either through cross-attention (text models) or as a prefix prepended to the token embeddings
(melody models: `[chroma | text | audio]`, MusicGen §3.2); models with `tempo` also add a beat grid of the stated
BPM to the audio-token embeddings (conditioning/tempo.py). `condition()` turns encoder outputs into a `Context` once
per request; `forward()` then runs a full sequence (training, prefill) or one cached step (decoding).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..configs import LMConfig
from ..conditioning.chroma import fit_chroma_length
from ..conditioning.tempo import N_FEATURES, tempo_features
from ..fast_linear import linear
from .transformer import Block, KVCache, attention_dtype, sinusoidal_embedding


@dataclass
class Context:
    """Per-request conditioning, computed once: cross-attention K/V per layer, or a prefix of embeddings."""

    cross_kv: list[tuple[torch.Tensor, torch.Tensor]] | None = None
    cross_mask: torch.Tensor | None = None  # [B, 1, 1, L] bool, True = attend
    prefix: torch.Tensor | None = None  # [B, P, D]
    bpm: torch.Tensor | None = None  # [B] stated tempo (NaN = unknown), for models with a tempo grid
    t0: torch.Tensor | None = None  # [B] seconds from a downbeat to sequence step 0 (the grid's phase)
    frame_rate: float | None = None  # steps per second (the codec's frame rate): the grid's time axis

    @property
    def prefix_len(self) -> int:
        return 0 if self.prefix is None else self.prefix.shape[1]


class MusicLM(nn.Module):
    def __init__(self, cfg: LMConfig):
        super().__init__()
        self.cfg = cfg
        K, D = cfg.n_q, cfg.dim
        self.emb = nn.Parameter(torch.empty(K, cfg.card + 1, D))  # row `card` is the special token
        self.text_proj = nn.Linear(cfg.cond_dim, D) if cfg.cond_dim != D else nn.Identity()
        if cfg.chroma:
            self.chroma_proj = nn.Linear(cfg.n_chroma, D) if cfg.n_chroma != D else nn.Identity()
        if cfg.tempo:
            self.tempo_proj = nn.Linear(N_FEATURES, D, bias=False)
        self.layers = nn.ModuleList(Block(D, cfg.num_heads, cfg.ffn_dim, cfg.cross_attention)
                                    for _ in range(cfg.num_layers))
        self.out_norm = nn.LayerNorm(D)
        self.heads = nn.Parameter(torch.empty(K, cfg.card, D))
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self):
        """audiocraft's init: truncated normal, std 1/sqrt(fan_in), scaled by 1/sqrt(2(l+1)) in layer l."""
        def init(w, std):
            nn.init.trunc_normal_(w, std=std, a=-3 * std, b=3 * std)

        init(self.emb, 1 / math.sqrt(self.cfg.dim))
        init(self.heads, 1 / math.sqrt(self.cfg.dim))
        for i, layer in enumerate(self.layers):
            for m in layer.modules():
                if isinstance(m, nn.Linear):
                    init(m.weight, 1 / math.sqrt(m.in_features) / math.sqrt(2 * (i + 1)))
        for m in [self.text_proj, getattr(self, "chroma_proj", None)]:
            if isinstance(m, nn.Linear):
                init(m.weight, 1 / math.sqrt(m.in_features))
                nn.init.zeros_(m.bias)
        if self.cfg.tempo:  # zero: a model warm-started from one without tempo starts out identical to it
            nn.init.zeros_(self.tempo_proj.weight)

    def condition(self, text: torch.Tensor, text_mask: torch.Tensor, chroma: torch.Tensor | None = None,
                  bpm: torch.Tensor | None = None, t0: torch.Tensor | None = None,
                  frame_rate: float | None = None) -> Context:
        """text [B, L, cond_dim] and its mask [B, L] (0 = padding or null); chroma [B, F, 12] one-hot (melody);
        tempo models: bpm [B] (NaN or None = unknown), t0 [B], seconds from a downbeat to step 0 (default 0), and
        the codec's frame rate (steps per second)."""
        text = text.to(self.emb.dtype)  # encoders run in float32; a bf16 LM takes bf16 inputs
        text = self.text_proj(text) * text_mask[..., None].to(text.dtype)  # padding and null rows -> exact zeros
        bpm = bpm.to(text.device) if self.cfg.tempo and bpm is not None else None
        t0 = None if bpm is None else torch.zeros_like(bpm) if t0 is None else t0.to(bpm)
        if bpm is not None and frame_rate is None:
            raise ValueError("a tempo model's context needs the codec's frame_rate (steps per second)")
        if self.cfg.chroma:
            chroma = fit_chroma_length(chroma, self.cfg.chroma_length)
            return Context(prefix=torch.cat([self.chroma_proj(chroma.to(text.dtype)), text], dim=1), bpm=bpm, t0=t0,
                           frame_rate=frame_rate)
        mask = None
        if self.cfg.mask_text_padding:
            keep = text_mask.bool()
            keep = keep | ~keep.any(dim=-1, keepdim=True)  # null rows have zero K/V: attending to all gives 0
            mask = keep[:, None, None, :]
        return Context(cross_kv=[layer.cross_attn.project_kv(text) for layer in self.layers], cross_mask=mask,
                       bpm=bpm, t0=t0, frame_rate=frame_rate)

    def new_cache(self, batch: int, length: int, device=None, dtype=None) -> KVCache:
        """Preallocated self-attention cache for `length` positions (prefix included)."""
        shape = (batch, self.cfg.num_heads, length, self.cfg.head_dim)
        device = torch.device(device or self.emb.device)
        kw = dict(device=device, dtype=dtype or attention_dtype(self.emb.dtype, device))
        return [(torch.zeros(shape, **kw), torch.zeros(shape, **kw)) for _ in self.layers]

    def embed(self, seq: torch.Tensor, ctx: Context, steps: torch.Tensor) -> torch.Tensor:
        """Summed codebook embeddings of seq [B, K, S] at sequence steps [S] (plus the tempo grid) -> [B, S, D]."""
        K, rows, D = self.emb.shape
        offsets = torch.arange(K, device=seq.device)[None, :, None] * rows
        x = F.embedding(seq + offsets, self.emb.view(K * rows, D)).sum(dim=1)  # [B, S, D]
        if ctx.bpm is None:
            return x
        return x + self.tempo_proj(tempo_features(ctx.bpm, ctx.t0, steps, ctx.frame_rate).to(x.dtype))

    def forward(self, seq: torch.Tensor, ctx: Context, cache: KVCache | None = None, start: int = 0) -> torch.Tensor:
        """seq [B, K, S] token ids (special = card) -> logits [B, K, S, card] (float32).

        `start` is the sequence step of seq[..., 0]. The prefix (if any) is prepended when start == 0 and occupies
        positions 0..P-1, so sequence step s sits at position P + s.
        """
        S = seq.shape[-1]
        x = self.embed(seq, ctx, torch.arange(start, start + S, device=seq.device))
        P = ctx.prefix_len
        if P and start == 0:
            x = torch.cat([ctx.prefix.to(x.dtype), x], dim=1)
        first = 0 if start == 0 else P + start
        positions = torch.arange(first, first + x.shape[1], device=x.device)
        x = x + sinusoidal_embedding(positions, self.cfg.dim, self.cfg.max_period).to(x.dtype)
        for i, layer in enumerate(self.layers):
            kv = None if ctx.cross_kv is None else ctx.cross_kv[i]
            x = layer(x, None if cache is None else cache[i], first, kv, ctx.cross_mask)
        return self._logits(self.out_norm(x[:, -S:]))

    def step(self, seq: torch.Tensor, ctx: Context, cache: KVCache, pos: torch.Tensor) -> torch.Tensor:
        """One decoding step with static shapes (gpt-fast style, for torch.compile / CUDA graphs): seq [B, K, 1] at
        cache position `pos` ([1] long tensor, prefix included; positions after it are masked) -> logits
        [B, K, card] (float32). Equals `forward(seq, ctx, cache, start=pos - prefix_len)` after a prefill."""
        x = self.embed(seq, ctx, pos - ctx.prefix_len)
        x = x + sinusoidal_embedding(pos, self.cfg.dim, self.cfg.max_period).to(x.dtype)
        for i, layer in enumerate(self.layers):
            kv = None if ctx.cross_kv is None else ctx.cross_kv[i]
            x = layer(x, cache[i], pos, kv, ctx.cross_mask)
        return self._logits(self.out_norm(x))[:, :, 0]

    def _logits(self, x: torch.Tensor) -> torch.Tensor:
        """x [B, S, D] -> [B, K, S, card] (float32) in one product with the stacked heads (an einsum would copy them
        into another layout at every call: 32 MB per decoding step at musicgen-small's size)."""
        K, C, D = self.heads.shape
        B, S, _ = x.shape
        return linear(x, self.heads.view(K * C, D)).view(B, S, K, C).transpose(1, 2).float()
