"""Decode-time layouts of float32 weights on CPU: `Linear`, an nn.Linear whose product reads its weight fastest.

A decoding step multiplies a few rows by every weight matrix, so it is a read of the weights; which layout and kernel
read them fastest depends on the CPU (`matvec_pays`). Each computes the product F.linear does (up to float rounding).
"""
from __future__ import annotations

import math
import time

import torch
import torch.nn.functional as F
from torch import nn

BLOCK = 1024  # input columns per block of a blocked weight (`Linear.block_input`)
_MATVEC: bool | None = None  # `matvec_pays()`, once measured


def matvec_pays() -> bool:
    """Whether MKL's matrix-vector kernels (`weight @ x.T`) read float32 weights faster than F.linear on this CPU at
    the current thread count. CPUs differ: ~3x faster on the 2-vCPU AMD EPYC we measured, 2-3x slower on a 2-core
    AVX-512 Xeon, where oneDNN's F.linear is the fast path. Timed once per process (~0.1 s) on a [4096, 1024] weight
    (larger than a core's cache, as decoding reads them) and 2 rows."""
    global _MATVEC
    if _MATVEC is None:
        w, x = torch.randn(4096, 1024), torch.randn(2, 1024)
        paths = [lambda: F.linear(x, w), lambda: (w @ x.t()).t()]
        best = [math.inf, math.inf]
        for _ in range(6):
            for i, path in enumerate(paths):
                start = time.perf_counter()
                path()
                best[i] = min(best[i], time.perf_counter() - start)
        _MATVEC = best[1] < best[0]
    return _MATVEC


def linear(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """x @ W.T for a weight W [N, K], or for W laid out in input blocks [K / BLOCK, N, BLOCK] (`Linear.block_input`).

    A decoding step multiplies a few rows by each weight matrix, so it is a read of the weights. For float32 on CPUs
    where `matvec_pays()`, MKL reads them ~3x faster as `weight @ x.T` (its matrix-vector kernels, up to 4 rows at a
    time) than in F.linear's layout, as long as a block of x stays in cache, so wider weights are read in blocks of
    BLOCK input columns (the measurements: README, "Speed")."""
    rows, k = x.numel() // x.shape[-1], x.shape[-1]
    x2 = x.reshape(rows, k)
    if weight.dim() == 3:  # blocked: sum over blocks of [N, BLOCK] @ [BLOCK, r]
        nb, n, b = weight.shape
        parts = x2.split(4) if rows <= 8 else (x2,)
        y = torch.cat([torch.bmm(weight, part.t().reshape(nb, b, -1)).sum(0).t() for part in parts])  # [rows, N]
        return y.reshape(*x.shape[:-1], n)
    if x.device.type != "cpu" or x.dtype != torch.float32 or rows > (8 if k <= 2048 else 2) or not matvec_pays():
        return F.linear(x, weight)
    # contiguous rows make `part.t()` the transposed layout those kernels take; the result is contiguous too
    parts = [(weight @ part.t()).t() for part in x2.contiguous().split(4)]  # [<=4, N] each
    return torch.cat(parts).reshape(*x.shape[:-1], weight.shape[0])


def _unblock(weight: torch.Tensor) -> torch.Tensor:  # [K / BLOCK, N, BLOCK] -> [N, K]
    return weight.transpose(0, 1).reshape(weight.shape[1], -1)


def _block(weight: torch.Tensor) -> torch.Tensor:  # [N, K] -> [K / BLOCK, N, BLOCK]
    return weight.reshape(weight.shape[0], -1, BLOCK).transpose(0, 1).contiguous()


class Linear(nn.Linear):
    """nn.Linear (same parameters and keys) computed with `linear`. After `block_input()` the weight is held in input
    blocks; state dicts still read and write the [N, K] layout."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.register_state_dict_post_hook(_state_dict_unblocked)
        self.register_load_state_dict_pre_hook(_load_blocked)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = linear(x, self.weight)
        return y if self.bias is None else y + self.bias

    def block_input(self) -> None:
        """Lay the weight out as contiguous [K / BLOCK, N, BLOCK] (K a multiple of BLOCK): decoding reads a wide
        weight ~3x faster so (see `linear`)."""
        w = self.weight
        self.weight = nn.Parameter(_block(w.detach()), requires_grad=w.requires_grad)


def _state_dict_unblocked(module: Linear, state_dict: dict, prefix: str, local_metadata) -> None:
    if module.weight.dim() == 3:
        state_dict[prefix + "weight"] = _unblock(state_dict[prefix + "weight"])


def _load_blocked(module: Linear, state_dict: dict, prefix: str, *args) -> None:
    key = prefix + "weight"
    if module.weight.dim() == 3 and key in state_dict and state_dict[key].dim() == 2:
        state_dict[key] = _block(state_dict[key])


def block_wide_inputs(module: nn.Module, release=None) -> None:
    """`block_input()` on every `Linear` whose in_features is a multiple of BLOCK above 2 * BLOCK (the FFN outputs of
    the official models); `release(old weight)` after each."""
    for m in module.modules():
        if isinstance(m, Linear) and m.weight.dim() == 2 and m.in_features > 2 * BLOCK and m.in_features % BLOCK == 0:
            old = m.weight
            m.block_input()
            if release:
                release(old)
