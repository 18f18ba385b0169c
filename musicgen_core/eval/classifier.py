"""Text-adherence probes: small classifiers trained on the synthetic corpus that tell, from audio alone, which style
and which lead-instrument family a clip has. Generated audio is then scored by whether the classifier recovers what
the prompt asked for.

Generated audio always comes out of a codec, which colours it (a small codec dulls the highs and adds a noise floor);
a probe fitted on rendered audio alone reads that colouring as a style: it recognised the style of 79 % of 48 held-out
clips but of only 38 % of the same clips after a round trip through the default codec. The shipped probes are fitted
on every training clip twice, as rendered and as the default codec reconstructs it (`train-probes --codec`).

Features are deliberately simple and cheap (log-mel mean and spread, mean chroma, onset-rate statistics: 144 numbers
per clip) and the model is a multinomial logistic regression, so the probes train in a minute on a CPU and are easy
to reason about. They are stored as a small .npz (weights, biases, feature scaling, class names).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import librosa
import numpy as np

from ..generate import MusicGen
from ..train.data import VALID_SEEDS, make_example
from ..train.real import RealCorpus
from .metrics import codec_round_trip

# General-MIDI program families (program // 8), grouped into families a listener can tell apart.
FAMILIES = ("keys", "keys", "organ", "guitar", "bass", "strings", "strings", "brass", "reed", "pipe", "synth", "synth",
            "synth", "ethnic", "percussive", "effects")


def lead_family(program: int) -> str:
    if program in (52, 53, 54, 85):  # choir, voice oohs, synth voice, voice lead
        return "voice"
    return FAMILIES[program // 8]


def clip_features(wav: np.ndarray, sample_rate: int = 32000) -> np.ndarray:
    """[144] features: log-mel (64 bands) mean and std over time, mean chroma (12), onset-strength mean/std/max and
    its autocorrelation peak lag statistics (4)."""
    wav = np.asarray(wav, dtype=np.float32)
    mel = librosa.power_to_db(librosa.feature.melspectrogram(y=wav, sr=sample_rate, n_fft=2048, hop_length=512,
                                                             n_mels=64), ref=1.0)
    chroma = librosa.feature.chroma_stft(y=wav, sr=sample_rate, n_fft=4096, hop_length=2048)
    onset = librosa.onset.onset_strength(y=wav, sr=sample_rate, hop_length=512)
    ac = librosa.autocorrelate(onset - onset.mean())[1:200]
    peak = float(np.argmax(ac) + 1) if len(ac) else 0.0
    return np.concatenate([mel.mean(1), mel.std(1), chroma.mean(1),
                           [onset.mean(), onset.std(), onset.max(initial=0.0), peak / 100]]).astype(np.float32)


@dataclass
class Probe:
    """Multinomial logistic regression on standardised features."""

    classes: tuple[str, ...]
    mean: np.ndarray
    scale: np.ndarray
    weights: np.ndarray  # [features, classes]
    bias: np.ndarray  # [classes]

    def predict(self, features: np.ndarray) -> list[str]:
        logits = ((np.atleast_2d(features) - self.mean) / self.scale) @ self.weights + self.bias
        return [self.classes[i] for i in logits.argmax(1)]

    @classmethod
    def fit(cls, features: np.ndarray, labels: list[str]) -> "Probe":
        from sklearn.linear_model import LogisticRegression

        mean, scale = features.mean(0), features.std(0) + 1e-6
        model = LogisticRegression(max_iter=2000, C=1.0).fit((features - mean) / scale, labels)
        weights, bias = model.coef_.T, model.intercept_
        if len(model.classes_) == 2:  # sklearn stores one column for two classes
            weights, bias = np.concatenate([-weights, weights], 1), np.concatenate([-bias, bias])
        return cls(tuple(model.classes_), mean, scale, weights, bias)


def save_probes(probes: dict[str, Probe], path: Path) -> None:
    arrays = {}
    for name, p in probes.items():
        arrays.update({f"{name}.classes": np.array(p.classes), f"{name}.mean": p.mean, f"{name}.scale": p.scale,
                       f"{name}.weights": p.weights, f"{name}.bias": p.bias})
    np.savez_compressed(path, **arrays)


def load_probes(path: Path) -> dict[str, Probe]:
    data = np.load(path, allow_pickle=False)
    names = sorted({k.split(".")[0] for k in data.files})
    return {n: Probe(tuple(str(c) for c in data[f"{n}.classes"]), data[f"{n}.mean"], data[f"{n}.scale"],
                     data[f"{n}.weights"], data[f"{n}.bias"]) for n in names}


def corpus_features(seeds, duration: float, codec=None) -> tuple[np.ndarray, np.ndarray, list[str], list[str]]:
    """Features of the corpus clips of `seeds` [n, 144], of their reconstructions by `codec` ([n, 144]; [0, 144]
    without one), style labels and lead-family labels."""
    feats, coded, styles, families = [], [], [], []
    for seed in seeds:
        ex = make_example(int(seed), duration)
        feats.append(clip_features(ex.audio))
        if codec is not None:
            coded.append(clip_features(codec_round_trip(codec, ex.audio)))
        styles.append(ex.metadata["style"])
        families.append(lead_family(ex.metadata["lead_program"]))
    return np.stack(feats), np.array(coded, dtype=np.float32).reshape(-1, feats[0].shape[0]), styles, families


def real_features(folder: str | Path, n_per_package: int, duration: float, seed: int, codec=None,
                  min_dbfs: float = -45.0) -> tuple[np.ndarray, list[str]]:
    """Features of `n_per_package` random crops of each package of a real corpus's training split (with a codec: of
    their reconstructions too, after them) and their labels "real:<package>"."""
    corpus, rng = RealCorpus(folder, "train"), np.random.default_rng(seed)
    length, feats, coded, labels = int(duration * 32000), [], [], []
    for package in sorted({t["package"] for t in corpus.tracks}):
        tracks = [i for i, t in enumerate(corpus.tracks) if t["package"] == package]
        for _ in range(n_per_package):
            crop = corpus.loud_crop(rng, length, min_dbfs, tracks)[2]
            feats.append(clip_features(crop))
            if codec is not None:
                coded.append(clip_features(codec_round_trip(codec, crop)))
            labels.append(f"real:{package}")
    return np.stack(feats + coded), labels * (2 if coded else 1)


def train_probes(n_train: int, n_valid: int, duration: float, out: Path, codec=None, real: str | None = None,
                 n_real: int = 150) -> dict[str, float]:
    """Fit the style and lead-family probes on training-split clips (with a codec: and on their reconstructions);
    report accuracy on validation clips (with a codec: and on their reconstructions, `*_via_codec`). With a real
    corpus, the style probe also learns each training package as a class "real:<package>" (`n_real` crops each),
    so generated audio can be placed nearest a group of real tracks; its accuracy on other crops of those packages
    is `real_package_accuracy` (the same tracks: an upper bound)."""
    x, xc, styles, families = corpus_features(range(VALID_SEEDS, VALID_SEEDS + n_train), duration, codec)
    if len(xc):  # every clip twice: as rendered and as the codec reconstructs it
        x, styles, families = np.concatenate([x, xc]), styles * 2, families * 2
    probes = {"family": Probe.fit(x, families)}
    if real:
        xr, packages = real_features(real, n_real, duration, seed=0, codec=codec)
        x, styles = np.concatenate([x, xr]), styles + packages
    probes["style"] = Probe.fit(x, styles)
    out.parent.mkdir(parents=True, exist_ok=True)
    save_probes(probes, out)
    xv, xvc, styles_v, families_v = corpus_features(range(n_valid), duration, codec)
    scores = {}
    for suffix, feats in (("", xv), ("_via_codec", xvc)):
        if len(feats):
            for name, labels in (("style", styles_v), ("family", families_v)):
                scores[f"{name}_accuracy{suffix}"] = float(np.mean(np.array(probes[name].predict(feats)) == labels))
    if real:
        xr, packages = real_features(real, max(1, n_real // 5), duration, seed=1)
        scores["real_package_accuracy"] = float(np.mean(np.array(probes["style"].predict(xr)) == packages))
    return scores


def add_cli(subparsers) -> None:
    p = subparsers.add_parser("train-probes", help="fit the style / lead-family probes used by evaluation")
    p.add_argument("--n", type=int, default=3000, help="training-split clips")
    p.add_argument("--valid", type=int, default=300, help="validation clips for the reported accuracy")
    p.add_argument("--dur", type=float, default=5.0)
    p.add_argument("--codec", default="default",
                   help="also fit on the clips as this model's codec reconstructs them (model folder, 'default' for "
                        "the embedded default, 'none' for rendered audio only)")
    p.add_argument("--out", default="musicgen_core/eval/probes.npz")
    p.add_argument("--real", help="real-music cache (`musicgen fetch-real`): its packages become style classes")
    p.add_argument("--n-real", type=int, default=150, help="crops per real package")
    p.set_defaults(func=lambda a: print(train_probes(a.n, a.valid, a.dur, Path(a.out), _codec(a.codec), a.real,
                                                     a.n_real)))


def _codec(name: str):
    if name == "none":
        return None
    return MusicGen.from_pretrained(name).compression_model
