"""Training and evaluation of a spiking-output network (stllr.spike_training): a toy task
is learnt with both read-outs, and evaluation does not depend on the batch's padding."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from stllr.cli.main import main
from stllr.models.neuron_kinds import NeuronSpec
from stllr.models.spiking_output import FSFCNet
from stllr.padding import pad_time
from stllr.spike_metrics import SpikeReadoutTally
from stllr.spike_training import SpikeReadout, evaluate_spike_batch, train_spike_batch
from stllr.surrogates import get_surrogate


def toy_batch(n=48, steps=20, seed=0):
    """Class c ∈ {0, 1, 2}: input channels 4c … 4c+3 fire from step 3 on, over sparse noise."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 3
    x = (torch.rand(steps, n, 12, generator=g) < 0.02).float()
    for b in range(n):
        c = int(y[b])
        x[2 + c :, b, 4 * c : 4 * c + 4] += (
            torch.rand(steps - 2 - c, 4, generator=g) < 0.6
        ).float()
    return x.clamp(max=1.0), y


@pytest.mark.parametrize("kind", ["first_spike", "rate"])
def test_toy_task_is_learnt(kind):
    torch.manual_seed(0)
    net = FSFCNet(12, 3, (16,), NeuronSpec(threshold=0.5), NeuronSpec(tau_mem=20.0, threshold=1.0))
    ro = SpikeReadout(kind, fs_alpha=0.5, fs_d=4, fs_a=20.0, fr_alpha=10.0)
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    x, y = toy_batch()
    held_out = toy_batch(seed=1)
    loss_before = evaluate_spike_batch(net, x, y, ro).loss
    for _ in range(150):
        train_spike_batch(net, x, y, opt, ro)
    fit, test = SpikeReadoutTally(), SpikeReadoutTally()
    loss_after = evaluate_spike_batch(net, x, y, ro, tally=fit).loss
    evaluate_spike_batch(net, *held_out, ro, tally=test)
    name = "fs_acc" if kind == "first_spike" else "fr_acc"
    # the training batch is fitted, held-out samples well above chance (33 %)
    assert loss_after < 0.2 * loss_before and getattr(fit.result(), name) == 100.0
    assert getattr(test.result(), name) >= 80.0


def test_evaluation_reads_each_sample_over_its_own_steps():
    torch.manual_seed(1)
    net = FSFCNet(12, 3, (16,), NeuronSpec(threshold=0.5), NeuronSpec(tau_mem=20.0, threshold=0.6))
    ro = SpikeReadout("first_spike", fs_d=4, fs_a=20.0)
    x, y = toy_batch(n=4)
    lengths = torch.tensor([20, 9, 14, 5])
    samples = [x[: int(n), b] for b, n in enumerate(lengths)]
    batch = pad_time(samples)
    together = evaluate_spike_batch(net, batch, y, ro, lengths)
    for b, s in enumerate(samples):
        alone = evaluate_spike_batch(net, s.unsqueeze(1), y[b : b + 1], ro)
        torch.testing.assert_close(together.logits[b], alone.logits[0])


def test_surrogate_e_hand_values():
    psi = get_surrogate("softsign")
    assert psi(torch.tensor([0.0, 0.2, -1.0])).tolist() == pytest.approx([1.0, 0.25, 1 / 36])


def test_train_and_eval_cli_report_the_spike_readout(tmp_path, capsys):
    sets = [
        f"out_dir={tmp_path / 'runs'}",
        f"data={tmp_path / 'data'}",
        "standin_train=22",
        "standin_test=11",
        "hidden_sizes=8",
        "n_time_bins=40",
        "frame_us=20000",
        "epochs=1",
        "device=cpu",
    ]
    config = str(Path(__file__).parents[1] / "experiments" / "fs_ntidigits_standin.toml")
    assert main(["train", config, "--no-progress", "--threads", "1", "--set", *sets]) == 0
    out = capsys.readouterr().out
    assert "test read-out: FS" in out and "first spike at step" in out
    trial = tmp_path / "runs" / "fs_ntidigits_standin" / "trial_1"
    (row,) = json.loads((trial / "metrics.json").read_text())
    assert row["test_acc"] == row["readout"]["fs_acc"] and row["readout"]["samples"] == 11
    assert "test_latency" in (trial / "metrics.csv").read_text().splitlines()[0]
    result = tmp_path / "eval.json"
    assert main(["eval", str(trial / "best.pt"), "--out", str(result), "--no-progress"]) == 0
    scored = json.loads(result.read_text())
    assert scored["spike_readout"] == row["readout"] and scored["readout"] == "first_spike"
