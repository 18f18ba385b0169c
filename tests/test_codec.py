"""Codec: shapes, RVQ behaviour, weight-norm folding, and parity with transformers' EncodecModel."""
import math

import pytest
import torch
import torch.nn.functional as F

from musicgen_core.audiocraft_format import audiocraft_codec_state_dict
from musicgen_core.hf_format import hf_codec_state_dict
from musicgen_core.codec import Codec, StereoCodec, StreamingDecoder
from musicgen_core.codec.encodec import MAX_BOOST_DB
from musicgen_core.codec.quantizer import ResidualVectorQuantizer, VectorQuantizer
from musicgen_core.codec.seanet import extra_padding_for_conv1d, pad1d
from musicgen_core.configs import CodecConfig

TINY = CodecConfig(n_filters=4, dimension=16, card=64, lstm_layers=1)


def _tiny_codec(**kw) -> Codec:
    torch.manual_seed(0)
    return Codec(CodecConfig(**{**TINY.__dict__, **kw})).eval()


@pytest.mark.parametrize("pad_mode,causal", [("constant", False), ("reflect", False), ("constant", True)])
@torch.no_grad()
def test_frame_count_and_output_length(pad_mode, causal):
    codec = _tiny_codec(pad_mode=pad_mode, causal=causal)
    for T in (1, 100, 639, 640, 641, 3200, 5001):
        codes = codec.encode(torch.randn(2, 1, T))
        F_ = math.ceil(T / 640)
        assert codes.shape == (2, codec.n_q, F_) and codes.dtype == torch.int64
        assert codec.decode(codes).shape == (2, 1, F_ * codec.hop_length)


@pytest.mark.parametrize("kw", [dict(pad_mode="reflect"), dict(causal=True), dict(lstm_layers=0),
                                dict(true_skip=False, n_residual_layers=2, lstm_layers=2),
                                dict(decoder="istft", istft_dim=16, istft_layers=2, istft_n_fft=2560)],
                         ids=["reflect", "causal", "no-lstm", "deeper", "istft"])
@pytest.mark.parametrize("chunk", [1, 4, 11])
def test_streaming_decoder_equals_whole_decode(kw, chunk):
    codec = _tiny_codec(**kw)
    codes = torch.randint(0, 64, (2, 4, 41))
    whole = codec.decode(codes)
    decoder, parts = StreamingDecoder(codec), []
    for stop in range(chunk, codes.shape[-1] - decoder.lookahead + 1, chunk):
        parts.append(decoder(codes[..., :stop + decoder.lookahead], stop))  # only the codes it must know
    parts.append(decoder(codes, codes.shape[-1], final=True))
    torch.testing.assert_close(torch.cat(parts, dim=-1), whole, atol=1e-5, rtol=1e-5)


def test_streaming_decoder_needs_its_lookahead_and_reads_little():
    decoder = StreamingDecoder(_tiny_codec())
    with pytest.raises(ValueError, match=r"cannot decode frames \[0, 5\) from 6 frames"):
        decoder(torch.randint(0, 64, (1, 4, 6)), 5)
    with torch.device("meta"):
        official = Codec(CodecConfig())
    assert StreamingDecoder(official).lookahead <= 8  # MusicGen's codec: a chunk waits for < 0.2 s of codes


def test_properties_and_input_check():
    codec = _tiny_codec()
    assert (codec.sample_rate, codec.frame_rate, codec.hop_length, codec.n_q, codec.cardinality) == (
        32000, 50, 640, 4, 64)
    with pytest.raises(ValueError, match="expected wav"):
        codec.encode(torch.randn(2, 640))


def test_padding_helpers():
    assert extra_padding_for_conv1d(length=10, kernel_size=8, stride=4, padding_total=4) == 2  # 12 -> 3 frames
    assert extra_padding_for_conv1d(length=12, kernel_size=8, stride=4, padding_total=4) == 0
    x = torch.arange(1.0, 3.0).view(1, 1, 2)
    out = pad1d(x, (3, 3), "reflect")  # too short to reflect: zero-extended first, then trimmed back
    assert out.shape[-1] == 8
    assert torch.equal(out, F.pad(F.pad(x, (0, 2)), (3, 3), "reflect")[..., :8])


def _fit(rvq: ResidualVectorQuantizer, x: torch.Tensor) -> None:
    torch.manual_seed(0)
    rvq.train()(x)  # first training call: k-means init of every codebook on its residual, then one EMA step
    rvq.eval()


@torch.no_grad()
def test_rvq_error_falls_with_more_codebooks():
    torch.manual_seed(1)
    x = torch.randn(4, 16, 256)  # [B, D, F]
    rvq = ResidualVectorQuantizer(dim=16, n_q=4, card=64)
    _fit(rvq, x)
    errors = [F.mse_loss(rvq.decode(rvq.encode(x, n_q=k)), x).item() for k in range(1, 5)]
    assert all(a > b for a, b in zip(errors, errors[1:])), errors
    assert rvq.encode(x).shape == (4, 4, 256) and rvq.decode(rvq.encode(x, n_q=2)).shape == x.shape
    with pytest.raises(ValueError):
        rvq.encode(x, n_q=5)


def test_rvq_training_pass():
    torch.manual_seed(0)
    centers = torch.tensor([[5.0, 5.0], [-5.0, -5.0]])
    x = (centers[torch.randint(0, 2, (2, 64))] + 0.1 * torch.randn(2, 64, 2)).transpose(1, 2).requires_grad_()
    rvq = ResidualVectorQuantizer(dim=2, n_q=2, card=2, kmeans_iters=10).train()
    out, codes, penalty = rvq(x)
    assert rvq.layers[0].inited.item() == 1 and codes.shape == (2, 2, 64)
    first = rvq.layers[0].embed[codes[:, 0]].transpose(1, 2)  # the first codebook finds the two clusters
    assert (first - x).abs().max() < 1.0
    with torch.no_grad():  # the value is the sum of the chosen entries, the gradient goes straight through
        assert torch.allclose(out, rvq.eval().decode(codes), atol=1e-5)
    out.sum().backward()
    assert torch.allclose(x.grad, torch.ones_like(x))
    assert penalty.ndim == 0 and 0 < penalty.item() < 1.0


def test_dead_codes_restart_on_batch_vectors():
    torch.manual_seed(0)
    vq = VectorQuantizer(dim=2, card=4, dead_after=3).train()
    vq.inited.fill_(1)
    vq.embed.copy_(torch.tensor([[0.0, 0.0], [100, 100], [200, 200], [300, 300]]))
    vq.cluster_size.copy_(torch.tensor([10.0, 1, 1, 1]))
    vq.embed_avg.copy_(vq.embed * vq.cluster_size[:, None])
    x = torch.randn(64, 2)
    vq(x)
    vq(x)
    assert (vq.embed[1:].abs() > 50).all()  # unused for 2 steps: still waiting
    vq(x)  # unused for 3 steps: codes 1..3 restart at batch vectors
    assert all((x == row).all(-1).any() for row in vq.embed[1:])
    vq(x)  # and survive the next EMA step
    assert vq.embed.abs().max() < 10


@torch.no_grad()
def test_codec_error_falls_with_more_codebooks():
    codec = _tiny_codec()
    wav = torch.randn(4, 1, 64000)
    latent = codec.encoder(wav)  # [4, 16, 100]
    _fit(codec.quantizer, latent)
    reference = codec.decoder(latent)
    errors = [F.mse_loss(codec.decode(codec.encode(wav, n_q=k)), reference).item() for k in range(1, 5)]
    assert all(a > b for a, b in zip(errors, errors[1:])), errors


def test_codec_training_forward_backward():
    codec = _tiny_codec().train()
    wav = torch.randn(2, 1, 3000)
    out = codec(wav)
    assert out.wav.shape == wav.shape and out.codes.shape == (2, 4, 5)
    (F.l1_loss(out.wav, wav) + out.penalty).backward()
    assert codec.encoder.layers[0].conv.parametrizations.weight.original1.grad is not None


@torch.no_grad()
def _spread_codebooks(codec: Codec) -> Codec:
    """Codebooks at the scale of the encoder's output (a fresh one's are zeros: every frame would get code 0)."""
    scale = codec.encoder(torch.randn(1, 1, 6400)).std()
    for k, layer in enumerate(codec.quantizer.layers):
        layer.embed.copy_(torch.randn_like(layer.embed) * scale / 2 ** k)
    return codec


def test_training_tokens_stay_fp32_under_autocast():
    """Mixed-precision training must see the tokens inference makes: only the decoder autocasts."""
    codec = _spread_codebooks(_tiny_codec())
    wav = torch.randn(2, 1, 32000)
    with torch.no_grad(), torch.autocast("cpu", torch.bfloat16):
        out = codec(wav)
    assert torch.equal(out.codes, codec.encode(wav))
    assert out.wav.dtype == torch.bfloat16


@torch.no_grad()
def test_renormalised_codec_codes_every_level_alike_and_gives_the_level_back():
    """input_rms_db: a quiet copy of a clip gives the same tokens, and its reconstruction that much quieter; boost is
    capped for near-silence; without it (MusicGen's codec) level changes the tokens."""
    plain, norm = _spread_codebooks(_tiny_codec()), _spread_codebooks(_tiny_codec(input_rms_db=-20.0))
    x = torch.randn(2, 1, 6400) * torch.tensor([0.3, 0.1])[:, None, None]  # -10 and -20 dBFS
    assert torch.equal(plain.input_gain(x), torch.ones(2, 1, 1))
    assert torch.allclose(20 * torch.log10((x * norm.input_gain(x)).pow(2).mean((1, 2)).sqrt()), torch.tensor(-20.0))
    quiet = x / 16  # a power of two: exactly the same scaled input, so exactly the same tokens
    assert torch.equal(norm.encode(quiet), norm.encode(x)) and not torch.equal(plain.encode(quiet), plain.encode(x))
    assert torch.allclose(norm(quiet).wav * 16, norm(x).wav, atol=1e-6)
    assert torch.equal(norm(x).codes, norm.encode(x))
    assert torch.allclose(norm.input_gain(torch.full((1, 1, 640), 1e-9)), torch.tensor(10 ** (MAX_BOOST_DB / 20)))
    assert torch.equal(norm.input_gain(torch.zeros(1, 1, 640)), torch.full((1, 1, 1), 10 ** (MAX_BOOST_DB / 20)))


@torch.no_grad()
def test_renormalised_stereo_keeps_the_balance_of_its_channels():
    mono = _spread_codebooks(_tiny_codec(input_rms_db=-20.0))
    left, right = torch.randn(1, 1, 3200) * 0.1, torch.randn(1, 1, 3200) * 0.01
    codes = StereoCodec(mono).encode(torch.cat([left, right], dim=1))
    gain = 10 ** (-20 / 20) / torch.cat([left, right], dim=1).pow(2).mean().sqrt()  # one gain for both channels
    assert torch.equal(codes[:, 1::2], mono.quantizer.encode(mono.encoder(right * gain)))
    assert not torch.equal(codes[:, 1::2], mono.encode(right))  # which alone would be lifted to -20 dBFS


def _hf_pair(pad_mode: str, causal: bool = False):
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    hf = transformers.EncodecModel(transformers.EncodecConfig(
        sampling_rate=32000, upsampling_ratios=[8, 5, 4, 4], target_bandwidths=[2.2], num_filters=4, hidden_size=16,
        codebook_size=2048, use_causal_conv=causal, normalize=False, use_conv_shortcut=False, pad_mode=pad_mode))
    with torch.no_grad():  # HF's init zeroes the codebooks: random ones at the latents' scale, finer per level
        scale = hf.encoder(torch.randn(1, 1, 6400)).std()
        for k, layer in enumerate(hf.quantizer.layers):
            layer.codebook.embed.copy_(torch.randn_like(layer.codebook.embed) * scale / 2 ** k)
    ours = Codec(CodecConfig(n_filters=4, dimension=16, card=2048, n_q=4, pad_mode=pad_mode, causal=causal))
    ours.load_state_dict(hf_codec_state_dict(hf.state_dict()), strict=True)
    return hf.eval(), ours.eval()


@pytest.mark.parametrize("pad_mode,causal", [("reflect", False), ("constant", False), ("reflect", True)])
@torch.no_grad()
def test_parity_with_transformers(pad_mode, causal):
    hf, ours = _hf_pair(pad_mode, causal)
    for T in (300, 6400 + 123):
        wav = torch.randn(2, 1, T)
        hf_codes = hf.encode(wav, bandwidth=2.2).audio_codes  # [1, B, K, F]
        codes = ours.encode(wav)
        assert torch.equal(codes, hf_codes[0])
        hf_wav = hf.decode(hf_codes, [None]).audio_values
        assert hf_wav.shape == ours.decode(codes).shape
        assert torch.allclose(ours.decode(codes), hf_wav, atol=1e-5)
    codes = torch.randint(0, 2048, (2, 4, 7))
    assert torch.allclose(ours.decode(codes), hf.decode(codes[None], [None]).audio_values, atol=1e-5)


@torch.no_grad()
def test_remove_weight_norm_keeps_outputs():
    _, codec = _hf_pair("reflect")
    folded = Codec(codec.cfg).eval()  # not deepcopy: copies share the parametrized class, folding one breaks both
    folded.load_state_dict(codec.state_dict())
    folded.remove_weight_norm()
    keys = folded.state_dict().keys()
    assert "encoder.layers.0.conv.weight" in keys and not any("parametrizations" in k for k in keys)
    wav = torch.randn(2, 1, 5000)
    codes = codec.encode(wav)
    assert torch.equal(folded.encode(wav), codes)
    assert torch.equal(folded.decode(codes), codec.decode(codes))
    convs = [m.conv.weight for m in folded.modules() if hasattr(m, "conv")]
    assert convs and all(w.unsqueeze(2).is_contiguous(memory_format=torch.channels_last) for w in convs)  # no copies
    folded.remove_weight_norm()  # idempotent
    assert torch.equal(folded.decode(codes), codec.decode(codes))


def test_full_size_key_layout():
    with torch.device("meta"):
        sd = Codec(CodecConfig()).state_dict()
    shapes = {k: tuple(v.shape) for k, v in sd.items()}
    assert shapes["encoder.layers.0.conv.parametrizations.weight.original1"] == (64, 1, 7)
    assert shapes["encoder.layers.12.conv.parametrizations.weight.original1"] == (1024, 512, 16)
    assert shapes["encoder.layers.10.block.1.conv.parametrizations.weight.original1"] == (256, 512, 3)
    assert shapes["encoder.layers.13.lstm.weight_ih_l1"] == (4096, 1024)
    assert shapes["encoder.layers.15.conv.bias"] == (128,)
    assert shapes["decoder.layers.3.conv.parametrizations.weight.original0"] == (1024, 1, 1)  # ConvT: dim 0 = C_in
    assert shapes["decoder.layers.12.conv.parametrizations.weight.original1"] == (128, 64, 8)
    assert shapes["decoder.layers.15.conv.parametrizations.weight.original1"] == (1, 64, 7)
    assert shapes["quantizer.layers.3.embed"] == (2048, 128) and shapes["quantizer.layers.0.inited"] == (1,)
    assert not any(k.startswith(("encoder.layers.2.", "encoder.layers.14.", "decoder.layers.11.")) for k in sd)


def test_checkpoint_key_renames():
    t = torch.zeros(1)
    audiocraft = {
        "encoder.model.0.conv.conv.weight_g": "encoder.layers.0.conv.parametrizations.weight.original0",
        "encoder.model.1.block.3.conv.conv.weight_v": "encoder.layers.1.block.3.conv.parametrizations.weight.original1",
        "encoder.model.13.lstm.bias_hh_l1": "encoder.layers.13.lstm.bias_hh_l1",
        "decoder.model.3.convtr.convtr.bias": "decoder.layers.3.conv.bias",
        "quantizer.vq.layers.2._codebook.embed_avg": "quantizer.layers.2.embed_avg",
    }
    assert list(audiocraft_codec_state_dict(dict.fromkeys(audiocraft, t))) == list(audiocraft.values())
    hf = {"quantizer.layers.1.codebook.embed": "quantizer.layers.1.embed",
          "decoder.layers.6.conv.weight_g": "decoder.layers.6.conv.parametrizations.weight.original0"}
    assert list(hf_codec_state_dict(dict.fromkeys(hf, t))) == list(hf.values())


def test_codebook_usage_stays_high_with_batches_smaller_than_the_codebook():
    """With 32 vectors a step for 256 codes every EMA count stays far below 1; codes must still not collapse."""
    torch.manual_seed(0)
    vq = VectorQuantizer(dim=4, card=256, dead_after=20).train()
    for _ in range(300):
        vq(torch.randn(32, 4))
    vq.eval()
    codes = vq.encode(torch.randn(20000, 4))
    assert torch.unique(codes).numel() > 0.9 * 256
