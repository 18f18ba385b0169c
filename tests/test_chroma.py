"""Chroma extractor: pitch classes, frame counts, parity with transformers' MusicgenMelodyFeatureExtractor."""
import librosa
import numpy as np
import pytest
import torch

from musicgen_core.conditioning.chroma import ChromaExtractor, fit_chroma_length, null_chroma

SR = 32000


@pytest.fixture
def extractor():  # one per test, so that every test also checks the constructor
    return ChromaExtractor()


def _tones(freqs, amps, seconds=3.0):
    t = torch.arange(int(seconds * SR)) / SR
    return sum(a * torch.sin(2 * torch.pi * f * t) for f, a in zip(freqs, amps))


def test_a440_is_bin_9(extractor):
    chroma = extractor(_tones([440.0], [0.5])[None, None])  # [1, 1, T] input
    assert chroma.shape == (1, 24, 12)
    assert (chroma.argmax(-1) == 9).all() and torch.equal(chroma.sum(-1), torch.ones(1, 24))
    assert chroma.dtype == torch.float32


@pytest.mark.parametrize("seconds,frames", [(1, 8), (3, 24), (10, 79)])
def test_frame_count(extractor, seconds, frames):
    T = seconds * SR
    assert extractor(torch.randn(2, T)).shape == (2, frames, 12) == (2, 1 + T // 4096, 12)
    assert extractor.num_frames(T) == frames


def test_silence_and_short_input_give_c(extractor):
    for T in (1, 1000, 20000):
        chroma = extractor(torch.zeros(1, T))
        assert chroma.shape[1] == extractor.num_frames(T)
        assert (chroma.argmax(-1) == 0).all()
    assert extractor(torch.zeros(1, 1)).shape == (1, 5, 12)


def test_filterbank_is_librosa(extractor):
    expected = librosa.filters.chroma(sr=SR, n_fft=16384, tuning=0, n_chroma=12)
    assert extractor.filterbank.shape == (12, 8193)
    assert np.array_equal(extractor.filterbank.numpy(), expected)


def test_no_state(extractor):
    assert len(extractor.state_dict()) == 0


def test_parity_with_transformers(extractor):
    transformers = pytest.importorskip("transformers")
    fe = transformers.MusicgenMelodyFeatureExtractor()
    torch.manual_seed(0)
    chord = _tones([261.63, 329.63, 392.0, 110.0], [0.3, 0.5, 0.2, 0.4], seconds=5.0)  # C E G + A2
    for wav in (torch.randn(2, 3 * SR), chord[None], torch.randn(1, 5000)):
        expected = fe(wav.numpy(), sampling_rate=SR, return_tensors="pt").input_features
        assert torch.equal(extractor(wav), expected)
    assert torch.equal(extractor.filterbank, fe.chroma_filters)


def test_fit_chroma_length():
    chroma = torch.nn.functional.one_hot(torch.randint(0, 12, (2, 100)), 12).float()
    tiled = fit_chroma_length(chroma, 235)
    assert tiled.shape == (2, 235, 12)
    assert torch.equal(tiled, torch.cat([chroma, chroma, chroma], dim=1)[:, :235])
    long = torch.rand(2, 300, 12)
    assert torch.equal(fit_chroma_length(long, 235), long[:, :235])
    assert torch.equal(fit_chroma_length(long[:, :235]), long[:, :235])
    short = torch.rand(1, 5, 12)  # fewer frames than pitch classes: tiled 47 times
    assert torch.equal(fit_chroma_length(short, 235), short.repeat(1, 47, 1))


def test_null_chroma():
    assert null_chroma(2).shape == (2, 235, 12)  # the melody models' 30 s of chroma frames
    chroma = null_chroma(3, 235, "cpu")
    assert chroma.shape == (3, 235, 12) and (chroma[..., 0] == 1).all() and chroma.sum() == 3 * 235
    assert null_chroma(1, 4, "meta").device.type == "meta"  # made where the model lives, not moved there
    assert null_chroma(1, 4, n_chroma=24).shape == (1, 4, 24)


def test_other_chroma_resolutions_follow_librosa():
    quarter_tones = ChromaExtractor(n_chroma=24)
    expected = librosa.filters.chroma(sr=SR, n_fft=16384, tuning=0, n_chroma=24)
    assert np.array_equal(quarter_tones.filterbank.numpy(), expected)
    chroma = quarter_tones(_tones([440.0], [0.5], seconds=1.0)[None])
    assert chroma.shape == (1, 8, 24) and (chroma.argmax(-1) == 18).all()  # A is quarter tone 18 from C


def test_half_module_computes_in_float32():
    wav = _tones([440.0], [0.5], seconds=1.0)[None]
    assert torch.equal(ChromaExtractor().half()(wav), ChromaExtractor()(wav))


def test_soft_chroma_is_normalised_per_frame_and_short_input_padded_symmetrically():
    soft = ChromaExtractor(argmax=False)
    quiet = _tones([440.0, 329.63], [1e-3, 5e-4])[None]  # A4 over a softer E4, far below full scale
    chroma = soft(quiet)
    peak = chroma.max(-1).values  # the inf-norm per frame: 1 whatever the level
    torch.testing.assert_close(peak, torch.ones_like(peak))
    assert (chroma.argmax(-1) == 9).all() and (chroma[..., 4] > 0.05).all() and chroma.dtype == torch.float32
    short = torch.randn(1, 5000)
    pad = soft.n_fft - 5000
    assert torch.equal(soft(short), soft(torch.nn.functional.pad(short, (pad // 2, pad - pad // 2))))
    with pytest.raises(ValueError, match=r"^expected mono wav \[B, 1, T\], got \(1, 2, 100\)$"):
        soft(torch.zeros(1, 2, 100))


def _reference_soft_chroma(wav: np.ndarray) -> np.ndarray:
    """audiocraft's soft chroma written out with librosa: |STFT|^2 over the window's energy (periodic Hann, centred,
    reflect padding), librosa's filterbank, each frame divided by its largest bin (at least 1e-6)."""
    window = librosa.filters.get_window("hann", 16384)
    stft = librosa.stft(wav.astype(np.float64), n_fft=16384, hop_length=4096, window="hann", center=True,
                        pad_mode="reflect")
    chroma = librosa.filters.chroma(sr=SR, n_fft=16384, tuning=0) @ (np.abs(stft) ** 2 / np.sum(window ** 2))
    return (chroma / np.maximum(chroma.max(axis=0, keepdims=True), 1e-6)).T  # [frames, 12]


@pytest.mark.parametrize("amplitude", [0.5, 2e-6])  # a quiet input: frames below the 1e-6 floor keep their scale
def test_soft_chroma_equals_the_written_out_reference(amplitude):
    wav = _tones([261.63, 392.0], [amplitude, amplitude / 2], seconds=2.0)
    soft = ChromaExtractor(argmax=False)(wav[None])[0].numpy()
    expected = _reference_soft_chroma(wav.numpy())
    assert soft.shape == expected.shape == (16, 12)
    np.testing.assert_allclose(soft, expected, rtol=2e-3, atol=1e-7 * expected.max())
    assert (soft.max(axis=1) < 1).all() if amplitude < 1e-3 else np.allclose(soft.max(axis=1), 1)


@pytest.mark.parametrize("samples", [5 * 4096 - 2, 5 * 4096 - 1, 5 * 4096, 16384, 16385])
def test_frame_count_at_hop_boundaries(extractor, samples):
    assert extractor(torch.randn(1, samples)).shape[1] == extractor.num_frames(samples) == 1 + samples // 4096
