"""The models a front-end offers: the embedded default and the official MusicGen checkpoints on the Hub, each with
its size, licence, stereo and melody flags, and whether it fits the memory of the device it would load on (the
same check `hub.download` makes before fetching weights)."""
from __future__ import annotations

from dataclasses import dataclass

from . import hub

# Official checkpoints load with their T5-base text encoder and 32 kHz EnCodec beside the LM.
_TEXT_AND_CODEC_PARAMS = 0.11e9 + 0.06e9
OFFICIAL_LICENCE = "CC-BY-NC 4.0"
DEFAULT_LICENCE = "MIT"


@dataclass(frozen=True)
class CatalogEntry:
    """A model to pick: `source` is what `MusicGen.from_pretrained` takes (None = the embedded default)."""

    name: str
    source: str | None
    lm_params: float | None = None  # None: not known before loading (local folders)
    licence: str = "see the model card"
    melody: bool = False
    stereo: bool = False

    @property
    def params(self) -> float | None:
        """All weights loaded for generation: LM, text encoder and codec."""
        return None if self.lm_params is None else self.lm_params + _TEXT_AND_CODEC_PARAMS

    @property
    def official(self) -> bool:
        return self.source in hub.OFFICIAL


_OFFICIAL = {  # facebook/musicgen-*: LM parameters, melody, stereo
    "small": (0.3e9, False, False), "medium": (1.5e9, False, False), "large": (3.3e9, False, False),
    "melody": (1.5e9, True, False), "melody-large": (3.3e9, True, False),
    "stereo-small": (0.3e9, False, True), "stereo-medium": (1.5e9, False, True), "stereo-large": (3.3e9, False, True),
    "stereo-melody": (1.5e9, True, True), "stereo-melody-large": (3.3e9, True, True)}
OFFICIAL_MODELS = tuple(CatalogEntry(f"facebook/musicgen-{name}", f"facebook/musicgen-{name}", params, OFFICIAL_LICENCE,
                                     melody, stereo) for name, (params, melody, stereo) in _OFFICIAL.items())
DEFAULT = CatalogEntry("default", None, None, DEFAULT_LICENCE, melody=True)


def catalog(folders: dict[str, str] | None = None, official: bool = True) -> list[CatalogEntry]:
    """The default, then `folders` (display name -> checkpoint folder), then the official checkpoints."""
    local = [CatalogEntry(name, str(path)) for name, path in (folders or {}).items()]
    return [DEFAULT, *local, *(OFFICIAL_MODELS if official else ())]


def memory_bytes(entry: CatalogEntry, precision: str = "fp32") -> float | None:
    """About how many bytes `entry` holds once loaded at `precision` (None: unknown before loading)."""
    return None if entry.params is None else entry.params * hub.BYTES_PER_PARAM[precision]


def fit_problem(entry: CatalogEntry, device=None, precision: str = "fp32") -> str | None:
    """Why `entry` cannot load in the memory of `device` at `precision` (hub's message), or None when it fits or
    its size is unknown before loading."""
    if entry.params is None:
        return None
    try:
        hub.check_memory(entry.name, entry.params, device, precision)  # the loader's own check: they agree
    except hub.HubError as e:
        return str(e)
    return None


def describe(entry: CatalogEntry, device=None, precision: str = "fp32") -> str:
    """One line for a picker: name, size (parameters, memory at `precision`), stereo, melody, licence, and whether
    it fits this machine."""
    parts = [entry.name]
    if entry.lm_params is not None:
        parts.append(f"{entry.lm_params / 1e9:g}B params" if entry.lm_params >= 1e9
                     else f"{entry.lm_params / 1e6:.0f}M params")
        parts.append(f"~{memory_bytes(entry, precision) / 1e9:.1f} GB")
    parts += ["stereo"] * entry.stereo + ["melody"] * entry.melody + [entry.licence]
    if entry.params is not None:
        parts.append("too large for this machine" if fit_problem(entry, device, precision) else "fits this machine")
    return " · ".join(parts)
