"""Online learners of the adaptation scenario: the device (integer emulator) and float.

Both see the same stream of labelled samples, one at a time, and learn at the last
``window`` steps of each sample. The third factor comes from one of two sources
(``adaptation.signal``):

* ``"host"`` — the host computes the error of each step's logits,
  ``e[t] = softmax(o[t]) − onehot(y)``, and sends it; plastic layers are the readout and,
  optionally, the layer feeding it, whose signal is the error fed back through the
  current readout weights, ``δ[t] = e[t] · W_ro`` (the BP signal of S-TLLR);
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

:func:`float_twin` + :class:`FloatLearner`: the float model with every S-TLLR layer's
effective weight Ŵ (after weight standardisation) made its raw weight, so SGD acts on
Ŵ — the same parametrisation the device updates — trained with
:func:`stllr.training.train_batch` in ``stllr_online`` mode (an SGD step at every step of
the window) on the same plastic weights, with the same η.
"""

from __future__ import annotations

import copy
import re

import torch

from stllr.errors import UserError
from stllr.training import evaluate_batch, train_batch

#: sources of the third factor (``adaptation.signal``)
SIGNALS = ("host", "dfa", "sdfa")


def check_layers(qnet, layers: tuple[str, ...], signal: str = "host") -> tuple[str, list[str]]:
    """(readout name, hidden names): the last plastic node must be the network's output;
    with host signals every other one must feed it directly, with on-device DFA it must be
    a spiking layer (one-line errors otherwise)."""
    from quantization.network import SpikingLayer

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
            if not isinstance(qnet.node(h), SpikingLayer):
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


def make_plastic(qnet, layers, calibration, lr: float, seed: int, signal: str = "host"):
    """``qnet`` with on-device learning on ``layers``.

    ``lr`` is η of the float model's parametrization: a node whose input sums ``n`` float
    values (:func:`input_fold`) learns with ``η/n²`` (its weights are ``W/n`` and its
    eligibility ``n`` times the float one), so device and float take the same step.
    Third-factor scales: 1 for the readout's error; for a hidden layer ``2·max|W_ro|``
    (host: the error fed back through the readout), :func:`~quantization.signals.
    dfa_signal_max` (DFA: ``Σ|e| ≤ 2`` times ``max|B|``) or ``K/2`` times that (sign-DFA:
    ``Σ|sign e| ≤ K``)."""
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
    return out


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

    def __init__(self, qnet, layers, window: int):
        from quantization.emulator import IntegerEmulator

        self.readout, self.hidden = check_layers(qnet, tuple(layers))
        self.qnet = qnet
        self.window = window
        self.emu = IntegerEmulator(qnet, delay=0)
        self.specs = {n: qnet.node(n).learning for n in [*self.hidden, self.readout]}

    def learn_sample(self, x_int: torch.Tensor, label: int):
        """One sample ``[T, 1, ...]``: returns (signals ``{node: [T, 1, *out]}``, every node's
        outputs ``{node: [T, 1, ...]}``)."""
        from quantization.learning import quantize_signal

        emu = self.emu
        emu.reset()
        steps = x_int.shape[0]
        start = max(steps - self.window, 0)
        outs_all: dict[str, list] = {n.name: [] for n in self.qnet.nodes}
        sigs: dict[str, list] = {n: [] for n in self.specs}
        ro = self.qnet.node(self.readout)
        for t in range(steps):
            outs = emu.forward(x_int[t])
            for n in self.qnet.nodes:
                outs_all[n.name].append(outs[n.name])
            if t < start:
                for n in sigs:
                    sigs[n].append(torch.zeros_like(outs[n]))
                continue
            logits = outs[self.readout].double() * emu.logit_scale
            err = torch.softmax(logits, dim=1)
            err[0, label] -= 1.0
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

    def learn_sample(self, x_int: torch.Tensor, label: int):
        """One sample ``[T, 1, ...]``: returns (signals ``{node: [T, 1, *out]}``, every node's
        outputs ``{node: [T, 1, ...]}``)."""
        from quantization.signals import emulate_online

        res = emulate_online(
            self.qnet,
            x_int.transpose(0, 1),
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


#: float module of a QNetwork node where the names differ (VGG: ``conv3`` → ``convs.3``)
_NODE_TO_MODULE = ((re.compile(r"^conv(\d+)$"), r"convs.\1"),)
#: the feedback hook after a node's module (VGG: ``conv3`` → ``hooks.3``, SHD: ``rec`` → ``hook``)
_NODE_TO_HOOK = ((re.compile(r"^conv(\d+)$"), r"hooks.\1"), (re.compile(r"^rec$"), "hook"))


def _resolve(modules: dict, name: str, patterns) -> str | None:
    """The first of ``patterns``' renamings of ``name`` that ``modules`` holds."""
    for pat, repl in patterns:
        if pat.match(name):
            cand = pat.sub(repl, name)
            if cand in modules:
                return cand
    return None


def module_name(model, node: str) -> str:
    """The float model's module that a QNetwork node was converted from."""
    modules = dict(model.named_modules())
    found = node if node in modules else _resolve(modules, node, _NODE_TO_MODULE)
    chain = model.node_names() if hasattr(model, "node_names") else []  # SpikingChain
    if found is None and node in chain:
        found = f"layers.{chain.index(node)}"
    if found is None:
        raise UserError(f"adaptation.layers: the float model has no module for node {node!r}")
    return found


def float_twin(model, layers):
    """A copy of ``model`` whose S-TLLR layers multiply by raw weights equal to their Ŵ."""
    twin = copy.deepcopy(model)
    for name in layers:
        module_name(twin, name)  # one-line error if the node has no float module
    with torch.no_grad():
        for m in twin.modules():
            if getattr(m, "weight_std", False) and hasattr(m, "effective_weights"):
                pairs = m._weight_pairs()
                w_hats = m.effective_weights()
                m.weight_std = False
                for (w, _), w_hat in zip(pairs, w_hats, strict=True):
                    w.copy_(w_hat)
                m.reset_state()
    twin.eval()
    return twin


def use_device_feedback(twin, plan) -> None:
    """Switch the float twin to the device's DFA: each plastic hidden layer's feedback hook
    injects ``(softmax − onehot) · B`` (``sign(·)`` for sign-DFA) with ``B`` the plan's
    int8 matrix times ``2^b_exp``."""
    modules = dict(twin.named_modules())
    mode = {"dfa": "DFA", "sdfa": "sDFA"}[plan.source]
    for p in plan.projections:
        hook_name = _resolve(modules, p.node, _NODE_TO_HOOK)
        if hook_name is None:
            raise ValueError(f"the float model has no feedback hook after {p.node!r}")
        hook = modules[hook_name]
        b = p.matrix.double() * 2.0**p.b_exp
        hook.mode = mode
        hook.feedback = b.reshape(plan.num_classes, *hook.layer_shape).to(
            next(twin.parameters()).dtype
        )
    if hasattr(twin, "feedback_mode"):
        twin.feedback_mode = mode


def plastic_parameters(twin, layers) -> list[torch.nn.Parameter]:
    """The weights (not biases or gains) of the plastic layers."""
    modules = dict(twin.named_modules())
    params = []
    for name in layers:
        m = modules[module_name(twin, name)]
        params += [p for n, p in m.named_parameters() if n.startswith("weight")]
    return params


class FloatLearner:
    """SGD on the plastic Ŵ with S-TLLR gradients at every step of the window.

    The twin learns on ``device`` (None: where ``model`` is); inputs go there and
    predictions come back to the CPU.
    """

    def __init__(self, model, layers, lr: float, window: int, plan=None, device=None):
        self.model = float_twin(model, layers)
        if device is not None:
            self.model.to(device)
        self.device = next(self.model.parameters()).device
        if plan is not None and plan.projections:
            use_device_feedback(self.model, plan)
        self.window = window
        plastic = plastic_parameters(self.model, layers)
        ids = {id(p) for p in plastic}
        for p in self.model.parameters():
            p.requires_grad_(id(p) in ids)  # biases, gains and frozen layers stay as deployed
        self.optimizer = torch.optim.SGD(plastic, lr=lr)

    def learn_sample(self, x: torch.Tensor, label: int) -> None:
        train_batch(
            self.model,
            x.to(self.device),
            torch.tensor([label], device=self.device),
            self.optimizer,
            mode="stllr_online",
            window=self.window,
        )
        self.model.eval()

    def predict(self, x: torch.Tensor, lengths: torch.Tensor, batch_size: int = 256):
        """Predictions ``[N]`` on frames ``[T, N, ...]``, each sample over its ``lengths``
        steps."""
        preds = [
            evaluate_batch(
                self.model,
                x[:, s : s + batch_size].to(self.device),
                lengths=lengths[s : s + batch_size],
            )
            .logits.argmax(1)
            .cpu()
            for s in range(0, x.shape[1], batch_size)
        ]
        return torch.cat(preds)
