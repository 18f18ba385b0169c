"""The benchmark: what a decoding step reads, teacher-forced agreement, and the side-by-side rows."""
from __future__ import annotations

import json

import pytest
import torch

from musicgen_core import MusicGen
from musicgen_core.bench import compare, main, step_weight_bytes, teacher_forced_top1
from musicgen_core.quantize import GROUP

PROMPTS = ["calm piano", "an energetic rock song"]


def test_step_weight_bytes_counts_what_a_step_reads(hf_musicgen_dir):
    model = MusicGen.from_pretrained(hf_musicgen_dir[1], device="cpu")
    cfg = model.lm.cfg
    D, F, L, K, C = cfg.dim, cfg.ffn_dim, cfg.num_layers, cfg.n_q, cfg.card
    per_layer = 3 * D * D + D * D + D * D + D * D + 2 * D * F + 3 * 2 * D  # SA in/out, CA q/out, FFN, 3 norms
    assert step_weight_bytes(model.lm) == 4 * (L * per_layer + 2 * D + K * C * D)  # + output norm and heads
    int4 = MusicGen.from_pretrained(hf_musicgen_dir[1], device="cpu", precision="int4")
    attention = 6 * D * D * (1 + 2 / D)  # int8 weights + one bf16 scale per row
    ffn = 2 * D * F / 2 + 2 * (D * F / GROUP + F * D / GROUP) * 2  # 4-bit + bf16 (scale, zero) per group
    assert step_weight_bytes(int4.lm) == L * (attention + ffn + 4 * 3 * 2 * D) + 4 * (2 * D + K * C * D)


@pytest.mark.parametrize("folder", ["hf_musicgen_dir", "hf_melody_dir"])
def test_teacher_forcing_own_greedy_codes_gives_them_back(folder, request):
    """Fed its own greedy codes, the model's guided top-1 at each valid step is the code it generated: the full
    forward and the cached decoding loop agree."""
    model = MusicGen.from_pretrained(request.getfixturevalue(folder)[1], device="cpu")
    _, codes = model.generate(PROMPTS, duration=0.5, use_sampling=False, cfg_coef=3.0, return_tokens=True)
    top1 = teacher_forced_top1(model, codes, PROMPTS)
    seq, valid = model.pattern.build(codes, model.lm.cfg.special_token)
    assert top1.shape == (2, 4, seq.shape[-1] - 1)
    assert torch.equal(top1[:, valid[:, 1:]], seq[..., 1:][:, valid[:, 1:]])


def test_precisions_must_include_the_reference(capsys):
    with pytest.raises(SystemExit):
        main(["--compare-hf", "--precisions", "int8"])
    assert "--precisions must include fp32 (the reference of the agreement columns)" in capsys.readouterr().err


@pytest.mark.slow
def test_rows_side_by_side_with_transformers(hf_musicgen_dir, tmp_path, capsys):
    out = tmp_path / "bench.json"
    rows = compare("cpu", 20, 1, 1, [1, 2], ["fp32", "int8"], str(out), folder=hf_musicgen_dir[1],
                   default_model=False)
    data = json.loads(out.read_text())
    assert data["rows"] == rows and data["memory_bandwidth_gbs"] > 0
    assert [(r["batch"], r["precision"]) for r in rows] == [(1, "fp32"), (1, "int8"), (2, "fp32"), (2, "int8")]
    required = {"batch", "precision", "steps_per_s", "hf_steps_per_s", "speedup_vs_hf", "agreement", "rtf",
                "first_audio_s", "peak_mb", "floor_fraction", "agreement_per_codebook", "chroma_vs_fp32",
                "mel_vs_fp32", "offered"}
    for r in rows:
        assert required <= set(r)
        assert r["speedup_vs_hf"] == pytest.approx(r["steps_per_s"] / r["hf_steps_per_s"])
        assert r["floor_fraction"] == pytest.approx(r["steps_per_s"] / r["floor_steps_per_s"])
        assert r["offered"] == (r["agreement"] >= 0.9) and len(r["agreement_per_codebook"]) == 4
        if r["precision"] == "fp32":  # the exact path: transformers' greedy codes, its own top-1 and audio
            assert r["codes_equal_hf"] == 1.0 and r["agreement"] == 1.0 and r["mel_vs_fp32"] == 0.0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last.startswith("device=cpu frames=20 threads=1 fastest=") and "speedup_vs_hf=" in last and "rtf=" in last
