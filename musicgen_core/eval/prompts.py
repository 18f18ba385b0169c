"""The plain-language prompts outside the training vocabulary (plain_prompts.tsv, package data), each with where it
should land: a synthetic style or a group of real tracks, judged by the style probe."""
from __future__ import annotations

from pathlib import Path

from .classifier import clip_features

PLAIN_PROMPTS = Path(__file__).resolve().parent / "plain_prompts.tsv"


def load_plain_prompts(path: Path = PLAIN_PROMPTS) -> list[tuple[str, tuple[str, ...]]]:
    """[(prompt, acceptable labels such as "style:lofi" or "real:supertux-data")], in file order."""
    rows = [line.split("\t") for line in path.read_text().splitlines() if line and not line.startswith("#")]
    if rows[0] != ["prompt", "nearest"] or any(len(r) != 2 for r in rows):
        raise ValueError(f"{path}: expected a 'prompt<TAB>nearest' header and two columns per row")
    return [(prompt, tuple(label.strip() for label in nearest.split("|"))) for prompt, nearest in rows[1:]]


def landing(model, probes, seed: int, params, batch: int = 8) -> dict:
    """Generate each plain prompt once (batch b with seed + b) and place the audio with the style probe: a prompt
    lands when the probe's label is one of its targets ("style:<name>" is the probe's "<name>"). Real-group targets
    need probes fitted with real packages (`train-probes --real`); without them those prompts cannot land."""
    rows, prompts = [], load_plain_prompts()
    for b, start in enumerate(range(0, len(prompts), batch)):
        chunk = prompts[start:start + batch]
        wavs = model.generate([p for p, _ in chunk], seed=seed + b, params=params)
        for (prompt, targets), wav in zip(chunk, wavs):
            label = probes["style"].predict(clip_features(wav[0].float().cpu().numpy(), model.sample_rate))[0]
            rows.append({"prompt": prompt, "targets": list(targets), "landed_on": label,
                         "landed": label in {t.removeprefix("style:") for t in targets}})
    return {"plain_prompts_landed": sum(r["landed"] for r in rows), "plain_prompts": len(rows), "rows": rows}
