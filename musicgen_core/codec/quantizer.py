"""Residual vector quantiser of EnCodec (Défossez et al. 2022; SoundStream, Zeghidour et al. 2021).

Inference: `encode` picks, codebook after codebook, the nearest L2 entry of the running residual (the distance is
written as audiocraft/transformers write it, so ties break identically); `decode` sums the chosen entries.
Training (`forward` in train mode): k-means init on the first batch, EMA codebook updates (decay 0.99), dead-code
re-initialisation from the batch, straight-through estimator and commitment loss, as audiocraft's `core_vq.py`.
A code is dead when no vector picked it for `dead_after` steps: unlike audiocraft's EMA-count threshold, this does not
depend on the batch size (with small CPU batches every code's EMA count stays below audiocraft's threshold of 2).
Under torch.distributed the EMA statistics are averaged and random draws taken from rank 0, so replicas stay in sync.
"""
from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn


def nearest_code(x: torch.Tensor, embed: torch.Tensor) -> torch.Tensor:
    """Index of the nearest codebook row (L2) for each row of x: [N, D], [C, D] -> [N]."""
    embed_t = embed.t()
    neg_dist = -(x.pow(2).sum(1, keepdim=True) - 2 * x @ embed_t + embed_t.pow(2).sum(0, keepdim=True))
    return neg_dist.max(dim=-1).indices


def sample_vectors(x: torch.Tensor, n: int) -> torch.Tensor:
    """n rows of x [N, D], without replacement when N >= n."""
    if x.shape[0] >= n:
        idx = torch.randperm(x.shape[0], device=x.device)[:n]
    else:
        idx = torch.randint(0, x.shape[0], (n,), device=x.device)
    return x[idx]


def kmeans(x: torch.Tensor, n_clusters: int, n_iters: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Lloyd's k-means on x [N, D] -> (means [C, D], cluster sizes [C]); empty clusters keep their mean."""
    means = sample_vectors(x, n_clusters)
    for _ in range(n_iters):
        buckets = nearest_code(x, means)
        counts = torch.bincount(buckets, minlength=n_clusters)
        sums = torch.zeros_like(means).index_add_(0, buckets, x)
        means = torch.where((counts == 0)[:, None], means, sums / counts.clamp(min=1)[:, None])
    return means, counts


def _all_reduce_mean(t: torch.Tensor) -> torch.Tensor:
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(t)
        t /= dist.get_world_size()
    return t


def _broadcast(t: torch.Tensor) -> torch.Tensor:
    if dist.is_available() and dist.is_initialized():
        dist.broadcast(t, src=0)
    return t


class VectorQuantizer(nn.Module):
    """One EMA codebook (audiocraft's `EuclideanCodebook`). Buffers: inited [1], cluster_size [C], embed [C, D],
    embed_avg [C, D]; only `embed` matters at inference."""

    def __init__(self, dim: int, card: int, decay: float = 0.99, kmeans_iters: int = 50,
                 dead_after: int = 100, epsilon: float = 1e-5):
        super().__init__()
        self.card, self.decay, self.kmeans_iters = card, decay, kmeans_iters
        self.dead_after, self.epsilon = dead_after, epsilon
        self.register_buffer("inited", torch.zeros(1))
        self.register_buffer("cluster_size", torch.zeros(card))
        self.register_buffer("embed", torch.zeros(card, dim))
        self.register_buffer("embed_avg", torch.zeros(card, dim))
        self.idle_steps: torch.Tensor | None = None  # [C] steps since each code was last used (training only)

    def encode(self, x: torch.Tensor) -> torch.Tensor:  # [N, D] -> [N]
        return nearest_code(x, self.embed)

    def decode(self, codes: torch.Tensor) -> torch.Tensor:  # [...] -> [..., D]
        return F.embedding(codes, self.embed)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """x [N, D] -> (quantized [N, D] with straight-through gradient, codes [N], commitment loss).
        In train mode, initialises the codebook by k-means on the first call and then takes one EMA step."""
        stats = x.detach().to(self.embed.dtype)
        if self.training and not self.inited.item():
            self._kmeans_init_(stats)
        codes = self.encode(stats)
        quantized = self.decode(codes).to(x.dtype)
        if self.training:
            self._ema_update_(stats, codes)
        commit_loss = F.mse_loss(quantized.detach(), x)
        return x + (quantized - x).detach(), codes, commit_loss

    @torch.no_grad()
    def _kmeans_init_(self, x: torch.Tensor) -> None:
        embed, cluster_size = kmeans(x, self.card, self.kmeans_iters)
        self.embed.copy_(_broadcast(embed))
        self.cluster_size.copy_(_broadcast(cluster_size.to(embed.dtype)))
        # embed_avg is a running *sum* (embed = embed_avg / cluster_size); audiocraft copies `embed` here instead,
        # which shrinks the codebook on the first EMA steps.
        self.embed_avg.copy_(self.embed * self.cluster_size[:, None])
        self.inited.fill_(1)

    @torch.no_grad()
    def _ema_update_(self, x: torch.Tensor, codes: torch.Tensor) -> None:
        onehot = F.one_hot(codes, self.card).type(x.dtype)  # [N, C]
        counts = _all_reduce_mean(onehot.sum(0))
        sums = _all_reduce_mean(onehot.t() @ x)  # [C, D]
        self.cluster_size.lerp_(counts, 1 - self.decay)
        self.embed_avg.lerp_(sums, 1 - self.decay)
        total = self.cluster_size.sum()
        smoothed = (self.cluster_size + self.epsilon) / (total + self.card * self.epsilon) * total
        self.embed.copy_(self.embed_avg / smoothed[:, None])
        self._replace_dead_codes_(x, counts)

    def _replace_dead_codes_(self, x: torch.Tensor, counts: torch.Tensor) -> None:
        """Codes unused for `dead_after` steps restart at random batch vectors, with fresh EMA statistics (weight 1)
        so that the next EMA steps keep them there until vectors pick them."""
        if self.idle_steps is None or self.idle_steps.device != counts.device:
            self.idle_steps = torch.zeros(self.card, dtype=torch.long, device=counts.device)
        self.idle_steps.add_(1).masked_fill_(counts > 0, 0)
        dead = self.idle_steps >= self.dead_after
        if self.dead_after <= 0 or not dead.any():
            return
        samples = _broadcast(sample_vectors(x, self.card))
        self.embed.copy_(torch.where(dead[:, None], samples, self.embed))
        self.embed_avg.copy_(torch.where(dead[:, None], samples, self.embed_avg))
        self.cluster_size.masked_fill_(dead, 1.0)
        self.idle_steps.masked_fill_(dead, 0)


class ResidualVectorQuantizer(nn.Module):
    """K codebooks applied to successive residuals. Keys: `layers.{k}.{embed, embed_avg, cluster_size, inited}`."""

    def __init__(self, dim: int = 128, n_q: int = 4, card: int = 2048, **vq_kwargs):
        super().__init__()
        self.n_q, self.card = n_q, card
        self.layers = nn.ModuleList([VectorQuantizer(dim, card, **vq_kwargs) for _ in range(n_q)])

    def _n_q(self, n_q: int | None) -> int:
        n_q = self.n_q if n_q is None else n_q
        if not 1 <= n_q <= self.n_q:
            raise ValueError(f"n_q must be in [1, {self.n_q}], got {n_q}")
        return n_q

    def encode(self, x: torch.Tensor, n_q: int | None = None) -> torch.Tensor:
        """Latent [B, D, F] -> codes [B, K, F] (int64), K = n_q or all codebooks."""
        B, D, T = x.shape
        residual = x.transpose(1, 2).reshape(-1, D)  # [B*F, D]
        codes = []
        for layer in self.layers[: self._n_q(n_q)]:
            idx = layer.encode(residual)  # [B*F]
            residual = residual - layer.decode(idx)
            codes.append(idx.view(B, T))
        return torch.stack(codes, dim=1)

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """Codes [B, K, F] -> latent [B, D, F], the sum of the K chosen entries (K may be fewer than n_q)."""
        self._n_q(codes.shape[1])
        quantized = sum(layer.decode(codes[:, k]) for k, layer in enumerate(self.layers[: codes.shape[1]]))
        return quantized.transpose(1, 2)  # [B, F, D] -> [B, D, F]

    def forward(self, x: torch.Tensor, n_q: int | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Training pass: latent [B, D, F] -> (quantized [B, D, F] with straight-through gradient, codes [B, K, F],
        commitment penalty = mean over codebooks of mse(quantized_k, residual_k))."""
        B, D, T = x.shape
        flat = x.transpose(1, 2).reshape(-1, D)  # [B*F, D]
        residual, quantized_sum = flat, torch.zeros_like(flat)
        codes, losses = [], []
        for layer in self.layers[: self._n_q(n_q)]:
            quantized, idx, loss = layer(residual)
            quantized = quantized.detach()
            residual = residual - quantized
            quantized_sum = quantized_sum + quantized
            codes.append(idx.view(B, T))
            losses.append(loss)
        quantized_sum = flat + (quantized_sum - flat).detach()  # one straight-through path (encodec issue #25)
        out = quantized_sum.view(B, T, D).transpose(1, 2)
        return out, torch.stack(codes, dim=1), torch.stack(losses).mean()
