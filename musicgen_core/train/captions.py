"""Text captions from a piece's metadata: several templates and paraphrases, deterministic for a given generator.

Every caption names the style (one of its genre synonyms), every instrument (in plain words) and the tempo (the BPM
number, or a tempo word when the number is left out); mood (mode x tempo, plus the style's own moods), key, meter
and the melody's origin appear in some templates.
"""
from __future__ import annotations

import re

import numpy as np

from .compose import Piece
from .styles import STYLE_BY_NAME

MAJOR_KEYS = ("C", "Db", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")
MINOR_KEYS = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "G#", "A", "Bb", "B")
MOODS = {
    ("major", "slow"): ("calm", "peaceful", "gentle", "warm", "tender", "serene"),
    ("major", "medium"): ("cheerful", "hopeful", "pleasant", "relaxed", "sunny"),
    ("major", "fast"): ("happy", "energetic", "joyful", "bright", "lively"),
    ("minor", "slow"): ("sad", "melancholic", "somber", "wistful", "mournful"),
    ("minor", "medium"): ("moody", "mysterious", "bittersweet", "pensive", "brooding"),
    ("minor", "fast"): ("dark", "intense", "tense", "urgent", "restless"),
}
TEMPO_WORDS = {"slow": ("slow", "unhurried"), "medium": ("mid-tempo", "moderate"),
               "fast": ("fast", "up-tempo", "quick")}
TEMPO_PHRASES = {"slow": ("slow tempo", "an unhurried pace"), "medium": ("moderate tempo", "a moderate pace"),
                 "fast": ("fast tempo", "a quick pace")}  # each contains one of TEMPO_WORDS
NOUNS = ("track", "piece", "tune", "song", "instrumental")
_NOUNISH = set(NOUNS) | {"beat", "groove", "jam", "score", "soundscape"}
MELODY_WORDS = {53: "a hummed melody", 85: "a sung melody", 52: "the melody sung by a choir",
                54: "a synth-voice melody", 78: "a whistled melody", 79: "an ocarina melody"}
TEMPLATES = (  # "a" before a vowel sound becomes "an" afterwards
    "A {mood} {genre} {noun} featuring {instruments}{melody}. {ending}",
    "{Genre} {noun} with {instruments}; {mood}, {tempo}.",
    "{Mood} {genre} in {meter} time at {bpm} BPM, played on {instruments}{melody}.",
    "{Instruments} in a {mood}, {tempo} {genre} {noun}{melody}.",
    "{bpm} bpm {genre} in {key}: {instruments}, {mood} and {mood2}.",
    "Instrumental {genre} with {instruments}{melody}. Mood: {mood}. Key: {key}. Tempo: {bpm} BPM.",
    "A {genre} {noun} in {key}, {tempo}, with {instruments}.",
)


def tempo_class(bpm: int) -> str:
    """"slow" below 76 beats per minute, "fast" from 120, else "medium"."""
    return "slow" if bpm < 76 else "fast" if bpm >= 120 else "medium"


def key_name(tonic: int, mode: str) -> str:
    """e.g. "Eb major", "F# minor"."""
    return f"{(MAJOR_KEYS if mode == 'major' else MINOR_KEYS)[tonic]} {mode}"


def _join(words: list[str]) -> str:
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


def caption(piece: Piece, rng: np.random.Generator) -> str:
    """One caption for `piece`; different generators give different templates, synonyms and word orders."""
    style = STYLE_BY_NAME[piece.style]
    pick = lambda seq: seq[rng.integers(len(seq))]  # noqa: E731
    tc = tempo_class(piece.bpm)
    moods = list(dict.fromkeys(MOODS[piece.mode, tc] + style.moods))
    mood, mood2 = (moods[i] for i in rng.choice(len(moods), size=2, replace=False))
    others = piece.instruments[1:]
    instruments = piece.instruments[:1] + [others[i] for i in rng.permutation(len(others))]
    melody = ""
    if piece.voice_lead and piece.lead_program in MELODY_WORDS and rng.random() < 0.5:
        melody = ", with " + MELODY_WORDS[piece.lead_program]
    elif piece.melody_source == "folk" and rng.random() < 0.5:
        melody = ", on a traditional folk melody"
    elif piece.melody_source == "chorale" and rng.random() < 0.5:
        melody = ", on a Bach chorale"
    with_bpm = rng.random() < 0.6
    tempo = f"{piece.bpm} BPM" if with_bpm else pick(TEMPO_WORDS[tc])
    key = key_name(piece.tonic, piece.mode)
    fields = dict(
        genre=pick(style.synonyms), mood=mood, mood2=mood2, noun=pick(NOUNS), instruments=_join(instruments),
        melody=melody, key=key, bpm=piece.bpm, meter=f"{piece.meter[0]}/{piece.meter[1]}", tempo=tempo,
    )
    ending = f"{piece.bpm} BPM" if with_bpm else pick(TEMPO_PHRASES[tc])
    ending = f"{key}, {ending}." if rng.random() < 0.7 else f"{ending}."
    fields["ending"] = ending[0].upper() + ending[1:]
    if fields["genre"].split()[-1] in _NOUNISH or fields["noun"] in fields["genre"]:  # not "folk song track"
        fields["noun"] = ""
    fields.update(Genre=fields["genre"][0].upper() + fields["genre"][1:], Mood=mood.capitalize(),
                  Instruments=fields["instruments"][0].upper() + fields["instruments"][1:])
    text = " ".join(pick(TEMPLATES).format(**fields).split()).replace(" ,", ",").replace(" .", ".")
    return re.sub(r"\b([Aa]) (?=[aeiouAEIOU8])(?!one\b|one-|[Ee]u)", r"\1n ", text)
