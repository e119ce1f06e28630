"""Scaled weight standardisation (kept inside autograd).

For a weight ``W`` of shape ``[out, *fan_in_dims]`` and a gain ``g`` of shape
``[out, 1, ...]``::

    Ŵ = g ⊙ (W − mean) / sqrt(var · fan_in + eps)

with ``mean`` and the *unbiased* ``var`` taken per output unit over all fan-in
dimensions and ``fan_in = ∏ fan_in_dims``. S-TLLR's custom Functions return
∂L/∂Ŵ; autograd maps it onto ``W`` and ``g`` through this function, which is why
it must run with gradients enabled.

Layers may also carry a *weight quantizer* (:data:`WeightQuantizer`): a hook applied
to the effective weights right where they are produced (after standardisation), so
that every weight the layer multiplies its input by is the hook's output. The cache
below computes and caches ``quantizer(Ŵ)`` as one unit. ``stllr`` defines only the
hook; quantizers live in the ``quantization`` package.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from contextlib import contextmanager

import torch

WS_EPS = 1e-4

#: ``quantizer(weights) -> weights``: receives *all* effective weights of one layer at
#: once as a tuple — ``(Ŵ,)``, or ``(Ŵ, Ŵ_rec)`` for a recurrent layer, so that they can
#: share one scale — and returns a tuple of tensors of the same shapes. It runs inside
#: autograd: its backward (e.g. a straight-through estimator) maps ∂L/∂(output) onto
#: ∂L/∂Ŵ. Use a plain callable, not an ``nn.Module`` (which would be registered as a
#: sub-module). ``None`` = no quantization.
WeightQuantizer = Callable[[tuple[torch.Tensor, ...]], Sequence[torch.Tensor]]

#: Parameter pairs ``(W, g)`` of one layer (``g`` None without a gain).
WeightGainPairs = Sequence[tuple[torch.Tensor, torch.Tensor | None]]


def apply_weight_quantizer(
    quantizer: WeightQuantizer | None, weights: tuple[torch.Tensor, ...]
) -> tuple[torch.Tensor, ...]:
    """``quantizer(weights)`` checked to return one tensor per weight, same shapes.

    Returns ``weights`` unchanged when ``quantizer`` is None.
    """
    if quantizer is None:
        return weights
    out = tuple(quantizer(weights))
    if len(out) != len(weights) or any(
        not isinstance(q, torch.Tensor) or q.shape != w.shape
        for q, w in zip(out, weights, strict=False)
    ):
        got = [tuple(q.shape) if isinstance(q, torch.Tensor) else type(q).__name__ for q in out]
        raise ValueError(
            f"weight quantizer {quantizer!r} must return one tensor per weight with the same "
            f"shape: got {got} for {[tuple(w.shape) for w in weights]}"
        )
    return out


def standardize_weight(weight: torch.Tensor, gain: torch.Tensor | None, eps: float = WS_EPS):
    """Return Ŵ for ``weight`` ``[out, ...]`` and optional ``gain`` ``[out, 1, ...]``.

    Computed by :class:`_Standardize`, which keeps only ``W``, ``g`` and two
    per-row statistics for backward (the plain autograd graph of the formula
    keeps several weight-sized tensors) and is about 4× faster on the CPU.
    """
    if math.prod(weight.shape[1:]) < 2:
        raise ValueError(
            f"weight standardisation needs a fan-in of at least 2, got weight shape "
            f"{tuple(weight.shape)}; use weight_std=False for such a layer"
        )
    return _Standardize.apply(weight, gain, eps)


def standardize_weight_reference(weight, gain, eps: float = WS_EPS):
    """The formula written with plain autograd ops (the reference in tests)."""
    dims = tuple(range(1, weight.dim()))
    fan_in = math.prod(weight.shape[1:])
    mean = weight.mean(dim=dims, keepdim=True)
    var = weight.var(dim=dims, keepdim=True, unbiased=True)
    w_hat = (weight - mean) / torch.sqrt(var * fan_in + eps)
    return w_hat * gain if gain is not None else w_hat


class _Standardize(torch.autograd.Function):
    """Ŵ = g·x̄·r with x̄ = W − mean, r = (n/(n−1)·Σx̄² + eps)^(−1/2), n = fan-in.

    (``var·fan_in`` with the unbiased variance is ``n/(n−1)·Σx̄²``.) Backward,
    per output row with upstream G::

        ∂L/∂W = g·r·(G − mean(G)) − g·r³·n/(n−1)·(Σ G·x̄)·x̄
        ∂L/∂g = r·Σ G·x̄
    """

    @staticmethod
    def forward(ctx, weight, gain, eps):
        dims = tuple(range(1, weight.dim()))
        n = math.prod(weight.shape[1:])
        mean = weight.mean(dim=dims, keepdim=True)
        centred = weight - mean
        rstd = torch.rsqrt((centred * centred).sum(dim=dims, keepdim=True) * (n / (n - 1)) + eps)
        scale = rstd * gain if gain is not None else rstd
        ctx.save_for_backward(weight, gain, mean, rstd)
        ctx.n, ctx.dims = n, dims
        return centred.mul_(scale)

    @staticmethod
    def backward(ctx, grad):
        weight, gain, mean, rstd = ctx.saved_tensors
        n, dims = ctx.n, ctx.dims
        centred = weight - mean
        g_dot_x = (grad * centred).sum(dim=dims, keepdim=True)
        scale = rstd * gain if gain is not None else rstd
        grad_gain = g_dot_x * rstd if gain is not None and ctx.needs_input_grad[1] else None
        coef = scale * rstd * rstd * (n / (n - 1)) * g_dot_x
        grad_w = (grad - grad.mean(dim=dims, keepdim=True)).mul_(scale).sub_(centred.mul_(coef))
        return grad_w, grad_gain, None


class StandardizedWeightCache:
    """Reuse Ŵ (after the layer's weight quantizer, if any) while ``W`` and ``g`` are unchanged.

    Ŵ only changes when the optimiser updates ``W`` or ``g`` (which bumps their
    in-place version counters), so recomputing it at every time step is wasted
    work. The cache is keyed on grad mode, the quantizer, the tensors' identities
    and versions, and is cleared by the owning layer's ``reset_state()``. One cache
    may serve several ``(W, g)`` pairs of one layer (:meth:`get_group`): they are
    standardised separately and handed to the quantizer together.

    ``keep_graph=False`` (S-TLLR layers) caches only under ``no_grad``: with a
    backward at every step, each step needs its own small WS graph.
    ``keep_graph=True`` (BPTT layers) also caches the graph-carrying Ŵ, which
    autograd then differentiates once for all steps of the sequence.
    ``standardize=False`` caches ``quantizer((W,))`` of raw weights (the S-TLLR
    readout's weight, when it has a quantizer) with the same rules.
    """

    def __init__(self, keep_graph: bool, standardize: bool = True):
        self.keep_graph = keep_graph
        self.standardize = standardize
        #: set by :func:`deferred_weight_gradients`
        self.deferred = False
        self._key: tuple | None = None
        self._value: tuple[torch.Tensor, ...] | None = None
        # deferred mode: (outputs with graph, their leaf copies)
        self._pending: tuple[tuple[torch.Tensor, ...], tuple[torch.Tensor, ...]] | None = None

    def clear(self) -> None:
        self._key = None
        self._value = None

    def get(
        self,
        weight: torch.Tensor,
        gain: torch.Tensor | None,
        quantizer: WeightQuantizer | None = None,
    ) -> torch.Tensor:
        """``quantizer((Ŵ,))[0]`` (Ŵ without a quantizer), cached; see :meth:`get_group`."""
        return self.get_group(((weight, gain),), quantizer)[0]

    def get_group(
        self, pairs: WeightGainPairs, quantizer: WeightQuantizer | None = None
    ) -> tuple[torch.Tensor, ...]:
        """``quantizer((Ŵ_1, …, Ŵ_n))`` for ``pairs = ((W_1, g_1), …)``, cached.

        In deferred mode (:func:`deferred_weight_gradients`, with gradients enabled)
        the returned tensors are leaf copies that accumulate ∂L/∂(quantizer output)
        over the steps; :meth:`flush` maps the sum through the quantizer's backward
        and the WS Jacobian once.
        """
        grad = torch.is_grad_enabled()
        key: tuple = (grad, quantizer)
        for weight, gain in pairs:
            k = (weight.data_ptr(), weight._version, weight.dtype)
            if gain is not None:
                k += (gain.data_ptr(), gain._version)
            key += (k,)

        def compute() -> tuple[torch.Tensor, ...]:
            if self.standardize:
                w_hat = tuple(standardize_weight(w, g) for w, g in pairs)
            else:
                w_hat = tuple(w for w, _ in pairs)
            return apply_weight_quantizer(quantizer, w_hat)

        if grad and self.deferred:
            if self._pending is None or key != self._key:
                self.flush()
                full = compute()
                self._pending = (full, tuple(f.detach().requires_grad_(True) for f in full))
                self._key = key
            return self._pending[1]
        if grad and not self.keep_graph:
            return compute()
        if key != self._key:
            self._value = compute()
            self._key = key
        return self._value

    def flush(self) -> None:
        """Deferred mode: map the accumulated gradient onto W and g (one backward)."""
        if self._pending is not None:
            full, leaves = self._pending
            self._pending = None
            self._key = None
            todo = [(f, leaf.grad) for f, leaf in zip(full, leaves, strict=True)]
            todo = [(f, g) for f, g in todo if g is not None]
            if todo:
                torch.autograd.backward([f for f, _ in todo], [g for _, g in todo])


def weight_caches(model: torch.nn.Module) -> list[StandardizedWeightCache]:
    """Every :class:`StandardizedWeightCache` held by ``model``'s modules."""
    return [
        v
        for m in model.modules()
        for v in vars(m).values()
        if isinstance(v, StandardizedWeightCache)
    ]


@contextmanager
def deferred_weight_gradients(model: torch.nn.Module):
    """Within the block, S-TLLR layers differentiate a leaf copy of Ŵ.

    The per-step backward passes then accumulate ∂L/∂Ŵ on that leaf, and the
    yielded ``flush()`` (called before each optimiser step, and on exit) maps the
    sum through the weight-standardisation Jacobian once. Because Ŵ is the same
    for every step until the optimiser changes W, this equals a WS backward at
    every step (the Jacobian is linear in the upstream gradient), at one WS
    backward per update instead of one per step.

    With a weight quantizer the leaf is the quantizer's output Ŵ_q and the flush
    runs the quantizer's backward too: the same argument holds as long as that
    backward is linear in the upstream gradient (a straight-through estimator
    ``∂L/∂Ŵ = mask ⊙ ∂L/∂Ŵ_q`` with a mask fixed by Ŵ is).
    """
    caches = [c for c in weight_caches(model) if not c.keep_graph]

    def flush() -> None:
        for c in caches:
            c.flush()

    for c in caches:
        c.deferred = True
    try:
        yield flush
        flush()
    finally:
        for c in caches:
            c.deferred = False
            c._pending = None
            c.clear()
