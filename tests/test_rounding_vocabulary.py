"""The rounding vocabulary (quantization.backend.round_float / round_shift) against naive
Fraction references: ties, toward zero for negatives, and numpy == torch == Python."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from quantization.backend import round_float, round_shift
from quantization.formats import FORMATS, ROUNDINGS

DETERMINISTIC = ("nearest_even", "nearest_up", "floor", "toward_zero")


def _naive(q: Fraction, rounding: str) -> int:
    fl = math.floor(q)
    rest = q - fl
    if rounding == "floor":
        return fl
    if rounding == "toward_zero":
        return fl if q >= 0 or rest == 0 else fl + 1
    if rounding == "nearest_up":
        return fl + (rest >= Fraction(1, 2))
    if rounding == "nearest_even":
        if rest == Fraction(1, 2):
            return fl + (fl % 2)
        return fl + (rest > Fraction(1, 2))
    raise AssertionError(rounding)


# halves and quarters make ties frequent; plus arbitrary floats
values = st.one_of(
    st.integers(-(2**20), 2**20).map(lambda n: n / 4),
    st.floats(-1e12, 1e12, allow_nan=False, allow_infinity=False),
)


@settings(max_examples=300, deadline=None)
@given(xs=st.lists(values, min_size=1, max_size=30), rounding=st.sampled_from(DETERMINISTIC))
def test_round_float_equals_naive_numpy_torch_python(xs, rounding):
    expected = [_naive(Fraction(x), rounding) for x in xs]
    assert np.asarray(round_float(np.array(xs), rounding)).astype(np.int64).tolist() == expected
    t = round_float(torch.tensor(xs, dtype=torch.float64), rounding)
    assert t.to(torch.int64).tolist() == expected
    assert [round_float(float(x), rounding) for x in xs] == expected


def test_round_float_ties_and_negatives():
    xs = [-2.5, -1.5, -0.5, 0.5, 1.5, 2.5, -1.7, 1.7]
    assert round_float(np.array(xs), "nearest_even").tolist() == [-2, -2, -0, 0, 2, 2, -2, 2]
    assert round_float(np.array(xs), "nearest_up").tolist() == [-2, -1, 0, 1, 2, 3, -2, 2]
    assert round_float(np.array(xs), "toward_zero").tolist() == [-2, -1, 0, 0, 1, 2, -1, 1]
    assert round_float(np.array(xs), "floor").tolist() == [-3, -2, -1, 0, 1, 2, -2, 1]
    assert round_float(2.5) == 2 and round_float(3.5) == 4  # the default: nearest_even


@settings(max_examples=300, deadline=None)
@given(
    xs=st.lists(st.integers(-(2**45), 2**45), min_size=1, max_size=30),
    k=st.integers(0, 24),
    rounding=st.sampled_from(DETERMINISTIC),
)
def test_round_shift_equals_naive_numpy_torch(xs, k, rounding):
    expected = [_naive(Fraction(x, 1 << k), rounding) for x in xs]
    assert np.asarray(round_shift(np.array(xs, dtype=np.int64), k, rounding)).tolist() == expected
    assert round_shift(torch.tensor(xs, dtype=torch.int64), k, rounding).tolist() == expected


@pytest.mark.parametrize("k", [1, 2, 5])
def test_round_shift_ties_name_their_rule(k):
    ties = np.array([m * (1 << k) + (1 << (k - 1)) for m in range(-3, 3)])  # m + ½
    assert round_shift(ties, k, "nearest_up").tolist() == [-2, -1, 0, 1, 2, 3]
    assert round_shift(ties, k, "nearest_even").tolist() == [-2, -2, 0, 0, 2, 2]
    assert round_shift(ties, k, "toward_zero").tolist() == [-2, -1, 0, 0, 1, 2]
    # the historic "nearest" of the integer shifts is nearest_up
    assert np.array_equal(round_shift(ties, k, "nearest"), round_shift(ties, k, "nearest_up"))


@settings(max_examples=200, deadline=None)
@given(xs=st.lists(values, min_size=1, max_size=30), u=st.floats(0, 0.999))
def test_stochastic_round_float_is_floor_of_x_plus_noise(xs, u):
    x = torch.tensor(xs, dtype=torch.float64)
    got = round_float(x, "stochastic", torch.full_like(x, u))
    assert got.tolist() == [float(math.floor(Fraction(v) + Fraction(u))) for v in xs]
    assert np.array_equal(round_float(np.array(xs), "stochastic", u), got.numpy())


def test_argument_errors():
    with pytest.raises(ValueError, match="needs noise"):
        round_float(np.array([0.5]), "stochastic")
    with pytest.raises(ValueError, match="rounding must be one of"):
        round_float(np.array([0.5]), "nearest")  # ambiguous for floats: name the rule
    with pytest.raises(ValueError, match="rounding must be one of"):
        round_shift(np.array([4]), 1, "exact")
    with pytest.raises(ValueError, match="not an integer"):
        round_float(torch.tensor([0.5]), "exact")


def test_every_table_rule_is_in_the_vocabulary():
    assert {f.rule for f in FORMATS.values()} <= set(ROUNDINGS)
