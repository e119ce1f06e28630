"""The float learner of the adaptation scenario: S-TLLR updates of the plastic Ŵ in float.

:func:`float_twin` + :class:`FloatLearner`: the float model with every S-TLLR layer's
effective weight Ŵ (after weight standardisation) made its raw weight, so SGD acts on
Ŵ — the same parametrisation the device updates — trained with
:func:`stllr.training.train_batch` in ``stllr_online`` mode (an SGD step at every step of
the window) on the same plastic weights, with the same η (:mod:`pipeline.learners` for
the device side and the choice of signals).
"""

from __future__ import annotations

import copy
import re

import torch

from stllr.errors import UserError
from stllr.training import evaluate_batch, train_batch

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
    """The float model's module that a QNetwork node was converted from (the converter's
    own record, :func:`quantization.convert.node_modules`)."""
    from quantization.convert import node_modules

    names = {id(m): n for n, m in model.named_modules()}
    source = node_modules(model).get(node)
    found = None if source is None else names.get(id(source))
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

    def __init__(self, model, layers, lr: float, window: int, plan=None, device=None, pre_shift=()):
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
        if pre_shift:  # the readout's per-input step sizes 2^−s_i (quantization.preconditioning)
            modules = dict(self.model.named_modules())
            w = modules[module_name(self.model, layers[-1])].weight
            if w.shape[1] != len(pre_shift):
                raise ValueError(
                    f"{len(pre_shift)} input shifts for a readout weight {tuple(w.shape)}"
                )
            gain = 2.0 ** -torch.tensor(pre_shift, dtype=w.dtype, device=w.device)
            gain = gain.reshape(1, -1, *([1] * (w.dim() - 2)))

            def precondition(*_):  # before every SGD step, whoever computed the gradient
                if w.grad is not None:
                    w.grad.mul_(gain)

            self.optimizer.register_step_pre_hook(precondition)

    def learn_sample(
        self,
        x: torch.Tensor,
        label: int,
        scale: float = 1.0,
        gate: float = 0.0,
        pseudo: float = 0.0,
    ) -> None:
        """One sample ``[T, 1, ...]``: an SGD step at every step of the window. ``scale``
        multiplies the step's loss (so its error ``softmax − onehot``), ``gate`` skips steps
        with ``1 − p_label < gate``, ``label = −1`` learns from confident answers
        (``pseudo``) as :func:`pipeline.adapt_mechanisms.step_error` decides."""
        x = x.to(self.device)
        if scale == 1.0 and gate == 0.0 and label >= 0:
            y = torch.tensor([label], device=self.device)
            train_batch(self.model, x, y, self.optimizer, mode="stllr_online", window=self.window)
            self.model.eval()
            return
        import torch.nn.functional as F

        from pipeline.adapt_mechanisms import step_error
        from stllr.weight_standardization import deferred_weight_gradients

        model, steps = self.model, x.shape[0]
        start = max(steps - self.window, 0)
        model.train()
        model.reset_state()
        with deferred_weight_gradients(model) as flush:
            model.forward_no_graph(x[:start])
            for t in range(start, steps):
                # the forward's label feeds only DFA hooks; with the host's (BP) error the
                # loss below carries the label, or the pseudo-label of an unlabelled sample
                out = model(x[t], torch.tensor([max(label, 0)], device=self.device))
                err = step_error(out.detach().cpu(), label, gate, scale, pseudo)
                if err is None:
                    continue
                target = label if label >= 0 else int(err[0].argmin())  # the −(1 − p) entry
                y = torch.tensor([target], device=self.device)
                self.optimizer.zero_grad(set_to_none=True)
                (scale * F.cross_entropy(out, y)).backward()
                flush()
                self.optimizer.step()
        model.eval()

    def consolidate(self, deployed, shift: int) -> None:
        """``W ← W − 2^−shift·(W − W0)`` for every plastic weight (``deployed``: the W0
        tensors, in the order of the optimizer's parameters)."""
        with torch.no_grad():
            params = self.optimizer.param_groups[0]["params"]
            for w, w0 in zip(params, deployed, strict=True):
                w.sub_((w - w0) * 2.0**-shift)

    def plastic_copy(self) -> list[torch.Tensor]:
        """Copies of the plastic weights (W0 of :meth:`consolidate`)."""
        return [p.detach().clone() for p in self.optimizer.param_groups[0]["params"]]

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
