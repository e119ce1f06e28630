"""First-spike read-out of a deployed network: the quantize stage's FS metrics, float and
integer (docs/first_spike.md, "Evaluation" and "In the pipeline").

A first-spike-coded network (``readout = "first_spike"``, arch ``fs_fc``, ``fs_gesture`` or
``fs_plane``) deploys as a chain of spiking layers whose last one, ``out``, is the output
layer. Both networks are scored on the same test samples, each over its own ``T_b`` steps, with
:class:`stllr.spike_metrics.SpikeReadoutTally`:

* the float model by the toolkit's evaluation (:func:`stllr.spike_training.evaluate_spike_batch`,
  whose prediction is ``argmin_n t_first`` of :func:`stllr.functional.first_spike_times`);
* the integer network by the emulator, whose output node's first spike times are
  :func:`stllr.spike_metrics.fs_times` (the same values, from integer spikes and
  membranes; :class:`stllr.spike_metrics.FirstSpikeTrack`).

Reported per network: FS accuracy (%), FR accuracy of the same spikes, output spikes per
sample, hidden spikes per neuron, first-spike latency ``ℓ`` (steps; silent samples left
out and counted) and the decision steps ``k_50``, ``k_90``.
"""

from __future__ import annotations

import torch

from stllr.spike_metrics import SpikeReadoutMetrics, SpikeReadoutTally

#: the Lava stage of a first-spike network compares fixed_pt only
FS_NO_FLOAT_LAVA = (
    "not run for a first-spike network (Lava fixed_pt is compared with the emulator, "
    "output by output)"
)


def float_readout(model, train_cfg, batch_iter):
    """``(metrics, predictions [N])`` of the float spiking-output model on the
    ``(x, y, lengths)`` batches of ``batch_iter`` (:func:`stllr.trainer.batches`)."""
    from stllr.spike_training import SpikeReadout, evaluate_spike_batch

    ro = SpikeReadout.from_config(train_cfg)
    tally, preds = SpikeReadoutTally(), []
    for x, y, lengths in batch_iter:
        preds.append(evaluate_spike_batch(model, x, y, ro, lengths, tally).logits.argmax(1).cpu())
    model.reset_state()
    return tally.result(), torch.cat(preds)


def integer_readout(qnet, batch_iter) -> tuple[SpikeReadoutMetrics, torch.Tensor]:
    """``(metrics, predictions [N])`` of the integer network (emulator, ``delay = 0``) on
    the batches of ``batch_iter``."""
    from quantization.emulator import IntegerEmulator
    from quantization.network import SPIKING_NODES

    out = qnet.nodes[-1].name
    hidden = [n.name for n in qnet.nodes[:-1] if isinstance(n, SPIKING_NODES)]
    emu = IntegerEmulator(qnet, delay=0)
    tally, preds, neurons = SpikeReadoutTally(), [], 0
    for x, y, lengths in batch_iter:
        res = emu.run(x, record=(out, *hidden), lengths=lengths)
        s = torch.stack(res.records[out]).double()
        # hidden spikes over the padded batch, as the float model counts them
        spikes = sum(float(torch.stack(res.records[h]).sum()) for h in hidden)
        neurons = sum(res.neurons[h] for h in hidden)
        tally.add(s, res.first_spike, y, lengths, spikes, neurons)
        preds.append(res.predictions())
    return tally.result(), torch.cat(preds)


def text(m: dict) -> str:
    """One clause of the stage line for a :meth:`SpikeReadoutMetrics.as_dict`."""
    return (
        f"FS {m['fs_acc']:.1f}%, {m['spikes_per_sample']:.1f} output spikes/sample, first "
        f"spike at step {m['latency']:.1f} ({m['silent']} silent)"
    )


def adaptation_teacher(train_cfg, steps: int):
    """The :class:`~stllr.functional.first_spike_teacher.FSTeacher` of the network's
    on-device learning: the loss's ``α = fs_alpha`` and ``σ = ⌊T/D⌋`` (``D = fs_d``,
    ``T = steps``, the stream's padded length), as the loss's Gaussian
    (docs/first_spike.md, "On-device learning of a first-spike network")."""
    from stllr.functional.first_spike_teacher import FSTeacher

    return FSTeacher(float(train_cfg.fs_alpha), float(steps // max(int(train_cfg.fs_d), 1)))
