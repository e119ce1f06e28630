"""Online learners of the adaptation scenario: the device (integer emulator) and float.

Both see the same stream of labelled samples, one at a time, and learn at the last
``window`` steps of each sample. The third factor comes from one of two sources
(``adaptation.signal``):

* ``"host"`` — the host computes the error of each step's logits,
  ``e[t] = softmax(o[t]) − onehot(y)``, and sends it; plastic layers are the readout and,
  optionally, the layer feeding it, whose signal is the error fed back through the
  current readout weights, ``δ[t] = e[t] · W_ro`` (the BP signal of S-TLLR). A
  first-spike network's output layer spikes: its ``e[t]`` is the causal first-spike
  teaching signal of the spikes so far (:mod:`stllr.functional.first_spike_teacher`,
  ``teacher``), fed back the same way;
* ``"dfa"`` / ``"sdfa"`` — the device makes its own signals
  (:mod:`quantization.signals`): an error unit compares the readout's membrane with the
  label, ``e = clip(o/A, 0, 1) − onehot`` in integers, and every plastic hidden layer (any
  spiking layer, not only the readout's input) gets ``e · B_l`` (or ``sign(e) · B_l``)
  through a fixed random int8 matrix. The host only streams the inputs and the labels.
  The float learner runs the same rule in float: DFA (or sign-DFA) with the device's
  ``B_l`` (dequantized) and the float error ``softmax − onehot``.

Nothing else changes: biases, thresholds and decays stay as deployed.

:class:`DeviceLearner` runs :class:`quantization.emulator.IntegerEmulator` with batch 1
and the host-computed integer signals (:func:`quantization.learning.quantize_signal`);
it records the signals so that Lava can be fed exactly the same ones. Steps outside
the window send no signal. (Lava's port receives zeros there; an update with ``L = 0``
changes no weight that lies inside its range, which the pipeline's parity check of the
learned weights confirms.)

The float counterpart (:class:`~pipeline.float_learner.FloatLearner`) lives in
:mod:`pipeline.float_learner`.
"""

from __future__ import annotations

import torch

from stllr.errors import UserError

#: sources of the third factor (``adaptation.signal``)
SIGNALS = ("host", "dfa", "sdfa")


def check_layers(qnet, layers: tuple[str, ...], signal: str = "host") -> tuple[str, list[str]]:
    """(readout name, hidden names): the last plastic node must be the network's output;
    with host signals every other one must feed it directly, with on-device DFA it must be
    a spiking layer (one-line errors otherwise)."""
    from quantization.network import SPIKING_NODES

    if signal not in SIGNALS:
        raise UserError(f"adaptation.signal must be one of {SIGNALS}, got {signal!r}")
    out = qnet.nodes[-1]
    names = [n.name for n in qnet.nodes]
    for name in layers:
        if name not in names:
            raise UserError(f"adaptation.layers: no node {name!r}; nodes: {', '.join(names)}")
    if layers[-1] != out.name:
        raise UserError(
            f"adaptation.layers must end with the output node {out.name!r} (its error is the "
            f"third factor), got {list(layers)}"
        )
    hidden = list(layers[:-1])
    for h in hidden:
        if signal != "host":
            if not isinstance(qnet.node(h), SPIKING_NODES):
                raise UserError(
                    f"adaptation.layers: {h!r} is a {type(qnet.node(h)).__name__}; only "
                    "spiking layers and the readout learn"
                )
            continue
        if h not in out.inputs:
            raise UserError(
                f"adaptation.layers: {h!r} does not feed {out.name!r} directly; only the "
                "readout and its input layer learn from the host-computed error "
                "(adaptation.signal=dfa reaches any spiking layer)"
            )
    return out.name, hidden


def input_fold(qnet, name: str, shapes: dict | None = None) -> int:
    """How many float input values the deployed node's input sums: a ``GlobalSumPool`` before
    it sums ``H·W`` positions (the float model averages them), a sum ``Pool`` ``k²``, whose
    ``1/n`` PTQ folded into the node's weights (``W_dev = W_float / n``, input ``n·mean``).
    ``shapes``: :func:`lava_models.exporter.output_shapes` of ``qnet`` (computed if absent)."""
    from lava_models.exporter import output_shapes
    from quantization.network import GlobalSumPool, Pool

    shapes = shapes if shapes is not None else output_shapes(qnet)
    fold = 1
    node = qnet.node(name)
    while len(node.inputs) == 1 and node.inputs[0] != "input":
        src = qnet.node(node.inputs[0])
        if isinstance(src, GlobalSumPool):
            shape = shapes[src.inputs[0]]
            fold *= int(shape[-1] * shape[-2]) if len(shape) == 3 else 1
        elif isinstance(src, Pool) and src.mode == "sum":
            fold *= src.kernel**2
        else:
            break
        node = src
    return fold


def make_plastic(
    qnet,
    layers,
    calibration,
    lr: float,
    seed: int,
    signal: str = "host",
    consolidate_shift: int = 0,
    sample_steps: int = 0,
    precondition: int = 0,
    window: int = 0,
):
    """``qnet`` with on-device learning on ``layers``; with ``consolidate_shift = k`` every
    plastic node pulls its weights ``2^−k`` of the way back to the deployed ones after the
    last step of every ``sample_steps``-step sample
    (:func:`quantization.consolidation.schedule_consolidation`, run by the node kinds).

    ``lr`` is η of the float model's parametrization: a node whose input sums ``n`` float
    values (:func:`input_fold`) learns with ``η/n²`` (its weights are ``W/n`` and its
    eligibility ``n`` times the float one), so device and float take the same step.
    Third-factor scales: 1 for the readout's error; for a hidden layer ``2·max|W_ro|``
    (host: the error fed back through the readout), :func:`~quantization.signals.
    dfa_signal_max` (DFA: ``Σ|e| ≤ 2`` times ``max|B|``) or ``K/2`` times that (sign-DFA:
    ``Σ|sign e| ≤ K``). ``precondition = R > 0``: the readout's per-input step shifts
    (within ±R) from its pre-traces' energy over the last ``window`` steps of the
    ``calibration`` frames (:mod:`quantization.preconditioning`)."""
    from lava_models.exporter import output_shapes
    from quantization.learning import attach_learning
    from quantization.signals import dfa_signal_max

    readout, hidden = check_layers(qnet, tuple(layers), signal)
    shapes = output_shapes(qnet)
    out = qnet
    for name in [readout, *hidden]:
        if name == readout:
            bound = 1.0
        elif signal == "host":
            ro = qnet.node(readout)
            bound = 2.0 * float(ro.weight.abs().max()) * 2.0**ro.weight_exp
        else:
            bound = dfa_signal_max(shapes[name])
            if signal == "sdfa":
                bound *= qnet.num_classes / 2.0
        eta = lr / input_fold(qnet, name, shapes) ** 2
        out = attach_learning(out, [name], calibration, lr=eta, signal_max=bound, seed=seed)
        if name == readout and precondition:
            out = _precondition(out, readout, calibration, precondition, window)
    if consolidate_shift:
        from quantization.consolidation import schedule_consolidation

        out = schedule_consolidation(out, consolidate_shift, sample_steps)
    return out


def _precondition(qnet, name: str, calibration, span: int, window: int):
    """``qnet`` with node ``name``'s spec holding its per-input step shifts."""
    import dataclasses

    from quantization.preconditioning import input_shifts
    from quantization.trace_energy import input_energy

    node = qnet.node(name)
    energy = input_energy(qnet, name, calibration, window)
    spec = dataclasses.replace(node.learning, pre_shift=input_shifts(energy, span))
    return qnet.replace_node(dataclasses.replace(node, learning=spec))


def make_plan(plastic, layers, signal: str, seed: int):
    """The on-device signal constants (:class:`~quantization.signals.SignalPlan`) of a
    plastic network: DFA/sign-DFA matrices for the hidden ``layers``."""
    from quantization.signals import make_signal_plan

    _, hidden = check_layers(plastic, tuple(layers), signal)
    return make_signal_plan(plastic, signal, hidden, seed=seed)


def strip_learning(qnet):
    """The network for inference: every node's ``LearningSpec`` removed."""
    import dataclasses

    for n in qnet.nodes:
        if getattr(n, "learning", None) is not None:
            qnet = qnet.replace_node(dataclasses.replace(n, learning=None))
    return qnet


class DeviceLearner:
    """Batch-1 integer emulator learning from host-computed third factors (module doc)."""

    def __init__(self, qnet, layers, window: int, teacher=None):
        from quantization.emulator import IntegerEmulator

        self.readout, self.hidden = check_layers(qnet, tuple(layers))
        self.qnet = qnet
        self.window = window
        # a spiking first-spike output layer: the FSTeacher of its per-step signal
        self.teacher = teacher
        self.emu = IntegerEmulator(qnet, delay=0)
        self.specs = {n: qnet.node(n).learning for n in [*self.hidden, self.readout]}
        self.consolidates = any(sp.consolidate_shift for sp in self.specs.values())
        self.learned_steps = 0  # steps at which a signal was sent

    def learn_sample(
        self,
        x_int: torch.Tensor,
        label: int,
        scale: float = 1.0,
        gate: float = 0.0,
        pseudo: float = 0.0,
    ):
        """One sample ``[T, 1, ...]``: returns (signals ``{node: [T, 1, *out]}``, every node's
        outputs ``{node: [T, 1, ...]}``). ``scale``/``gate``/``pseudo``: the host's rate
        scale, error gate and pseudo-label confidence for ``label = −1``
        (:func:`pipeline.adapt_mechanisms.step_error`); a step without error sends zeros."""
        from pipeline.adapt_mechanisms import fs_step_error, step_error
        from quantization.learning import quantize_signal
        from stllr.functional.first_spike_teacher import teach_init, teach_step

        emu = self.emu
        emu.reset()
        x_int = x_int.long()  # the host may hold the stream in a narrower integer type
        steps = x_int.shape[0]
        start = max(steps - self.window, 0)
        outs_all: dict[str, list] = {n.name: [] for n in self.qnet.nodes}
        sigs: dict[str, list] = {n: [] for n in self.specs}
        ro = self.qnet.node(self.readout)
        fs = None if self.teacher is None else teach_init(1, self.qnet.num_classes)
        for t in range(steps):
            outs = emu.forward(x_int[t])
            for n in self.qnet.nodes:
                outs_all[n.name].append(outs[n.name])
            if fs is not None:  # the output spikes so far (first-spike teaching signal)
                fs = teach_step(fs, outs[self.readout].cpu())
            err = None
            if t >= start and fs is not None:
                err = fs_step_error(fs, self.teacher, label, gate, scale, pseudo)
            elif t >= start:
                logits = outs[self.readout].double() * emu.logit_scale
                err = step_error(logits, label, gate, scale, pseudo)
            if err is None:
                zero = {n: torch.zeros_like(outs[n]) for n in sigs}
                if t == steps - 1 and self.consolidates:  # the pull follows this step's
                    emu.apply_signals(zero)  # update, zero or not (as in Lava)
                for n in sigs:
                    sigs[n].append(zero[n])
                continue
            self.learned_steps += 1
            signal = {self.readout: quantize_signal(err, self.specs[self.readout])}
            if self.hidden:
                w_ro = emu.weights(self.readout)["w"].double() * 2.0**ro.weight_exp
                delta = err @ w_ro
                for h in self.hidden:
                    signal[h] = quantize_signal(delta, self.specs[h])
            emu.apply_signals(signal)
            for n in sigs:
                sigs[n].append(signal[n])
        return (
            {k: torch.stack(v) for k, v in sigs.items()},
            {k: torch.stack(v) for k, v in outs_all.items()},
        )

    def network(self):
        """The network with the weights learned so far (learning specs kept)."""
        return self.emu.to_qnetwork()


class OnDeviceLearner:
    """Batch-1 integer emulator learning from signals made on the device (DFA, sign-DFA):
    :func:`quantization.signals.emulate_online`, one sample at a time, one emulator (its
    weights and step counter carry over, as on the chip and in one Lava run)."""

    def __init__(self, qnet, plan, window: int):
        from quantization.emulator import IntegerEmulator

        self.qnet, self.plan, self.window = qnet, plan, window
        self.emu = IntegerEmulator(qnet, delay=0)

    def learn_sample(
        self,
        x_int: torch.Tensor,
        label: int,
        scale: float = 1.0,
        gate: float = 0.0,
        pseudo: float = 0.0,
    ):
        """One sample ``[T, 1, ...]``: returns (signals ``{node: [T, 1, *out]}``, every node's
        outputs ``{node: [T, 1, ...]}``). The device makes its own error from the label, so
        the host's rate scale, error gate and pseudo-labels do not apply."""
        from quantization.signals import emulate_online

        if scale != 1.0 or gate != 0.0 or label < 0:
            raise ValueError("on-device signals take no host rate scale, gate or pseudo-label")

        res = emulate_online(
            self.qnet,
            x_int.long().transpose(0, 1),
            [label],
            learn_window=self.window,
            plan=self.plan,
            emulator=self.emu,
        )
        return (
            {k: torch.as_tensor(v)[:, None] for k, v in res.signals.items()},
            {k: torch.as_tensor(v)[:, None] for k, v in res.outputs.items()},
        )

    def network(self):
        return self.emu.to_qnetwork()
