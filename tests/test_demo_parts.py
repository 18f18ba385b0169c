"""The demo's parts without a server: app.py's command line, the model cache's memory budget and the history."""
from __future__ import annotations

import numpy as np
import pytest

import app
from demo import callbacks as cb
from demo import ui
from demo.models import weight_bytes
from musicgen_core import catalog
from musicgen_core import validation as v


# --- app.py ----------------------------------------------------------------------------------------------------------
def test_app_without_default_model_names_the_missing_folder(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(app, "DEFAULT_MODEL", tmp_path / "assets" / "default")
    monkeypatch.setattr(app, "MODELS_DIR", tmp_path / "models")
    with pytest.raises(SystemExit) as exit_info:
        app.main([])
    assert "default model is missing" in str(exit_info.value) and "assets/default" in str(exit_info.value)
    with pytest.raises(SystemExit):
        app.main(["--model", str(tmp_path / "nowhere")])
    assert "no such folder" in capsys.readouterr().err


def test_app_finds_models(tmp_path, monkeypatch):
    for folder in ("assets/default", "models/melody-ft", "models/not-a-checkpoint", "mine"):
        (tmp_path / folder).mkdir(parents=True)
    (tmp_path / "models/melody-ft/config.json").write_text("{}")
    (tmp_path / "assets/default/codec.safetensors").write_bytes(b"")  # a codec alone is not a model yet
    monkeypatch.setattr(app, "DEFAULT_MODEL", tmp_path / "assets" / "default")
    monkeypatch.setattr(app, "MODELS_DIR", tmp_path / "models")
    models = app.find_models([str(tmp_path / "mine")])
    assert models == {"mine": str(tmp_path / "mine"), "melody-ft": str(tmp_path / "models/melody-ft")}
    (tmp_path / "assets/default/config.json").write_text("{}")
    assert list(app.find_models([])) == ["default", "melody-ft"]


# --- model cache and history ------------------------------------------------------------------------------------------
def test_models_stay_in_memory_within_the_budget(hf_musicgen_dir, hf_melody_dir):
    cache = ui.ModelCache({"a": str(hf_musicgen_dir[1]), "b": str(hf_melody_dir[1])})
    a, b = cache.get("a"), cache.get("b")
    assert cache.loaded == ["a", "b"] and cache.get("a") is a and cache.loaded == ["b", "a"]
    cache.budget = int(1.5 * weight_bytes(a))  # room for one of them
    assert cache.get("b") is b and cache.loaded == ["b"]  # the least recently used went
    with pytest.raises(v.InputError, match=r"^Unknown model 'c': pick one of a, b\.$"):
        cache.get("c")
    known = ui.ModelCache([catalog.CatalogEntry("a", str(hf_musicgen_dir[1])),
                           catalog.CatalogEntry("big", str(hf_melody_dir[1]), lm_params=1e9)], budget=2 * 10**9)
    known.get("a")
    known.get("big")  # 4.7 GB expected in fp32: "a" is unloaded before loading it, not after
    assert known.loaded == ["big"]


def test_history_replays_and_restores_a_take():
    form = ["jazz", None, 2, "7", 250, 0.0, 1.0, 3.0, cb.FOLLOW, "tiny", 2, True]
    history = [{"label": "take 2/2", "audio": (32000, np.zeros((10, 1), np.int16)), "form": form}]
    audio, info = cb.replay(history, 0)
    assert audio[0] == 32000 and info == ("take 2/2. duration 2, seed 7, top_k 250, top_p 0.0, temperature 1.0, "
                                          "cfg_coef 3.0, model tiny, takes 2, loudness -14 LUFS.")
    form[1], form[-1] = "hum.wav", False
    assert cb.replay(history, 0)[1].endswith("takes 2, melody: follow this melody, loudness as generated.")
    assert cb.restore(history, 0) == tuple(form)
    with pytest.raises(Exception, match="Pick a generation in the history first"):
        cb.restore(history, 3)


def test_history_is_bounded_in_takes_and_seconds():
    def entry(seconds: float) -> dict:
        return {"label": str(seconds), "audio": (1000, np.zeros((int(seconds * 1000), 1), np.int16)), "form": []}

    assert len(cb.keep_recent([entry(1)] * 20)) == cb.HISTORY_SIZE
    assert [e["label"] for e in cb.keep_recent([entry(200), entry(90), entry(20), entry(1)])] == ["200", "90"]
    assert len(cb.keep_recent([entry(400), entry(1)])) == 1  # the newest stays, however long
