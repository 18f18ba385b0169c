"""The layering as a test over the import graph (every import statement, at module top or inside a function):
the demo imports the library and never the reverse; no import cycles inside musicgen_core; inference never reaches
train/ or eval/; the LM never reaches the codec; imports sit at module top unless they keep an optional dependency
optional or are the command line's per-command imports."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LIBRARY = "musicgen_core"
INFERENCE = ("musicgen_core.generate", "musicgen_core.sampling", "musicgen_core.patterns", "musicgen_core.configs",
             "musicgen_core.lm", "musicgen_core.codec", "musicgen_core.conditioning", "musicgen_core.checkpoints",
             "musicgen_core.hf_format", "musicgen_core.audiocraft_format", "musicgen_core.weights",
             "musicgen_core.hub", "musicgen_core.audio", "musicgen_core.validation", "musicgen_core.quantize",
             "musicgen_core.plots", "musicgen_core.__init__")
# Imports allowed inside functions: optional dependencies (the demo extra; the training data's renderer and MIDI
# tools; scikit-learn for the evaluation probes; the browser drivers) and the command line's per-command imports
# (`musicgen generate` never loads the trainers; the benchmark loads its peer only when asked).
LAZY_OK = {"gradio", "tinysoundfont", "pretty_midi", "music21", "sklearn", "playwright", "selenium"}
LAZY_OK_MODULES = {"musicgen_core.cli", "musicgen_core.bench"}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def sources() -> dict[str, Path]:
    files = [*(ROOT / "musicgen_core").rglob("*.py"), *(ROOT / "demo").rglob("*.py"), ROOT / "app.py"]
    return {module_name(f): f for f in files}


MODULES = sources()


def imports(name: str, path: Path) -> list[tuple[str, int, bool]]:
    """(imported module, line, at module top) for every import in `path`; `from pkg import x` names pkg.x when
    that is a module, else pkg."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    tree = ast.parse(path.read_text())
    tops = {node.lineno for node in tree.body if isinstance(node, (ast.Import, ast.ImportFrom))}
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(a.name, node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            out += [(f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base, node.lineno) for a in node.names]
    return [(target, line, line in tops) for target, line in out]


GRAPH = {name: {t for t, _, _ in imports(name, path) if t.split(".")[0] in (LIBRARY, "demo", "app")}
         for name, path in MODULES.items()}


def reach(start: str) -> set[str]:
    """Every project module `start` imports, directly or through others (a package's __init__ included)."""
    seen, todo = set(), [start]
    while todo:
        for target in GRAPH.get(todo.pop(), ()):
            if target not in seen:
                seen.add(target)
                todo.append(target)
    return seen


def under(name: str, prefixes) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def test_the_graph_is_read():
    assert "musicgen_core.lm.model" in GRAPH["musicgen_core.generate"]
    assert "musicgen_core.sampling" in GRAPH["musicgen_core.generate"]
    assert "musicgen_core.train.runtime" in GRAPH["musicgen_core.train.codec"]


def test_the_library_never_imports_the_demo():
    offenders = {m: sorted(t for t in targets if t.split(".")[0] in ("demo", "app"))
                 for m, targets in GRAPH.items() if m.startswith(LIBRARY)}
    assert {m: t for m, t in offenders.items() if t} == {}


def test_the_demo_imports_only_the_library():
    for name, path in MODULES.items():
        if under(name, ("demo", "app")):
            project = {t for t, _, _ in imports(name, path) if t.split(".")[0] in (LIBRARY, "demo", "app")}
            assert all(t.split(".")[0] in (LIBRARY, "demo") for t in project), name


def test_no_import_cycles_inside_the_library():
    library = {m for m in GRAPH if m.startswith(LIBRARY)}
    cycles = sorted(m for m in library if m in reach(m) and m != LIBRARY)
    assert cycles == []


@pytest.mark.parametrize("name", sorted(m for m in MODULES if under(m, INFERENCE)))
def test_inference_never_imports_training_or_evaluation(name):
    assert sorted(t for t in reach(name) if under(t, ("musicgen_core.train", "musicgen_core.eval"))) == []


@pytest.mark.parametrize("name", sorted(m for m in MODULES if under(m, ("musicgen_core.lm",))))
def test_the_lm_never_imports_the_codec(name):
    assert sorted(t for t in reach(name) if under(t, ("musicgen_core.codec",))) == []


def test_imports_sit_at_module_top():
    """Inside a function only an optional dependency (kept optional) or a command's own imports."""
    lazy = [f"{name}:{line} {target}" for name, path in MODULES.items() if name.startswith(LIBRARY)
            and name not in LAZY_OK_MODULES for target, line, top in imports(name, path)
            if not top and not under(target, LAZY_OK)]
    assert lazy == []
