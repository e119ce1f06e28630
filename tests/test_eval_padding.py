"""Evaluation does not depend on the evaluation batch size (issue #12, "Trust on every path").

Samples of different lengths are zero-padded to the longest of their batch. The score of a
sample must be the sum of its logits over its own steps only: what it gets when it runs
alone, unpadded. Checked for the float model (``evaluate_batch``, ``run_epoch``, ``stllr
eval``), the integer emulator (``run``, ``evaluate``, the Lava stage's batched emulation)
and against an independent reference: each sample run alone, step by step, by plain
``model(x[t])`` calls (float) or :meth:`IntegerEmulator.forward` (integers).
"""

from __future__ import annotations

import json

import pytest
import torch

from quantization.emulator import IntegerEmulator, evaluate
from quantization.ptq import PTQConfig, quantize_input, quantize_model
from stllr.models.shd import SHDNetBPTT, SHDNetSTLLR
from stllr.padding import stack_samples, step_mask, sum_over_lengths
from stllr.trainer import ListDataset, batches, run_epoch
from stllr.training import evaluate_batch

LENGTHS = (9, 30, 4, 22, 30, 13, 1, 17)
BATCH_SIZES = (1, 3, len(LENGTHS))


def _samples(seed: int = 0, channels: int = 40) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [(torch.rand(n, channels, generator=g) < 0.3).float() for n in LENGTHS]


def _model(cls=SHDNetSTLLR):
    torch.manual_seed(3)
    model = cls(num_inputs=40, hidden=24, num_classes=5)
    with torch.no_grad():  # a larger bias: hidden neurons keep firing on the padding
        for name, p in model.named_parameters():
            if name.endswith("bias") and p.dim() == 1 and p.numel() == 24:
                p.add_(0.4)
    return model.eval()


@torch.no_grad()
def _alone(model, x: torch.Tensor) -> torch.Tensor:
    """Reference: one unpadded sample ``[T, C]`` through ``model(x[t])`` calls."""
    model.reset_state()
    return sum(model(x[t : t + 1])[0] for t in range(x.shape[0]))


def _float_logits(model, data, batch_size: int) -> torch.Tensor:
    return torch.cat(
        [evaluate_batch(model, x, y, lengths).logits for x, y, lengths in batches(data, batch_size)]
    )


@pytest.mark.parametrize(
    ("cls", "flips"), [(SHDNetSTLLR, True), (SHDNetBPTT, False)], ids=["stllr", "bptt"]
)
def test_float_score_is_the_sample_alone_at_every_batch_size(cls, flips):
    model = _model(cls)
    xs = _samples()
    ref = torch.stack([_alone(model, x) for x in xs])
    labels = ref.argmax(1)  # every sample right when scored alone: 100 %
    # not vacuous: summed over the whole padded batch the logits (and, for the S-TLLR
    # network, some predictions) change
    padded = stack_samples([(x, 0) for x in xs])[0]
    model.reset_state()
    with torch.no_grad():
        unmasked = sum(model(padded[t]) for t in range(padded.shape[0]))
    assert not torch.allclose(unmasked, ref, rtol=1e-3)
    assert bool((unmasked.argmax(1) != labels).any()) == flips

    data = ListDataset(xs, labels)
    for bs in BATCH_SIZES:
        torch.testing.assert_close(_float_logits(model, data, bs), ref, rtol=1e-6, atol=1e-6)
        assert run_epoch(model, data, bs)[1] == 100.0


def _quantized(model, xs):
    qnet, _ = quantize_model(model, [stack_samples([(x, 0) for x in xs])[0]], PTQConfig())
    return qnet


def _emulated_alone(qnet, x: torch.Tensor) -> torch.Tensor:
    """Reference: one unpadded sample through :meth:`IntegerEmulator.forward`, step by step."""
    emu = IntegerEmulator(qnet)
    x_int = quantize_input(x, qnet.input_format)
    return sum(emu.forward(x_int[t : t + 1])[qnet.nodes[-1].name][0] for t in range(x.shape[0]))


def test_emulator_score_is_the_sample_alone_at_every_batch_size():
    model = _model()
    xs = _samples()
    qnet = _quantized(model, xs)
    ref = torch.stack([_emulated_alone(qnet, x) for x in xs])
    labels = ref.argmax(1)
    data = ListDataset(xs, labels)
    padded = stack_samples([(x, 0) for x in xs])[0]
    assert (IntegerEmulator(qnet).run(padded).predictions() != labels).any()  # not vacuous

    stats = []
    for bs in BATCH_SIZES:
        emu = IntegerEmulator(qnet)
        runs = [emu.run(x, lengths=lengths) for x, _, lengths in batches(data, bs)]
        assert torch.equal(torch.cat([r.logits_sum for r in runs]), ref)
        spikes = {k: sum(r.spike_counts[k] for r in runs) for k in runs[0].spike_counts}
        stats.append((spikes, emu.saturation()))
        acc, _ = evaluate(qnet, batches(data, bs))
        assert acc == 1.0
    # spike and saturation counts cover each sample's own steps, whatever the batching
    assert stats[0] == stats[1] == stats[2]
    alone = [IntegerEmulator(qnet).run(x[:, None]) for x in xs]
    assert stats[0][0] == {k: sum(r.spike_counts[k] for r in alone) for k in stats[0][0]}
    totals = {k: v["total"] for k, v in stats[0][1].items()}
    assert totals["readout/membrane"] == 5 * sum(LENGTHS)


def test_lava_stage_scores_each_sample_over_its_own_steps():
    """The Lava stage's runs on padded samples, scored over each sample's lengths: the
    batched emulator and Lava ``fixed_pt`` give every sample's integer logits alone, Lava
    ``floating_pt`` its float64 logits alone (within the stage's tolerance)."""
    from pipeline.lava_inference import (
        FLOAT_LOGIT_TOL,
        emulate,
        float64_model,
        lava_outputs,
        padded_subset,
        run_float_in_lava,
        run_in_lava,
    )

    model = _model()
    xs = _samples()
    qnet = _quantized(model, xs)
    x, _, lengths = padded_subset(ListDataset(xs, torch.zeros(len(xs))), range(len(xs)))
    x_int = quantize_input(x, qnet.input_format)
    out = emulate(qnet, x_int)[qnet.nodes[-1].name]
    ref = torch.stack([_emulated_alone(qnet, s) for s in xs])
    assert torch.equal(sum_over_lengths(out, lengths), ref)
    assert not torch.equal(out.sum(0), ref)  # the padding would count
    res = run_in_lava(qnet, x_int, timeout_s=120)
    got = lava_outputs(res, qnet, len(xs), x.shape[0])[qnet.nodes[-1].name]
    assert torch.equal(sum_over_lengths(got, lengths), ref)
    model64 = float64_model(model)
    ref64 = torch.stack([_alone(model64, s.double()) for s in xs])
    logits, _ = run_float_in_lava(model64, x, 120, lengths)
    assert float((torch.as_tensor(logits) - ref64).abs().max()) <= FLOAT_LOGIT_TOL


def test_step_mask_marks_each_samples_own_steps():
    m = step_mask(torch.tensor([2, 0, 3]), 3)
    assert m.tolist() == [[True, False, True], [True, False, True], [False, False, True]]
    with pytest.raises(ValueError, match="exceed"):
        step_mask(torch.tensor([4]), 3)
    v = torch.arange(6.0).view(3, 2, 1)  # [T, B, K]: sample 0 has 1 step, sample 1 all 3
    assert sum_over_lengths(v, torch.tensor([1, 3])).tolist() == [[0.0], [1.0 + 3.0 + 5.0]]


def test_emulator_predictions_do_not_depend_on_the_thread_count():
    model = _model()
    xs = _samples()
    qnet = _quantized(model, xs)
    x, _, lengths = stack_samples([(s, 0) for s in xs])
    before = torch.get_num_threads()
    try:
        got = {}
        for n in (1, 2):
            torch.set_num_threads(n)
            got[n] = IntegerEmulator(qnet).run(x, lengths=lengths).logits_sum
    finally:
        torch.set_num_threads(before)
    assert torch.equal(got[1], got[2])


def test_stllr_eval_accuracy_is_independent_of_val_batch_size(tmp_path):
    """``stllr eval`` on a tiny trained checkpoint: the same accuracy at val batch 1, 3 and
    all at once, equal to each test sample scored alone."""
    from stllr.cli.checkpoint import load_checkpoint
    from stllr.cli.main import main

    args = ["train", "--task", "shd-standin", "--data", str(tmp_path / "data"), "--no-progress"]
    sets = ["hidden=32", "epochs=2", "batch_size=8", "window=10", "lr=5e-3"]
    sets += ["standin_train=100", "standin_test=40", f"out_dir={tmp_path / 'runs'}", "name=e"]
    assert main([*args, "--set", *sets]) == 0
    ckpt = tmp_path / "runs" / "e" / "trial_1" / "best.pt"
    ck = load_checkpoint(ckpt)
    test = [ck.data.test[i] for i in range(len(ck.data.test))]
    assert len(test) == 40 and len({x.shape[0] for x, _ in test}) > 1  # lengths differ
    right = sum(int(_alone(ck.model, x).argmax() == y) for x, y in test)
    assert right > 2  # above chance (20 classes): the scores mean something
    for bs in (1, 3, 40):
        out = tmp_path / f"eval_{bs}.json"
        cmd = ["eval", str(ckpt), "--no-progress", "--out", str(out)]
        assert main([*cmd, "--set", f"val_batch_size={bs}"]) == 0
        assert json.loads(out.read_text())["test_acc"] == 100.0 * right / 40
