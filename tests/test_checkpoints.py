"""Checkpoint formats: audiocraft layout, own format round trip, and clear errors for bad checkpoints."""
from __future__ import annotations

import pickle
import re

import pytest
import torch
import yaml

from musicgen_core import MusicGen
from musicgen_core.checkpoints import CheckpointError, convert

PROMPT = ["a calm piano piece"]


def audiocraft_lm_keys(hf_sd: dict, n_q: int) -> dict:
    """transformers' MusicGen decoder keys -> audiocraft's LMModel keys (the inverse of transformers' converter)."""
    out = {}
    for k in range(n_q):
        out[f"emb.{k}.weight"] = hf_sd[f"decoder.model.decoder.embed_tokens.{k}.weight"]
        out[f"linears.{k}.weight"] = hf_sd[f"decoder.lm_heads.{k}.weight"]
    for key, value in hf_sd.items():
        m = re.match(r"decoder\.model\.decoder\.layers\.(\d+)\.(.*)", key)
        if not m:
            continue
        i, rest = m.groups()
        attn = re.match(r"(self_attn|encoder_attn)\.([qkv])_proj\.weight", rest)
        if attn:
            if attn.group(2) == "q":
                name = {"self_attn": "self_attn", "encoder_attn": "cross_attention"}[attn.group(1)]
                out[f"transformer.layers.{i}.{name}.in_proj_weight"] = torch.cat(
                    [hf_sd[f"decoder.model.decoder.layers.{i}.{attn.group(1)}.{p}_proj.weight"] for p in "qkv"])
            continue
        for a, b in (("self_attn_layer_norm", "norm1"), ("encoder_attn_layer_norm", "norm_cross"),
                     ("final_layer_norm", "norm2"), ("encoder_attn", "cross_attention"), ("fc1", "linear1"),
                     ("fc2", "linear2")):
            rest = rest.replace(a + ".", b + ".")
        out[f"transformer.layers.{i}.{rest}"] = value
    out["out_norm.weight"] = hf_sd["decoder.model.decoder.layer_norm.weight"]
    out["out_norm.bias"] = hf_sd["decoder.model.decoder.layer_norm.bias"]
    for p in ("weight", "bias"):
        out[f"condition_provider.conditioners.description.output_proj.{p}"] = hf_sd[f"enc_to_dec_proj.{p}"]
        if f"audio_enc_to_dec_proj.{p}" in hf_sd:  # melody: chroma projection (+ the STFT window buffer)
            out[f"condition_provider.conditioners.self_wav.output_proj.{p}"] = hf_sd[f"audio_enc_to_dec_proj.{p}"]
            out["condition_provider.conditioners.self_wav.chroma.spec.window"] = torch.hann_window(16384)
    return out


def audiocraft_codec_keys(hf_sd: dict) -> dict:
    out = {}
    for key, value in hf_sd.items():
        if not key.startswith("audio_encoder."):
            continue
        key = key[len("audio_encoder."):]
        key = key.replace("parametrizations.weight.original0", "weight_g").replace(
            "parametrizations.weight.original1", "weight_v")
        m = re.match(r"(encoder|decoder)\.layers\.(\d+)\.(.*)", key)
        if m:
            part, n, rest = m.groups()
            transposed = part == "decoder" and n in ("3", "6", "9", "12")
            rest = re.sub(r"^conv\.", "convtr.convtr." if transposed else "conv.conv.", rest)
            rest = re.sub(r"^block\.(\d)\.conv\.", r"block.\1.conv.conv.", rest)
            key = f"{part}.model.{n}.{rest}"
        key = re.sub(r"quantizer\.layers\.(\d+)\.codebook\.", r"quantizer.vq.layers.\1._codebook.", key)
        out[key] = value
    return out


def write_audiocraft(hf, tokenizer, folder, melody: bool = False):
    """Save a transformers model's random weights in audiocraft's layout (state_dict.bin + compression_state_dict;
    a stereo model as audiocraft's stereo fine-tunes: 8 codebooks, delays [0, 0, 1, 1, 2, 2, 3, 3])."""
    sd, n_q = hf.state_dict(), hf.decoder.config.num_codebooks
    channels = hf.decoder.config.audio_channels
    lm_cfg = {"transformer_lm": {"dim": 64, "num_heads": 4, "num_layers": 2, "hidden_scale": 4, "n_q": n_q,
                                 "card": 2048},
              "codebooks_pattern": {"modeling": "delay", "delay": {"delays": [k // channels for k in range(n_q)],
                                                                   "flatten_first": 0, "empty_initial": 0}},
              "conditioners": {"description": {"model": "t5", "t5": {"name": "t5-base"}},
                               **({"self_wav": {"model": "chroma_stem"}} if melody else {})},
              "interleave_stereo_codebooks": {"use": channels == 2, "per_timestep": False},
              "dataset": {"segment_duration": 30}, "channels": channels, "sample_rate": 32000}
    codec_cfg = {"sample_rate": 32000, "channels": 1, "encodec": {"causal": False},
                 "seanet": {"dimension": 16, "n_filters": 4, "ratios": [8, 5, 4, 4], "n_residual_layers": 1,
                            "kernel_size": 7, "last_kernel_size": 7, "residual_kernel_size": 3, "dilation_base": 2,
                            "compress": 2, "lstm": 2, "pad_mode": "reflect", "true_skip": True},
                 "rvq": {"n_q": 4, "bins": 2048}}
    torch.save({"best_state": audiocraft_lm_keys(sd, n_q), "xp.cfg": yaml.safe_dump(lm_cfg), "version": "1.4",
                "exported": True}, folder / "state_dict.bin")
    torch.save({"best_state": audiocraft_codec_keys(sd), "xp.cfg": yaml.safe_dump(codec_cfg), "version": "1.4",
                "exported": True}, folder / "compression_state_dict.bin")
    hf.text_encoder.save_pretrained(folder / "text_encoder")
    tokenizer.save_pretrained(folder / "text_encoder")
    return folder


@pytest.fixture(scope="module")
def audiocraft_dir(hf_musicgen_dir, bert_tokenizer, tmp_path_factory):
    return write_audiocraft(hf_musicgen_dir[0], bert_tokenizer, tmp_path_factory.mktemp("audiocraft"))


def test_audiocraft_melody_format(hf_melody_dir, bert_tokenizer, tmp_path):
    ac = MusicGen.from_pretrained(write_audiocraft(hf_melody_dir[0], bert_tokenizer, tmp_path, melody=True), "cpu")
    hf = MusicGen.from_pretrained(hf_melody_dir[1], device="cpu")
    assert ac.config.lm.chroma and not ac.config.lm.cross_attention and ac.config.lm.chroma_length == 235
    melody = [torch.sin(torch.arange(32000) / 32000 * 2 * torch.pi * 330.0)[None]]
    kw = dict(return_tokens=True, duration=0.2, use_sampling=False)
    assert torch.equal(ac.generate_with_chroma(PROMPT, melody, 32000, **kw)[1],
                       hf.generate_with_chroma(PROMPT, melody, 32000, **kw)[1])


def test_sharded_transformers_checkpoint(hf_musicgen_dir, bert_tokenizer, tmp_path):
    hf, folder = hf_musicgen_dir
    hf.save_pretrained(tmp_path, max_shard_size="200KB")
    bert_tokenizer.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors.index.json").is_file()
    a = greedy(MusicGen.from_pretrained(tmp_path, device="cpu"), PROMPT)[1]
    assert torch.equal(a, greedy(MusicGen.from_pretrained(folder, device="cpu"), PROMPT)[1])


def greedy(model: MusicGen, prompts, duration=0.3):
    return model.generate(prompts, return_tokens=True, duration=duration, use_sampling=False)


def test_audiocraft_stereo_format_matches_transformers_format(hf_stereo_dir, bert_tokenizer, tmp_path):
    ac = MusicGen.from_pretrained(write_audiocraft(hf_stereo_dir[0], bert_tokenizer, tmp_path), device="cpu")
    hf = MusicGen.from_pretrained(hf_stereo_dir[1], device="cpu")
    assert ac.audio_channels == hf.audio_channels == 2
    (wav_a, codes_a), (wav_b, codes_b) = greedy(ac, PROMPT), greedy(hf, PROMPT)
    assert codes_a.shape == (1, 8, 15) and torch.equal(codes_a, codes_b)
    torch.testing.assert_close(wav_a, wav_b, atol=1e-5, rtol=0)
    assert wav_a.shape == (1, 2, 15 * 640)


def test_stereo_round_trips_through_our_format(hf_stereo_dir, tmp_path):
    hf = MusicGen.from_pretrained(hf_stereo_dir[1], device="cpu")
    ours = MusicGen.from_pretrained(convert(hf_stereo_dir[1], tmp_path / "ours"), device="cpu")
    assert ours.audio_channels == 2 and torch.equal(greedy(ours, PROMPT)[1], greedy(hf, PROMPT)[1])


def test_audiocraft_format_matches_transformers_format(audiocraft_dir, hf_musicgen_dir):
    ac = MusicGen.from_pretrained(audiocraft_dir, device="cpu")
    hf = MusicGen.from_pretrained(hf_musicgen_dir[1], device="cpu")
    assert ac.config.lm.mask_text_padding is False and hf.config.lm.mask_text_padding is True
    wav_a, codes_a = greedy(ac, PROMPT)
    wav_b, codes_b = greedy(hf, PROMPT)
    assert torch.equal(codes_a, codes_b)
    torch.testing.assert_close(wav_a, wav_b, atol=1e-5, rtol=0)


def test_audiocraft_format_does_not_mask_padded_text(audiocraft_dir, hf_musicgen_dir):
    """Batched prompts of unequal length: audiocraft attends to the zero padding, transformers masks it."""
    ac = MusicGen.from_pretrained(audiocraft_dir, device="cpu")
    hf = MusicGen.from_pretrained(hf_musicgen_dir[1], device="cpu")
    prompts = ["a calm piano piece", "a very long and detailed description of an energetic rock anthem"]
    text, mask = ac.text_encoder(prompts)
    assert mask[0].sum() < mask[1].sum()
    ctx_a, ctx_b = ac.lm.condition(text, mask), hf.lm.condition(text, mask)
    seq = torch.full((2, 4, 1), 2048)
    with torch.no_grad():
        la, lb = ac.lm(seq, ctx_a), hf.lm(seq, ctx_b)
    torch.testing.assert_close(la[1], lb[1], atol=1e-5, rtol=0)  # the longest prompt has no padding
    assert not torch.allclose(la[0], lb[0], atol=1e-4)


def test_convert_to_own_format_round_trip(hf_musicgen_dir, tmp_path):
    dst = convert(hf_musicgen_dir[1], tmp_path / "own")
    assert {p.name for p in dst.iterdir()} >= {"config.json", "lm.safetensors", "codec.safetensors", "text_encoder"}
    wav_a, codes_a = greedy(MusicGen.from_pretrained(dst, device="cpu"), PROMPT)
    wav_b, codes_b = greedy(MusicGen.from_pretrained(hf_musicgen_dir[1], device="cpu"), PROMPT)
    assert torch.equal(codes_a, codes_b)
    torch.testing.assert_close(wav_a, wav_b, atol=1e-6, rtol=0)


def test_codec_encoder_is_folded_on_first_use(hf_musicgen_dir):
    """Official checkpoints store weight-norm (g, v) pairs: the encoder keeps them, unread, until it first runs."""
    from torch.nn.utils import parametrize

    hf, folder = hf_musicgen_dir
    codec = MusicGen.from_pretrained(folder, device="cpu").compression_model
    parametrized = lambda module: any(parametrize.is_parametrized(m) for m in module.modules())  # noqa: E731
    assert parametrized(codec.encoder) and not parametrized(codec.decoder)
    wav = torch.randn(1, 1, 4000)
    with torch.no_grad():
        codes = codec.encode(wav)
        reference = hf.audio_encoder.encode(wav).audio_codes[0]
    assert not parametrized(codec.encoder) and torch.equal(codes, reference)
    assert torch.equal(codec.encode(wav), codes)


def test_missing_and_unexpected_keys_are_named(hf_musicgen_dir, tmp_path):
    from safetensors.torch import load_file, save_file

    dst = convert(hf_musicgen_dir[1], tmp_path / "own")
    sd = load_file(dst / "lm.safetensors")
    sd["layers.0.surprise.weight"] = sd.pop("layers.1.linear2.weight")
    sd["out_norm.weight"] = torch.zeros(3)
    save_file(sd, dst / "lm.safetensors")
    with pytest.raises(CheckpointError) as err:
        MusicGen.from_pretrained(dst, device="cpu")
    msg = str(err.value)
    assert "missing keys (1): layers.1.linear2.weight" in msg
    assert "unexpected keys (1): layers.0.surprise.weight" in msg
    assert "out_norm.weight: checkpoint (3,) vs model (64,)" in msg


def test_malicious_pickle_is_refused(audiocraft_dir, tmp_path):
    import shutil

    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (exec, (f"open({str(marker)!r}, 'w').write('x')",))

    bad = tmp_path / "bad"
    shutil.copytree(audiocraft_dir, bad)
    (bad / "state_dict.bin").write_bytes(pickle.dumps({"best_state": Evil()}))
    with pytest.raises(CheckpointError, match="cannot read state_dict.bin"):
        MusicGen.from_pretrained(bad, device="cpu")
    assert not marker.exists()


def test_truncated_safetensors_is_a_clear_error(hf_musicgen_dir, tmp_path):
    dst = convert(hf_musicgen_dir[1], tmp_path / "own")
    data = (dst / "lm.safetensors").read_bytes()
    (dst / "lm.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="cannot read lm.safetensors"):
        MusicGen.from_pretrained(dst, device="cpu")


def test_not_a_checkpoint_folder(tmp_path):
    with pytest.raises(CheckpointError, match="not a MusicGen checkpoint folder"):
        MusicGen.from_pretrained(tmp_path, device="cpu")
    (tmp_path / "config.json").write_text('{"model_type": "bert"}')
    with pytest.raises(CheckpointError, match="model_type 'bert' is not musicgen"):
        MusicGen.from_pretrained(tmp_path, device="cpu")


def test_safetensors_are_mapped_copy_on_write_and_survive_dropped_pages(tmp_path):
    from safetensors.torch import load_file, save_file

    from musicgen_core.weights import dropping_read_pages, read_safetensors

    tensors = {"f32": torch.randn(3, 5), "bf16": torch.randn(7).bfloat16(), "f16": torch.randn(2, 2).half(),
               "i64": torch.arange(4), "u8": torch.arange(6, dtype=torch.uint8), "empty": torch.zeros(0, 3),
               "bool": torch.tensor([True, False]), "big": torch.randn(3, 4096)}  # spans whole pages
    path = tmp_path / "w.safetensors"
    save_file(tensors, path)
    reference = load_file(path)
    with dropping_read_pages() as drop:
        read = read_safetensors(path)
        assert read.keys() == reference.keys()
        for key, value in read.items():
            assert value.dtype == reference[key].dtype and torch.equal(value, reference[key]), key
        drop(read["big"])  # its pages leave memory and come back from the file on the next read
        assert torch.equal(read["big"], reference["big"])
        drop()  # all pages read so far
        assert all(torch.equal(value, reference[key]) for key, value in read.items())
    for key, value in read.items():  # after the block's release as well
        assert torch.equal(value, reference[key]), key
    read["f32"].add_(1.0)  # in-place updates (training) stay private to the process
    assert torch.equal(load_file(path)["f32"], reference["f32"])
