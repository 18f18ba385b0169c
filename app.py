"""Launch the MusicGen web demo.

    python app.py [--model CHECKPOINT_DIR ...] [--host HOST] [--port PORT] [--share] [--precision fp32|bf16|int8]
                  [--no-hub] [--concurrency N]

Serves the embedded default model (package data of musicgen_core), the checkpoint folders given with --model, those
found in models/, and the official checkpoints on the Hugging Face Hub (downloaded when picked, then cached). On a
Hugging Face Space (SPACE_ID set) it listens on 0.0.0.0.
"""
from __future__ import annotations

import argparse
import ctypes
import os
import sys
from pathlib import Path

from musicgen_core import catalog
from musicgen_core.checkpoints import default_model_dir

ROOT = Path(__file__).resolve().parent
DEFAULT_MODEL = default_model_dir()
MODELS_DIR = ROOT / "models"


def is_checkpoint(folder: Path) -> bool:
    return (folder / "config.json").is_file() or (folder / "state_dict.bin").is_file()


def find_models(paths: list[str]) -> dict[str, str | None]:
    """Display name -> checkpoint folder: the --model folders, the embedded default (None), then models/*."""
    models: dict[str, str | None] = {}

    def add(folder: Path, value: str | None) -> None:
        name = folder.resolve().name
        models[name if name not in models else f"{name} ({folder})"] = value

    for path in paths:
        add(Path(path), path)
    if is_checkpoint(DEFAULT_MODEL):
        add(DEFAULT_MODEL, None)
    if MODELS_DIR.is_dir():
        for folder in sorted(p for p in MODELS_DIR.iterdir() if p.is_dir() and is_checkpoint(p)):
            add(folder, str(folder))
    return models


def tune_malloc(arenas: int = 2, mmap_threshold: int = 1 << 20) -> None:
    """Keep the server's memory flat under load (glibc only). Two heap arenas instead of one per worker thread, and a
    fixed mmap threshold: glibc raises it after every large free (up to 32 MB), so later requests' tensors come from the
    heap, which fragments: the load test's server crept up ~0.7 MB per request over 200 requests. With blocks over 1 MB
    mapped and unmapped per allocation it levels off once the sessions' histories are full (the decode loop's tensors
    are smaller, so it is no slower)."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-8, arenas)  # M_ARENA_MAX
        libc.mallopt(-3, mmap_threshold)  # M_MMAP_THRESHOLD; setting it turns the dynamic threshold off
    except (OSError, AttributeError):  # not glibc
        pass


def main(argv: list[str] | None = None) -> None:
    from musicgen_core.quantize import PRECISION_HELP, PRECISIONS

    tune_malloc()
    parser = argparse.ArgumentParser(description="MusicGen web demo")
    parser.add_argument("--model", action="append", default=[], metavar="DIR",
                        help="checkpoint folder to serve (repeatable); default: the embedded model")
    parser.add_argument("--host", default="0.0.0.0" if os.environ.get("SPACE_ID") else "127.0.0.1",
                        help="default: 127.0.0.1, or 0.0.0.0 on a Hugging Face Space (SPACE_ID set)")
    parser.add_argument("--port", type=int, default=None, help="default: 7860 or the first free port after it")
    parser.add_argument("--share", action="store_true", help="also serve on a public gradio.live link")
    parser.add_argument("--precision", choices=PRECISIONS, default=os.environ.get("MUSICGEN_PRECISION", "fp32"),
                        help=PRECISION_HELP + " (default: $MUSICGEN_PRECISION or fp32)")
    parser.add_argument("--no-hub", action="store_true", help="do not offer the official checkpoints of the Hub")
    parser.add_argument("--concurrency", type=int, default=None,
                        help="generations at once (default: 1 on a CPU, 2 on a GPU)")
    args = parser.parse_args(argv)
    for path in args.model:
        if not Path(path).is_dir():
            parser.error(f"--model {path}: no such folder")

    models = find_models(args.model)
    if not models:
        sys.exit(f"error: the embedded default model is missing: no model in {DEFAULT_MODEL} (it ships with the "
                 f"trained model). Pass a checkpoint folder with --model DIR, or put checkpoint folders in "
                 f"{MODELS_DIR}.")

    from demo.ui import ModelCache, build_demo, launch

    entries = [catalog.DEFAULT if path is None else catalog.CatalogEntry(name, path) for name, path in models.items()]
    cache = ModelCache(entries + list(catalog.OFFICIAL_MODELS) * (not args.no_hub), precision=args.precision)
    first = next(iter(models))
    try:  # load the first model now: a broken checkpoint fails here, and the first visitor does not wait
        cache.get(first)
    except (ValueError, OSError) as e:
        sys.exit(f"error: cannot load model {first!r}: {e}")
    launch(build_demo(cache, concurrency=args.concurrency), host=args.host, port=args.port, share=args.share)


if __name__ == "__main__":
    main()
