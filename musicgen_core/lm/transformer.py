"""Pre-norm transformer blocks with a static KV cache (MusicGen §2.3; gpt-fast style decoding).

The self-attention cache is preallocated once per request (`new_cache`) and written by index: decoding never grows a
tensor with `torch.cat`. Cross-attention keys/values of the conditioning are projected once per request
(`CrossAttention.project_kv`) and reused at every step.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..fast_linear import Linear

KVCache = list[tuple[torch.Tensor, torch.Tensor]]  # per layer: keys, values [B, H, S_max, Dh]


def sinusoidal_embedding(positions: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """[cos | sin] embedding with frequencies max_period^(-i/(half-1)), as audiocraft and transformers use."""
    half = dim // 2
    freqs = torch.exp(torch.arange(half, device=positions.device).float() * -(math.log(max_period) / (half - 1)))
    args = positions.float()[:, None] * freqs[None]  # [T, half]
    return torch.cat([args.cos(), args.sin()], dim=-1)


def attention_dtype(dtype: torch.dtype, device: torch.device) -> torch.dtype:
    """Attention (and the KV cache) stay float32 on CPU when the weights are bf16: PyTorch's CPU attention is 3-4x
    slower in bf16 at decoding shapes, and the cache is small."""
    return torch.float32 if device.type == "cpu" else dtype


def _attend(q, k, v, **kw) -> torch.Tensor:
    """scaled_dot_product_attention in k's dtype, returned in q's."""
    return F.scaled_dot_product_attention(q.to(k.dtype), k, v, **kw).to(q.dtype)


def _heads(x: torch.Tensor, n_heads: int) -> torch.Tensor:
    B, T, D = x.shape
    return x.view(B, T, n_heads, D // n_heads).transpose(1, 2)  # [B, H, T, Dh]


class SelfAttention(nn.Module):
    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.in_proj = Linear(dim, 3 * dim, bias=False)  # rows [Wq; Wk; Wv]
        self.out_proj = Linear(dim, dim, bias=False)

    def forward(self, x: torch.Tensor, cache: tuple[torch.Tensor, torch.Tensor] | None,
                start: int | torch.Tensor) -> torch.Tensor:
        """`start`: position of x[:, 0] in the cache. A [1] tensor selects the static decode step (T = 1): the whole
        cache is attended with a mask, so shapes never change and the step can be captured in a CUDA graph."""
        B, T, D = x.shape
        q, k, v = (_heads(t, self.num_heads) for t in self.in_proj(x).chunk(3, dim=-1))
        if isinstance(start, torch.Tensor):
            k_cache, v_cache = cache
            k_cache.index_copy_(2, start, k.to(k_cache.dtype))
            v_cache.index_copy_(2, start, v.to(v_cache.dtype))
            mask = (torch.arange(k_cache.shape[2], device=x.device) <= start)[None]  # [1, L]
            y = _attend(q, k_cache, v_cache, attn_mask=mask)
            return self.out_proj(y.transpose(1, 2).reshape(B, T, D))
        if cache is not None:
            k_cache, v_cache = cache
            k_cache[:, :, start:start + T] = k
            v_cache[:, :, start:start + T] = v
            k, v = k_cache[:, :, :start + T], v_cache[:, :, :start + T]
        if T == 1:
            y = _attend(q, k, v)
        elif start == 0:
            y = _attend(q, k, v, is_causal=True)
        else:  # several new steps after a cached prefix: causal mask aligned to the end
            mask = torch.ones(T, start + T, dtype=torch.bool, device=x.device).tril(diagonal=start)
            y = _attend(q, k, v, attn_mask=mask)
        return self.out_proj(y.transpose(1, 2).reshape(B, T, D))


class CrossAttention(nn.Module):
    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.q_proj = Linear(dim, dim, bias=False)
        self.kv_proj = Linear(dim, 2 * dim, bias=False)  # rows [Wk; Wv]
        self.out_proj = Linear(dim, dim, bias=False)

    def project_kv(self, cond: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        dtype = attention_dtype(cond.dtype, cond.device)
        k, v = self.kv_proj(cond).to(dtype).chunk(2, dim=-1)
        return _heads(k, self.num_heads), _heads(v, self.num_heads)  # [B, H, L, Dh] each

    def forward(self, x: torch.Tensor, kv: tuple[torch.Tensor, torch.Tensor], mask: torch.Tensor | None):
        B, T, D = x.shape
        y = _attend(_heads(self.q_proj(x), self.num_heads), *kv, attn_mask=mask)
        return self.out_proj(y.transpose(1, 2).reshape(B, T, D))


class Block(nn.Module):
    """x += SA(LN(x)); x += CA(LN(x), cond); x += W2 gelu(W1 LN(x))."""

    def __init__(self, dim: int, num_heads: int, ffn_dim: int, cross_attention: bool):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.self_attn = SelfAttention(dim, num_heads)
        if cross_attention:
            self.norm_cross = nn.LayerNorm(dim)
            self.cross_attn = CrossAttention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim)
        self.linear1 = Linear(dim, ffn_dim, bias=False)
        self.linear2 = Linear(ffn_dim, dim, bias=False)

    def forward(self, x, cache, start: int | torch.Tensor, cross_kv=None, cross_mask=None):
        x = x + self.self_attn(self.norm1(x), cache, start)
        if cross_kv is not None:
            x = x + self.cross_attn(self.norm_cross(x), cross_kv, cross_mask)
        return x + self.linear2(F.gelu(self.linear1(self.norm2(x))))
