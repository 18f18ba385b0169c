"""Reduced-precision LMs for fast decoding: bf16 weights, or weight-only int8 / 4-bit linear layers.

Decoding runs the LM on a few rows at a time (batch x 2 for CFG), so a step is a read of every weight: bf16 halves
the bytes, int8 quarters them, 4-bit (group-wise) eighths them. On CPU the layers call PyTorch's fused kernels, which
dequantise inside the product: `_weight_int8pack_mm` (one scale per output channel) and `_weight_int4pack_mm_for_cpu`
(asymmetric groups of GROUP input columns), both with bf16 activations (their float32 paths are slow fallbacks).
Around the quantised layers the residual stream, norms, attention, embeddings and heads stay float32: that raised
int8's top-1 agreement with fp32 from 0.89 (all bf16 around them) to 0.92 (musicgen-small's shape, random weights, 100
greedy frames). The exact path (float32) is untouched: these are opt-in
(`MusicGen.from_pretrained(..., precision=...)`).

"int4" is 4-bit in the feed-forward layers (8 of each block's 14 M weights) and int8 in attention: top-1 agreement
with fp32 0.63, against 0.57 with int8 self-attention only and 0.49 with 4-bit everywhere (same measurement). That is
below the 0.9 bar, so it is measured (bench.py) but not offered with the other precisions.
"""
from __future__ import annotations

import torch
from torch import nn

PRECISIONS = ("fp32", "bf16", "int8")  # offered: top-1 agreement with fp32 >= 0.9 in the benchmark
MEASURED = PRECISIONS + ("int4",)  # int4 loads for measurement; its agreement is below the bar (see bench.py)
PRECISION_HELP = "fp32: exact; bf16 / int8 (weights): faster decoding, nearly the same tokens"
GROUP = 64  # input columns per 4-bit group (one bf16 scale and zero each)


class Int8Linear(nn.Module):
    """y = x W^T + b with W stored as int8 rows and one bf16 scale per row (symmetric, per output channel)."""

    def __init__(self, linear: nn.Linear):
        super().__init__()
        w = linear.weight.detach().float()
        scales = w.abs().amax(dim=1).clamp(min=1e-8) / 127
        self.register_buffer("weight", (w / scales[:, None]).round().clamp(-127, 127).to(torch.int8))  # [N, K]
        self.register_buffer("scales", scales.to(torch.bfloat16))  # [N]
        self.bias = _bias(linear)
        self.in_features, self.out_features = linear.in_features, linear.out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x2d = x.reshape(-1, x.shape[-1]).to(torch.bfloat16)
        if x2d.device.type == "cpu":
            y = torch.ops.aten._weight_int8pack_mm(x2d, self.weight, self.scales)
        else:  # no fused kernel needed where bandwidth is plentiful: dequantise on the fly
            y = x2d @ (self.weight.to(torch.bfloat16) * self.scales[:, None]).T
        return _finish(y, self.bias, x)


class Int4Linear(nn.Module):
    """y = x W^T + b with W in asymmetric 4-bit groups of GROUP input columns: w = (q - 8) * scale + zero, q in
    0..15, one bf16 (scale, zero) per group and output row, packed for `_weight_int4pack_mm_for_cpu` (CPU only)."""

    def __init__(self, linear: nn.Linear, group: int = GROUP):
        super().__init__()
        w = linear.weight.detach().float()  # [N, K]
        N, K = w.shape
        if K % group or N % 8:
            raise ValueError(f"4-bit layers need in_features divisible by {group} and out_features by 8, got "
                             f"{K} and {N}")
        groups = w.reshape(N, K // group, group)
        lo, hi = groups.amin(dim=-1), groups.amax(dim=-1)  # [N, K / group]
        scales = (hi - lo).clamp(min=1e-8) / 15
        q = ((groups - lo[..., None]) / scales[..., None]).round().clamp(0, 15).to(torch.int32).reshape(N, K)
        zeros = lo + 8 * scales  # the kernel computes (q - 8) * scale + zero
        self.register_buffer("weight", torch.ops.aten._convert_weight_to_int4pack_for_cpu(q, 1))  # [N, K / 2] uint8
        self.register_buffer("scales_and_zeros", torch.stack([scales, zeros], dim=-1).transpose(0, 1)
                             .contiguous().to(torch.bfloat16))  # [K / group, N, 2]
        self.bias = _bias(linear)
        self.group, self.in_features, self.out_features = group, K, N

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x2d = x.reshape(-1, x.shape[-1]).to(torch.bfloat16)
        y = torch.ops.aten._weight_int4pack_mm_for_cpu(x2d, self.weight, self.group, self.scales_and_zeros)
        return _finish(y, self.bias, x)


def _bias(linear: nn.Linear) -> nn.Parameter | None:
    return None if linear.bias is None else nn.Parameter(linear.bias.detach().to(torch.bfloat16), requires_grad=False)


def _finish(y: torch.Tensor, bias: torch.Tensor | None, x: torch.Tensor) -> torch.Tensor:
    """The kernel's bf16 output [rows, N] back in x's dtype and leading shape."""
    if bias is not None:
        y = y + bias
    return y.to(x.dtype).reshape(*x.shape[:-1], y.shape[-1])


def check_precision(precision: str) -> str:
    if precision not in MEASURED:
        raise ValueError(f"unknown precision {precision!r}: use one of {', '.join(PRECISIONS)}")
    return precision


def layer_kind(name: str, precision: str) -> type[nn.Module] | None:
    """The quantised class for the linear layer `name` of a block (None: not quantised). int4: the feed-forward
    layers (`linear1`, `linear2`) 4-bit, attention int8."""
    if precision == "int8":
        return Int8Linear
    if precision == "int4":
        return Int4Linear if name.startswith("linear") else Int8Linear
    return None


def set_precision(lm: nn.Module, precision: str, release=None) -> nn.Module:
    """Convert an LM in place: "fp32" (exact, as loaded), "bf16" (all weights and activations), "int8" / "int4"
    (the blocks' linear layers quantised as `layer_kind` says, all else float32). Logits come out float32 either way. Layer by layer, `release(*tensors)` is called with the float32 tensors each block replaced
    (loading frees their memory at once)."""
    check_precision(precision)
    if precision == "fp32":
        return lm
    if precision == "int4" and lm.emb.device.type != "cpu":
        raise ValueError("precision 'int4' runs on CPU only (PyTorch's packed 4-bit kernel): use int8 or bf16 on "
                         f"{lm.emb.device.type}")
    for block in lm.layers:
        replaced = list(block.state_dict().values())
        for name, module in list(block.named_modules()):
            kind = layer_kind(name, precision)
            if isinstance(module, nn.Linear) and kind is not None:
                parent, _, child = name.rpartition(".")
                setattr(block.get_submodule(parent), child, kind(module))
        if precision == "bf16":
            block.to(torch.bfloat16)
        if release:
            release(*replaced)
    return lm.to(torch.bfloat16) if precision == "bf16" else lm
