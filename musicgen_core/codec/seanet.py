"""SEANet encoder / decoder of EnCodec (Défossez et al. 2022), after audiocraft's `modules/seanet.py` and `conv.py`.

Module names reproduce transformers' `EncodecModel` state-dict layout (`encoder.layers.{N}.conv.parametrizations.
weight.original0/1`, `...block.{1,3}.conv...`, `...lstm.weight_ih_l0`), with the layer indices of audiocraft's
`model.{N}` (parameter-free ELUs take indices too), so official weights load by key renames only.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import weight_norm

from ..configs import CodecConfig


def extra_padding_for_conv1d(length: int, kernel_size: int, stride: int, padding_total: int) -> int:
    """Right padding that makes the last window of a strided conv full, so frames = ceil(length / stride)."""
    n_frames = -((kernel_size - padding_total - length) // stride)  # ceil((length - k + padding_total) / stride)
    ideal_length = n_frames * stride + (kernel_size - padding_total)
    return ideal_length - length


def pad1d(x: torch.Tensor, paddings: tuple[int, int], mode: str = "constant") -> torch.Tensor:
    """`F.pad` on the last dim of [B, C, T] or [B, C, 1, T]; in reflect mode an input shorter than the padding is
    zero-extended first. Without padding x itself is returned (F.pad would copy it: an activation per conv)."""
    if not any(paddings):
        return x
    if mode != "reflect":
        return F.pad(x, paddings, mode)
    length = x.shape[-1]
    extra = max(0, max(paddings) - length + 1)
    if extra:
        x = F.pad(x, (0, extra))
    padded = F.pad(x, (*paddings, 0, 0)[: 2 * (x.dim() - 2)], mode)
    return padded[..., : padded.shape[-1] - extra]


def _pad_elu(x: torch.Tensor, padding: tuple[int, int], mode: str, elu: bool) -> torch.Tensor:
    """pad1d(elu(x) if elu else x): the ELU runs in place on the padded copy (ELU(0) = 0 and reflection copies
    values, so the two commute), which saves an activation-sized tensor per residual block."""
    if not elu:
        return pad1d(x, padding, mode)
    return F.elu_(pad1d(x, padding, mode)) if any(padding) else F.elu(x)


def time_major_conv(conv: nn.Conv1d | nn.ConvTranspose1d, x: torch.Tensor, padding: tuple[int, int] = (0, 0),
                    mode: str = "constant", elu: bool = False) -> torch.Tensor:
    """`conv(pad1d(elu(x) if elu else x, padding, mode))` for x [B, C, T], computed on CPU as a channels-last 2D
    convolution: oneDNN's time-major kernels are 4-9x faster than its channel-major 1D ones for the few channels of a
    small codec (a k7 16 -> 1 conv over 10 s at 32 kHz: 5 ms instead of 23 ms). Padding, ELU, residual sums and the
    LSTM keep the time-major layout, so activations are transposed once, at the codec's input."""
    if x.device.type != "cpu":
        return conv(_pad_elu(x, padding, mode, elu))
    cl = torch.channels_last
    x4 = _pad_elu(x.unsqueeze(2).contiguous(memory_format=cl), padding, mode, elu)  # [B, C, 1, T]
    w4 = conv.weight.unsqueeze(2).contiguous(memory_format=cl)
    if isinstance(conv, nn.ConvTranspose1d):
        y = F.conv_transpose2d(x4, w4, conv.bias, (1, conv.stride[0]))
    else:
        y = F.conv2d(x4, w4, conv.bias, (1, conv.stride[0]), 0, (1, conv.dilation[0]))
    return y.contiguous(memory_format=cl).squeeze(2)  # oneDNN returns channel-major after a 1-channel input


class SConv1d(nn.Module):
    """Weight-normed Conv1d padded so that frames = ceil(T / stride) (causal: all fixed padding on the left)."""

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int, stride: int = 1, dilation: int = 1,
                 causal: bool = False, pad_mode: str = "constant"):
        super().__init__()
        self.conv = weight_norm(nn.Conv1d(in_ch, out_ch, kernel_size, stride, dilation=dilation))
        self.causal, self.pad_mode = causal, pad_mode

    @property
    def padding(self) -> tuple[int, int]:
        """Fixed (left, right) padding: at stride 1, the input steps an output step reads on either side."""
        kernel_size = (self.conv.kernel_size[0] - 1) * self.conv.dilation[0] + 1
        padding_total = kernel_size - self.conv.stride[0]
        right = 0 if self.causal else padding_total // 2
        return padding_total - right, right

    def forward(self, x: torch.Tensor, elu: bool = False) -> torch.Tensor:
        """[B, C_in, T] -> [B, C_out, ceil(T / stride)]; with elu: of ELU(x), without modifying x."""
        left, right = self.padding
        stride = self.conv.stride[0]
        extra = extra_padding_for_conv1d(x.shape[-1], left + right + stride, stride, left + right)  # kernel span
        return time_major_conv(self.conv, x, (left, right + extra), self.pad_mode, elu)


class SConvTranspose1d(nn.Module):
    """Weight-normed ConvTranspose1d trimmed to exactly T * stride outputs (causal: trimmed on the right)."""

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int, stride: int = 1, causal: bool = False):
        super().__init__()
        self.conv = weight_norm(nn.ConvTranspose1d(in_ch, out_ch, kernel_size, stride))
        self.causal = causal

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, C_in, T] -> [B, C_out, T * stride]
        padding_total = self.conv.kernel_size[0] - self.conv.stride[0]
        right = padding_total if self.causal else padding_total // 2
        y = time_major_conv(self.conv, x)
        return y[..., padding_total - right: y.shape[-1] - right]


class SLSTM(nn.Module):
    """Multi-layer LSTM over time on a conv layout, with a skip connection."""

    def __init__(self, dim: int, num_layers: int):
        super().__init__()
        self.lstm = nn.LSTM(dim, dim, num_layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, C, T] -> [B, C, T]
        return self.run(x)[0]

    def run(self, x: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor] | None = None):
        """(output [B, C, T], LSTM state after the last step) from `state` (None: zeros)."""
        x = x.permute(2, 0, 1)  # [T, B, C]
        y, state = self.lstm(x, state)
        return (y + x).permute(1, 2, 0), state


class ResBlock(nn.Module):
    """SEANet residual block: ELU, conv k(dim -> dim/compress), ELU, conv 1 (back to dim), plus a skip."""

    def __init__(self, cfg: CodecConfig, dim: int, dilation: int):
        super().__init__()
        hidden = dim // cfg.compress
        conv = dict(causal=cfg.causal, pad_mode=cfg.pad_mode)
        self.block = nn.ModuleList([  # the ELUs keep their indices (state-dict keys block.1 / block.3)
            nn.ELU(), SConv1d(dim, hidden, cfg.residual_kernel_size, dilation=dilation, **conv),
            nn.ELU(inplace=True), SConv1d(hidden, dim, 1, **conv),
        ])
        self.shortcut = nn.Identity() if cfg.true_skip else SConv1d(dim, dim, 1, **conv)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, conv1, elu2, conv2 = self.block
        y = conv2(elu2(conv1(x, elu=True)))  # the first ELU runs on conv1's padded copy of x (x is the skip input)
        return y.add_(self.shortcut(x))  # y is a fresh conv output: summing in place saves an activation


def _res_blocks(cfg: CodecConfig, dim: int) -> list[nn.Module]:
    return [ResBlock(cfg, dim, cfg.dilation_base ** j) for j in range(cfg.n_residual_layers)]


def _lstm(cfg: CodecConfig, dim: int) -> list[nn.Module]:
    return [SLSTM(dim, cfg.lstm_layers)] if cfg.lstm_layers else []


class SEANetEncoder(nn.Module):
    """Waveform [B, channels, T] -> latent [B, dimension, ceil(T / hop)]; downsamples by reversed(cfg.ratios)."""

    def __init__(self, cfg: CodecConfig):
        super().__init__()
        conv = dict(causal=cfg.causal, pad_mode=cfg.pad_mode)
        dim = cfg.n_filters
        layers = [SConv1d(cfg.channels, dim, cfg.kernel_size, **conv)]
        for ratio in reversed(cfg.ratios):
            layers += _res_blocks(cfg, dim)
            layers += [nn.ELU(), SConv1d(dim, 2 * dim, 2 * ratio, stride=ratio, **conv)]
            dim *= 2
        layers += _lstm(cfg, dim)
        layers += [nn.ELU(), SConv1d(dim, cfg.dimension, cfg.last_kernel_size, **conv)]
        self.layers = nn.ModuleList(layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x)
        return x


class SEANetDecoder(nn.Module):
    """Latent [B, dimension, F] -> waveform [B, channels, F * hop]; upsamples by cfg.ratios. No final activation."""

    def __init__(self, cfg: CodecConfig):
        super().__init__()
        conv = dict(causal=cfg.causal, pad_mode=cfg.pad_mode)
        dim = cfg.n_filters * 2 ** len(cfg.ratios)
        layers = [SConv1d(cfg.dimension, dim, cfg.kernel_size, **conv)]
        layers += _lstm(cfg, dim)
        for ratio in cfg.ratios:  # in-place ELUs: their inputs (block and LSTM outputs) are read by nothing else
            layers += [nn.ELU(inplace=True),
                       SConvTranspose1d(dim, dim // 2, 2 * ratio, stride=ratio, causal=cfg.causal)]
            dim //= 2
            layers += _res_blocks(cfg, dim)
        layers += [nn.ELU(inplace=True), SConv1d(dim, cfg.channels, cfg.last_kernel_size, **conv)]
        self.layers = nn.ModuleList(layers)
        self.cfg = cfg

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x)
        return x

    def streaming_parts(self):
        """(pre, lstm, post, (pre_left, pre_right, reach)) for chunk-by-chunk decoding (`encodec.StreamingDecoder`):
        `pre`, the frame-rate input conv, reads pre_left / pre_right latent frames either side of a frame; `lstm`
        (None without one) carries all longer-range context; the output samples of a frame depend on at most `reach`
        LSTM output frames either side through `post`, the upsampling stack (a bound, counting each conv's whole
        kernel on both sides and two input steps per transposed conv)."""
        cfg = self.cfg
        lstm = self.layers[1] if isinstance(self.layers[1], SLSTM) else None
        rest = self.layers[2 if lstm else 1:]

        def post(x: torch.Tensor) -> torch.Tensor:
            for layer in rest:
                x = layer(x)
            return x

        reach = cfg.last_kernel_size - 1  # output samples
        for ratio in reversed(cfg.ratios):
            reach += sum((cfg.residual_kernel_size - 1) * cfg.dilation_base ** j for j in range(cfg.n_residual_layers))
            reach = -(-reach // ratio) + 2  # at the transposed conv's input rate (kernel 2 * ratio)
        return self.layers[0], lstm, post, (*self.layers[0].padding, reach)


def remove_weight_norm(module: nn.Module) -> nn.Module:
    """Fold every weight-norm parametrization into a plain `weight` (identical outputs, faster inference), stored in
    the time-major layout `time_major_conv` multiplies with, so that inference does not copy the weights at every
    call (~100 MB per decode for the official codec's decoder). Idempotent.

    Keys change from `conv.parametrizations.weight.original0/1` to `conv.weight`.
    """
    for m in [m for m in module.modules() if parametrize.is_parametrized(m, "weight")]:
        parametrize.remove_parametrizations(m, "weight", leave_parametrized=True)
    for m in module.modules():
        if isinstance(m, (SConv1d, SConvTranspose1d)):
            w = m.conv.weight
            m.conv.weight = nn.Parameter(w.detach().unsqueeze(2).contiguous(memory_format=torch.channels_last)
                                         .squeeze(2), requires_grad=w.requires_grad)  # [O, I, K], I fastest
    return module
