"""Passes over the labelled stream are a prefix of each other: after pass P of a longer run
the device holds what a P-pass run ends with (same schedule prefix, same rounding bits
keyed by the emulator's step count, calibration from the first stream samples, no rate
decay), so one 6-pass run measures 4, 5 and 6 passes at once (docs/adaptation.md §5,
issue #16). The reference is the shorter run itself, learned separately."""

from __future__ import annotations

from types import SimpleNamespace

import torch

from pipeline.adapt_loop import StreamFrames, learn_stream
from pipeline.adapt_mechanisms import Mechanisms, stream_schedule


def _small():
    from quantization.ptq import quantize_model
    from stllr.models.vgg import VGGSTLLR

    torch.manual_seed(0)
    model = VGGSTLLR((2, 8, 8), 3, channels=(4, 4), pool_after=(0,)).eval()
    x = (torch.rand(6, 10, 2, 8, 8) < 0.3).float()
    y = torch.tensor([0, 1, 2, 0, 1, 2, 1, 0, 2, 1])
    return quantize_model(model, [x[:, :4]])[0], x, y


def _prepared(qnet, x, y, passes: int):
    """A :class:`pipeline.adapt_device.Prepared` by hand: the first 4 samples stream
    ``passes`` times, all 10 are the shifted and the original evaluation sets."""
    from pipeline.adapt_device import Prepared, compact_int
    from quantization.ptq import quantize_input

    n = 4
    xs, ys = x[:, :n], y[:n]
    sched = stream_schedule(n, passes=passes)
    frames = StreamFrames(sched, xs)
    y_all = torch.tensor([int(ys[it.index]) for it in sched])
    x_int = frames.map(lambda f: compact_int(quantize_input(f, qnet.input_format)))
    lengths = torch.full((x.shape[1],), x.shape[0])
    return Prepared(
        sched, frames, y_all, x_int, xs, x, y, lengths, x, y, lengths, x.shape[0], n,
        x.shape[1], 0, "shifted", "original",
    )  # fmt: skip


def test_pass_p_of_a_longer_run_is_the_p_pass_run():
    """The stage's device run (:func:`pipeline.adapt_device.run_device`, per-input step
    sizes on): the 3-pass run's curve after pass 1 and pass 2 equals the 1- and 2-pass
    runs' curves and their final paired accuracies."""
    from pipeline.adapt_device import run_device

    qnet, x, y = _small()
    a = SimpleNamespace(lr=1.0, seed=5, signal="host", window=3, eval_every=4)
    ctx = SimpleNamespace(progress=False)
    runs = {}
    for p in (1, 2, 3):
        mech = Mechanisms(passes=p, precondition=2)
        runs[p] = run_device(ctx, a, qnet, ("head",), _prepared(qnet, x, y, p), mech, False)
    long = runs[3].curves
    assert long.samples == [0, 4, 8, 12]
    for p in (1, 2):
        c = runs[p].curves
        assert c.samples == long.samples[: p + 1]
        assert c.shifted == long.shifted[: p + 1] and c.original == long.original[: p + 1]
        assert runs[p].shifted.after == long.shifted[p]
        assert runs[p].original.after == long.original[p]
    # the passes learn: the weights move from pass to pass
    w = [runs[p].learned.node("head").weight for p in (1, 2, 3)]
    assert not torch.equal(w[0], w[1]) and not torch.equal(w[1], w[2])


def test_weights_after_pass_p_equal_the_p_pass_runs_weights():
    """Bit for bit: the integer readout weights the 3-pass stream holds after each pass
    are those the 1- and 2-pass streams end with."""
    from pipeline.learners import DeviceLearner, make_plastic

    qnet, x, y = _small()

    def weights_per_pass(passes: int) -> list[torch.Tensor]:
        prep = _prepared(qnet, x, y, passes)
        plastic = make_plastic(qnet, ("head",), [prep.xs], 0.5, 5, precondition=2, window=3)
        learner = DeviceLearner(plastic, ("head",), 3)
        held: list[torch.Tensor] = []

        def score(net):
            held.append(net.node("head").weight.clone())
            return 0.0, 0.0

        mech = Mechanisms(passes=passes, precondition=2)
        learn_stream(learner, prep.x_all_int, prep.y_all, prep.schedule, mech, prep.n_stream,
                     score, learner.network)  # fmt: skip
        return held

    long = weights_per_pass(3)
    assert len(long) == 4
    for p in (1, 2):
        short = weights_per_pass(p)
        assert len(short) == p + 1
        assert all(torch.equal(a, b) for a, b in zip(short, long[: p + 1], strict=True))
    assert not torch.equal(long[2], long[3])
