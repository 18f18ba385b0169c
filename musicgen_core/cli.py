"""Command line: `musicgen generate ...`, `musicgen download ID`, `musicgen convert SRC DST` and the training and
evaluation commands (also `python -m musicgen_core`)."""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path


def _generate(args) -> None:
    from . import MusicGen, save_audio
    from .validation import check_continuation, check_duration, check_prompt, check_sampling, read_audio

    prompts = [check_prompt(p) for p in args.prompt or []] or [None]
    check_duration(args.duration, low=0.1, high=float("inf"))
    check_sampling(args.top_k, args.top_p, args.temperature, args.cfg_coef)
    audio = read_audio(args.melody or args.continue_from, "The melody" if args.melody else "The audio to continue"
                       ) if args.melody or args.continue_from else None
    if args.continue_from:
        check_continuation(audio[0].shape[-1] / audio[1], args.duration)
    model = MusicGen.from_pretrained(args.model, device=args.device, precision=args.precision,
                                     revision=args.revision, token=args.token)
    settings = dict(duration=args.duration, use_sampling=not args.greedy, top_k=args.top_k, top_p=args.top_p,
                    temperature=args.temperature, cfg_coef=args.cfg_coef, extend_stride=args.extend_stride,
                    progress=True, seed=args.seed)
    start = time.perf_counter()
    if args.melody:
        wav = model.generate_with_chroma(prompts, [audio[0]] * len(prompts), audio[1], **settings)
    elif args.continue_from:
        wav = model.generate_continuation(audio[0][None].expand(len(prompts), -1, -1), audio[1], prompts,
                                          **settings)
    else:
        wav = model.generate(prompts, **settings)
    elapsed = time.perf_counter() - start
    out = Path(args.out)
    for i, w in enumerate(wav):
        path = out if len(wav) == 1 else out.with_name(f"{out.stem}_{i}{out.suffix}")
        save_audio(path, w, model.sample_rate)
        print(f"wrote {path}")
    seconds = wav.shape[0] * wav.shape[-1] / model.sample_rate
    print(f"seed={model.last_seed} audio_seconds={seconds:.2f} wall_seconds={elapsed:.2f} rtf={seconds / elapsed:.2f}")


def _download(args) -> None:
    from .hub import download, hub_id

    repo_id = hub_id(args.id)
    if repo_id is None:
        raise ValueError(f"{args.id!r} is not a Hugging Face Hub id (org/name, e.g. facebook/musicgen-small)")
    print(download(repo_id, revision=args.revision, cache_dir=args.cache_dir, token=args.token,
                   device=args.device, precision=args.precision))


def _convert(args) -> None:
    from .checkpoints import convert

    print(f"wrote {convert(args.src, args.dst)}")


def main(argv: list[str] | None = None) -> None:
    from .quantize import PRECISION_HELP, PRECISIONS

    parser = argparse.ArgumentParser(prog="musicgen", description="MusicGen: text (and melody) to music.")
    sub = parser.add_subparsers(dest="command", required=True)

    g = sub.add_parser("generate", help="generate music from text, a melody, or an audio prompt")
    g.add_argument("--model", default=None,
                   help="checkpoint folder or Hugging Face Hub id, e.g. facebook/musicgen-small (default: the embedded "
                        "default model)")
    g.add_argument("--revision", default=None, help="branch, tag or commit of a Hub model")
    g.add_argument("--token", default=None, help="Hugging Face token for gated or private models (or set HF_TOKEN)")
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

    d = sub.add_parser("download", help="fetch a model from the Hugging Face Hub into its cache, for offline use")
    d.add_argument("id", help="Hub id, e.g. facebook/musicgen-small")
    d.add_argument("--revision", default=None)
    d.add_argument("--cache-dir", dest="cache_dir", default=None, help="default: HF_HUB_CACHE or HF_HOME/hub")
    d.add_argument("--token", default=None)
    d.add_argument("--device", default=None, help="device the model will run on (for the memory check)")
    d.add_argument("--precision", choices=PRECISIONS, default="fp32", help="precision it will run in (memory check)")
    d.set_defaults(func=_download)

    c = sub.add_parser("convert", help="convert a transformers/audiocraft checkpoint folder to our format")
    c.add_argument("src")
    c.add_argument("dst")
    c.set_defaults(func=_convert)

    from .eval import classifier, report
    from .train import codec as train_codec, data as train_data, lm as train_lm, real as train_real, \
        remap as train_remap, tokens as train_tokens

    for module in (train_data, train_real, train_codec, train_tokens, train_remap, train_lm, classifier, report):
        module.add_cli(sub)

    args = parser.parse_args(argv)
    try:
        args.func(args)
    except (ValueError, OSError) as e:
        sys.exit(f"error: {e}")


if __name__ == "__main__":
    main()
