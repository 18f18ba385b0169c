"""The models a demo serves: catalogue entries loaded on first use (downloaded from the Hub if needed), several kept
in memory within a budget, the least recently used unloaded first."""
from __future__ import annotations

import threading
from collections import OrderedDict

import torch

from musicgen_core import MusicGen, catalog, hub
from musicgen_core.catalog import CatalogEntry
from musicgen_core.validation import InputError


def weight_bytes(model: MusicGen) -> int:
    """Bytes of the parameters and buffers a loaded model holds."""
    modules = [m for m in (model.lm, model.codec, model.text_encoder) if isinstance(m, torch.nn.Module)]
    return sum(t.numel() * t.element_size() for m in modules for t in [*m.parameters(), *m.buffers()])


class ModelCache:
    """Catalogue entries by name, loaded at `precision` on first use. Loaded models stay in memory while their
    weights total at most `budget` bytes (default: half the memory available at start); the least recently used go
    first, never the one just asked for."""

    def __init__(self, models: list[CatalogEntry] | dict[str, str | None], budget: int | None = None,
                 precision: str = "fp32"):
        entries = models if isinstance(models, list) else [CatalogEntry(n, s) for n, s in models.items()]
        if not entries:
            raise ValueError("no models to serve")
        self.entries = {e.name: e for e in entries}
        self.precision = precision
        self.budget = budget if budget is not None else hub.available_memory(torch.device("cpu")) // 2
        self._loaded: OrderedDict[str, tuple[MusicGen, int]] = OrderedDict()
        self._lock = threading.Lock()

    @property
    def names(self) -> list[str]:
        return list(self.entries)

    @property
    def loaded(self) -> list[str]:
        """Names in memory, least recently used first."""
        return list(self._loaded)

    def entry(self, name: str) -> CatalogEntry:
        if name not in self.entries:
            raise InputError(f"Unknown model {name!r}: pick one of {', '.join(self.entries)}.")
        return self.entries[name]

    def describe(self, name: str) -> str:
        return catalog.describe(self.entry(name), precision=self.precision)

    def get(self, name: str) -> MusicGen:
        """The model `name`, loaded (and downloaded) if needed; `hub.HubError` says why one cannot be."""
        entry = self.entry(name)
        with self._lock:
            if name not in self._loaded:
                if problem := catalog.fit_problem(entry, precision=self.precision):
                    raise hub.HubError(problem)
                self._evict(self.budget - (catalog.memory_bytes(entry, self.precision) or 0))  # room first
                model = MusicGen.from_pretrained(entry.source, precision=self.precision)
                self._loaded[name] = (model, weight_bytes(model))
            self._loaded.move_to_end(name)
            self._evict(self.budget, keep=1)
            return self._loaded[name][0]

    def _evict(self, limit: float, keep: int = 0) -> None:
        """Unload the least recently used models until those loaded hold at most `limit` bytes (or `keep` remain)."""
        while len(self._loaded) > keep and sum(size for _, size in self._loaded.values()) > limit:
            self._loaded.popitem(last=False)
