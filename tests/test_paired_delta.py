"""The paired accuracy difference of two classifiers (quantization.report.paired_delta)
against a per-sample Python loop and the statistics module's sample deviation."""

from __future__ import annotations

import math
import statistics

import pytest
import torch

from quantization.report import paired_delta


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_paired_delta_equals_a_per_sample_loop(seed):
    g = torch.Generator().manual_seed(seed)
    n, classes = 257, 5
    y = torch.randint(classes, (n,), generator=g)
    ref = torch.where(
        torch.rand(n, generator=g) < 0.7, y, torch.randint(classes, (n,), generator=g)
    )
    new = torch.where(
        torch.rand(n, generator=g) < 0.7, y, torch.randint(classes, (n,), generator=g)
    )
    rows = list(zip(y.tolist(), ref.tolist(), new.tolist(), strict=True))
    d = [int(b == a) - int(r == a) for a, r, b in rows]
    got = paired_delta(y, ref, new)
    acc_new = sum(int(b == a) for a, _, b in rows) / n
    acc_ref = sum(int(r == a) for a, r, _ in rows) / n
    assert got["delta"] == pytest.approx(100 * (acc_new - acc_ref), abs=1e-12)
    assert got["standard_error"] == pytest.approx(100 * statistics.stdev(d) / math.sqrt(n))
    assert got["ref_only"] == d.count(-1) and got["new_only"] == d.count(1)
    assert got["ref_only"] > 0 and got["new_only"] > 0


def test_paired_delta_of_identical_predictions_is_exactly_zero():
    y = torch.tensor([0, 1, 2, 1])
    p = torch.tensor([0, 2, 2, 1])
    assert paired_delta(y, p, p) == {
        "delta": 0.0,
        "standard_error": 0.0,
        "ref_only": 0,
        "new_only": 0,
    }
    assert math.isnan(paired_delta(y[:1], p[:1], p[:1])["standard_error"])
