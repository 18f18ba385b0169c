"""Interleaving patterns: exact audiocraft layouts, build/revert round trips, logits reverting, errors."""
import math
import re

import pytest
import torch
from hypothesis import given, settings, strategies as st

from musicgen_core.patterns import get_pattern

# (name, kwargs, n_q values): every provider, and audiocraft's own test configurations
CONFIGS = [
    ("parallel", {}, (1, 2, 4, 8)),
    ("parallel", {"empty_initial": 2}, (1, 4)),
    ("delay", {}, (1, 2, 4, 8)),
    ("delay", {"delays": "ones"}, (2, 4, 8)),  # [0, 1, 1, ...]
    ("delay", {"empty_initial": 1, "flatten_first": 1}, (1, 2, 4, 8)),
    ("delay", {"empty_initial": -1}, (1, 2, 4)),
    ("delay", {"flatten_first": 3}, (2, 4)),
    ("unroll", {}, (1, 2, 4, 8)),
    ("unroll", {"flattening": "ones"}, (2, 4, 8)),
    ("unroll", {"flattening": "ones", "delays": "fives"}, (2, 4, 8)),  # [0, 5, 5, ...]
    ("unroll", {"delays": "fives"}, (2, 4)),
    ("coarse_first", {}, (2, 4, 8)),
    ("coarse_first", {"delays": "range"}, (2, 4, 8)),
    ("musiclm", {}, (2, 4, 8)),
    ("musiclm", {"group_by": 1}, (1, 4)),
]
CASES = [(name, kw, n_q) for name, kw, qs in CONFIGS for n_q in qs]
IDS = [f"{name}-{kw}-K{n_q}" for name, kw, n_q in CASES]


def make(name, kw, n_q):
    lengths = {"coarse_first": n_q - 1}
    expand = {"ones": lambda n: [0] + [1] * (n - 1), "fives": lambda n: [0] + [5] * (n - 1), "range": range}
    kw = {k: list(expand[v](lengths.get(name, n_q))) if isinstance(v, str) else v for k, v in kw.items()}
    return get_pattern(name, n_q, **kw)


def codes_for(n_q, T, B=2, seed=0):
    return torch.randint(0, 2048, (B, n_q, T), generator=torch.Generator().manual_seed(seed))


def valid_steps(pattern, T, valid_only):
    layout = pattern.layout(T)
    return layout[:pattern.num_steps(T, True)] if valid_only else layout


def naive_build(pattern, codes, special, valid_only=False):
    """audiocraft's test reference: for each step s and (t, q) in layout[s], seq[:, q, s] = codes[:, q, t]."""
    B, K, T = codes.shape
    steps = valid_steps(pattern, T, valid_only)
    seq = torch.full((B, K, len(steps)), special, dtype=codes.dtype)
    for s, coords in enumerate(steps):
        for t, q in coords:
            if t < T:
                seq[:, q, s] = codes[:, q, t]
    return seq


def naive_revert_logits(pattern, logits, T, valid_only):
    B, K, S, card = logits.shape
    steps = valid_steps(pattern, T, valid_only)
    steps = steps[1:] if steps[0] == () else steps  # the output at step s predicts layout[s + 1]
    out = torch.full((B, K, T, card), math.nan)
    for s, coords in enumerate(steps[:S]):
        for t, q in coords:
            if t < T:
                out[:, q, t] = logits[:, q, s]
    return out


# ---- hand-checked layouts (codes numbered 1.. row-wise, special = 0) ----------------------------------------------

def numbered(n_q, T):
    return torch.arange(1, n_q * T + 1).view(1, n_q, T)


HAND = [
    ("delay", 4, 3, {}, [[0, 1, 2, 3, 0, 0, 0], [0, 0, 4, 5, 6, 0, 0], [0, 0, 0, 7, 8, 9, 0], [0, 0, 0, 0, 10, 11, 12]]),
    ("parallel", 2, 3, {}, [[0, 1, 2, 3], [0, 4, 5, 6]]),
    ("unroll", 4, 3, {}, [[0, 1, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0], [0, 0, 4, 0, 0, 0, 5, 0, 0, 0, 6, 0, 0],
                          [0, 0, 0, 7, 0, 0, 0, 8, 0, 0, 0, 9, 0], [0, 0, 0, 0, 10, 0, 0, 0, 11, 0, 0, 0, 12]]),
    # steps: [], (0,0) (1,0) (2,0)* (3,0)* (4,0)*, then per key k >= 5 the sorted entries (k-5,1) (k-5,2) (k,0)*
    ("unroll", 3, 2, {"delays": [0, 5, 5]}, [[0, 1, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0, 3, 0, 0, 4, 0, 0],
                                             [0, 0, 0, 0, 0, 0, 0, 5, 0, 0, 6, 0]]),
    # steps: [], [] (empty_initial), t=0 flattened (0,0) (0,1) (0,2), then s=1..4: (s-q, q) for s-q >= 1
    ("delay", 3, 3, {"empty_initial": 1, "flatten_first": 1}, [[0, 0, 1, 0, 0, 2, 3, 0, 0], [0, 0, 0, 4, 0, 0, 5, 6, 0],
                                                              [0, 0, 0, 0, 7, 0, 0, 8, 9]]),
    ("delay", 2, 3, {"empty_initial": -1}, [[1, 2, 3, 0], [0, 4, 5, 6]]),
    # steps: [], (0,0) (1,0), then s=0..2: (s, 1) and (s-1, 2)
    ("coarse_first", 3, 2, {"delays": [0, 1]}, [[0, 1, 2, 0, 0, 0], [0, 0, 0, 3, 4, 0], [0, 0, 0, 0, 5, 6]]),
    ("musiclm", 4, 2, {}, [[0, 1, 0, 2, 0, 0, 0, 0, 0], [0, 0, 3, 0, 4, 0, 0, 0, 0],
                           [0, 0, 0, 0, 0, 5, 0, 6, 0], [0, 0, 0, 0, 0, 0, 7, 0, 8]]),
    ("parallel", 2, 2, {"empty_initial": 1}, [[0, 0, 1, 2], [0, 0, 3, 4]]),
    # inner step 1 has no codebook: an empty step per timestep, sorted before the codes of its key
    ("unroll", 2, 2, {"flattening": [0, 2]}, [[0, 0, 1, 0, 0, 2, 0], [0, 0, 0, 3, 0, 0, 4]]),
]


@pytest.mark.parametrize("name,n_q,T,kw,expected", HAND, ids=[f"{h[0]}-{h[3]}" for h in HAND])
def test_hand_checked_layouts(name, n_q, T, kw, expected):
    pattern = get_pattern(name, n_q, **kw)
    codes = numbered(n_q, T)
    seq, mask = pattern.build(codes, 0)
    assert seq[0].tolist() == expected
    assert torch.equal(seq, naive_build(pattern, codes, 0))
    assert torch.equal(mask, seq[0] != 0)
    assert pattern.num_steps(T) == len(expected[0])
    back, back_mask = pattern.revert(seq, 0)
    assert torch.equal(back, codes) and back_mask.all()


def test_delay_valid_steps_keep_first_T_plus_1_columns():
    seq, mask = get_pattern("delay", 4).build(numbered(4, 3), 0, keep_only_valid_steps=True)
    assert seq[0].tolist() == [[0, 1, 2, 3], [0, 0, 4, 5], [0, 0, 0, 7], [0, 0, 0, 0]]
    assert torch.equal(mask, seq[0] != 0)


@pytest.mark.parametrize("n_q,T", [(1, 5), (4, 3), (4, 16), (8, 72)])
def test_sequence_lengths(n_q, T):
    assert get_pattern("parallel", n_q).num_steps(T) == T + 1
    assert get_pattern("delay", n_q).num_steps(T) == T + n_q
    assert get_pattern("delay", n_q, empty_initial=2, flatten_first=2).num_steps(T) == T + n_q + 2 + 2 * (n_q - 1)
    assert get_pattern("unroll", n_q).num_steps(T) == n_q * T + 1
    assert get_pattern("musiclm", n_q, group_by=1).num_steps(T) == n_q * T + 1
    if n_q > 1:
        delays = [0] + [3] * (n_q - 2)
        assert get_pattern("coarse_first", n_q, delays=delays).num_steps(T) == 1 + 2 * T + max(delays)
        assert get_pattern("unroll", n_q, delays=[0] + [5] * (n_q - 1)).num_steps(T) == n_q * T + 1 + 5
    if n_q % 2 == 0:
        assert get_pattern("musiclm", n_q).num_steps(T) == n_q * T + 1


@pytest.mark.parametrize("n_q", [1, 4, 32])
@pytest.mark.parametrize("T", [0, 1, 16, 100])
def test_delay_layout_like_audiocraft(n_q, T):
    for delays in (range(n_q), [0] + [1] * (n_q - 1), [0] + [4] * (n_q - 1)):
        pattern = get_pattern("delay", n_q, delays=delays)
        assert len(pattern.layout(T)) == T + max(delays) + 1
        assert pattern.max_delay == max(delays)
    for s, coords in enumerate(get_pattern("delay", n_q).layout(T)):
        assert all(c.t == s - c.q - 1 for c in coords)
    parallel = get_pattern("parallel", n_q)
    assert parallel.max_delay == 0 and parallel.num_steps(T, keep_only_valid_steps=True) == T + 1
    for s, coords in enumerate(parallel.layout(T)):
        assert [c.q for c in coords] == list(range(n_q if s else 0)) and all(c.t == s - 1 for c in coords)


@pytest.mark.parametrize("delays,max_delay", [([0, 1, 2, 3], 3), ([0, 1, 1, 1], 1), ([0, 3, 3, 3], 3), ([0, 3], 3)])
def test_max_delay(delays, max_delay):
    pattern = get_pattern("delay", len(delays), delays=delays)
    assert pattern.max_delay == max_delay
    assert pattern.num_steps(10, keep_only_valid_steps=True) == pattern.num_steps(10) - max_delay
    assert get_pattern("unroll", 3, flattening=[0, 1, 1], delays=[0, 5, 5]).max_delay == 5


@pytest.mark.parametrize("name,kw,n_q", CASES, ids=IDS)
def test_layouts_are_valid(name, kw, n_q):
    """audiocraft's _validate_layout: one coord per codebook per step, t non-decreasing over s, each code once."""
    layout = make(name, kw, n_q).layout(7)
    assert layout[0] == () or kw.get("empty_initial", 0) < 0
    last, seen = [-1] * n_q, set()
    for coords in layout:
        assert len({c.q for c in coords}) == len(coords)
        for c in coords:
            assert c.t >= last[c.q] and c not in seen
            last[c.q] = c.t
            seen.add(c)
    assert {(t, q) for t in range(7) for q in range(n_q)} <= seen


@pytest.mark.parametrize("T", [1, 5, 16, 72])
@pytest.mark.parametrize("name,kw,n_q", CASES, ids=IDS)
def test_build_revert_against_naive(name, kw, n_q, T):
    pattern = make(name, kw, n_q)
    codes = codes_for(n_q, T)
    for valid_only in (False, True):
        seq, mask = pattern.build(codes, 2048, keep_only_valid_steps=valid_only)
        assert torch.equal(seq, naive_build(pattern, codes, 2048, valid_only))
        assert torch.equal(mask, seq[0] != 2048) and mask.shape == (n_q, pattern.num_steps(T, valid_only))
        assert torch.equal(pattern.valid_step_mask(T, valid_only), mask)
    seq, _ = pattern.build(codes, 2048)
    back, mask = pattern.revert(seq, 2048)
    assert torch.equal(back, codes) and mask.all()


@pytest.mark.parametrize("T", [1, 16, 72])
@pytest.mark.parametrize("name,kw,n_q", CASES, ids=IDS)
def test_revert_logits_against_naive(name, kw, n_q, T):
    pattern = make(name, kw, n_q)
    for valid_only in (False, True):
        S = pattern.num_steps(T, valid_only)
        logits = torch.randn(2, n_q, S, 3)  # [B, K, S, card]
        out, mask = pattern.revert_logits(logits, keep_only_valid_steps=valid_only)
        assert out.shape == (2, n_q, T, 3) and mask.shape == (n_q, T)
        torch.testing.assert_close(out, naive_revert_logits(pattern, logits, T, valid_only), equal_nan=True)
        assert torch.equal(mask, ~out[0, :, :, 0].isnan())


def test_revert_logits_training_mask_for_delay():
    """compute_predictions: build with valid steps only (S = T + 1); the last q timesteps of codebook q are masked."""
    pattern, T = get_pattern("delay", 4), 10
    seq, _ = pattern.build(codes_for(4, T), 2048, keep_only_valid_steps=True)
    assert seq.shape[-1] == T + 1
    logits = torch.randn(2, 4, T + 1, 8, requires_grad=True)
    out, mask = pattern.revert_logits(logits)
    assert out.shape == (2, 4, T, 8)
    for q in range(4):
        assert mask[q].tolist() == [True] * (T - q) + [False] * q
        torch.testing.assert_close(out[:, q, :T - q], logits[:, q, q:T])  # step s + 1 = t + q + 1 holds (t, q)
    out.nan_to_num().sum().backward()
    assert logits.grad is not None


def test_first_step_with_timestep():
    assert [get_pattern("delay", 4).first_step_with_timestep(t) for t in range(4)] == [1, 2, 3, 4]
    assert get_pattern("delay", 4, empty_initial=2).first_step_with_timestep(5) == 8
    assert get_pattern("unroll", 4).first_step_with_timestep(3) == 13
    assert get_pattern("musiclm", 4).first_step_with_timestep(3) == 7
    for name, kw, n_q in CASES:  # the first step with t does not depend on the total length T > t
        pattern = make(name, kw, n_q)
        for t in (0, 3):
            first = next(s for s, coords in enumerate(pattern.layout(12)) if any(c.t == t for c in coords))
            assert pattern.first_step_with_timestep(t) == first


def test_special_token_and_dtypes():
    pattern = get_pattern("delay", 4)
    codes = torch.full((1, 4, 5), -1)  # generation: unknown codes are -1, out-of-pattern positions 2048
    seq, mask = pattern.build(codes, 2048)
    assert torch.equal(seq[0] == -1, mask) and (seq[0][~mask] == 2048).all()
    seq[seq == -1] = 7
    back, _ = pattern.revert(seq, -1)
    assert (back == 7).all()


def test_errors():
    pattern = get_pattern("delay", 4)
    for K in (0, 3, 5):
        with pytest.raises(ValueError, match="n_q=4"):
            pattern.build(torch.zeros(1, K, 8, dtype=torch.long), 2048)
        with pytest.raises(ValueError, match="n_q=4"):
            pattern.revert(torch.zeros(1, K, 12, dtype=torch.long), 2048)
    with pytest.raises(ValueError):
        pattern.build(torch.zeros(4, 8, dtype=torch.long), 2048)
    for call, what, x in [(pattern.build, "codes [B, K, T]", torch.zeros(1, 3, 8, dtype=torch.long)),
                          (pattern.revert, "seq [B, K, S]", torch.zeros(1, 3, 8, dtype=torch.long)),
                          (pattern.revert_logits, "logits [B, K, S, card]", torch.zeros(1, 4, 8))]:
        message = f"delay pattern with n_q=4 expects {what}, got shape {tuple(x.shape)}"
        with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
            call(x) if call is pattern.revert_logits else call(x, 2048)
    codes, mask = pattern.revert(torch.zeros(1, 4, pattern.num_steps(0), dtype=torch.long), 2048)
    assert codes.shape == (1, 4, 0) and mask.shape == (4, 0)  # the shortest sequence holds no timestep
    with pytest.raises(ValueError, match="not a sequence length"):
        pattern.revert(torch.zeros(1, 4, 3, dtype=torch.long), 2048)  # S >= 4 for delay with 4 codebooks
    with pytest.raises(ValueError, match="not a sequence length"):
        get_pattern("unroll", 4).revert(torch.zeros(1, 4, 10, dtype=torch.long), 2048)  # S = 4T + 1
    with pytest.raises(ValueError, match="not a valid sequence length"):
        get_pattern("musiclm", 4).revert_logits(torch.zeros(1, 4, 4, 2))
    bad = [("nope", 4, {}, "unknown pattern 'nope'; expected one of ['coarse_first', 'delay', 'musiclm', 'parallel', "
                           "'unroll']"),
           ("delay", 4, {"delays": [0, 1, 2]}, "delay delays must be 4 sorted non-negative ints, got (0, 1, 2)"),
           ("delay", 4, {"delays": [0, 2, 1, 3]}, "delay delays must be 4 sorted non-negative ints, got (0, 2, 1, 3)"),
           ("delay", 2, {"delays": [-1, 0]}, "delay delays must be 2 sorted non-negative ints, got (-1, 0)"),
           ("unroll", 2, {"flattening": [1, 0]}, "unroll flattening must be 2 sorted non-negative ints, got (1, 0)"),
           ("delay", 4, {"foo": 1}, "pattern 'delay' got unexpected arguments ['foo']; it accepts ['delays', "
                                    "'empty_initial', 'flatten_first']"),
           ("parallel", 4, {"delays": [0] * 4}, "pattern 'parallel' got unexpected arguments ['delays']; it accepts "
                                                "['empty_initial']"),
           ("delay", 0, {}, "pattern 'delay' needs n_q >= 1, got 0"),
           ("coarse_first", 1, {}, "pattern 'coarse_first' needs n_q >= 2, got 1"),
           ("musiclm", 3, {}, "musiclm group_by=2 must divide n_q=3"),
           ("musiclm", 4, {"group_by": 0}, "musiclm group_by must be an int >= 1, got 0"),
           ("unroll", 3, {"flattening": [0, 1, 1], "delays": [0, 0, 1]},
            "unroll: codebooks flattened to the same inner step must have equal delays"),
           ("delay", 2, {"flatten_first": -1}, "delay flatten_first must be an int >= 0, got -1"),
           ("delay", 2, {"empty_initial": 1.5}, "delay empty_initial must be an int, got 1.5")]
    for name, n_q, kw, message in bad:
        with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
            get_pattern(name, n_q, **kw)
    assert get_pattern("coarse_first", 2).n_q == 2  # the smallest coarse_first
    delay = get_pattern("delay", 4)  # the mask `build` returns, all steps by default
    mask = delay.valid_step_mask(3)
    assert mask.shape == (4, 7) and torch.equal(mask, delay.build(numbered(4, 3), 0)[1])


def test_patterns_are_values_and_indices_cached():
    a, b = get_pattern("delay", 4, delays=[0, 1, 2, 3]), get_pattern("delay", 4)
    assert a == b and hash(a) == hash(b)
    _, mask_a = a.build(codes_for(4, 9), 2048)
    _, mask_b = b.build(codes_for(4, 9), 2048)
    assert mask_a is mask_b


@pytest.mark.parametrize("device", ["cpu"] + (["cuda"] if torch.cuda.is_available() else []))
def test_device(device):
    pattern, codes = get_pattern("delay", 4), codes_for(4, 6).to(device)
    seq, mask = pattern.build(codes, 2048)
    assert seq.device == codes.device and mask.device == codes.device
    assert torch.equal(pattern.revert(seq, 2048)[0], codes)


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_delay_roundtrip_property(data):
    K = data.draw(st.integers(1, 6), label="K")
    T = data.draw(st.integers(1, 40), label="T")
    delays = sorted(data.draw(st.lists(st.integers(0, 8), min_size=K, max_size=K), label="delays"))
    flatten_first = data.draw(st.integers(0, 3), label="flatten_first")
    empty_initial = data.draw(st.integers(-1, 2), label="empty_initial")
    pattern = get_pattern("delay", K, delays=delays, flatten_first=flatten_first, empty_initial=empty_initial)
    codes = codes_for(K, T, B=1, seed=T)
    seq, mask = pattern.build(codes, -1)
    assert torch.equal(seq, naive_build(pattern, codes, -1))
    back, back_mask = pattern.revert(seq, -1)
    assert torch.equal(back, codes) and back_mask.all()
    valid, _ = pattern.build(codes, -1, keep_only_valid_steps=True)
    assert pattern.revert(valid, -1, keep_only_valid_steps=True)[0].shape == codes.shape
