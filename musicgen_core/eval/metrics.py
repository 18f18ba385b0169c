"""Objective metrics, each a pure function over audio arrays (mono float32 at the given sample rate).

- `chroma_cosine`: audiocraft's ChromaCosineSimilarityMetric (§8.1 of the reference): both signals through the same
  argmax chroma extractor at 32 kHz, frame-wise cosine, frame-weighted mean (= pitch-class agreement per frame).
- `estimate_tempo` / `tempo_matches`: librosa beat tracking; strict, or forgiving the estimator's metrical-level
  errors (x2, x1/2, x3, x1/3: the "accuracy 2" of MIR tempo evaluations).
- `estimate_key`: Krumhansl-Schmuckler key profiles against the mean chroma.
- `mel_distance`, `si_sdr`: codec reconstruction quality; `codec_round_trip`: a clip as a codec reconstructs it.
- `collapse_report`: silent stretches (RMS per second below -40 dBFS) and repetitive ones (self-similar chroma).
- `frechet_distance`: between Gaussians fitted to two sets of embeddings (as FAD does with VGGish embeddings).
"""
from __future__ import annotations

import librosa
import numpy as np
import torch
import torch.nn.functional as F
from scipy import linalg

from ..audio import convert_audio, rms_db
from ..conditioning.chroma import ChromaExtractor
from ..train import losses

PITCH_CLASSES = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "G#", "A", "Bb", "B")
# Krumhansl & Kessler (1982) probe-tone profiles, tonic first.
_MAJOR = np.array([6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88])
_MINOR = np.array([6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17])


def _tensor(wav, sample_rate: int, target: int = 32000) -> torch.Tensor:
    wav = torch.as_tensor(np.asarray(wav, dtype=np.float32)).reshape(1, 1, -1)
    return convert_audio(wav, sample_rate, target, 1)[0, 0]


def chroma_cosine(generated, reference, sample_rate: int = 32000) -> float:
    """audiocraft's chroma cosine similarity of `generated` against `reference` over the reference's length."""
    extractor = ChromaExtractor(32000)
    gen, ref = _tensor(generated, sample_rate), _tensor(reference, sample_rate)
    gen = F.pad(gen, (0, max(0, ref.shape[-1] - gen.shape[-1])))[: ref.shape[-1]]
    a, b = extractor(gen[None])[0], extractor(ref[None])[0]  # [frames, 12] one-hot
    frames = min(len(a), len(b), int(np.ceil(ref.shape[-1] / extractor.hop_length)))
    return F.cosine_similarity(a[:frames], b[:frames], dim=1, eps=1e-8).mean().item()


@torch.no_grad()
def codec_round_trip(codec, wav) -> np.ndarray:
    """`wav` (at the codec's sample rate) encoded to tokens and decoded again, same length: the best any LM on this
    codec can make of that clip."""
    x = torch.as_tensor(np.asarray(wav, dtype=np.float32)).reshape(1, 1, -1).to(next(codec.parameters()).device)
    return (codec.decode(codec.encode(x)) / codec.input_gain(x))[0, 0, :x.shape[-1]].float().cpu().numpy()


def estimate_tempo(wav, sample_rate: int) -> float:
    tempo, _ = librosa.beat.beat_track(y=np.asarray(wav, dtype=np.float32), sr=sample_rate)
    return float(np.atleast_1d(tempo)[0])


def tempo_matches(estimated: float, asked: float, tolerance: float = 0.08, metrical: bool = False) -> bool:
    """|estimated - asked| within `tolerance` of asked; with metrical, of asked x 1, 2, 1/2, 3 or 1/3."""
    factors = (1, 2, 1 / 2, 3, 1 / 3) if metrical else (1,)
    return any(abs(estimated - asked * f) <= tolerance * asked * f for f in factors)


def estimate_key(wav, sample_rate: int) -> tuple[int, str]:
    """(tonic pitch class, "major" | "minor") maximising the correlation with the rotated key profiles."""
    chroma = librosa.feature.chroma_cqt(y=np.asarray(wav, dtype=np.float32), sr=sample_rate).mean(axis=1)
    best = max(((np.corrcoef(chroma, np.roll(profile, tonic))[0, 1], tonic, mode)
                for mode, profile in (("major", _MAJOR), ("minor", _MINOR)) for tonic in range(12)))
    return best[1], best[2]


def mel_distance(reconstruction, reference, sample_rate: int = 32000) -> float:
    """Multi-resolution log-mel L1 distance (the codec trainer's reconstruction loss)."""
    x, y = (torch.as_tensor(np.asarray(w, dtype=np.float32))[None, None] for w in (reconstruction, reference))
    n = min(x.shape[-1], y.shape[-1])
    return losses.MultiResolutionMelLoss(sample_rate)(x[..., :n], y[..., :n]).item()


def si_sdr(estimate, reference) -> float:
    x, y = (torch.as_tensor(np.asarray(w, dtype=np.float32)) for w in (estimate, reference))
    n = min(len(x), len(y))
    return losses.si_sdr(x[:n], y[:n]).item()


def collapse_report(wav, sample_rate: int, silence_db: float = -40.0, repeat_threshold: float = 0.98) -> dict:
    """Seconds whose RMS is below `silence_db` dBFS, and the fraction of 1-second windows whose chroma repeats the
    previous window's almost exactly (a stuck loop)."""
    wav = np.asarray(wav, dtype=np.float32)
    seconds = wav[: len(wav) // sample_rate * sample_rate].reshape(-1, sample_rate)
    level = rms_db(seconds)  # [seconds] dBFS
    chroma = librosa.feature.chroma_stft(y=wav, sr=sample_rate, hop_length=sample_rate // 4)  # 4 frames per second
    windows = chroma[:, : chroma.shape[1] // 4 * 4].T.reshape(-1, 4 * 12)
    norm = np.linalg.norm(windows, axis=1) + 1e-9
    similar = (windows[1:] * windows[:-1]).sum(1) / (norm[1:] * norm[:-1]) if len(windows) > 1 else np.zeros(0)
    return {"silent_seconds": int((level < silence_db).sum()), "min_rms_db": float(level.min(initial=0.0)),
            "repetitive_fraction": float((similar > repeat_threshold).mean()) if len(similar) else 0.0}


def frechet_distance(x: np.ndarray, y: np.ndarray) -> float:
    """||mu_x - mu_y||^2 + Tr(S_x + S_y - 2 (S_x S_y)^1/2) for embeddings x [N, D], y [M, D] (FAD's formula)."""
    mu_x, mu_y = x.mean(0), y.mean(0)
    s_x, s_y = np.cov(x, rowvar=False), np.cov(y, rowvar=False)
    covmean = linalg.sqrtm(s_x @ s_y).real
    return float(((mu_x - mu_y) ** 2).sum() + np.trace(s_x + s_y - 2 * covmean))
