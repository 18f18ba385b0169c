"""What every trainer needs around its loop: process/device setup (single CPU process or torchrun/DDP), autocast,
atomic checkpoints, CSV logs, and the loop's tail (`Loop`: log, validate, checkpoint, stop)."""
from __future__ import annotations

import contextlib
import csv
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Runtime:
    ddp: bool
    rank: int
    world: int
    device: torch.device
    cpu_bf16: bool = False

    @property
    def main(self) -> bool:
        return self.rank == 0

    def autocast(self):
        """bf16 autocast on GPU, and on CPU when asked (1.8x faster LM steps on avx512_bf16 CPUs); else fp32."""
        if self.device.type == "cuda" or self.cpu_bf16:
            return torch.autocast(self.device.type, torch.bfloat16)
        return contextlib.nullcontext()

    def wrap(self, module: torch.nn.Module) -> torch.nn.Module:
        return torch.nn.parallel.DistributedDataParallel(module) if self.ddp else module

    def close(self) -> None:
        if self.ddp:
            dist.destroy_process_group()


def setup(device: str | None = None, cpu_bf16: bool = False) -> Runtime:
    """Join the torchrun process group when launched by torchrun; pick the device; on CPU flush denormals (they made
    small-model training ~10x slower)."""
    ddp = "WORLD_SIZE" in os.environ
    if ddp:
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    rank, world = (dist.get_rank(), dist.get_world_size()) if ddp else (0, 1)
    device = torch.device(device or (f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}" if torch.cuda.is_available()
                                     else "cpu"))
    if device.type == "cpu":
        torch.set_flush_denormal(True)
    return Runtime(ddp, rank, world, device, cpu_bf16)


def atomic_save(obj, path: Path) -> None:
    """torch.save to a temp file in the same folder, then rename: a kill never leaves a corrupt checkpoint."""
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def append_csv(path: Path, row: dict) -> None:
    """Append one row (a header first when the file is new); floats rounded to 4 decimals. A row with columns the
    file lacks (a resumed run with a new loss term) rewrites the file with them added, empty in the older rows."""
    header = []
    if path.exists():
        with open(path, newline="") as f:
            header = next(csv.reader(f), [])
    if not set(row) <= set(header):
        rows = []
        if header:
            with open(path, newline="") as f:
                rows = list(csv.DictReader(f))
        header = list(dict.fromkeys([*header, *row]))
        with open(path, "w", newline="") as f:
            writer = csv.DictWriter(f, header)
            writer.writeheader()
            writer.writerows(rows)
    with open(path, "a", newline="") as f:
        csv.DictWriter(f, header, restval="").writerow(
            {k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()})


def log_line(prefix: str, row: dict) -> None:
    """One log line of the row's non-empty columns."""
    print(prefix + " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()
                            if v != ""), flush=True)


def resume_state(path: Path, device: torch.device) -> dict | None:
    """The checkpoint at `path` (announced), or None when there is none yet."""
    if not path.is_file():
        return None
    state = torch.load(path, map_location=device, weights_only=True)
    print(f"resumed from {path} at step {state['step']} ({state['elapsed'] / 60:.1f} min)", flush=True)
    return state


class Clock:
    """Step counter, training time (resumed runs continue their `elapsed`) and the schedule of a training loop:
    `tick()` after each optimiser step, then `every(n)`, `rate()` for logs, `checkpoint_due()` and `done`."""

    def __init__(self, step: int, elapsed: float, max_steps: int | None, max_minutes: float | None,
                 ckpt_minutes: float):
        self.step, self.elapsed = step, elapsed
        self.max_steps, self.max_minutes, self.ckpt_seconds = max_steps, max_minutes, ckpt_minutes * 60
        self._now = self._last_rate = self._last_ckpt = time.time()
        self._rate_step = step

    def tick(self) -> None:
        now = time.time()
        self.step, self.elapsed, self._now = self.step + 1, self.elapsed + now - self._now, now

    def every(self, n: int) -> bool:
        return self.step % n == 0

    def rate(self) -> float:
        """Steps per second since the previous call."""
        rate = (self.step - self._rate_step) / max(self._now - self._last_rate, 1e-9)
        self._rate_step, self._last_rate = self.step, self._now
        return rate

    @property
    def done(self) -> bool:
        return ((self.max_steps is not None and self.step >= self.max_steps)
                or bool(self.max_minutes and self.elapsed >= self.max_minutes * 60))

    def checkpoint_due(self) -> bool:
        """True at the end and every `ckpt_minutes` of wall time."""
        if self.done or self._now - self._last_ckpt > self.ckpt_seconds:
            self._last_ckpt = self._now
            return True
        return False


class Loop:
    """The tail every trainer's step ends with, on top of a `Clock`: log a train.csv row every `log_every` steps,
    validate into valid.csv every `val_every`, write `run_dir/latest.pt` when due, stop when done.

    `measure()` -> validation metrics; `state()` -> the checkpoint's model and optimiser parts (step, elapsed and
    `config` are added); both run on the main process only."""

    def __init__(self, rt: Runtime, run_dir: Path, clock: Clock, config: dict, log_every: int, val_every: int,
                 measure: Callable[[], dict], state: Callable[[], dict]):
        self.rt, self.run_dir, self.clock, self.config = rt, run_dir, clock, config
        self.log_every, self.val_every, self.measure, self.state = log_every, val_every, measure, state
        self.metrics: dict = {}

    def validate(self) -> None:
        row = {"step": self.clock.step, "minutes": self.clock.elapsed / 60, **self.measure()}
        append_csv(self.run_dir / "valid.csv", row)
        log_line("valid ", row)
        self.metrics = row

    def end_step(self, train_row: Callable[[], dict], after_validation: Callable[[int], None] | None = None) -> bool:
        """After an optimiser step: tick, log `train_row()`, validate, `after_validation(step)` (e.g. samples),
        checkpoint when due. True when training is done."""
        clock, main = self.clock, self.rt.main
        clock.tick()
        if main and clock.every(self.log_every):
            row = {"step": clock.step, "minutes": clock.elapsed / 60, **train_row(), "steps_per_s": clock.rate()}
            append_csv(self.run_dir / "train.csv", row)
            log_line("", row)
        if main and clock.every(self.val_every):
            self.validate()
        if main and after_validation is not None:
            after_validation(clock.step)
        if clock.checkpoint_due() and main:
            atomic_save({**self.state(), "step": clock.step, "elapsed": clock.elapsed, "config": self.config},
                        self.run_dir / "latest.pt")
        return clock.done

    def finish(self) -> dict[str, float]:
        """A last validation, then leave the process group -> the last validation's metrics."""
        if self.rt.main:
            self.validate()
        self.rt.close()
        return {k: v for k, v in self.metrics.items() if k not in ("step", "minutes")}
