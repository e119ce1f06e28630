"""Online learners of the adaptation scenario: the device (integer emulator) and float.

Both see the same stream of labelled samples, one at a time, and learn at the last
``window`` steps of each sample from the error of that step's logits
``e[t] = softmax(o[t]) − onehot(y)`` — the third factor a host (or an on-chip error
unit) sends. Plastic layers are the readout and, optionally, the layer feeding it, whose
signal is the error fed back through the current readout weights, ``δ[t] = e[t] · W_ro``
(the BP signal of S-TLLR for that layer). Nothing else changes: biases, thresholds and
decays stay as deployed.

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

import torch

from stllr.training import evaluate_batch, train_batch


def check_layers(qnet, layers: tuple[str, ...]) -> tuple[str, list[str]]:
    """(readout name, hidden names): the last plastic node must be the network's output and
    every other one must feed it directly (one-line errors otherwise)."""
    out = qnet.nodes[-1]
    names = [n.name for n in qnet.nodes]
    for name in layers:
        if name not in names:
            raise ValueError(f"adaptation.layers: no node {name!r}; nodes: {', '.join(names)}")
    if layers[-1] != out.name:
        raise ValueError(
            f"adaptation.layers must end with the output node {out.name!r} (its error is the "
            f"third factor), got {list(layers)}"
        )
    hidden = list(layers[:-1])
    for h in hidden:
        if h not in out.inputs:
            raise ValueError(
                f"adaptation.layers: {h!r} does not feed {out.name!r} directly; only the "
                "readout and its input layer learn from the host-computed error"
            )
    return out.name, hidden


def make_plastic(qnet, layers, calibration, lr: float, seed: int):
    """``qnet`` with on-device learning on ``layers`` (third factor scales: 1 for the
    readout's error, ``2·max|W_ro|`` for the error fed back through the readout)."""
    from quantization.learning import attach_learning

    readout, hidden = check_layers(qnet, tuple(layers))
    out = attach_learning(qnet, [readout], calibration, lr=lr, signal_max=1.0, seed=seed)
    if hidden:
        ro = qnet.node(readout)
        bound = 2.0 * float(ro.weight.abs().max()) * 2.0**ro.weight_exp
        out = attach_learning(out, hidden, calibration, lr=lr, signal_max=bound, seed=seed)
    return out


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


def float_twin(model, layers):
    """A copy of ``model`` whose S-TLLR layers multiply by raw weights equal to their Ŵ."""
    twin = copy.deepcopy(model)
    modules = dict(twin.named_modules())
    for name in layers:
        if name not in modules:
            raise ValueError(f"adaptation.layers: the float model has no module {name!r}")
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


def plastic_parameters(twin, layers) -> list[torch.nn.Parameter]:
    """The weights (not biases or gains) of the plastic layers."""
    modules = dict(twin.named_modules())
    params = []
    for name in layers:
        m = modules[name]
        params += [p for n, p in m.named_parameters() if n.startswith("weight")]
    return params


class FloatLearner:
    """SGD on the plastic Ŵ with S-TLLR gradients at every step of the window."""

    def __init__(self, model, layers, lr: float, window: int):
        self.model = float_twin(model, layers)
        self.window = window
        plastic = plastic_parameters(self.model, layers)
        ids = {id(p) for p in plastic}
        for p in self.model.parameters():
            p.requires_grad_(id(p) in ids)  # biases, gains and frozen layers stay as deployed
        self.optimizer = torch.optim.SGD(plastic, lr=lr)

    def learn_sample(self, x: torch.Tensor, label: int) -> None:
        train_batch(
            self.model,
            x,
            torch.tensor([label]),
            self.optimizer,
            mode="stllr_online",
            window=self.window,
        )
        self.model.eval()

    def predict(self, x: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
        preds = [
            evaluate_batch(self.model, x[:, s : s + batch_size]).logits.argmax(1)
            for s in range(0, x.shape[1], batch_size)
        ]
        return torch.cat(preds)
