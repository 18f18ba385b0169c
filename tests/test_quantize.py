"""Fast paths against the exact one: int8 and 4-bit weight-only layers and bf16 LMs."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from musicgen_core import MusicGen
from musicgen_core.conditioning.chroma import null_chroma
from musicgen_core.quantize import GROUP, Int4Linear, Int8Linear


def test_int8_linear_matches_float_within_quantisation_error():
    torch.manual_seed(0)
    linear = nn.Linear(256, 512)
    x = torch.randn(3, 5, 256)
    exact = linear(x)
    approx = Int8Linear(linear)(x)
    assert approx.shape == exact.shape and approx.dtype == torch.float32
    assert (approx - exact).norm() / exact.norm() < 0.02  # bf16 activations + 8-bit weights
    assert Int8Linear(linear).weight.dtype == torch.int8


def test_int4_linear_is_exact_on_its_own_grid():
    """Weights on a 4-bit grid per group (q * scale + offset, q in 0..15) are stored exactly: the product equals a
    bf16 product with the same weights, so the packing, scales and zeros follow the kernel's convention."""
    torch.manual_seed(0)
    N, K = 48, 4 * GROUP
    q = torch.randint(0, 16, (N, K)).float()
    q[:, ::GROUP], q[:, 1::GROUP] = 0, 15  # every group spans the whole grid
    scale = torch.rand(N, K // GROUP) * 0.1 + 0.01
    offset = torch.randn(N, K // GROUP) * 0.1
    grid = (q.view(N, -1, GROUP) * scale[..., None] + offset[..., None]).view(N, K)
    grid = grid.bfloat16().float()
    linear = nn.Linear(K, N, bias=True)
    with torch.no_grad():
        linear.weight.copy_(grid)
    x = torch.randn(2, 3, K)
    layer = Int4Linear(linear)
    assert layer.weight.dtype == torch.uint8 and layer.weight.numel() == N * K // 2
    expected = x.bfloat16().float() @ grid.T + linear.bias.detach().bfloat16().float()
    assert (layer(x) - expected).abs().max() < 0.02 * expected.abs().max()
    random = nn.Linear(K, N, bias=False)
    assert (Int4Linear(random)(x) - random(x)).norm() / random(x).norm() < 0.15  # 4-bit weights


def test_int4_linear_rejects_shapes_the_kernel_cannot_take():
    with pytest.raises(ValueError, match="4-bit layers need in_features divisible by 64 and out_features by 8, got "
                                         "100 and 16"):
        Int4Linear(nn.Linear(100, 16))


def test_unknown_precision_is_named(hf_musicgen_dir):
    with pytest.raises(ValueError, match="unknown precision 'fp8': use one of fp32, bf16, int8"):
        MusicGen.from_pretrained(hf_musicgen_dir[1], device="cpu", precision="fp8")


@pytest.mark.parametrize("precision, floor", [("bf16", 0.9), ("int8", 0.9), ("int4", 0.5)])
@pytest.mark.parametrize("folder", ["hf_musicgen_dir", "hf_melody_dir"])
def test_fast_paths_agree_with_the_exact_path(folder, precision, floor, request):
    path = request.getfixturevalue(folder)[1]
    exact = MusicGen.from_pretrained(path, device="cpu")
    fast = MusicGen.from_pretrained(path, device="cpu", precision=precision)
    assert fast.lm.emb.dtype == (torch.bfloat16 if precision == "bf16" else torch.float32)
    kinds = {type(m) for m in fast.lm.modules()}
    assert (Int8Linear in kinds, Int4Linear in kinds) == (precision != "bf16", precision == "int4")
    prompts = ["calm piano", "an energetic rock song"]
    seq = torch.randint(0, 2048, (2, 4, 30))  # teacher forcing: every position is compared
    logits = []
    for model in (exact, fast):
        text, mask = model.text_encoder(prompts)
        chroma = null_chroma(2, model.lm.cfg.chroma_length) if model.lm.cfg.chroma else None
        logits.append(model.lm(seq, model.lm.condition(text, mask, chroma, frame_rate=model.frame_rate)))
    top1 = (logits[0].argmax(-1) == logits[1].argmax(-1)).float().mean().item()
    assert logits[1].dtype == torch.float32 and top1 >= floor, top1
    wav = fast.generate(prompts, seed=0, duration=0.5)
    assert wav.shape == (2, 1, 16000) and torch.isfinite(wav).all()
