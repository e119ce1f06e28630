"""``adaptation.lava_stream_samples = K``: the emulator records what Lava needs for the first
K stream samples only and snapshots its weights right after the K-th (docs/adaptation.md §1);
the report says which weights Lava learned and scored.

The independent reference is a second emulator run whose stream *is* those K samples
(the same schedule cut at K): its final weights, signals and outputs must equal the long
run's snapshot and recordings. The stream makes two passes with replay, a decaying rate
and consolidation, and K crosses the pass boundary. Lava's side is in
tests/test_adaptation_prefix_lava.py (it reuses :func:`small_adaptation`).
"""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import pytest
import torch

from pipeline.adapt_device import Prepared, compact_int, run_device
from pipeline.adapt_loop import StreamFrames
from pipeline.adapt_mechanisms import Mechanisms, stream_schedule
from pipeline.config import AdaptationSection, PipelineConfig, check
from stllr.errors import UserError

LAYERS = ("rec", "readout")
STEPS, N_STREAM, N_REPLAY, N_EVAL = 20, 4, 2, 6
K = 7  # s0 s1 r0 s2 s3 r1 | s0 …: the first item of the second pass is the 7th


def _spikes(n: int, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return (torch.rand(STEPS, n, 40, generator=gen) < 0.3).float()


def small_adaptation(k: int, cut: int | None = None, signal: str = "host"):
    """A recurrent 40 → 32 → 5 network and a two-pass stream of 4 shifted samples with a
    2-sample replay buffer after every 2nd (12 items), consolidation and a decaying rate;
    ``k``: ``lava_stream_samples``; ``cut``: the stream is its first ``cut`` items only;
    ``signal = "dfa"``: the device's own error and DFA feedback (no rate decay, a host
    choice). Returns (section, mechanisms, deployed QNetwork, Prepared)."""
    from quantization.ptq import PTQConfig, quantize_input, quantize_model
    from stllr.models.shd import SHDNetSTLLR

    torch.manual_seed(0)
    model = SHDNetSTLLR(num_inputs=40, hidden=32, num_classes=5).eval()
    xs, xr, xe = _spikes(N_STREAM, 1), _spikes(N_REPLAY, 2), _spikes(N_EVAL, 3)
    qnet, _ = quantize_model(model, [xs], PTQConfig(weight_bits=8, scale="pow2"))
    a = AdaptationSection(
        layers=LAYERS, lr=0.05, window=8, seed=3, eval_every=2, lava_eval_samples=4,
        lava_stream_samples=k, passes=2, replay_buffer=N_REPLAY, replay_every=2,
        consolidate_shift=2, rate_decay=3.0 if signal == "host" else 0.0, signal=signal,
    )  # fmt: skip
    mech = Mechanisms.from_section(a)
    schedule = stream_schedule(N_STREAM, 2, N_REPLAY, passes=2)[:cut]
    ys, yr = torch.tensor([0, 1, 2, 3]), torch.tensor([4, 0])
    y_all = torch.tensor([int((ys if it.source == "shift" else yr)[it.index]) for it in schedule])
    x_all = StreamFrames(schedule, xs, xr)
    x_int = x_all.map(lambda x: compact_int(quantize_input(x, qnet.input_format)))
    ye, le = torch.tensor([0, 1, 2, 3, 4, 0]), torch.full((N_EVAL,), STEPS)
    prep = Prepared(
        schedule, x_all, y_all, x_int, xs, xe, ye, le, xe, ye, le, STEPS, N_STREAM, N_EVAL,
        sum(it.source == "replay" for it in schedule), "eval", "clean",
    )  # fmt: skip
    return a, mech, qnet, prep


def device_run(k: int, cut: int | None = None, record: bool = True, signal: str = "host"):
    a, mech, qnet, prep = small_adaptation(k, cut, signal)
    ctx = SimpleNamespace(progress=False)
    return a, qnet, prep, run_device(ctx, a, qnet, LAYERS, prep, mech, record)


def weights_of(net) -> dict[str, torch.Tensor]:
    """W and W_rec of the plastic layers, ``{"rec.w": …, "rec.w_rec": …, "readout.w": …}``."""
    out = {}
    for name in LAYERS:
        n = net.node(name)
        out[f"{name}.w"] = n.weight.clone()
        if getattr(n, "weight_rec", None) is not None:
            out[f"{name}.w_rec"] = n.weight_rec.clone()
    return out


def test_snapshot_after_k_samples_equals_a_run_of_those_k_samples():
    *_, prep, dev = device_run(K)
    assert len(prep.schedule) == 12 and dev.recorded == K
    assert [it.source for it in prep.schedule[:K]].count("shift") == 5  # into pass 2
    *_, ref = device_run(0, cut=K)  # the stream is exactly the first K items
    assert ref.recorded == K and ref.prefix is None  # the whole (short) stream
    snap, final, short = weights_of(dev.prefix), weights_of(dev.learned), weights_of(ref.learned)
    deployed = weights_of(dev.plastic)
    assert set(snap) == {"rec.w", "rec.w_rec", "readout.w"}
    for key in snap:
        assert torch.equal(snap[key], short[key]), key
        assert not torch.equal(snap[key], deployed[key]), f"{key}: the prefix learned nothing"
        assert not torch.equal(snap[key], final[key]), f"{key}: the snapshot is not frozen"
    # recorded: exactly the K samples, equal to the short run's signals and outputs
    for rec_long, rec_short in ((dev.signals, ref.signals), (dev.outputs, ref.outputs)):
        assert set(rec_long) == set(rec_short)
        for name, v in rec_long.items():
            assert v.shape[:2] == (STEPS, K), name
            assert torch.equal(v, rec_short[name]), name
    assert set(dev.signals) == set(LAYERS) and bool(dev.signals["rec"].any())


def test_whole_stream_and_no_lava_record_as_before():
    """K = 0 or K ≥ the stream: everything recorded, no snapshot; Lava off: nothing."""
    for k in (0, 12, 50):
        *_, dev = device_run(k)
        assert dev.recorded == 12 and dev.prefix is None
        assert all(v.shape[1] == 12 for v in dev.outputs.values())
    *_, off = device_run(K, record=False)
    assert off.recorded == 0 and off.prefix is None and not off.signals and not off.outputs


def test_lava_stream_samples_is_checked():
    cfg = PipelineConfig(source="my.toml")
    bad = dataclasses.replace(cfg.adaptation, lava_stream_samples=-1)
    with pytest.raises(UserError, match=r"my\.toml: adaptation\.lava_stream_samples must be ≥ 0"):
        check(cfg.replace(adaptation=bad))
    check(cfg.replace(adaptation=dataclasses.replace(cfg.adaptation, lava_stream_samples=150)))


def _parity_rows(lava_adapt: dict) -> dict[str, list[str]]:
    """The report's parity rows (by comparison) for an adaptation block ``lava``."""
    from pipeline.report_inputs import Artefacts
    from pipeline.report_results import parity_section

    lava = {"samples": 4, "steps": 20, "lava_vs_emulator_agreement": 1.0, "bit_exact": True,
            "mismatched_values": {}, "float_vs_emulator_agreement": 1.0}  # fmt: skip
    adapt = {"settings": {"stream_samples": 1000, "stream_steps": 100, "steps": 90,
                          "layers": list(LAYERS)},
             "lava": lava_adapt}  # fmt: skip
    art = Artefacts(None, None, {}, {"weight_bits": 8}, {}, {}, lava, adapt, True)
    (table,) = [b for b in parity_section(art) if hasattr(b, "rows")]
    return {row[0]: row[1:] for row in table.rows}


def test_report_says_which_weights_lava_learned_and_scored():
    lava = {"weights_equal": True, "weights_mismatched": {}, "outputs_bit_exact": True,
            "outputs_mismatched": {}, "eval_samples": 16,
            "agreement": {"before": 1.0, "after": 1.0}}  # fmt: skip
    stream = "Lava vs emulator: on-device learning (stream)"
    after = "Lava vs emulator: shifted test, after adaptation"
    old = _parity_rows(lava)  # a run folder from before the key: as it was
    assert old[stream][:2] == ["1000 samples × 100 steps, layers rec, readout",
                               "learned weights equal"]  # fmt: skip
    assert old[after][-1] == "Lava-learned weights"
    whole = {**lava, "stream_samples_learned": 4000, "stream_samples_total": 4000}
    assert _parity_rows(whole) == old
    part = _parity_rows({**whole, "stream_samples_learned": 150})
    assert part[stream][:2] == [
        "first 150 of 4000 stream samples × 100 steps, layers rec, readout",
        "learned weights equal the emulator's after them",
    ]
    assert part[after][-1] == "emulator's final weights (Lava learned the first 150)"
    assert not any("Lava-learned" in cell for row in part.values() for cell in row)
