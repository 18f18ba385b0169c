"""`musicgen eval`: generate from held-out prompts (and tunes) with fixed seeds and measure what the model did.

For each held-out validation clip of the corpus (seeds from `EVAL_SEED`, never used in training) the model gets the
clip's caption; with `--melody` it also gets the clip's tune (a held-out folk tune or chorale) as a user would give
it: hummed, whistled or played on a piano, in turn. The generated audio is scored with `metrics` and the probes of
`classifier`:

- text adherence: the style and lead-instrument family the probes recognise, the tempo (librosa beats) where the
  caption states a BPM (strict, and forgiving x2 / x3 metrical-level errors), the key (key profiles) where it names
  one; the same figures on the real clips passed through the model's codec (`*_real_via_codec`) tell how much of a
  shortfall the codec already causes;
- melody adherence: audiocraft's chroma cosine between the generated audio and the melody query, with the melody and,
  for the same prompt and seed, without it;
- realism: a Fréchet distance between probe features of generated clips and of the real clips the prompts describe
  (next to the distance between two disjoint real sets of the same size, its floor for this n);
- collapse: clips with a silent second (RMS < -40 dBFS), repetitive stretches;
- speed: real-time factor of one 1-clip request (audio seconds per wall second).

The report folder gets report.md, summary.json (every figure, per clip too) and PNG plots; one line is printed.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import librosa
import numpy as np
import torch
from matplotlib.figure import Figure

from ..generate import GenerationParams, MusicGen
from ..quantize import PRECISIONS
from ..train.data import make_example
from ..train.render import finish
from . import metrics
from .classifier import clip_features, lead_family, load_probes
from .prompts import landing
from .voices import VOICES

EVAL_SEED = 2_000_000  # validation seeds [EVAL_SEED, ...) are used by evaluation only
PROBES = Path(__file__).resolve().parent / "probes.npz"  # package data
# figures also measured on the real clips as the model's codec reconstructs them: the most its LM can reach
CODEC_CEILINGS = ("style_accuracy", "family_accuracy", "tempo_within_8pct")
SPECTROGRAMS = 4  # clips per kind drawn in the report


def eval_items(n: int, duration: float, tunes_only: bool = False) -> list:
    """The first n held-out corpus examples from EVAL_SEED (with tunes_only: those whose melody is a real tune)."""
    items, seed = [], EVAL_SEED
    while len(items) < n:
        ex = make_example(seed, duration)
        seed += 1
        if not tunes_only or ex.metadata["melody_source"] != "procedural":
            items.append(ex)
    return items


# (voice, register) pairs the melody queries cycle through; a register is where the tune sounds (median MIDI pitch:
# low = a man's voice around D3, high = a woman's around A4; a whistle is high only)
QUERIES = (("hum", "low"), ("hum", "high"), ("whistle", "high"), ("piano", "low"), ("piano", "high"))
REGISTER_MEDIAN = {"low": 50, "high": 69}
SOUNDS_AT = {"hum": -12}  # the eval hum sounds an octave below the notes it is given (voices.py)


def melody_query(example, voice: str, duration: float, register: str = "high") -> np.ndarray:
    """The example's melody as a user would record it (see voices.py) in `register` (moved by whole octaves, so the
    pitch classes stay), at -20 dBFS."""
    notes = example.metadata["melody"]
    target = REGISTER_MEDIAN[register] + (12 if voice == "whistle" else 0) - SOUNDS_AT.get(voice, 0)
    shift = 12 * round((target - float(np.median([p for p, _, _ in notes]))) / 12)
    rng = np.random.default_rng([example.metadata["seed"], 11])
    return finish(VOICES[voice]([(p + shift, s, e) for p, s, e in notes], rng, duration), -20.0)


def _generate(model, prompts: list[str], melodies: list[np.ndarray] | None, seed: int, params) -> list[np.ndarray]:
    if melodies is None:
        wav = model.generate(prompts, seed=seed, params=params)
    else:
        wav = model.generate_with_chroma(prompts, [torch.from_numpy(m)[None] for m in melodies], 32000, seed=seed,
                                         params=params)
    return [w[0].float().cpu().numpy() for w in wav]


def generate_all(model, items, melodies, batch: int, seed: int, params) -> list[np.ndarray]:
    """One clip per item (batch b gets seed + b, so runs with and without melodies are paired)."""
    out = []
    for b, start in enumerate(range(0, len(items), batch)):
        prompts = [ex.caption for ex in items[start:start + batch]]
        out += _generate(model, prompts, None if melodies is None else melodies[start:start + batch], seed + b,
                         params)
    return out


def score_clips(clips: list[np.ndarray], items, probes, sample_rate: int) -> list[dict]:
    """Per-clip text-adherence and collapse figures for audio made from the items' captions."""
    rows = []
    for wav, ex in zip(clips, items):
        meta, feats = ex.metadata, clip_features(wav, sample_rate)
        tempo = metrics.estimate_tempo(wav, sample_rate)
        tonic, mode = metrics.estimate_key(wav, sample_rate)
        rows.append({
            "seed": meta["seed"], "caption": ex.caption, "style": meta["style"],
            "style_pred": probes["style"].predict(feats)[0], "family": lead_family(meta["lead_program"]),
            "family_pred": probes["family"].predict(feats)[0], "bpm": meta["bpm"], "bpm_est": round(tempo, 1),
            "asks_bpm": f"{meta['bpm']} BPM" in ex.caption, "tempo_ok": metrics.tempo_matches(tempo, meta["bpm"]),
            "tempo_metrical_ok": metrics.tempo_matches(tempo, meta["bpm"], metrical=True),
            "key": meta["key"], "key_est": f"{metrics.PITCH_CLASSES[tonic]} {mode}",
            "asks_key": meta["key"] in ex.caption, "key_ok": (tonic, mode) == (meta["tonic"], meta["mode"]),
            **metrics.collapse_report(wav, sample_rate), "features": feats,
        })
    return rows


def adherence(rows: list[dict]) -> dict:
    mean = lambda xs: float(np.mean(xs)) if len(xs) else float("nan")  # noqa: E731
    return {
        "style_accuracy": mean([r["style_pred"] == r["style"] for r in rows]),
        "family_accuracy": mean([r["family_pred"] == r["family"] for r in rows]),
        "tempo_within_8pct": mean([r["tempo_ok"] for r in rows if r["asks_bpm"]]),
        "tempo_within_8pct_metrical": mean([r["tempo_metrical_ok"] for r in rows if r["asks_bpm"]]),
        "key_accuracy": mean([r["key_ok"] for r in rows if r["asks_key"]]),
        "clips_with_silence": mean([r["silent_seconds"] > 0 for r in rows]),
        "repetitive_fraction": mean([r["repetitive_fraction"] for r in rows]),
    }


def real_time_factor(model, prompt: str, seed: int, params) -> float:
    """Audio seconds per wall second of one 1-clip request (after a warm-up request)."""
    model.generate([prompt], seed=seed, params=params)
    start = time.perf_counter()
    model.generate([prompt], seed=seed, params=params)
    return params.duration / (time.perf_counter() - start)


def evaluate(model, items, references: dict, melody: bool, batch: int = 8, seed: int = 0, params=None,
             plain: bool = False) -> dict:
    """All figures for one model on `items` (see the module docstring); `references` from `reference_figures`;
    `params`: the generation settings (default: the model's); `plain`: also the plain-language prompts' landing.
    "examples" keeps the first SPECTROGRAMS clips of each kind for the report's spectrograms."""
    params = params or model.params
    probes, sr = references["probes"], model.sample_rate
    text_clips = generate_all(model, items, None, batch, seed, params)
    rows = score_clips(text_clips, items, probes, sr)
    feats = np.stack([r.pop("features") for r in rows])
    summary = {**adherence(rows), "frechet_distance": _frechet(feats, references["features"], probes),
               "real_time_factor": real_time_factor(model, items[0].caption, seed, params)}
    examples = {"text": text_clips[:SPECTROGRAMS]}
    if melody:
        pairs = [QUERIES[i % len(QUERIES)] for i in range(len(items))]
        queries = [melody_query(ex, v, params.duration, reg) for ex, (v, reg) in zip(items, pairs)]
        melody_clips = generate_all(model, items, queries, batch, seed, params)
        examples.update(query=queries[:SPECTROGRAMS], melody=melody_clips[:SPECTROGRAMS])
        for row, (v, reg), q, with_m, without in zip(rows, pairs, queries, melody_clips, text_clips):
            row.update(voice=v, register=reg, chroma_with_melody=metrics.chroma_cosine(with_m, q, sr),
                       chroma_without_melody=metrics.chroma_cosine(without, q, sr),
                       melody_silent_seconds=metrics.collapse_report(with_m, sr)["silent_seconds"])
        for key in ("chroma_with_melody", "chroma_without_melody"):
            summary[key] = float(np.mean([r[key] for r in rows]))
            for field, values in (("voice", VOICES), ("register", REGISTER_MEDIAN)):
                for v in values:
                    summary[f"{key}_{v}"] = float(np.mean([r[key] for r in rows if r[field] == v]))
        summary["melody_clips_with_silence"] = float(np.mean([r["melody_silent_seconds"] > 0 for r in rows]))
    result = {"summary": summary, "clips": rows, "examples": examples}
    if plain:
        landed = landing(model, probes, seed, params, batch)
        result["plain"] = landed.pop("rows")
        summary.update(landed)
    return result


def reference_figures(items, n_floor_seed: int = EVAL_SEED + 500_000) -> dict:
    """What the probes and metrics say about the real clips the prompts describe: the ceiling of each adherence
    figure, and the Fréchet distance between two disjoint real sets of the same size (the floor for this n). Also
    carries the probes, loaded once for every model evaluated against it."""
    probes = load_probes(PROBES)
    rows = score_clips([ex.audio for ex in items], items, probes, 32000)
    feats = np.stack([r.pop("features") for r in rows])
    other = np.stack([clip_features(make_example(n_floor_seed + i, items[0].metadata["duration"]).audio)
                      for i in range(len(items))])
    return {"features": feats, "probes": probes,
            "summary": {**adherence(rows), "frechet_distance": _frechet(other, feats, probes)}}


def _frechet(x: np.ndarray, y: np.ndarray, probes) -> float:
    """Fréchet distance in the probes' feature space, standardised as the probes see it (no pretrained audio
    embedding can be downloaded here; these features are the ones that tell the corpus's styles apart)."""
    mean, scale = probes["style"].mean, probes["style"].scale
    return metrics.frechet_distance((x - mean) / scale, (y - mean) / scale)


# --- report -------------------------------------------------------------------------------------------------------
def plot_model(result: dict, folder: Path, name: str) -> list[str]:
    """Style confusion matrix, tempo scatter, log-mel spectrograms of the first clips (text only; with melodies also
    the queries and the clips made with them) and a chroma-similarity histogram; returns file names."""
    rows, files = result["clips"], []
    styles = sorted({r["style"] for r in rows} | {r["style_pred"] for r in rows})
    conf = np.zeros((len(styles), len(styles)))
    for r in rows:
        conf[styles.index(r["style"]), styles.index(r["style_pred"])] += 1
    fig = Figure(figsize=(7, 6), layout="constrained")
    ax = fig.subplots()
    ax.imshow(conf, cmap="Blues")
    ax.set(xticks=range(len(styles)), yticks=range(len(styles)), xlabel="recognised style", ylabel="asked style",
           title=f"{name}: style asked vs recognised")
    ax.set_xticklabels(styles, rotation=60, ha="right")
    ax.set_yticklabels(styles)
    files.append(_save(fig, folder / f"{name}_style_confusion.png"))

    fig = Figure(figsize=(5, 5), layout="constrained")
    ax = fig.subplots()
    asked = [r for r in rows if r["asks_bpm"]]
    ax.scatter([r["bpm"] for r in asked], [r["bpm_est"] for r in asked], s=12)
    lim = [40, 220]
    ax.plot(lim, lim, "k-", lw=0.8)
    ax.fill_between(lim, [v * 0.92 for v in lim], [v * 1.08 for v in lim], color="g", alpha=0.15, label="within 8 %")
    ax.set(xlim=lim, ylim=lim, xlabel="asked BPM", ylabel="estimated BPM", title=f"{name}: tempo")
    ax.legend()
    files.append(_save(fig, folder / f"{name}_tempo.png"))

    kinds = result.pop("examples")
    fig = Figure(figsize=(3 * SPECTROGRAMS, 2.4 * len(kinds)), layout="constrained")
    axes = fig.subplots(len(kinds), SPECTROGRAMS, squeeze=False)
    for row, (kind, clips) in zip(axes, kinds.items()):
        for ax, wav, r in zip(row, clips, rows):
            mel = librosa.power_to_db(librosa.feature.melspectrogram(y=wav, sr=32000, n_mels=80, hop_length=320))
            ax.imshow(mel, origin="lower", aspect="auto", cmap="magma", vmin=mel.max() - 80, vmax=mel.max())
            ax.set(xticks=[], yticks=[], title=f"{kind}: {r['style']}" + (f", {r['voice']} {r['register']}"
                                                                           if kind != "text" else ""))
    files.append(_save(fig, folder / f"{name}_spectrograms.png"))

    if "chroma_with_melody" in result["summary"]:
        fig = Figure(figsize=(6, 4), layout="constrained")
        ax = fig.subplots()
        bins = np.linspace(0, 1, 21)
        ax.hist([r["chroma_without_melody"] for r in rows], bins, alpha=0.6, label="text only")
        ax.hist([r["chroma_with_melody"] for r in rows], bins, alpha=0.6, label="text + melody")
        ax.set(xlabel="chroma cosine similarity to the melody", ylabel="clips", title=f"{name}: melody adherence")
        ax.legend()
        files.append(_save(fig, folder / f"{name}_chroma.png"))
    return files


def _save(fig: Figure, path: Path) -> str:
    fig.savefig(path, dpi=110)
    return path.name


def write_report(results: dict[str, dict], reference: dict, folder: Path, settings: dict) -> str:
    """report.md + summary.json + plots for one or more models evaluated on the same items; returns the summary
    line of the first model."""
    folder.mkdir(parents=True, exist_ok=True)
    plots = {name: plot_model(r, folder, name) for name, r in results.items()}
    keys = list(dict.fromkeys(k for r in results.values() for k in r["summary"]))
    ref = reference["summary"]
    lines = ["# Evaluation report", "", "Settings: " + ", ".join(f"{k}={v}" for k, v in settings.items()), "",
             "| figure | " + " | ".join(results) + " | real clips |", "|---" * (len(results) + 2) + "|"]
    for k in keys:
        cells = [_fmt(r["summary"].get(k)) for r in results.values()]
        lines.append(f"| {k} | " + " | ".join(cells) + f" | {_fmt(ref.get(k))} |")
    lines += ["", "'real clips' are the held-out corpus clips the prompts were taken from: the ceiling of each "
              "adherence figure (what the probes and estimators get right on real audio); their frechet_distance is "
              "between two disjoint real sets of the same size (the floor for this n).", ""]
    for name, files in plots.items():
        lines += [f"## {name}", ""] + [f"![{f}]({f})" for f in files] + [""]
        if "plain" in results[name]:
            lines += ["| plain-language prompt | should land on | landed on |", "|---|---|---|"]
            lines += [f"| {r['prompt']} | {' or '.join(r['targets'])} | {r['landed_on']}{' ✓' * r['landed']} |"
                      for r in results[name]["plain"]] + [""]
    (folder / "report.md").write_text("\n".join(lines))
    (folder / "summary.json").write_text(json.dumps(
        {"settings": settings, "reference": ref, "models": results}, indent=1, default=_json))
    first = next(iter(results.values()))["summary"]
    return " ".join(f"{k}={_fmt(first[k])}" for k in first)


def _fmt(v) -> str:
    return "" if v is None else f"{v:.3f}" if isinstance(v, float) else str(v)


def _json(v):
    return v.item() if isinstance(v, np.generic) else str(v)


def codec_ceilings(codec, items, probes) -> dict:
    """The CODEC_CEILINGS figures of the real clips after a round trip through `codec` (`*_real_via_codec`)."""
    coded = adherence(score_clips([metrics.codec_round_trip(codec, ex.audio) for ex in items], items, probes,
                                  codec.sample_rate))
    return {f"{k}_real_via_codec": coded[k] for k in CODEC_CEILINGS}


def run_eval(models: list[str], n: int, duration: float, melody: bool, out: Path, batch: int = 8,
             seed: int = 0, precisions: tuple[str, ...] = ("fp32",), cfg_coefs: tuple[float, ...] = (),
             plain: bool = False) -> str:
    """Evaluate every model at every precision and CFG coefficient (none given: the generation default, unnamed) on
    the same items and seeds; write the report to `out`."""
    items = eval_items(n, duration, tunes_only=melody)
    reference = reference_figures(items)
    results = {}
    for path in models:
        ceilings = None  # the codec is the same at every precision and CFG coefficient: its clips are scored once
        for precision in precisions:
            model = MusicGen.from_pretrained(path, precision=precision)
            ceilings = ceilings or codec_ceilings(model.compression_model, items, reference["probes"])
            for coef in cfg_coefs or (None,):
                params = GenerationParams(duration=duration, **({} if coef is None else {"cfg_coef": coef}))
                name = ((Path(path).name or path) + ("" if precision == "fp32" else f"-{precision}")
                        + (f"-cfg{coef:g}" if cfg_coefs else ""))
                results[name] = evaluate(model, items, reference, melody, batch, seed, params, plain)
                results[name]["summary"].update(ceilings)
    settings = {"models": " vs ".join(models), "precisions": ", ".join(precisions), "n": n, "duration": duration,
                "melody": melody, "seed": seed, "eval_seeds": f"{EVAL_SEED}+", "threads": torch.get_num_threads()}
    if cfg_coefs:
        settings["cfg_coefs"] = ", ".join(f"{c:g}" for c in cfg_coefs)
    return write_report(results, reference, out, settings)


def add_cli(subparsers) -> None:
    p = subparsers.add_parser("eval", help="measure a model on held-out prompts (and tunes): report + JSON")
    p.add_argument("--model", action="append", required=True,
                   help="model folder or name (repeat to compare checkpoints on the same prompts and seeds)")
    p.add_argument("--n", type=int, default=64, help="held-out prompts")
    p.add_argument("--dur", type=float, default=10.0, help="seconds per clip")
    p.add_argument("--melody", action="store_true", help="also condition on held-out tunes (hummed/whistled/piano)")
    p.add_argument("--out", default="runs/eval/report")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--precision", action="append", choices=PRECISIONS,
                   help="LM precision (repeat to compare, e.g. fp32 and int8); default fp32")
    p.add_argument("--cfg-coef", action="append", type=float,
                   help="classifier-free guidance coefficient (repeat to compare); default 3")
    p.add_argument("--plain", action="store_true", help="also the 40 plain-language prompts (eval/plain_prompts.tsv)")
    p.set_defaults(func=lambda a: print(run_eval(a.model, a.n, a.dur, a.melody, Path(a.out), a.batch, a.seed,
                                                 tuple(a.precision or ("fp32",)), tuple(a.cfg_coef or ()), a.plain)))
