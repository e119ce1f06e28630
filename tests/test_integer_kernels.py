"""The integer kernels against independent references: analytic LIF responses, naive
Python-int roundings, a χ² test of the hash, naive int64 loops for the exact products.

Every reference here is written in the test (Python ints, numpy int64, a closed form);
none comes from a previous run of the code under test.
"""

from __future__ import annotations

import math
from fractions import Fraction
from statistics import NormalDist

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from quantization.backend import (
    exact_float_dtype,
    int_conv2d,
    int_conv2d_weight,
    int_linear,
    int_max_pool2d,
    int_outer_sum,
    int_sum_pool2d,
)
from quantization.kernels import (
    hash_uniform,
    psi_lookup,
    round_shift,
    stochastic_noise,
    stream_key,
    trace_int_step,
    weight_update,
)
from quantization.learning_formats import PSI_BITS, psi_frac_for, psi_table
from quantization.loihi import (
    UV_LIMIT,
    LIFFixedParams,
    LIFFixedState,
    decay_toward_zero,
    lif_int_step,
)
from stllr.surrogates import get_surrogate

# ---------------------------------------------------------------------------------------
# Integer LIF vs analytic responses
# ---------------------------------------------------------------------------------------


def _run_lif(inputs, p: LIFFixedParams):
    """Run the integer LIF on a list of scalar inputs; returns (spikes, v, u, v_centred)."""
    zero = np.zeros(1, dtype=np.int64)
    state = LIFFixedState(zero, zero)
    spikes, vs, us, vcs = [], [], [], []
    for a in inputs:
        s, v_c, state = lif_int_step(state, np.array([a], dtype=np.int64), p)
        spikes.append(bool(s[0]))
        vs.append(int(state.v[0]))
        us.append(int(state.u[0]))
        vcs.append(int(v_c[0]))
    return spikes, vs, us, vcs


@pytest.mark.parametrize(
    ("a", "vth", "steps"),
    [(1, 1, 50), (1, 3, 50), (2, 3, 37), (5, 7, 64), (7, 7, 20), (3, 100, 500), (13, 29, 211)],
)
def test_integrate_and_fire_spike_count_is_analytic(a, vth, steps):
    """dv = 0 (no leak), du = 4095 (no current memory), soft reset, no bias.

    Each step adds ``A = a << 6`` to ``v``; a spike fires when ``v > Θ`` (``Θ = vth << 6``)
    and subtracts ``Θ``. With ``0 < A ≤ Θ`` at most one spike fires per step (``v ≤ Θ``
    after every step, so ``v + A ≤ 2Θ``), hence after ``t`` steps ``v_t = t·A − n_t·Θ`` with
    ``v_t ∈ (0, Θ]``: ``n_t`` is the largest integer ``n`` with ``n·Θ < t·A``, i.e.
    ``n_t = ⌈t·A/Θ⌉ − 1``. (The state never approaches the 24-bit limit: ``v ≤ 2Θ``.)
    """
    big_a, theta = a << 6, vth << 6
    assert 0 < big_a <= theta
    p = LIFFixedParams(du=4095, dv=0, vth=vth, reset="soft")
    spikes, vs, us, _ = _run_lif([a] * steps, p)
    for t in range(1, steps + 1):
        n_t = -(-t * big_a // theta) - 1  # ⌈tA/Θ⌉ − 1 in integers
        assert sum(spikes[:t]) == n_t, f"t={t}"
        assert vs[t - 1] == t * big_a - n_t * theta
    assert all(u == big_a for u in us)  # du = 4095: the current is this step's input only


def test_no_current_memory_with_du_4095():
    p = LIFFixedParams(du=4095, dv=4095, vth=10**5)
    _, _, us, _ = _run_lif([9, 0, 0, -4, 0], p)
    assert us == [9 << 6, 0, 0, -4 << 6, 0]


@pytest.mark.parametrize("k", [0, 3, 10, 16])
def test_impulse_response_halves_exactly_with_dv_2048(k):
    """γ = 1 − 2048/4096 = 1/2: a power-of-two impulse ``v_0 = 2^(k+6)`` decays as
    ``v_t = v_0 >> t`` exactly, reaching 0 after ``k + 7`` steps and staying there."""
    steps = k + 10
    p = LIFFixedParams(du=4095, dv=2048, vth=(1 << 17) - 1)
    spikes, vs, _, _ = _run_lif([1 << k] + [0] * (steps - 1), p)
    v0 = 1 << (k + 6)
    assert not any(spikes)
    assert vs == [v0 >> t for t in range(steps)]
    assert vs[k + 6] == 1 and vs[k + 7] == 0


@pytest.mark.parametrize("a", [-1, -3, -5, -1000, -(1 << 16) + 1])
def test_negative_impulse_decays_toward_zero_not_floor(a):
    """Negative values round toward zero: ``v_t = −(|v_0| >> t)``, which reaches 0, whereas
    a floor (``v_0 >> t``) would stop at −1 forever."""
    steps = 30
    p = LIFFixedParams(du=4095, dv=2048, vth=1)
    spikes, vs, _, _ = _run_lif([a] + [0] * (steps - 1), p)
    v0 = a << 6
    assert not any(spikes)
    assert vs == [-(abs(v0) >> t) for t in range(steps)]
    assert vs[-1] == 0 and (v0 >> (steps - 1)) == -1  # floor would differ


@given(v=st.integers(-(2**23), 2**23), d=st.integers(0, 4096))
@settings(max_examples=300, deadline=None)
def test_decay_toward_zero_matches_exact_rational(v, d):
    """``decay(v, d)`` is the exact rational ``v·(4096 − d)/4096`` truncated toward zero."""
    exact = Fraction(v * (4096 - d), 4096)
    expected = math.floor(exact) if exact >= 0 else math.ceil(exact)
    assert int(decay_toward_zero(np.array([v]), d)[0]) == expected
    assert int(decay_toward_zero(torch.tensor([v]), d)[0]) == expected


@pytest.mark.parametrize("reset", ["soft", "hard"])
def test_reset_values_after_a_spike(reset):
    """vth = 10 (Θ = 640), no leak; inputs 4, 4, 4 → v = 256, 512, 768 > 640: a spike at
    step 3, after which v = 768 − 640 = 128 (soft) or 0 (hard); then +256 again."""
    p = LIFFixedParams(du=4095, dv=0, vth=10, reset=reset)
    spikes, vs, _, vcs = _run_lif([4, 4, 4, 4], p)
    assert spikes == [False, False, True, False]
    after = 128 if reset == "soft" else 0
    assert vs == [256, 512, after, after + 256]
    assert vcs[2] == 768 - 640  # v − Θ before the reset (Ψ's argument)


def test_unknown_reset_raises():
    with pytest.raises(ValueError, match="reset must be 'hard' or 'soft'"):
        _run_lif([1], LIFFixedParams(du=4095, dv=0, vth=1, reset="none"))


def test_membrane_clips_to_24_bits():
    """v saturates at ±(2^23 − 1) (not wraps). Input 2^16 gives A = 2^22 per step."""
    lim = UV_LIMIT - 1
    p = LIFFixedParams(du=4095, dv=0, vth=(1 << 17) - 1, reset="hard")
    _, vs, _, _ = _run_lif([-(1 << 16)] * 4, p)
    assert vs == [-(1 << 22), -(1 << 23) + 1, -lim, -lim]  # −2^23 clips to −(2^23 − 1)
    # positive: the clipped value is what reaches the threshold comparison
    p = LIFFixedParams(du=4095, dv=0, vth=(1 << 17) - 1, reset="soft")
    spikes, vs, _, vcs = _run_lif([1 << 16] * 3, p)
    theta = ((1 << 17) - 1) << 6
    assert vs[0] == 1 << 22 and not spikes[0]
    assert spikes[1] and vcs[1] == lim - theta and vs[1] == lim - theta


@given(a=st.integers(-(2**18) + 1, 2**18 - 1))
@settings(max_examples=200, deadline=None)
def test_current_wraps_modulo_2_pow_24(a):
    """``u = a << 6`` wraps two's-complement style into ``(−2^23, 2^23]`` (Lava's rule, one
    correction of ±2^24: exact for ``|a << 6| < 2^24``, the range tested here)."""
    p = LIFFixedParams(du=4095, dv=4095, vth=(1 << 17) - 1)
    _, _, us, _ = _run_lif([a], p)
    u = us[0]
    assert -UV_LIMIT < u <= UV_LIMIT
    assert (u - (a << 6)) % (1 << 24) == 0


def test_lif_numpy_equals_torch_batched():
    rng = np.random.default_rng(3)
    a = rng.integers(-3000, 3000, size=(25, 4, 9))
    bias = rng.integers(-100, 100, size=9)
    for reset in ("soft", "hard"):
        p = LIFFixedParams(du=1000, dv=300, vth=4000, bias_mant=bias, bias_exp=2, reset=reset)
        pt = p._replace(bias_mant=torch.from_numpy(bias))
        z = torch.zeros(4, 9, dtype=torch.int64)
        st_t = LIFFixedState(z, z)
        st_n = [LIFFixedState(np.zeros(9, np.int64), np.zeros(9, np.int64)) for _ in range(4)]
        for t in range(a.shape[0]):
            s_t, vc_t, st_t = lif_int_step(st_t, torch.from_numpy(a[t]), pt)
            for b in range(4):
                s_n, vc_n, st_n[b] = lif_int_step(st_n[b], a[t, b], p)
                assert np.array_equal(s_t[b].numpy(), s_n)
                assert np.array_equal(vc_t[b].numpy(), vc_n)
                assert np.array_equal(st_t.v[b].numpy(), st_n[b].v)
                assert np.array_equal(st_t.u[b].numpy(), st_n[b].u)


# ---------------------------------------------------------------------------------------
# Counter-based random numbers
# ---------------------------------------------------------------------------------------


def _chi2_quantile(df: int, p: float) -> float:
    """Wilson–Hilferty approximation of the χ² quantile (accurate to < 1% for df ≥ 30)."""
    z = NormalDist().inv_cdf(p)
    c = 2.0 / (9.0 * df)
    return df * (1.0 - c + z * math.sqrt(c)) ** 3


def _chi2(values: np.ndarray, bins: int) -> float:
    counts = np.bincount(values, minlength=bins)
    expected = values.size / bins
    return float(((counts - expected) ** 2 / expected).sum())


@pytest.mark.parametrize("bits", [1, 7, 12, 32])
def test_hash_uniform_numpy_equals_torch_and_in_range(bits):
    for key in (0, 1, 12345, stream_key(7, 3, 2), (1 << 32) - 1):
        a = hash_uniform(np.zeros(1), (6, 11), key, bits)
        b = hash_uniform(torch.zeros(1), (6, 11), key, bits)
        assert a.dtype == np.int64 and b.dtype == torch.int64
        assert np.array_equal(a, b.numpy())
        assert a.min() >= 0 and a.max() < (1 << bits)


def test_hash_streams_differ():
    shape = (4096,)
    keys = {
        "base": stream_key(0, 0, 0),
        "seed": stream_key(1, 0, 0),
        "step": stream_key(0, 1, 0),
        "stream": stream_key(0, 0, 1),
    }
    assert len(set(keys.values())) == len(keys)
    draws = {k: hash_uniform(np.zeros(1), shape, v, 16) for k, v in keys.items()}
    names = list(draws)
    for i, m in enumerate(names):
        for n in names[i + 1 :]:
            # independent 16-bit draws coincide with probability 2^-16 per element
            assert int((draws[m] == draws[n]).sum()) <= 5, (m, n)


def test_hash_uniform_chi_square():
    """χ² of 2^16 draws over 256 bins, for the top bits (``bits=8``), the low byte of the
    full 32-bit value, and consecutive pairs (4 bits each, 256 cells). Under uniform,
    independent draws the statistic follows χ²(255); we require it to lie between the
    10^-6 and 1 − 10^-6 quantiles (a counter that is 'too uniform', e.g. ``idx mod 256``,
    fails the lower bound). The sample is fixed (a pure function of key and index), so the
    test cannot flake."""
    n, bins = 1 << 16, 256
    lo, hi = _chi2_quantile(bins - 1, 1e-6), _chi2_quantile(bins - 1, 1 - 1e-6)
    assert 150 < lo < 200 and 350 < hi < 400  # sanity of the approximation
    for key in (0, 99, stream_key(5, 17, 3)):
        top = hash_uniform(np.zeros(1), (n,), key, 8)
        low = hash_uniform(np.zeros(1), (n,), key, 32) & 255
        nib = hash_uniform(np.zeros(1), (2 * n,), key, 4)
        pairs = nib[0::2] * 16 + nib[1::2]
        for name, v in (("top", top), ("low", low), ("pairs", pairs)):
            chi2 = _chi2(v, bins)
            assert lo < chi2 < hi, (key, name, chi2)
    # the same statistic does reject a counter
    assert _chi2(np.arange(n) % 256, bins) < lo


def test_hash_uniform_rejects_bad_bits():
    with pytest.raises(ValueError, match="bits must be in 0..32"):
        hash_uniform(np.zeros(1), (3,), 0, 33)


# ---------------------------------------------------------------------------------------
# round_shift vs naive Python-int references
# ---------------------------------------------------------------------------------------


def _naive(x: int, k: int, rounding: str) -> int:
    q = Fraction(x, 1 << k)
    if rounding == "floor":
        return math.floor(q)
    if rounding == "toward_zero":
        return (1 if x >= 0 else -1) * (abs(x) // (1 << k))
    if rounding == "nearest":
        return math.floor(q + Fraction(1, 2))  # ties upward
    raise AssertionError(rounding)


@given(
    xs=st.lists(st.integers(-(2**45), 2**45), min_size=1, max_size=40),
    k=st.integers(0, 24),
    rounding=st.sampled_from(["floor", "toward_zero", "nearest"]),
)
@settings(max_examples=300, deadline=None)
def test_round_shift_deterministic_modes_equal_naive(xs, k, rounding):
    expected = [_naive(x, k, rounding) for x in xs]
    got_np = round_shift(np.array(xs, dtype=np.int64), k, rounding)
    got_t = round_shift(torch.tensor(xs, dtype=torch.int64), k, rounding)
    assert np.asarray(got_np).tolist() == expected
    assert got_t.tolist() == expected


@pytest.mark.parametrize("k", [1, 2, 5])
def test_round_shift_ties(k):
    half = 1 << (k - 1)
    xs = [m * (1 << k) + half for m in range(-3, 3)]  # exact ties
    assert round_shift(np.array(xs), k, "nearest").tolist() == [m + 1 for m in range(-3, 3)]
    assert round_shift(np.array(xs), k, "floor").tolist() == list(range(-3, 3))


@given(
    xs=st.lists(st.integers(-(2**40), 2**40), min_size=1, max_size=50),
    k=st.integers(0, 30),
    key=st.integers(0, 2**32 - 1),
)
@settings(max_examples=200, deadline=None)
def test_stochastic_round_between_floor_and_floor_plus_one(xs, k, key):
    x = np.array(xs, dtype=np.int64)
    r = round_shift(x, k, "stochastic", stochastic_noise(x, k, key))
    fl = np.array([_naive(v, k, "floor") for v in xs])
    assert np.all((r == fl) | (r == fl + 1))
    exact = np.array([Fraction(v, 1 << k).denominator == 1 for v in xs])
    assert np.all(r[exact] == fl[exact])  # multiples of 2^k are never moved


@given(
    x=st.integers(-(2**30), 2**30),
    k=st.integers(1, 16),
)
@settings(max_examples=40, deadline=None)
def test_stochastic_round_is_unbiased(x, k):
    """Over N = 4096 elements × 16 keys the result is ``floor + Bernoulli(p)`` with
    ``p = (x mod 2^k)/2^k``; its mean has standard deviation ≤ 0.5/√N_total = 1/512. We
    require |mean − x/2^k| ≤ 6σ = 6/512 (a 2·10^-9 two-sided miss for independent draws)."""
    n, keys = 4096, 16
    xs = np.full(n, x, dtype=np.int64)
    total = 0
    for key in range(keys):
        total += int(round_shift(xs, k, "stochastic", stochastic_noise(xs, k, key)).sum())
    mean = Fraction(total, n * keys)
    assert abs(float(mean - Fraction(x, 1 << k))) <= 6 * 0.5 / math.sqrt(n * keys)


def test_round_shift_argument_errors():
    with pytest.raises(ValueError, match="k must be ≥ 0"):
        round_shift(np.array([1]), -1, "floor")
    with pytest.raises(ValueError, match="needs noise"):
        round_shift(np.array([1]), 2, "stochastic")
    with pytest.raises(ValueError, match="rounding must be one of"):
        round_shift(np.array([1]), 2, "up")


def test_stochastic_noise_same_for_every_sample_of_a_batch():
    """A sample's noise depends on its element index only, not on its batch position."""
    x = torch.zeros(5, 3, 4, dtype=torch.int64)
    noise_t = stochastic_noise(x, 9, 77)
    noise_n = stochastic_noise(np.zeros((3, 4), dtype=np.int64), 9, 77)
    assert tuple(noise_t.shape) == (3, 4)
    assert np.array_equal(noise_t.numpy(), noise_n)


# ---------------------------------------------------------------------------------------
# Traces and weight updates
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("rounding", ["floor", "toward_zero", "nearest", "stochastic"])
def test_trace_numpy_equals_torch_batched(rounding):
    rng = np.random.default_rng(11)
    batch, n, bits, lam = 3, 17, 7, 3100
    imp = rng.integers(0, 40, size=(30, batch, n)) * (rng.random((30, batch, n)) < 0.3)
    tr_t = torch.zeros(batch, n, dtype=torch.int64)
    tr_n = [np.zeros(n, dtype=np.int64) for _ in range(batch)]
    for t in range(imp.shape[0]):
        key = stream_key(4, t, 1)
        tr_t = trace_int_step(tr_t, torch.from_numpy(imp[t]), lam, bits, rounding, key)
        for b in range(batch):
            tr_n[b] = trace_int_step(tr_n[b], imp[t, b], lam, bits, rounding, key)
            assert np.array_equal(tr_t[b].numpy(), tr_n[b]), (t, b)
    if rounding == "floor":  # and both equal the naive Python formula
        ref = [[0] * n for _ in range(batch)]
        for t in range(imp.shape[0]):
            ref = [
                [min(max(ref[b][i] * lam // 4096 + int(imp[t, b, i]), 0), 127) for i in range(n)]
                for b in range(batch)
            ]
        assert tr_t.tolist() == ref


@pytest.mark.parametrize("rounding", ["floor", "toward_zero", "nearest", "stochastic"])
def test_trace_saturates_and_no_decay_accumulates_exactly(rounding):
    bits = 6
    top = (1 << bits) - 1
    tr = np.zeros(4, dtype=np.int64)
    total = np.zeros(4, dtype=np.int64)
    imp = np.array([0, 1, 2, 3])
    for t in range(40):
        tr = trace_int_step(tr, imp, 4096, bits, rounding, key=t)
        total = total + imp
        assert np.array_equal(tr, np.minimum(total, top))  # λ = 1: a plain saturating sum
    assert tr.tolist() == [0, 40, top, top]
    big = trace_int_step(np.array([top]), np.array([10**6]), 2000, bits, rounding, key=1)
    assert big.tolist() == [top]


def test_weight_update_equals_naive_formula():
    """``ΔW = round_stoch(−acc·mant/2^shift)``, ``W ← clip(W + ΔW)``; a left shift when
    ``shift ≤ 0``. Stochastic rounding stays within floor..floor+1 of the exact value."""
    rng = np.random.default_rng(5)
    w = rng.integers(-128, 128, size=(6, 5))
    acc = rng.integers(-(10**6), 10**6, size=(6, 5))
    new, dw = weight_update(w, acc, 90, 14, -128, 127, key=3)
    exact_floor = (-acc * 90) // (1 << 14)
    assert np.all((dw == exact_floor) | (dw == exact_floor + 1))
    assert np.array_equal(new, np.clip(w + dw, -128, 127))
    new, dw = weight_update(w, acc // 1000, 70, -2, -128, 127, key=3)
    assert np.array_equal(dw, -(acc // 1000) * 70 * 4)
    assert np.array_equal(new, np.clip(w + dw, -128, 127))
    new_t, dw_t = weight_update(torch.from_numpy(w), torch.from_numpy(acc), 90, 14, -128, 127, 3)
    new_n, dw_n = weight_update(w, acc, 90, 14, -128, 127, key=3)
    assert np.array_equal(new_t.numpy(), new_n) and np.array_equal(dw_t.numpy(), dw_n)


# ---------------------------------------------------------------------------------------
# Ψ lookup table
# ---------------------------------------------------------------------------------------


def _rounded_psi(fn, bins: np.ndarray, shift: int, v_lsb: float, frac: int) -> np.ndarray:
    """``round(Ψ(bin·2^shift·v_lsb)·2^frac)`` per bin (Python's round, per element)."""
    v = torch.from_numpy(bins.astype(np.float64) * 2.0**shift * v_lsb)
    return np.array([round(y * 2**frac) for y in fn(v).tolist()], dtype=np.int64)


PSI_CASES = [("a", 2.0**-12 / 64), ("b", 2.0**-8 / 64), ("c", 2.0**-20), ("d", 2.0**-10 / 64)]


@pytest.mark.parametrize(("variant", "v_lsb"), PSI_CASES)
def test_psi_table_values_equal_rounded_surrogate(variant, v_lsb):
    fn = get_surrogate(variant)
    tab = psi_table(variant, v_lsb)
    # frac puts the peak Ψ(0) inside 8 unsigned bits, using the top bit
    peak = float(fn(torch.zeros(1, dtype=torch.float64)))
    assert peak * 2**tab.frac <= (1 << PSI_BITS) - 1 < peak * 2 ** (tab.frac + 1)
    assert tab.frac == psi_frac_for(variant)
    table = tab.table.numpy()
    assert table.shape == (2 * tab.half + 1,)
    # entry i is Ψ at the left edge (i − half)·2^shift of its bin, rounded
    ref = _rounded_psi(fn, np.arange(-tab.half, tab.half + 1), tab.shift, v_lsb, tab.frac)
    assert np.array_equal(table, ref)
    # zero beyond the table, and the table is wide enough that its ends are zero
    assert table[0] == 0 and table[-1] == 0 and table[tab.half] == round(peak * 2**tab.frac)
    assert np.array_equal(table, table[::-1])  # every variant is even in v
    # lookup at integer membranes, numpy and torch, vs the bin-edge formula
    rng = np.random.default_rng(0)
    span = (tab.half + 3) << tab.shift
    v_c = np.concatenate([rng.integers(-span, span, 5000), [-(1 << 23), (1 << 23) - 1, 0, -1]])
    got_np = psi_lookup(v_c, table, tab.shift, tab.half)
    got_t = psi_lookup(torch.from_numpy(v_c), tab.table, tab.shift, tab.half)
    assert np.array_equal(got_np, got_t.numpy())
    bins = v_c >> tab.shift  # the floor bin of each membrane value
    expect = np.where(
        np.abs(bins) > tab.half, 0, _rounded_psi(fn, bins, tab.shift, v_lsb, tab.frac)
    )
    assert np.array_equal(got_np, expect)
    # symmetric at bin edges: Ψ(+j·2^shift) == Ψ(−j·2^shift)
    j = np.arange(0, tab.half + 5) << tab.shift
    assert np.array_equal(psi_lookup(j, table, tab.shift, tab.half),
                          psi_lookup(-j, table, tab.shift, tab.half))  # fmt: skip


def test_psi_table_uses_coarser_bins_for_fine_membranes():
    """A very fine membrane LSB would need more than 2^16 entries per side: bins widen by
    a power of two instead, and the table still reaches Ψ ≈ 0."""
    tab = psi_table("c", 2.0**-24)
    assert tab.shift > 0 and tab.half <= (1 << 16) + 1
    assert int(tab.table[0]) == 0


# ---------------------------------------------------------------------------------------
# Exact integer products
# ---------------------------------------------------------------------------------------


def _naive_conv2d(x, w, stride, padding, dilation, groups):
    """Direct int64 loops over output positions and kernel taps."""
    b, c_in, h, wd = x.shape
    c_out, c_g, kh, kw = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (padding[0],) * 2, (padding[1],) * 2))
    ho = (h + 2 * padding[0] - dilation[0] * (kh - 1) - 1) // stride[0] + 1
    wo = (wd + 2 * padding[1] - dilation[1] * (kw - 1) - 1) // stride[1] + 1
    out = np.zeros((b, c_out, ho, wo), dtype=np.int64)
    per_group = c_out // groups
    for o in range(c_out):
        g = o // per_group
        for i in range(kh):
            for j in range(kw):
                rows = slice(i * dilation[0], i * dilation[0] + stride[0] * (ho - 1) + 1, stride[0])
                cols = slice(j * dilation[1], j * dilation[1] + stride[1] * (wo - 1) + 1, stride[1])
                patch = xp[:, g * c_g : (g + 1) * c_g, rows, cols]  # [B, c_g, ho, wo]
                out[:, o] += np.einsum("bchw,c->bhw", patch, w[o, :, i, j])
    return out, ho, wo


def _naive_conv2d_weight(x, w_shape, a, stride, padding, dilation, groups):
    c_out, c_g, kh, kw = w_shape
    xp = np.pad(x, ((0, 0), (0, 0), (padding[0],) * 2, (padding[1],) * 2))
    _, _, ho, wo = a.shape
    gw = np.zeros(w_shape, dtype=np.int64)
    per_group = c_out // groups
    for o in range(c_out):
        g = o // per_group
        for i in range(kh):
            for j in range(kw):
                rows = slice(i * dilation[0], i * dilation[0] + stride[0] * (ho - 1) + 1, stride[0])
                cols = slice(j * dilation[1], j * dilation[1] + stride[1] * (wo - 1) + 1, stride[1])
                patch = xp[:, g * c_g : (g + 1) * c_g, rows, cols]
                gw[o, :, i, j] = np.einsum("bchw,bhw->c", patch, a[:, o])
    return gw


@pytest.mark.parametrize("as_torch", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_int_linear_and_outer_sum_equal_int64_einsum(as_torch, dtype):
    rng = np.random.default_rng(1)
    lim = 60 if dtype == torch.float32 else 10**6  # float32: |Σ| < 2^24; float64: < 2^53
    x = rng.integers(-lim, lim, size=(3, 4, 37))
    w = rng.integers(-lim, lim, size=(11, 37))
    a = rng.integers(-lim, lim, size=(5, 11))
    xs = rng.integers(-lim, lim, size=(5, 37))
    ref = np.einsum("...i,oi->...o", x, w)
    ref_outer = np.einsum("bo,bi->oi", a, xs)
    assert np.abs(ref).max() < (2**24 if dtype == torch.float32 else 2**53)
    conv = torch.from_numpy if as_torch else (lambda v: v)
    y = int_linear(conv(x), conv(w), dtype)
    z = int_outer_sum(conv(a), conv(xs), dtype)
    for got, expect in ((y, ref), (z, ref_outer)):
        assert isinstance(got, torch.Tensor) == as_torch
        got = got.numpy() if as_torch else got
        assert got.dtype == np.int64 and np.array_equal(got, expect)


def test_float64_products_beyond_2_pow_24_stay_exact():
    """Sums near 2^40 are exact in float64 (and would not be in float32)."""
    x = np.array([[(1 << 20) + 1, (1 << 20) + 3]])
    w = np.array([[(1 << 19) + 7, -((1 << 19) + 5)]])
    ref = int(x[0, 0]) * int(w[0, 0]) + int(x[0, 1]) * int(w[0, 1])
    assert int(int_linear(x, w, torch.float64)[0, 0]) == ref
    assert int(int_linear(x[:, :1], w[:, :1], torch.float64)[0, 0]) == int(x[0, 0]) * int(w[0, 0])
    assert int(int_linear(x[:, :1], w[:, :1], torch.float32)[0, 0]) != int(x[0, 0]) * int(w[0, 0])


CONV_CASES = [
    dict(stride=(1, 1), padding=(1, 1), dilation=(1, 1), groups=1, k=3),
    dict(stride=(2, 2), padding=(1, 1), dilation=(1, 1), groups=1, k=3),
    dict(stride=(2, 1), padding=(0, 2), dilation=(1, 2), groups=1, k=3),
    dict(stride=(1, 1), padding=(0, 0), dilation=(1, 1), groups=2, k=1),
    dict(stride=(1, 2), padding=(2, 1), dilation=(2, 1), groups=2, k=2),
]


@pytest.mark.parametrize("case", CONV_CASES)
@pytest.mark.parametrize("as_torch", [False, True])
def test_int_conv2d_and_weight_grad_equal_naive_loops(case, as_torch):
    rng = np.random.default_rng(7)
    groups, k = case["groups"], case["k"]
    c_in, c_out = 4, 6
    x = rng.integers(-9, 10, size=(2, c_in, 7, 8))
    w = rng.integers(-50, 51, size=(c_out, c_in // groups, k, k))
    args = (case["stride"], case["padding"], case["dilation"], groups)
    ref, ho, wo = _naive_conv2d(x, w, *args)
    a = rng.integers(-30, 31, size=(2, c_out, ho, wo))
    ref_w = _naive_conv2d_weight(x, w.shape, a, *args)
    conv = torch.from_numpy if as_torch else (lambda v: v)
    for dtype in (torch.float32, torch.float64):
        y = int_conv2d(conv(x), conv(w), *args, dtype=dtype)
        g = int_conv2d_weight(conv(x), w.shape, conv(a), *args, dtype=dtype)
        for got, expect in ((y, ref), (g, ref_w)):
            assert isinstance(got, torch.Tensor) == as_torch
            got = got.numpy() if as_torch else got
            assert got.dtype == np.int64 and np.array_equal(got, expect)


@pytest.mark.parametrize("as_torch", [False, True])
@pytest.mark.parametrize("kernel", [2, 3])
def test_pools_equal_naive_reference(as_torch, kernel):
    rng = np.random.default_rng(2)
    x = rng.integers(-(10**9), 10**9, size=(2, 3, 2 * kernel + 1, 3 * kernel))
    hk, wk = x.shape[2] // kernel, x.shape[3] // kernel
    blocks = x[:, :, : hk * kernel, : wk * kernel].reshape(2, 3, hk, kernel, wk, kernel)
    ref_sum = blocks.sum(axis=(3, 5))
    ref_max = blocks.max(axis=(3, 5))
    conv = torch.from_numpy if as_torch else (lambda v: v)
    for got, expect in ((int_sum_pool2d(conv(x), kernel), ref_sum),
                        (int_max_pool2d(conv(x), kernel), ref_max)):  # fmt: skip
        got = got.numpy() if as_torch else got
        assert got.dtype == np.int64 and np.array_equal(got, expect)


def test_exact_float_dtype_thresholds():
    assert exact_float_dtype(0) == torch.float32
    assert exact_float_dtype(2**24 - 1) == torch.float32
    assert exact_float_dtype(2**24) == torch.float64
    assert exact_float_dtype(2**53 - 1) == torch.float64
    with pytest.raises(OverflowError, match="2\\^53"):
        exact_float_dtype(2**53)
    # the thresholds are where the float formats stop representing every integer
    assert float(torch.tensor(2**24 + 1, dtype=torch.float32)) != 2**24 + 1
    assert float(torch.tensor(2**24 - 1, dtype=torch.float32)) == 2**24 - 1
    assert float(np.float64(2**53 + 1)) != 2**53 + 1
