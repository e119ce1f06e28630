"""``adaptation.lava_stream_samples = K`` in Lava (:func:`pipeline.adapt_lava.lava_part`).

Lava ``fixed_pt`` learns the first K = 7 of a 12-sample stream (two passes, replay,
consolidation; tests/test_adaptation_prefix.py) with the emulator's recorded host signals:
every node's output on those samples equals the emulator's bit for bit, and Lava's W and
W_rec equal the emulator's weights after those 7 samples, which that test shows equal a
separate emulator run of the 7 samples alone. Lava then scores the emulator's final weights;
its "after" accuracy is recomputed with the batched emulator. The check is not vacuous: a
snapshot with one weight changed is reported unequal, and the snapshot differs from the
final weights (so Lava's do too). The same with on-device DFA signals.

In tests/ rather than hw_tests/: hw_tests may not import ``pipeline``
(tests/test_dependency_direction.py), and the pipeline's other Lava adaptation checks run
here too (tests/test_pipeline.py).
"""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import pytest

from pipeline.adapt_device import accuracy, emulator_predictions
from pipeline.adapt_lava import lava_line, lava_part
from tests.test_adaptation_prefix import LAYERS, K, device_run, weights_of


def _ctx(a):
    cfg = SimpleNamespace(adaptation=a, lava=SimpleNamespace(timeout_s=300.0))
    return SimpleNamespace(cfg=cfg, log=lambda _: None)


@pytest.fixture(scope="module")
def prefix_run():
    """The run, and the networks handed to Lava (learning, before, after)."""
    import pipeline.adapt_lava as adapt_lava

    a, qnet, prep, dev = device_run(K)
    ran, run_in_lava = [], adapt_lava.run_in_lava

    def spy(net, *args, **kw):
        ran.append(net)
        return run_in_lava(net, *args, **kw)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(adapt_lava, "run_in_lava", spy)
        lava = lava_part(_ctx(a), qnet, dev, prep, LAYERS)
    return a, qnet, prep, dev, lava, ran


def test_lava_learns_the_prefix_bit_exactly_and_scores_the_final_weights(prefix_run):
    a, qnet, prep, dev, lava, ran = prefix_run
    assert lava["stream_samples_learned"] == K and lava["stream_samples_total"] == 12
    assert lava["after_weights"] == f"emulator's final (Lava learned the first {K})"
    assert lava["outputs_bit_exact"] and lava["weights_equal"], lava["weights_mismatched"]
    assert set(lava["outputs_mismatched"]) == {n.name for n in qnet.nodes}
    n = lava["eval_samples"]
    assert n == a.lava_eval_samples == 4
    assert lava["predictions_differing"] == {"before": 0, "after": 0}
    # Lava ran the deployed weights before and the emulator's final ones after (not its own)
    assert len(ran) == 3
    final, snap = weights_of(dev.learned), weights_of(dev.prefix)
    for key, w in weights_of(ran[2]).items():
        assert (w == final[key]).all(), key
    assert any(not (final[k] == snap[k]).all() for k in final)  # the two differ
    assert all((w == weights_of(qnet)[k]).all() for k, w in weights_of(ran[1]).items())
    # its "after" accuracy: the emulator's batched predictions of that network, scored here
    pred = emulator_predictions(dev.learned, prep.xe[:, :n], prep.le[:n])
    assert lava["accuracy"]["after"] == accuracy(pred, prep.ye[:n])
    line = lava_line(lava)
    assert f"Lava learned the first {K} of 12 stream samples, weights = emulator's there" in line
    assert f"final weights in Lava: {n}/{n} predictions equal" in line


def test_a_wrong_reference_is_reported_unequal(prefix_run):
    """One weight of the snapshot changed: one mismatch, in that layer. (Lava's weights
    equal the snapshot, which differs from the final weights: the first test.)"""
    a, qnet, prep, dev, *_ = prefix_run
    node = dev.prefix.node("rec")
    w = node.weight.clone()
    w[3, 5] += 1
    bad = dev.prefix.replace_node(dataclasses.replace(node, weight=w))
    lava = lava_part(_ctx(a), qnet, dev._replace(prefix=bad), prep, LAYERS)
    assert lava["outputs_bit_exact"] and not lava["weights_equal"]
    assert lava["weights_mismatched"] == {"rec": 1, "readout": 0}
    assert "weights ≠ emulator's there" in lava_line(lava)


def test_on_device_dfa_learns_the_prefix_in_lava():
    """signal = dfa: Lava's own error and feedback processes learn the first K samples
    (labels only from the host) and end on the emulator's weights after them."""
    a, qnet, prep, dev = device_run(K, signal="dfa")
    assert dev.plan is not None and dev.recorded == K
    lava = lava_part(_ctx(a), qnet, dev, prep, LAYERS)
    assert lava["outputs_bit_exact"] and lava["weights_equal"], lava["weights_mismatched"]
    assert lava["stream_samples_learned"] == K and lava["predictions_differing"]["after"] == 0
    final, snap = weights_of(dev.learned), weights_of(dev.prefix)
    assert any(not (final[k] == snap[k]).all() for k in final)
    assert any(not (snap[k] == w).all() for k, w in weights_of(qnet).items())  # it learned
