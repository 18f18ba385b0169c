"""Reduced-precision LMs for fast decoding: bf16 weights, or int8 weight-only linear layers with bf16 activations.

Decoding runs the LM on a few rows at a time (batch x 2 for CFG), so each step is bound by reading the weights from
memory: bf16 halves the bytes, int8 quarters them. On CPUs with avx512_bf16, PyTorch's `_weight_int8pack_mm` kernel
(per-output-channel scales, bf16 activations) makes a 1024 x 4096 matrix-vector product ~6x faster than float32.
The exact path (float32) is untouched: these are opt-in (`MusicGen.from_pretrained(..., precision=...)`).
"""
from __future__ import annotations

import torch
from torch import nn

PRECISIONS = ("fp32", "bf16", "int8")
PRECISION_HELP = "fp32: exact; bf16 / int8 (weights): faster decoding, nearly the same tokens"


class Int8Linear(nn.Module):
    """y = x W^T + b with W stored as int8 rows and one bf16 scale per row (symmetric, per output channel)."""

    def __init__(self, linear: nn.Linear):
        super().__init__()
        w = linear.weight.detach().float()
        scales = w.abs().amax(dim=1).clamp(min=1e-8) / 127
        self.register_buffer("weight", (w / scales[:, None]).round().clamp(-127, 127).to(torch.int8))  # [N, K]
        self.register_buffer("scales", scales.to(torch.bfloat16))  # [N]
        self.bias = None if linear.bias is None else nn.Parameter(linear.bias.detach().to(torch.bfloat16),
                                                                    requires_grad=False)
        self.in_features, self.out_features = linear.in_features, linear.out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        x2d = x.reshape(-1, shape[-1]).to(torch.bfloat16)
        if x2d.device.type == "cpu":
            y = torch.ops.aten._weight_int8pack_mm(x2d, self.weight, self.scales)
        else:  # no fused kernel needed where bandwidth is plentiful: dequantise on the fly
            y = x2d @ (self.weight.to(torch.bfloat16) * self.scales[:, None]).T
        if self.bias is not None:
            y = y + self.bias
        return y.reshape(*shape[:-1], self.out_features)


def check_precision(precision: str) -> str:
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}: use one of {', '.join(PRECISIONS)}")
    return precision


def set_precision(lm: nn.Module, precision: str, release=None) -> nn.Module:
    """Convert an LM in place: "fp32" (exact, as loaded), "bf16" (all weights), "int8" (transformer linear layers
    int8, the rest bf16). Embeddings, heads and norms stay bf16; logits come out float32 either way. Layer by layer,
    `release(*tensors)` is called with the float32 tensors each block replaced (loading frees their memory at once)."""
    if check_precision(precision) == "fp32":
        return lm
    for block in lm.layers:
        replaced = list(block.state_dict().values())
        if precision == "int8":
            for name, module in list(block.named_modules()):
                if isinstance(module, nn.Linear):
                    parent, _, child = name.rpartition(".")
                    setattr(block.get_submodule(parent), child, Int8Linear(module))
        block.to(torch.bfloat16)
        if release:
            release(*replaced)
    return lm.to(torch.bfloat16)  # embeddings, heads, norms, projections
