"""Codebook interleaving patterns (MusicGen §2.2, Copet et al. 2023, "Simple and Controllable Music Generation").

A pattern lays the K parallel codec streams codes[B, K, T] out as one sequence seq[B, K, S] for a single
autoregressive LM: layout[s] lists the (t, q) coordinates placed at step s, every other position holds the special
token, and step 0 is all-special (except `delay` with `empty_initial < 0`). The layouts are exactly audiocraft's
(`codebooks_patterns.py`, coordinates with t >= T included and left special): official checkpoints rely on them.

The default `delay` pattern, K = 4: codebook q at step s holds timestep t = s - 1 - q; '.' = special; S = T + K:

    step s   0    1    2    3    4   ...   T    T+1  T+2  T+3
    q = 0    .   t0   t1   t2   t3   ...  tT-1   .    .    .
    q = 1    .    .   t0   t1   t2   ...  tT-2 tT-1   .    .
    q = 2    .    .    .   t0   t1   ...  tT-3 tT-2 tT-1   .
    q = 3    .    .    .    .   t0   ...  tT-4 tT-3 tT-2 tT-1

"Valid" steps (`keep_only_valid_steps`, used for training) drop the last `max_delay` steps: S = T + 1 for `delay`,
so the last q timesteps of codebook q are never trained.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import NamedTuple

import torch


class Coord(NamedTuple):
    t: int  # timestep
    q: int  # codebook


Layout = tuple[tuple[Coord, ...], ...]  # layout[s] = the coordinates placed at sequence step s


# ---- Layouts: pure functions (n_q, T, **params) -> Layout, one per audiocraft provider ----------------------------

def delay_layout(n_q: int, T: int, delays: tuple[int, ...], flatten_first: int = 0, empty_initial: int = 0) -> Layout:
    """Codebook q shifted right by delays[q] steps (MusicGen's default, delays = 0..K-1). The first `flatten_first`
    timesteps are fully flattened (one step per code); `empty_initial` extra all-special steps follow step 0
    (`empty_initial < 0` drops step 0 itself)."""
    out = [] if empty_initial < 0 else [()]
    out += [()] * max(empty_initial, 0)
    out += [(Coord(t, q),) for t in range(min(T, flatten_first)) for q in range(n_q)]
    for s in range(flatten_first, T + max(delays)):
        out.append(tuple(Coord(s - d, q) for q, d in enumerate(delays) if s - d >= flatten_first))
    return tuple(out)


def parallel_layout(n_q: int, T: int, empty_initial: int = 0) -> Layout:
    """All codebooks of a timestep in the same step: the delay pattern with zero delays, S = T + 1."""
    return delay_layout(n_q, T, (0,) * n_q, 0, empty_initial)


def unroll_layout(n_q: int, T: int, flattening: tuple[int, ...], delays: tuple[int, ...]) -> Layout:
    """Each timestep unrolled into max(flattening) + 1 inner steps; codebook q goes to inner step flattening[q]
    (codebooks sharing one are emitted together) and is delayed by delays[q] timesteps. As in audiocraft, the steps
    are the (t + delay, coords) entries sorted as tuples, so ties are broken by the coordinates ([] first)."""
    groups = [[q for q, f in enumerate(flattening) if f == inner] for inner in range(max(flattening) + 1)]
    end = T + max(delays)
    entries: list[tuple[int, tuple[Coord, ...]]] = [(-1, ())]
    for t in range(end):
        for qs in groups:  # the codebooks of each inner step
            if not qs:
                entries.append((t, ()))
            elif t + delays[qs[0]] < end:
                entries.append((t + delays[qs[0]], tuple(Coord(t, q) for q in qs)))
    return tuple(coords for _, coords in sorted(entries))


def coarse_first_layout(n_q: int, T: int, delays: tuple[int, ...]) -> Layout:
    """All of codebook 0 first (one step per timestep), then codebooks 1..K-1 in parallel with delays[q - 1].
    S = 1 + 2T + max_delay; generation must always produce the full length."""
    out = [()] + [(Coord(t, 0),) for t in range(T)]
    for s in range(T + max(delays)):
        out.append(tuple(Coord(s - d, q + 1) for q, d in enumerate(delays) if s >= d))
    return tuple(out)


def musiclm_layout(n_q: int, T: int, group_by: int) -> Layout:
    """Groups of `group_by` codebooks one after the other, each fully flattened over time. S = 1 + K * T."""
    steps = [(Coord(t, q),) for g in range(0, n_q, group_by) for t in range(T) for q in range(g, g + group_by)]
    return ((),) + tuple(steps)


_LAYOUTS = {"parallel": parallel_layout, "delay": delay_layout, "unroll": unroll_layout,
            "coarse_first": coarse_first_layout, "musiclm": musiclm_layout}
_DEFAULTS = {  # audiocraft's provider defaults
    "parallel": lambda n_q: dict(empty_initial=0),
    "delay": lambda n_q: dict(delays=tuple(range(n_q)), flatten_first=0, empty_initial=0),
    "unroll": lambda n_q: dict(flattening=tuple(range(n_q)), delays=(0,) * n_q),
    "coarse_first": lambda n_q: dict(delays=(0,) * (n_q - 1)),
    "musiclm": lambda n_q: dict(group_by=2),
}


def get_pattern(name: str, n_q: int, **kwargs) -> Pattern:
    """The pattern `name` for n_q codebooks, with audiocraft's provider keyword arguments (None = default)."""
    if name not in _LAYOUTS:
        raise ValueError(f"unknown pattern {name!r}; expected one of {sorted(_LAYOUTS)}")
    if not isinstance(n_q, int) or n_q < (2 if name == "coarse_first" else 1):
        raise ValueError(f"pattern {name!r} needs n_q >= {2 if name == 'coarse_first' else 1}, got {n_q!r}")
    params = _DEFAULTS[name](n_q)
    if unknown := sorted(set(kwargs) - set(params)):
        raise ValueError(f"pattern {name!r} got unexpected arguments {unknown}; it accepts {sorted(params)}")
    params.update({k: tuple(v) if hasattr(v, "__iter__") else v for k, v in kwargs.items() if v is not None})
    for key in {"delays", "flattening"} & set(params):
        v, length = params[key], n_q - (name == "coarse_first")
        if len(v) != length or any(not isinstance(x, int) or x < 0 for x in v) or list(v) != sorted(v):
            raise ValueError(f"{name} {key} must be {length} sorted non-negative ints, got {v!r}")
    for key, low in (("flatten_first", 0), ("group_by", 1), ("empty_initial", None)):
        if key in params and (not isinstance(params[key], int) or (low is not None and params[key] < low)):
            raise ValueError(f"{name} {key} must be an int{'' if low is None else f' >= {low}'}, got {params[key]!r}")
    if name == "musiclm" and n_q % params["group_by"]:
        raise ValueError(f"musiclm group_by={params['group_by']} must divide n_q={n_q}")
    if name == "unroll" and len(set(zip(params["flattening"], params["delays"]))) != len(set(params["flattening"])):
        raise ValueError("unroll: codebooks flattened to the same inner step must have equal delays")
    return Pattern(name, n_q, tuple(sorted(params.items())))


# ---- Pattern: the layout as a function of T, plus vectorised build / revert (gathers with cached flat indices) -----

@dataclass(frozen=True)
class Pattern:
    """An interleaving pattern, independent of the number of timesteps T (make one with `get_pattern`).

    Returned masks are cached and shared between calls: treat them as read-only."""

    name: str
    n_q: int
    params: tuple[tuple[str, object], ...]  # sorted keyword arguments of the layout function

    def layout(self, T: int) -> Layout:
        """audiocraft's `Pattern.layout` for T timesteps (layout[s] = coords at step s)."""
        return _layout(self, T)

    @property
    def max_delay(self) -> int:
        """audiocraft's `Pattern.max_delay`: max(delays) - min(delays) (less for tiny T with `flatten_first`)."""
        delays = dict(self.params).get("delays", (0,))
        return max(delays) - min(delays)

    def num_steps(self, T: int, keep_only_valid_steps: bool = False) -> int:
        """S for T timesteps: len(layout) including step 0, or len(valid_layout)."""
        return len(_steps(self, T, keep_only_valid_steps))

    def first_step_with_timestep(self, t: int) -> int:
        """First step holding a code of timestep t; generation with a prompt of t frames starts sampling there
        (t + 1 for `delay`). The layout prefix up to t does not depend on the total length, so layout(t + 1) is used."""
        return next(s for s, coords in enumerate(self.layout(t + 1)) if any(c.t == t for c in coords))

    def valid_step_mask(self, T: int, keep_only_valid_steps: bool = False, device=None) -> torch.Tensor:
        """[K, S] bool: True where a real code sits (the mask returned by `build`)."""
        return _build_index(self, T, keep_only_valid_steps, torch.device(device or "cpu"))[1]

    def build(self, codes: torch.Tensor, special_token: int,
              keep_only_valid_steps: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """codes [B, K, T] -> (seq [B, K, S], mask [K, S]); positions without a code hold `special_token`."""
        B, K, T = self._check(codes, 3, "codes [B, K, T]")
        index, mask = _build_index(self, T, keep_only_valid_steps, codes.device)  # [K, S]
        return _gather(codes.reshape(B, K * T), index.view(-1), special_token).view(B, K, -1), mask

    def revert(self, seq: torch.Tensor, special_token: int,
               keep_only_valid_steps: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """seq [B, K, S] -> (codes [B, K, T], mask [K, T]), T derived from S; codes never placed get `special_token`."""
        B, K, S = self._check(seq, 3, "seq [B, K, S]")
        index, mask = _revert_index(self, S, keep_only_valid_steps, False, seq.device)  # [K, T]
        return _gather(seq.reshape(B, K * S), index.view(-1), special_token).view(B, K, -1), mask

    def revert_logits(self, logits: torch.Tensor, special: float = float("nan"),
                      keep_only_valid_steps: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """logits [B, K, S, card] -> (logits [B, K, T, card], mask [K, T]). The output at step s predicts step s + 1,
        so it is mapped to the coords of layout[s + 1] (audiocraft's `is_model_output`)."""
        B, K, S, card = self._check(logits, 4, "logits [B, K, S, card]")
        index, mask = _revert_index(self, S, keep_only_valid_steps, True, logits.device)  # [K, T]
        out = _gather(logits.reshape(B, K * S, card), index.view(-1), special)  # [B, K * T, card]
        return out.view(B, K, -1, card), mask

    def _check(self, x: torch.Tensor, ndim: int, what: str) -> torch.Size:
        if x.dim() != ndim or x.shape[1] != self.n_q:
            raise ValueError(f"{self.name} pattern with n_q={self.n_q} expects {what}, got shape {tuple(x.shape)}")
        return x.shape


def _gather(x: torch.Tensor, index: torch.Tensor, special) -> torch.Tensor:
    """x[B, N, ...] gathered along dim 1 by index[M]; index N selects the special value."""
    pad = x.new_full((x.shape[0], 1, *x.shape[2:]), special)
    return torch.cat([x, pad], dim=1)[:, index]  # [B, M, ...]


@lru_cache(maxsize=64)
def _layout(pattern: Pattern, T: int) -> Layout:
    if T < 0:
        raise ValueError(f"T must be >= 0, got {T}")
    return _LAYOUTS[pattern.name](pattern.n_q, T, **dict(pattern.params))


def _steps(pattern: Pattern, T: int, valid_only: bool) -> Layout:
    """The layout, or audiocraft's valid_layout: without the last max_delay steps (max_delay computed per T)."""
    layout = _layout(pattern, T)
    if not valid_only:
        return layout
    max_delay = max((c.t + 1 for coords in layout[1:] for c in coords), default=0) - T
    return layout[:len(layout) - max_delay]


def _timesteps(pattern: Pattern, S: int, valid_only: bool) -> int:
    """The largest T whose layout has S steps (S(T) is non-decreasing: binary search over 0 <= T <= S)."""
    lo, hi = 0, S
    while lo < hi:
        mid = (lo + hi + 1) // 2
        lo, hi = (mid, hi) if len(_steps(pattern, mid, valid_only)) <= S else (lo, mid - 1)
    if len(_steps(pattern, lo, valid_only)) != S:
        raise ValueError(f"S={S} is not a {'valid ' * valid_only}sequence length of the {pattern.name} pattern "
                         f"(n_q={pattern.n_q}) for any number of timesteps")
    return lo


def _coords(steps: Layout, T: int, skip: int = 0) -> tuple[torch.Tensor, ...]:
    """Long tensors (q, s, t) over every coord with t < T, steps numbered from layout[skip]."""
    rows = [(c.q, s, c.t) for s, coords in enumerate(steps[skip:]) for c in coords if c.t < T]
    return torch.tensor(rows, dtype=torch.long).view(-1, 3).unbind(1)


def _flat_index(K: int, size: int, N: int, q, pos, src, device) -> tuple[torch.Tensor, torch.Tensor]:
    """index[K, size] = q * N + src at (q, pos), else K * N (the appended special); mask = where a code sits."""
    index = torch.full((K, size), K * N, dtype=torch.long)
    index[q, pos] = q * N + src
    return index.to(device), (index < K * N).to(device)


@lru_cache(maxsize=128)
def _build_index(pattern: Pattern, T: int, valid_only: bool, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """[K, S] gather index into codes [B, K * T + 1]: (t, q) in layout[s] -> q * T + t."""
    steps = _steps(pattern, T, valid_only)
    q, s, t = _coords(steps, T)
    return _flat_index(pattern.n_q, len(steps), T, q, s, t, device)


@lru_cache(maxsize=128)
def _revert_index(pattern: Pattern, S: int, valid_only: bool, model_output: bool,
                  device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """[K, T] gather index into seq [B, K * S + 1]: (t, q) in layout[s] -> q * S + s. For model outputs an
    all-special step 0 is dropped, so the output at step s maps to the coords of layout[s + 1]."""
    T = _timesteps(pattern, S, valid_only)
    steps = _steps(pattern, T, valid_only)
    q, s, t = _coords(steps, T, skip=int(model_output and steps[0] == ()))
    return _flat_index(pattern.n_q, T, S, q, t, s, device)
