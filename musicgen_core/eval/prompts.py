"""The plain-language prompts outside the training vocabulary (plain_prompts.tsv, package data), each with where it
should land: a synthetic style or a group of real tracks, judged by the style probe."""
from __future__ import annotations

from pathlib import Path

PLAIN_PROMPTS = Path(__file__).resolve().parent / "plain_prompts.tsv"


def load_plain_prompts(path: Path = PLAIN_PROMPTS) -> list[tuple[str, tuple[str, ...]]]:
    """[(prompt, acceptable labels such as "style:lofi" or "real:supertux-data")], in file order."""
    rows = [line.split("\t") for line in path.read_text().splitlines() if line and not line.startswith("#")]
    if rows[0] != ["prompt", "nearest"] or any(len(r) != 2 for r in rows):
        raise ValueError(f"{path}: expected a 'prompt<TAB>nearest' header and two columns per row")
    return [(prompt, tuple(label.strip() for label in nearest.split("|"))) for prompt, nearest in rows[1:]]
