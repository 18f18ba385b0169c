"""Command line: `musicgen generate ...` and `musicgen convert SRC DST` (also `python -m musicgen_core`)."""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path


def _generate(args) -> None:
    from . import MusicGen, save_audio
    from .validation import check_duration, check_prompt, check_sampling, read_audio

    prompts = [check_prompt(p) for p in args.prompt or []] or [None]
    check_duration(args.duration, low=0.1, high=float("inf"))
    check_sampling(args.top_k, args.top_p, args.temperature, args.cfg_coef)
    audio = read_audio(args.melody or args.continue_from, "The melody" if args.melody else "The audio to continue"
                       ) if args.melody or args.continue_from else None
    model = MusicGen.from_pretrained(args.model, device=args.device, precision=args.precision)
    model.set_generation_params(duration=args.duration, use_sampling=not args.greedy, top_k=args.top_k,
                                top_p=args.top_p, temperature=args.temperature, cfg_coef=args.cfg_coef,
                                extend_stride=args.extend_stride)
    start = time.perf_counter()
    if args.melody:
        wav = model.generate_with_chroma(prompts, [audio[0]] * len(prompts), audio[1], progress=True, seed=args.seed)
    elif args.continue_from:
        wav = model.generate_continuation(audio[0][None].expand(len(prompts), -1, -1), audio[1], prompts,
                                          progress=True, seed=args.seed)
    else:
        wav = model.generate(prompts, progress=True, seed=args.seed)
    elapsed = time.perf_counter() - start
    out = Path(args.out)
    for i, w in enumerate(wav):
        path = out if len(wav) == 1 else out.with_name(f"{out.stem}_{i}{out.suffix}")
        save_audio(path, w, model.sample_rate)
        print(f"wrote {path}")
    seconds = wav.shape[0] * wav.shape[-1] / model.sample_rate
    print(f"seed={model.last_seed} audio_seconds={seconds:.2f} wall_seconds={elapsed:.2f} rtf={seconds / elapsed:.2f}")


def _convert(args) -> None:
    from .checkpoints import convert

    print(f"wrote {convert(args.src, args.dst)}")


def main(argv: list[str] | None = None) -> None:
    from .quantize import PRECISION_HELP, PRECISIONS

    parser = argparse.ArgumentParser(prog="musicgen", description="MusicGen: text (and melody) to music.")
    sub = parser.add_subparsers(dest="command", required=True)

    g = sub.add_parser("generate", help="generate music from text, a melody, or an audio prompt")
    g.add_argument("--model", default=None, help="checkpoint folder (default: the embedded default model)")
    g.add_argument("--prompt", action="append", help="text description (repeat for a batch)")
    g.add_argument("--melody", help="audio file whose melody to follow (melody models)")
    g.add_argument("--continue-from", dest="continue_from", help="audio file to continue")
    g.add_argument("--duration", type=float, default=10.0)
    g.add_argument("--seed", type=int, default=None)
    g.add_argument("--top-k", dest="top_k", type=int, default=250)
    g.add_argument("--top-p", dest="top_p", type=float, default=0.0)
    g.add_argument("--temperature", type=float, default=1.0)
    g.add_argument("--cfg-coef", dest="cfg_coef", type=float, default=3.0)
    g.add_argument("--extend-stride", dest="extend_stride", type=float, default=None,
                   help="seconds of new audio per long-form window (default: 60%% of the model's max_duration)")
    g.add_argument("--greedy", action="store_true", help="argmax decoding instead of sampling")
    g.add_argument("--device", default=None)
    g.add_argument("--precision", choices=PRECISIONS, default="fp32", help=PRECISION_HELP)
    g.add_argument("--out", default="output.wav")
    g.set_defaults(func=_generate)

    c = sub.add_parser("convert", help="convert a transformers/audiocraft checkpoint folder to our format")
    c.add_argument("src")
    c.add_argument("dst")
    c.set_defaults(func=_convert)

    from .eval import classifier, report
    from .train import codec as train_codec, data as train_data, lm as train_lm, tokens as train_tokens

    for module in (train_data, train_codec, train_tokens, train_lm, classifier, report):
        module.add_cli(sub)

    args = parser.parse_args(argv)
    try:
        args.func(args)
    except (ValueError, OSError) as e:
        sys.exit(f"error: {e}")


if __name__ == "__main__":
    main()
