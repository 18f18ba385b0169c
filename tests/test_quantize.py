"""Fast paths against the exact one: int8 weight-only layers and bf16 LMs."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from musicgen_core import MusicGen
from musicgen_core.conditioning.chroma import null_chroma
from musicgen_core.quantize import Int8Linear, set_precision


def test_int8_linear_matches_float_within_quantisation_error():
    torch.manual_seed(0)
    linear = nn.Linear(256, 512)
    x = torch.randn(3, 5, 256)
    exact = linear(x)
    approx = Int8Linear(linear)(x).float()
    assert approx.shape == exact.shape
    assert (approx - exact).norm() / exact.norm() < 0.02  # bf16 activations + 8-bit weights
    assert Int8Linear(linear).weight.dtype == torch.int8


def test_unknown_precision_is_named(hf_musicgen_dir):
    with pytest.raises(ValueError, match="unknown precision 'fp8': use one of fp32, bf16, int8"):
        MusicGen.from_pretrained(hf_musicgen_dir[1], device="cpu", precision="fp8")


@pytest.mark.parametrize("precision, floor", [("bf16", 0.9), ("int8", 0.9)])
@pytest.mark.parametrize("folder", ["hf_musicgen_dir", "hf_melody_dir"])
def test_fast_paths_agree_with_the_exact_path(folder, precision, floor, request):
    path = request.getfixturevalue(folder)[1]
    exact = MusicGen.from_pretrained(path, device="cpu")
    fast = MusicGen.from_pretrained(path, device="cpu", precision=precision)
    assert fast.lm.emb.dtype == torch.bfloat16
    assert any(isinstance(m, Int8Linear) for m in fast.lm.modules()) == (precision == "int8")
    prompts = ["calm piano", "an energetic rock song"]
    seq = torch.randint(0, 2048, (2, 4, 30))  # teacher forcing: every position is compared
    logits = []
    for model in (exact, fast):
        text, mask = model.text_encoder(prompts)
        chroma = null_chroma(2, model.lm.cfg.chroma_length) if model.lm.cfg.chroma else None
        logits.append(model.lm(seq, model.lm.condition(text, mask, chroma)))
    top1 = (logits[0].argmax(-1) == logits[1].argmax(-1)).float().mean().item()
    assert logits[1].dtype == torch.float32 and top1 >= floor, top1
    fast.set_generation_params(duration=0.5)
    wav = fast.generate(prompts, seed=0)
    assert wav.shape == (2, 1, 16000) and torch.isfinite(wav).all()
