"""Property tests of fixed-point formats (hypothesis)."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from quantization.qformat import QFormat, SaturationCounter, dequantize, fit_integer, quantize

formats = st.builds(
    QFormat,
    name=st.just("q"),
    bits=st.integers(2, 24),
    frac_bits=st.integers(-4, 16),
    signed=st.booleans(),
    rounding=st.sampled_from(["nearest", "floor", "toward_zero"]),
    overflow=st.sampled_from(["saturate", "wrap"]),
)


def _in_range(fmt: QFormat, u: float) -> float:
    return fmt.min_value + u * (fmt.max_value - fmt.min_value)


@settings(max_examples=200, deadline=None)
@given(fmt=formats, us=st.lists(st.floats(0, 1), min_size=1, max_size=20))
def test_roundtrip_error_bounded_in_range(fmt, us):
    x = torch.tensor([_in_range(fmt, u) for u in us], dtype=torch.float64)
    err = (dequantize(quantize(x, fmt), fmt) - x).abs()
    bound = fmt.lsb / 2 if fmt.rounding == "nearest" else fmt.lsb
    assert bool((err <= bound * (1 + 1e-12)).all())


@settings(max_examples=200, deadline=None)
@given(fmt=formats, xs=st.lists(st.floats(-1e6, 1e6), min_size=1, max_size=20))
def test_idempotent_and_in_range(fmt, xs):
    x = torch.tensor(xs, dtype=torch.float64)
    m = quantize(x, fmt)
    assert bool(((m >= fmt.min_int) & (m <= fmt.max_int)).all())
    assert torch.equal(quantize(dequantize(m, fmt), fmt), m)


@settings(max_examples=100, deadline=None)
@given(fmt=formats, xs=st.lists(st.integers(-(2**30), 2**30), min_size=1, max_size=30))
def test_saturation_and_wrap_are_counted(fmt, xs):
    m = torch.tensor(xs, dtype=torch.int64)
    counter = SaturationCounter()
    out = fit_integer(m, fmt, counter)
    outside = sum(1 for v in xs if not fmt.min_int <= v <= fmt.max_int)
    assert counter.counts["q"] == outside and counter.totals["q"] == len(xs)
    if fmt.overflow == "saturate":
        expected = [min(max(v, fmt.min_int), fmt.max_int) for v in xs]
    else:  # two's complement: same value modulo 2^bits, inside the range
        expected = [(v - fmt.min_int) % (1 << fmt.bits) + fmt.min_int for v in xs]
    assert out.tolist() == expected


def test_stochastic_rounding_is_unbiased_and_seeded():
    fmt = QFormat("t", bits=16, frac_bits=0, rounding="stochastic")
    x = torch.full((20000,), 2.3, dtype=torch.float64)
    a = quantize(x, fmt, torch.Generator().manual_seed(0))
    b = quantize(x, fmt, torch.Generator().manual_seed(0))
    assert torch.equal(a, b)
    assert set(a.unique().tolist()) == {2, 3}
    assert float(a.double().mean()) == pytest.approx(2.3, abs=0.02)
    with pytest.raises(ValueError, match="pass a seeded torch.Generator"):
        quantize(x, fmt)


def test_format_errors_name_the_field():
    with pytest.raises(ValueError, match="QFormat 'w': rounding must be one of"):
        QFormat("w", bits=8, rounding="up")
    with pytest.raises(ValueError, match="QFormat 'w': bits must be in 1..62, got 0"):
        QFormat("w", bits=0)
    with pytest.raises(ValueError, match=r"quantize\(w\): x contains NaN"):
        quantize(torch.tensor([float("nan")]), QFormat("w", bits=8))
