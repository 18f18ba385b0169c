"""Speed, memory and quality of each precision, side by side with transformers' MusicGen on the same weights.

`python -m musicgen_core.bench --compare-hf [--device cpu|cuda] [--quick] [--json OUT]` builds a musicgen-small-shaped
model with random weights in transformers (T5-base-shaped text encoder, the 32 kHz EnCodec, the 24-layer decoder),
saves it, and loads the same files with both implementations. Each measurement runs in its own process, so peak
memory is the job's own. Greedy decoding with CFG 3, per batch size and precision; per row:

- steps_per_s, rtf (audio seconds per wall second), first_audio_s (ours streams), peak_mb: end to end, text encoding
  and audio decoding included; hf_steps_per_s / speedup_vs_hf against transformers' `generate` in the same run;
- agreement: the fraction of teacher-forced steps (the fp32 greedy codes fed back) whose guided top-1 tokens equal
  fp32's, overall and per codebook; chroma_vs_fp32 / mel_vs_fp32: audiocraft's chroma cosine similarity and the
  log-mel distance between this precision's greedy audio and fp32's; codes_equal_hf: fp32 greedy codes equal to
  transformers' (fraction of tokens);
- floor_fraction: steps/s over the memory-bandwidth floor, bandwidth (a STREAM-like read of a large buffer, measured
  here) / the weight bytes one decoding step reads (every LM weight but the embeddings and the cross-attention K/V
  projections, which run once per request);
- offered: agreement >= OFFER_AGREEMENT, the bar for a precision users are offered.

The last line is `speedup_vs_hf=<fp32 batch 1> fast_speedup_vs_hf=<fastest offered precision, batch 1> rtf=<fp32>`.
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
OFFER_AGREEMENT = 0.9


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


def memory_bandwidth(megabytes: int = 512, repeats: int = 5) -> float:
    """GB/s of a STREAM-like read (the sum of a float32 buffer far larger than the caches), best of `repeats`."""
    a = torch.ones(megabytes * 2**20 // 4)
    a.sum()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a.sum()
        best = min(best, time.perf_counter() - start)
    return a.numel() * 4 / best / 1e9


def step_weight_bytes(lm: torch.nn.Module) -> int:
    """Bytes of the weights one decoding step reads: the blocks (but the cross-attention K/V projections, applied
    once per request), the output norm, the heads and the tempo projection. The embedding tables are left out (K
    rows are read) and so are the conditioning projections (once per request)."""
    per_step = ("layers.", "out_norm.", "heads", "tempo_proj.")
    return sum(t.numel() * t.element_size() for name, t in [*lm.named_parameters(), *lm.named_buffers()]
               if name.startswith(per_step) and ".cross_attn.kv_proj." not in name)


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


def teacher_forced_top1(model, codes: torch.Tensor, prompts: list[str], cfg_coef: float = 3.0) -> torch.Tensor:
    """Guided top-1 tokens [B, K, S - 1] of `model` at every step of the pattern sequence of `codes` [B, K, T]
    (its tokens fed back), predicting steps 1..S-1."""
    special = model.lm.cfg.special_token
    seq, _ = model.pattern.build(codes.to(model.device), special)
    seq = seq.masked_fill(seq == -1, special)
    ctx = model._context(prompts, None, None, cfg=True)
    logits = model.lm(torch.cat([seq, seq])[..., :-1], ctx)  # [2B, K, S - 1, card]
    cond, uncond = logits.chunk(2)
    return (uncond + (cond - uncond) * cfg_coef).argmax(dim=-1).cpu()


def worker(impl: str, folder: str, batch: int, frames: int, device: str, repeats: int, precision: str = "fp32",
           greedy: bool = True, compiled: bool = False, save: str | None = None) -> dict:
    """One measurement (run in a fresh process): a short warm-up, then the best of `repeats` timed runs; with `save`,
    the codes and audio of the last run (and ours: teacher-forced top-1 on `save`'s fp32 codes) go to files."""
    torch.set_grad_enabled(False)
    prompts = (PROMPTS * batch)[:batch]
    extra = {}
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

        def run(n):
            inputs = tok(prompts, return_tensors="pt", padding=True, return_token_type_ids=False).to(device)
            wav = model.generate(**inputs, do_sample=False, guidance_scale=3.0, max_new_tokens=n + 3)
            return codes["codes"], wav, None
    else:
        from .generate import GenerationParams, MusicGen

        model = MusicGen.from_pretrained(folder, device=device, precision=precision)
        if compiled:
            model.compile()
        extra["step_weight_mb"] = step_weight_bytes(model.lm) / 1e6

        def run(n):
            params = GenerationParams(duration=n / model.frame_rate, use_sampling=not greedy, cfg_coef=3.0)
            first, codes, wavs = None, [], []
            start = time.perf_counter()
            for wav, chunk_codes in model.stream(prompts, seed=0, chunk_duration=0.5, return_tokens=True,
                                                 params=params):
                first = first or time.perf_counter() - start
                codes.append(chunk_codes)
                wavs.append(wav)
            return torch.cat(codes, dim=-1), torch.cat(wavs, dim=-1), first

    run(min(frames, 25))  # warm-up (and compilation / graph recording)
    best, first, out = float("inf"), None, None
    for _ in range(repeats):
        _sync(device)
        start = time.perf_counter()
        out = run(frames)
        _sync(device)
        elapsed = time.perf_counter() - start
        if elapsed < best:
            best, first = elapsed, out[2]
    peak = _peak_rss_mb()
    if save:
        files = {"codes": out[0].cpu(), "wav": out[1].float().cpu()}
        if impl == "ours" and greedy:
            reference = out[0] if precision == "fp32" else torch.load(save + ".fp32.pt")["codes"]
            files["top1"] = teacher_forced_top1(model, reference, prompts)
        torch.save(files, f"{save}.{precision if impl == 'ours' else 'hf'}.pt")
    steps = frames + 3
    return {"impl": impl, "precision": precision, "batch": batch, "frames": frames, "wall_s": best,
            "steps_per_s": steps / best, "rtf": frames / 50 / best,
            "first_audio_s": first if first is not None else best, "peak_mb": peak, **extra}


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _spawn(impl: str, folder: Path, batch: int, frames: int, device: str, repeats: int, threads: int,
           precision: str = "fp32", greedy: bool = True, save: Path | None = None) -> dict:
    compiled = precision.endswith("+graph")
    cmd = [sys.executable, "-m", "musicgen_core.bench", "--worker", impl, "--folder", str(folder), "--batch",
           str(batch), "--frames", str(frames), "--device", device, "--repeats", str(repeats), "--threads",
           str(threads), "--precision", precision.removesuffix("+graph")] + ["--sampling"] * (not greedy) \
        + ["--compile"] * compiled + (["--save", str(save)] if save else [])
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode:
        raise RuntimeError(f"bench worker {' '.join(cmd[3:])} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def quality(save: Path, precision: str) -> dict:
    """Agreement of `precision` with fp32 (teacher-forced top-1, overall and per codebook) and its audio against
    fp32's; fp32's greedy codes against transformers'."""
    from .eval.metrics import chroma_cosine, mel_distance

    ref, got = torch.load(f"{save}.fp32.pt"), torch.load(f"{save}.{precision}.pt")
    same = ref["top1"] == got["top1"]  # [B, K, S - 1]
    out = {"agreement": same.float().mean().item(),
           "agreement_per_codebook": [round(v, 4) for v in same.float().mean(dim=(0, 2)).tolist()]}
    pairs = list(zip(got["wav"][:, 0], ref["wav"][:, 0]))
    out["chroma_vs_fp32"] = sum(chroma_cosine(g.numpy(), r.numpy()) for g, r in pairs) / len(pairs)
    out["mel_vs_fp32"] = sum(mel_distance(g.numpy(), r.numpy()) for g, r in pairs) / len(pairs)
    if precision == "fp32":
        hf = torch.load(f"{save}.hf.pt")["codes"]
        out["codes_equal_hf"] = (hf == got["codes"]).float().mean().item() if hf.shape == got["codes"].shape else 0.0
    return out


def compare(device: str, frames: int, repeats: int, threads: int, batches, precisions, json_out: str | None,
            folder: Path | None = None, default_model: bool = True) -> list[dict]:
    """The side-by-side table (and JSON) on the random musicgen-small shape, or on the transformers-format model in
    `folder`; then the embedded default. Returns the rows."""
    torch.set_num_threads(threads)
    bandwidth = memory_bandwidth() if device == "cpu" else None
    print(f"memory bandwidth (STREAM-like read, {threads} threads): "
          + (f"{bandwidth:.1f} GB/s" if bandwidth else "not measured on CUDA"), flush=True)
    rows, header = [], (f"{'batch':>5} {'precision':>10} {'steps/s':>8} {'x hf':>6} {'rtf':>6} {'1st audio':>9} "
                        f"{'peak MB':>8} {'agree':>6} {'chroma':>6} {'mel':>5} {'floor':>6}")
    with tempfile.TemporaryDirectory() as tmp:
        if folder is None:
            folder = Path(tmp) / "musicgen-small-random"
            t = time.perf_counter()
            build_hf_small(folder)
            print(f"built a random musicgen-small-shaped model in {time.perf_counter() - t:.0f} s", flush=True)
        for batch in batches:
            save = Path(tmp) / f"batch{batch}"
            hf = _spawn("hf", folder, batch, frames, device, repeats, threads, save=save)
            print(f"batch {batch}: transformers {hf['steps_per_s']:.2f} steps/s, rtf {hf['rtf']:.3f}, "
                  f"peak {hf['peak_mb']:.0f} MB", flush=True)
            for precision in precisions:
                ours = _spawn("ours", folder, batch, frames, device, repeats, threads, precision, save=save)
                row = {"batch": batch, "precision": precision, "steps_per_s": ours["steps_per_s"],
                       "hf_steps_per_s": hf["steps_per_s"], "speedup_vs_hf": ours["steps_per_s"] / hf["steps_per_s"],
                       **quality(save, precision.removesuffix("+graph")), "rtf": ours["rtf"],
                       "first_audio_s": ours["first_audio_s"], "peak_mb": ours["peak_mb"],
                       "hf_peak_mb": hf["peak_mb"], "hf_rtf": hf["rtf"], "step_weight_mb": ours["step_weight_mb"]}
                if bandwidth:
                    row["floor_steps_per_s"] = bandwidth * 1e3 / ours["step_weight_mb"]
                    row["floor_fraction"] = ours["steps_per_s"] / row["floor_steps_per_s"]
                row["offered"] = row["agreement"] >= OFFER_AGREEMENT
                rows.append(row)
                if len(rows) == 1:
                    print(header)
                print(f"{batch:>5} {precision:>10} {row['steps_per_s']:8.2f} {row['speedup_vs_hf']:6.2f} "
                      f"{row['rtf']:6.3f} {row['first_audio_s']:9.2f} {row['peak_mb']:8.0f} {row['agreement']:6.3f} "
                      f"{row['chroma_vs_fp32']:6.3f} {row['mel_vs_fp32']:5.2f} {row.get('floor_fraction', 0):6.2f}",
                      flush=True)
    default = _default_model(device, repeats, threads) if default_model else []
    if json_out:
        Path(json_out).write_text(json.dumps({"device": device, "threads": threads, "frames": frames,
                                              "memory_bandwidth_gbs": bandwidth, "rows": rows,
                                              "default_model": default}, indent=1))
    first = [r for r in rows if r["batch"] == min(batches)]
    exact = next((r for r in first if r["precision"] == "fp32"), first[0])
    fast = max((r for r in first if r["offered"]), key=lambda r: r["steps_per_s"], default=exact)
    print(f"device={device} frames={frames} threads={threads} fastest={fast['precision']} "
          f"speedup_vs_hf={exact['speedup_vs_hf']:.3f} fast_speedup_vs_hf={fast['speedup_vs_hf']:.3f} "
          f"rtf={exact['rtf']:.3f}")
    return rows


def _default_model(device: str, repeats: int, threads: int) -> list[dict]:
    """The embedded default (when built): a 10 s sampled request per precision."""
    from .checkpoints import default_model_dir

    if not (default_model_dir() / "config.json").is_file():
        return []
    out = []
    for precision in ("fp32", "int8"):
        d = _spawn("ours", default_model_dir(), 1, 500, device, repeats, threads, precision, greedy=False)
        print(f"default model ({precision}, 10 s, sampling, CFG 3): rtf {d['rtf']:.2f}, first streamed audio "
              f"{d['first_audio_s']:.2f} s, {d['steps_per_s']:.1f} steps/s, peak {d['peak_mb']:.0f} MB", flush=True)
        out.append({k: d[k] for k in ("precision", "steps_per_s", "rtf", "first_audio_s", "peak_mb")})
    return out


def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="python -m musicgen_core.bench", description=__doc__.splitlines()[0])
    p.add_argument("--compare-hf", action="store_true", help="measure against transformers' MusicGen")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--quick", action="store_true", help="2 s of audio instead of --duration, one timed run")
    p.add_argument("--duration", type=float, default=10.0, help="seconds of audio per request (default 10)")
    p.add_argument("--batches", type=int, nargs="+", default=[1, 4], help="batch sizes (default 1 4)")
    p.add_argument("--precisions", nargs="+", help="default: fp32 int8 int4 on CPU, fp32 bf16+graph on CUDA")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json", help="write the rows to this file")
    p.add_argument("--skip-default", action="store_true", help="leave out the embedded default model's rows")
    p.add_argument("--worker", choices=("hf", "ours"), help=argparse.SUPPRESS)
    p.add_argument("--folder", help=argparse.SUPPRESS)
    p.add_argument("--batch", type=int, default=1, help=argparse.SUPPRESS)
    p.add_argument("--frames", type=int, default=100, help=argparse.SUPPRESS)
    p.add_argument("--repeats", type=int, default=1, help=argparse.SUPPRESS)
    p.add_argument("--precision", default="fp32", help=argparse.SUPPRESS)
    p.add_argument("--sampling", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--compile", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--save", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.worker:
        print(json.dumps(worker(args.worker, args.folder, args.batch, args.frames, args.device, args.repeats,
                                args.precision, not args.sampling, args.compile, args.save)))
    elif args.compare_hf:
        precisions = args.precisions or (["fp32", "int8", "int4"] if args.device == "cpu" else ["fp32", "bf16+graph"])
        if "fp32" not in precisions:
            p.error("--precisions must include fp32 (the reference of the agreement columns)")
        precisions = ["fp32"] + [x for x in precisions if x != "fp32"]
        frames = int((2.0 if args.quick else args.duration) * 50)
        compare(args.device, frames, 1 if args.quick else 2, args.threads, args.batches, precisions, args.json,
                default_model=not args.skip_default)
    else:
        p.error("nothing to do: pass --compare-hf")


if __name__ == "__main__":
    main()
