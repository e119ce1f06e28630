"""Quantization-aware training (QAT): fake-quantized weights, straight-through gradients.

Forward. Each weight tensor a layer multiplies its input by (Ŵ after weight
standardisation for S-TLLR and ScaledWS layers, the raw weight of readouts and plain
``nn.Linear``/``nn.Conv2d``) is replaced by its fake-quantized value. The tensors of one
layer (``(Ŵ, Ŵ_rec)`` for the recurrent layer) share one exponent
(:mod:`quantization.exponents`)::

    r  = max_i range_p(W_i)          range_p = max |W_i| (p = 100) or its p-th percentile
    e  = power_of_two_exponent(r, bits)
    m  = clamp(round(W / 2^e), −2^(bits−1), 2^(bits−1) − 1)        (round half to even)
    Wq = m · 2^e

``e`` is recomputed from the current weights whenever they change (every optimiser
step), so it follows the weights during fine-tuning; it is a constant of the graph
(no gradient flows through it).

Backward: the *clipped* straight-through estimator (STE)::

    ∂L/∂W = ∂L/∂Wq ⊙ 1[ −2^(bits−1) ≤ round(W / 2^e) ≤ 2^(bits−1) − 1 ]

i.e. rounding is treated as the identity, clamping is not: a weight the clamp moved gets
no gradient. With ``percentile = 100`` nothing is ever clipped (the exponent is chosen so
that the largest |W| fits) and the STE is the identity; with a lower percentile the
outliers stop receiving loss gradients (they are still standardised with the others).

The same as PTQ. The post-training quantizer (:mod:`quantization.ptq`) quantizes
``W·s_in``, the weight with its input's scale folded in, and gives the BPTT SHD network's
``ff`` and ``rec`` (one recurrent layer on the chip) one exponent. Power-of-two input
scales leave the mantissas unchanged; the one that does not is the 1/(H·W) of global
average pooling before a head, so that head is fake-quantized as ``Wq = fq(W/(H·W))·H·W``.
With both rules every QAT weight has exactly the mantissas the PTQ of the same
weights exports (tested for every task model).

Layers receive the quantizer through the generic hook ``weight_quantizer`` of
:mod:`stllr.weight_standardization` (``stllr`` itself knows nothing about quantization);
plain ``nn.Linear``/``nn.Conv2d`` get a forward that multiplies by ``Wq``.
:func:`enable_qat` installs both and returns a handle whose ``remove()`` restores the
float model; state dicts are unchanged either way. Hooked layers cache ``Wq`` with Ŵ
(one quantization per optimiser step); plain layers quantize at every call.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from quantization.backend import round_float, saturate
from quantization.exponents import calibrated_range, max_mantissa, power_of_two_exponent
from stllr import distributed
from stllr.config import ExperimentConfig
from stllr.errors import UserError
from stllr.layers.bptt import ScaledWSConv2d, ScaledWSLinear
from stllr.layers.readout import AccumulateReadout
from stllr.layers.stllr_layers import Conv2dSTLLR, LinearSTLLR, RecurrentLinearSTLLR
from stllr.models.base import SpikingModel
from stllr.models.shd import SHDNetBPTT
from stllr.run import epoch_seed, make_optimizer
from stllr.trainer import Dataset, run_epoch
from stllr.weight_standardization import standardize_weight

#: Layers that carry the ``weight_quantizer`` hook (exact types: a subclass may add
#: weights the hook does not see, so it must be listed here explicitly).
HOOKED_LAYERS: tuple[type[nn.Module], ...] = (
    LinearSTLLR,
    Conv2dSTLLR,
    RecurrentLinearSTLLR,
    ScaledWSLinear,
    ScaledWSConv2d,
    AccumulateReadout,
)
#: Plain torch layers whose raw ``weight`` is fake-quantized by a replaced forward.
PLAIN_LAYERS: tuple[type[nn.Module], ...] = (nn.Linear, nn.Conv2d)


def shared_exponent(tensors: Sequence[torch.Tensor], bits: int, percentile: float = 100.0) -> int:
    """``power_of_two_exponent(max_i calibrated_range(t_i, percentile), bits)``."""
    if len(tensors) == 0:
        raise ValueError("shared_exponent needs at least one tensor")
    r = max(calibrated_range(t, percentile) for t in tensors)
    return power_of_two_exponent(r, bits)


class FakeQuantSTE(torch.autograd.Function):
    """``Wq = clamp(round(W·2^−e), lo, hi)·2^e`` with the clipped STE (module docstring).

    Scaling by a power of two is exact in floating point, so ``Wq`` equals the float64
    value of ``m·2^e`` for float32 and float64 inputs alike (exponents ≥ −126).
    """

    @staticmethod
    def forward(ctx, w: torch.Tensor, exponent: int, bits: int):
        hi = max_mantissa(bits)
        lo = -hi - 1
        m = round_float(w * 2.0 ** (-exponent), "nearest_even")  # as the PTQ's weights
        clamped = saturate(m, lo, hi)
        if ctx.needs_input_grad[0]:
            ctx.save_for_backward(clamped == m)  # not clipped
        return clamped.mul_(2.0**exponent)

    @staticmethod
    def backward(ctx, grad):
        (inside,) = ctx.saved_tensors
        return grad * inside, None, None


def fake_quantize(
    tensors: Sequence[torch.Tensor] | torch.Tensor, bits: int, percentile: float = 100.0
) -> tuple[torch.Tensor, ...] | torch.Tensor:
    """Fake-quantize ``tensors`` with one shared exponent; differentiable (clipped STE).

    Args:
        tensors: the weights of one layer, e.g. ``(Ŵ, Ŵ_rec)``; a single tensor is
            accepted too and then a single tensor is returned.
        bits: signed mantissa width, 2..32.
        percentile: calibration of the range (100 = max |W|, nothing clipped).

    Returns:
        ``m·2^e`` per tensor (same shapes and dtypes), ``e`` from :func:`shared_exponent`.
    """
    if isinstance(tensors, torch.Tensor):
        return fake_quantize((tensors,), bits, percentile)[0]
    tensors = tuple(tensors)
    return _fake_quantize_at(tensors, shared_exponent(tensors, bits, percentile), bits)


def _fake_quantize_at(tensors: tuple[torch.Tensor, ...], exponent: int, bits: int):
    return tuple(FakeQuantSTE.apply(t, exponent, bits) for t in tensors)


def _float_ws_weight(layer: nn.Module) -> torch.Tensor:
    """The float Ŵ of a ScaledWS layer (no graph): a peer's contribution to a shared range."""
    with torch.no_grad():
        return standardize_weight(layer.weight, layer.gain)


@dataclass(frozen=True)
class WeightFakeQuantizer:
    """The ``weight_quantizer`` hook QAT installs (see the module docstring).

    ``Wq = fake_quantize(c·W)/c`` with ``c = input_scale`` and the exponent taken over the
    layer's tensors and the float Ŵ of ``peers`` (ScaledWS layers that drive the same LIF
    population: one layer, one exponent, on the chip). Frozen and compared by value, so
    layer caches keyed on it stay valid while the same setting is installed. A layer's
    cache is keyed on its own parameters only: a peer's update shows at the layer's next
    recomputation (every optimiser step in training, every sequence for BPTT layers).
    """

    bits: int
    percentile: float = 100.0
    #: c: the PTQ quantizes ``W·s_in`` (the input's scale folded in). A power-of-two c
    #: leaves the mantissas unchanged; 1/(H·W) of a global average pool does not.
    input_scale: float = 1.0
    peers: tuple[nn.Module, ...] = field(default=(), repr=False)

    def __post_init__(self):
        max_mantissa(self.bits)  # validates bits
        if not 0.0 < self.percentile <= 100.0:
            raise UserError(f"percentile must be in (0, 100], got {self.percentile}")
        if not (math.isfinite(self.input_scale) and self.input_scale > 0):
            raise UserError(f"input_scale must be a positive number, got {self.input_scale}")

    def __call__(self, weights: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        c = self.input_scale
        scaled = tuple(weights) if c == 1.0 else tuple(w * c for w in weights)
        ranged = scaled + tuple(_float_ws_weight(p) for p in self.peers)
        e = shared_exponent(ranged, self.bits, self.percentile)
        out = _fake_quantize_at(scaled, e, self.bits)
        return out if c == 1.0 else tuple(q / c for q in out)


def _plain_forward(module: nn.Module, quantizer: WeightFakeQuantizer, x: torch.Tensor):
    """Forward of a plain ``nn.Linear``/``nn.Conv2d`` with the weight fake-quantized."""
    (w,) = quantizer((module.weight,))
    if isinstance(module, nn.Conv2d):
        return module._conv_forward(x, w, module.bias)
    return F.linear(x, w, module.bias)


class QATHandle:
    """What :func:`enable_qat` installed; ``remove()`` restores the float model.

    ``quantizers`` maps each fake-quantized layer's qualified name to its quantizer. Also
    a context manager (``with enable_qat(model, 4): ...`` removes on exit).
    """

    def __init__(self, model: nn.Module, installed: dict[str, WeightFakeQuantizer]):
        self.model = model
        self.quantizers = dict(installed)
        modules = dict(model.named_modules())
        self._modules = [modules[name] for name in installed]

    @property
    def layers(self) -> tuple[str, ...]:
        """Qualified names of the fake-quantized layers."""
        return tuple(self.quantizers)

    @property
    def active(self) -> bool:
        return bool(self._modules)

    def remove(self) -> None:
        """Uninstall every quantizer (idempotent). Outputs are then bit-identical to before."""
        for m in self._modules:
            if type(m) in PLAIN_LAYERS:
                if "forward" in vars(m):
                    del m.forward
            else:
                m.weight_quantizer = None
        self._modules = []

    def __enter__(self) -> QATHandle:
        return self

    def __exit__(self, *exc) -> None:
        self.remove()

    def __repr__(self) -> str:
        state = "active" if self.active else "removed"
        return f"QATHandle({len(self.quantizers)} layers, {state})"


def _check_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Every weight-bearing layer of ``model``; ValueError for unknown or already-QAT ones."""
    layers = []
    for name, m in model.named_modules():
        label = f"{name or '<model>'} ({type(m).__name__})"
        if type(m) in HOOKED_LAYERS:
            if m.weight_quantizer is not None:
                raise ValueError(f"enable_qat: {label} already has a weight quantizer")
            layers.append((name, m))
        elif type(m) in PLAIN_LAYERS:
            if "forward" in vars(m):
                raise ValueError(f"enable_qat: {label} already has a replaced forward")
            layers.append((name, m))
        else:
            owned = [n for n, _ in m.named_parameters(recurse=False) if n.startswith("weight")]
            if owned:
                raise ValueError(
                    f"enable_qat: module {label} owns weight parameter(s) {owned} but QAT does "
                    "not know this layer type; give it the `weight_quantizer` hook "
                    "(stllr.weight_standardization.WeightQuantizer) and list it in "
                    "quantization.qat.HOOKED_LAYERS"
                )
    if not layers:
        raise ValueError(f"enable_qat: {type(model).__name__} has no weights to quantize")
    return layers


def shared_exponent_peers(model: nn.Module) -> dict[nn.Module, tuple[nn.Module, ...]]:
    """Layers that share one exponent with other layers (as the PTQ quantizes them).

    ``SHDNetBPTT``: ``ff`` and ``rec`` drive the same LIF population, one recurrent layer
    on the chip (``W`` and ``W_rec``), like ``RecurrentLinearSTLLR``'s own pair.
    """
    if isinstance(model, SHDNetBPTT):
        return {model.ff: (model.rec,), model.rec: (model.ff,)}
    return {}


def pooled_head_scales(model: nn.Module) -> dict[nn.Module, float]:
    """``{head: 1/(H·W)}`` for a ``Linear`` head after a global average pool ``gap``.

    The PTQ sums the pooled positions (``GlobalSumPool``) and folds 1/(H·W) into the head's
    weight, so QAT quantizes ``W/(H·W)``. H·W is measured by one step on a zero input of
    ``model.input_shape`` (eval mode, no grad; the model's state is reset afterwards).
    """
    gap, head = getattr(model, "gap", None), getattr(model, "head", None)
    if not (isinstance(gap, nn.AdaptiveAvgPool2d) and type(head) is nn.Linear):
        return {}
    if gap.output_size not in (1, (1, 1)):
        return {}
    seen: list[torch.Size] = []
    hook = gap.register_forward_pre_hook(lambda _m, args: seen.append(args[0].shape))
    was_training = model.training
    p = next(model.parameters())
    try:
        model.eval()
        model.reset_state()
        with torch.no_grad():
            model(torch.zeros(1, *model.input_shape, dtype=p.dtype, device=p.device))
    finally:
        hook.remove()
        model.train(was_training)
        model.reset_state()
    return {head: 1.0 / (seen[0][-2] * seen[0][-1])}


def enable_qat(model: nn.Module, bits: int = 8, percentile: float = 100.0) -> QATHandle:
    """Fake-quantize every weight ``model`` multiplies by (module docstring); returns the handle.

    Each layer's fake quantization is the PTQ's (:mod:`quantization.ptq`) for that layer:
    one exponent per layer (the recurrent pair, and :func:`shared_exponent_peers`, share
    it) and the global-pooling scale folded into the head (:func:`pooled_head_scales`).

    Raises ``ValueError`` naming the module when ``model`` holds a module that owns a
    ``weight*`` parameter but is not one of :data:`HOOKED_LAYERS` / :data:`PLAIN_LAYERS`
    (so that a new layer type cannot silently escape QAT), when QAT is already enabled
    on a layer, or when there is nothing to quantize. Nothing is installed then.
    """
    layers = _check_layers(model)
    base = WeightFakeQuantizer(bits, float(percentile))
    peers = shared_exponent_peers(model)
    scales = pooled_head_scales(model)
    installed = {}
    for name, m in layers:
        q = dataclasses.replace(base, input_scale=scales.get(m, 1.0), peers=peers.get(m, ()))
        if type(m) in PLAIN_LAYERS:
            m.forward = functools.partial(_plain_forward, m, q)
        else:
            m.weight_quantizer = q
        installed[name] = q
    return QATHandle(model, installed)


@dataclass(frozen=True)
class QATEpoch:
    """One QAT fine-tuning epoch: mean training loss (summed logits), accuracy %, time."""

    epoch: int
    train_loss: float
    train_acc: float
    seconds: float


#: ``trial`` index in :func:`stllr.run.epoch_seed` for QAT fine-tuning epochs (distinct
#: from the float run's trials 1, 2, ...).
QAT_SEED_TRIAL = 0


def qat_finetune(
    model: SpikingModel,
    mode: str,
    train_set: Dataset,
    cfg: ExperimentConfig,
    epochs: int,
    bits: int,
    percentile: float = 100.0,
    log: Callable[[str], None] = print,
) -> list[QATEpoch]:
    """Fine-tune ``model`` with QAT for ``epochs`` epochs of the usual training loop.

    Uses ``cfg``'s optimiser (``make_optimizer``: a fresh one), ``lr`` (constant, no
    schedule), ``batch_size`` and ``window``, and ``mode`` as in
    :func:`stllr.training.train_batch`. Randomness is seeded per epoch from
    ``(cfg.seed, QAT_SEED_TRIAL, epoch)`` as in :mod:`stllr.run`.

    QAT is enabled on entry and **removed on return** (also on error): the model comes
    back as a plain float model whose weights were trained through the quantizer. Its
    post-training quantization with the same ``bits`` and ``percentile`` gives exactly the
    weights of the last fine-tuning forward pass; to evaluate the fake-quantized model,
    use ``with enable_qat(model, bits, percentile): run_epoch(model, test, ...)``.

    :func:`float_finetune` runs the same epochs without the quantizer: the like-for-like
    float control of a QAT result.

    Returns one :class:`QATEpoch` per epoch.
    """
    handle = enable_qat(model, bits, percentile)
    try:
        return _finetune(
            model, mode, train_set, cfg, epochs, f"QAT {bits}-bit (p{percentile:g})", log
        )
    finally:
        handle.remove()


def float_finetune(
    model: SpikingModel,
    mode: str,
    train_set: Dataset,
    cfg: ExperimentConfig,
    epochs: int,
    log: Callable[[str], None] = print,
) -> list[QATEpoch]:
    """The float control of :func:`qat_finetune`: the same ``epochs`` with no quantizer.

    Same optimiser, learning rate, batches, window and per-epoch seeds, so the batch
    order and every random draw equal those of a QAT fine-tune of the same model: the
    two results differ only by the weight quantizer. QAT's accuracy minus this model's
    is the cost of quantization with the extra training counted on both sides.
    """
    return _finetune(model, mode, train_set, cfg, epochs, "float fine-tune", log)


def _finetune(model, mode, train_set, cfg, epochs, label, log) -> list[QATEpoch]:
    """The fine-tuning loop both share: ``epochs`` seeded epochs with a fresh optimiser."""
    if epochs < 1:
        raise ValueError(f"epochs must be ≥ 1, got {epochs}")
    optimizer = make_optimizer(cfg, model.parameters())
    if distributed.is_distributed():
        optimizer = distributed.GradientAllReduce(optimizer, model.batch_summed_parameters())
    history = []
    for epoch in range(1, epochs + 1):
        seed = epoch_seed(cfg.seed, QAT_SEED_TRIAL, epoch)
        torch.manual_seed(seed)
        gen = torch.Generator().manual_seed(seed)
        if hasattr(train_set, "reseed"):
            train_set.reseed(seed)
        t0 = time.perf_counter()
        loss, acc = run_epoch(
            model,
            train_set,
            cfg.batch_size,
            optimizer,
            mode,
            cfg.window,
            gen,
            desc=f"{label} epoch {epoch}",
            num_workers=cfg.num_workers,  # batches go to the model's device
        )
        history.append(QATEpoch(epoch, loss, acc, time.perf_counter() - t0))
        log(
            f"{label} epoch {epoch}/{epochs}: train loss "
            f"{loss:.4f}, acc {acc:5.1f}% [{history[-1].seconds:.1f} s]"
        )
    return history
