"""The model catalogue: official ids with their sizes, licences and flags, and the loader's memory check."""
from __future__ import annotations

import pytest

from musicgen_core import catalog, hub


def test_the_official_checkpoints_with_their_flags_and_licence():
    entries = {e.name: e for e in catalog.OFFICIAL_MODELS}
    assert tuple(entries) == hub.OFFICIAL
    assert all(e.licence == "CC-BY-NC 4.0" and e.source == e.name and e.official for e in entries.values())
    assert [n for n, e in entries.items() if e.melody] == [
        "facebook/musicgen-melody", "facebook/musicgen-melody-large", "facebook/musicgen-stereo-melody",
        "facebook/musicgen-stereo-melody-large"]
    assert [n for n, e in entries.items() if e.stereo] == [n for n in hub.OFFICIAL if "stereo" in n]
    assert entries["facebook/musicgen-small"].lm_params == 0.3e9
    assert entries["facebook/musicgen-stereo-large"].lm_params == 3.3e9


def test_catalog_order_default_then_folders_then_official():
    entries = catalog.catalog({"mine": "/models/mine"})
    assert [e.name for e in entries[:2]] == ["default", "mine"] and entries[0].source is None
    assert entries[1].source == "/models/mine" and entries[1].params is None and not entries[1].official
    assert [e.name for e in entries[2:]] == list(hub.OFFICIAL)
    assert [e.name for e in catalog.catalog(official=False)] == ["default"]


@pytest.mark.parametrize("free_gb, fits", [(64, True), (4, False)])
def test_fit_uses_the_loaders_memory_check(monkeypatch, free_gb, fits):
    monkeypatch.setattr(hub, "available_memory", lambda device: free_gb * 10**9)
    medium = next(e for e in catalog.OFFICIAL_MODELS if e.name == "facebook/musicgen-medium")
    problem = catalog.fit_problem(medium, device="cpu")
    line = catalog.describe(medium, device="cpu")
    assert line.startswith("facebook/musicgen-medium · 1.5B params · ~6.7 GB · CC-BY-NC 4.0 · ")
    if fits:
        assert problem is None and line.endswith("fits this machine")
    else:
        assert problem == ("facebook/musicgen-medium does not fit in memory: it needs about 6.7 GB in fp32 on cpu, "
                           "and 4.0 GB is available. Choose a smaller model (e.g. facebook/musicgen-small), "
                           "precision='int8' or 'bf16', or free memory.")
        assert line.endswith("too large for this machine")
    assert catalog.fit_problem(catalog.DEFAULT) is None  # size known only once loaded: never refused up front


def test_smaller_precisions_fit_where_fp32_does_not(monkeypatch):
    monkeypatch.setattr(hub, "available_memory", lambda device: 8 * 10**9)
    large = next(e for e in catalog.OFFICIAL_MODELS if e.name == "facebook/musicgen-large")
    assert catalog.fit_problem(large, "cpu", "fp32") and catalog.fit_problem(large, "cpu", "int8") is None
    assert catalog.memory_bytes(large, "int8") == pytest.approx((3.3e9 + 0.17e9) * 1.3)
    assert " · ~4.5 GB · " in catalog.describe(large, "cpu", "int8") and catalog.memory_bytes(catalog.DEFAULT) is None
