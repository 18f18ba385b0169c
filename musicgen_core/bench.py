"""Speed and memory, side by side with transformers' MusicGen on the same weights, in one run.

`python -m musicgen_core.bench --compare-hf [--device cpu|cuda] [--quick]` builds a musicgen-small-shaped model
with random weights in transformers (T5-base-shaped text encoder, the 32 kHz EnCodec, the 24-layer decoder), saves it,
and loads the same files with both implementations. Each measurement runs in its own process, so peak memory is the
job's own. Greedy decoding with CFG 3 for batch 1 and 4, ours in the exact float32 path and in the fast one (int8
weights on CPU; on CUDA bf16 with the decode step compiled and captured in a CUDA graph); reported: decoder steps/s,
real-time factor (audio seconds per wall second, text encoding and audio decoding included), time to first audio
(ours streams), peak RSS, and greedy token agreement with transformers. Then the embedded default model (when built):
real-time factor and time to first streamed audio of a 10 s sampled request. The last line is
`speedup_vs_hf=<exact path's steps/s over transformers'> fast_speedup_vs_hf=<fast path's> rtf=<exact, batch 1>`.
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

PROMPTS = ["an energetic rock song with distorted guitars", "calm piano", "lo-fi hip hop beat with vinyl crackle",
           "orchestral film score with strings and brass"]


def build_hf_small(folder: Path, layers: int = 24) -> None:
    """Random-weight musicgen-small-shaped model in transformers format (with a tokenizer) in `folder`."""
    from transformers import (AutoTokenizer, EncodecConfig, MusicgenConfig, MusicgenDecoderConfig,
                              MusicgenForConditionalGeneration, T5Config)

    from .conditioning.text import minilm_folder

    torch.manual_seed(0)
    text = T5Config(vocab_size=32128, d_model=768, d_kv=64, d_ff=3072, num_layers=12, num_heads=12)
    audio = EncodecConfig(sampling_rate=32000, upsampling_ratios=[8, 5, 4, 4], target_bandwidths=[2.2],
                          num_filters=64, codebook_size=2048, use_causal_conv=False, normalize=False,
                          use_conv_shortcut=False)
    decoder = MusicgenDecoderConfig(vocab_size=2048, hidden_size=1024, num_hidden_layers=layers,
                                    num_attention_heads=16, ffn_dim=4096, num_codebooks=4, pad_token_id=2048,
                                    bos_token_id=2048, decoder_start_token_id=2048)
    model = MusicgenForConditionalGeneration(MusicgenConfig(text_encoder=text, audio_encoder=audio, decoder=decoder))
    with torch.no_grad():
        for layer in model.audio_encoder.quantizer.layers:
            layer.codebook.embed.normal_()
    model.save_pretrained(folder)
    AutoTokenizer.from_pretrained(str(minilm_folder())).save_pretrained(folder)


def _peak_rss_mb() -> float:
    """This process's peak RSS. VmHWM belongs to the process's own memory map; ru_maxrss is not used because Linux
    carries it over from the parent across fork + exec (the parent holds the model it built)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def worker(impl: str, folder: str, batch: int, frames: int, device: str, repeats: int, precision: str = "fp32",
           greedy: bool = True, compiled: bool = False) -> dict:
    """One measurement (run in a fresh process): warm-up, then the best of `repeats` timed greedy runs."""
    torch.set_grad_enabled(False)
    prompts = (PROMPTS * batch)[:batch]
    if impl == "hf":
        from transformers import AutoTokenizer, MusicgenForConditionalGeneration

        model = MusicgenForConditionalGeneration.from_pretrained(folder).to(device).eval()
        tok = AutoTokenizer.from_pretrained(folder)
        codes = {}
        decode = model.audio_encoder.decode

        def spy(c, *a, **kw):
            codes["codes"] = c[0]
            return decode(c, *a, **kw)

        model.audio_encoder.decode = spy

        def run():
            inputs = tok(prompts, return_tensors="pt", padding=True, return_token_type_ids=False).to(device)
            model.generate(**inputs, do_sample=False, guidance_scale=3.0, max_new_tokens=frames + 3)
            return codes["codes"], None
    else:
        from .generate import GenerationParams, MusicGen

        model = MusicGen.from_pretrained(folder, device=device, precision=precision)
        if compiled:
            model.compile()
        params = GenerationParams(duration=frames / model.frame_rate, use_sampling=not greedy, cfg_coef=3.0)

        def run():
            first, codes = None, []
            start = time.perf_counter()
            for _, chunk_codes in model.stream(prompts, seed=0, chunk_duration=0.5, return_tokens=True,
                                                         params=params):
                first = first or time.perf_counter() - start
                codes.append(chunk_codes)
            return torch.cat(codes, dim=-1), first

    run()  # warm-up (and compilation / graph recording)
    best, first, out = float("inf"), None, None
    for _ in range(repeats):
        _sync(device)
        start = time.perf_counter()
        out, first_audio = run()
        _sync(device)
        elapsed = time.perf_counter() - start
        if elapsed < best:
            best, first = elapsed, first_audio
    steps = frames + 3
    return {"impl": impl, "batch": batch, "frames": frames, "wall_s": best, "steps_per_s": steps / best,
            "rtf": frames / 50 / best, "first_audio_s": first if first is not None else best,
            "peak_rss_mb": _peak_rss_mb(), "codes": out.cpu().tolist()}


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _spawn(impl: str, folder: Path, batch: int, frames: int, device: str, repeats: int, threads: int,
           precision: str = "fp32", greedy: bool = True) -> dict:
    compiled = precision.endswith("+graph")
    precision = precision.removesuffix("+graph")
    cmd = [sys.executable, "-m", "musicgen_core.bench", "--worker", impl, "--folder", str(folder), "--batch",
           str(batch), "--frames", str(frames), "--device", device, "--repeats", str(repeats), "--threads",
           str(threads), "--precision", precision] + ["--sampling"] * (not greedy) + ["--compile"] * compiled
    out = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def compare(device: str, quick: bool, threads: int) -> None:
    frames = 100 if quick else 500  # 2 s or 10 s
    repeats = 1 if quick else 2
    fast = "int8" if device == "cpu" else "bf16+graph"
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "musicgen-small-random"
        t = time.perf_counter()
        build_hf_small(folder)
        print(f"built a random musicgen-small-shaped model in {time.perf_counter() - t:.0f} s", flush=True)
        rows = {}
        for batch in (1, 4):
            hf = _spawn("hf", folder, batch, frames, device, repeats, threads)
            print(f"batch {batch}: transformers {hf['steps_per_s']:.2f} steps/s, rtf {hf['rtf']:.3f}, "
                  f"peak {hf['peak_rss_mb']:.0f} MB", flush=True)
            for precision in ("fp32", fast):
                ours = _spawn("ours", folder, batch, frames, device, repeats, threads, precision)
                rows[batch, precision] = ours["steps_per_s"] / hf["steps_per_s"]
                print(f"batch {batch}: ours {precision} {ours['steps_per_s']:.2f} steps/s, rtf {ours['rtf']:.3f}, "
                      f"first audio {ours['first_audio_s']:.2f} s, peak {ours['peak_rss_mb']:.0f} MB | speedup "
                      f"{rows[batch, precision]:.2f}x, greedy token agreement with transformers "
                      f"{_agreement(hf['codes'], ours['codes']):.4f}", flush=True)
                if batch == 1 and precision == "fp32":
                    rtf = ours["rtf"]
    from .checkpoints import default_model_dir

    if (default_model_dir() / "config.json").is_file():
        for precision in ("fp32", fast):
            d = _spawn("ours", default_model_dir(), 1, 500, device, repeats, threads, precision, greedy=False)
            print(f"default model ({precision}, 10 s, sampling, CFG 3): rtf {d['rtf']:.2f}, first streamed audio "
                  f"{d['first_audio_s']:.2f} s, {d['steps_per_s']:.1f} steps/s, peak {d['peak_rss_mb']:.0f} MB",
                  flush=True)
    print(f"device={device} frames={frames} threads={threads} speedup_vs_hf={rows[1, 'fp32']:.3f} "
          f"fast_speedup_vs_hf={rows[1, fast]:.3f} rtf={rtf:.3f}")


def _agreement(a, b) -> float:
    a, b = torch.tensor(a), torch.tensor(b)
    return (a == b).float().mean().item() if a.shape == b.shape else 0.0


def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="python -m musicgen_core.bench", description=__doc__.splitlines()[0])
    p.add_argument("--compare-hf", action="store_true", help="measure against transformers' MusicGen")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--quick", action="store_true", help="2 s of audio instead of 10 s, one timed run")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--worker", choices=("hf", "ours"), help=argparse.SUPPRESS)
    p.add_argument("--folder", help=argparse.SUPPRESS)
    p.add_argument("--batch", type=int, default=1, help=argparse.SUPPRESS)
    p.add_argument("--frames", type=int, default=100, help=argparse.SUPPRESS)
    p.add_argument("--repeats", type=int, default=1, help=argparse.SUPPRESS)
    p.add_argument("--precision", default="fp32", help=argparse.SUPPRESS)
    p.add_argument("--sampling", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--compile", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.worker:
        print(json.dumps(worker(args.worker, args.folder, args.batch, args.frames, args.device, args.repeats,
                                args.precision, not args.sampling, args.compile)))
    elif args.compare_hf:
        compare(args.device, args.quick, args.threads)
    else:
        p.error("nothing to do: pass --compare-hf")


if __name__ == "__main__":
    main()
