"""Learning signals computed *on device*: integer kernels for the third factor ``L``.

A plastic node learns from a third factor ``L`` (8-bit signed, scale ``2^l_exp`` of its
:class:`~quantization.learning_formats.LearningSpec`) on its ``ls_in`` port. Sources:

1. **host-injected** — ``L`` precomputed on the host (e.g. ``softmax − one-hot`` times
   B, made integer with :func:`quantization.learning.quantize_signal`) and streamed in
   (``lava_models.runner.run_lava(signals=...)``);
2. **on device** (this module, chip-plausible: integer adds, shifts, clips and fixed
   int8 matrix products; every operand is local to the error/feedback neurons):

   * output error, no softmax (:func:`output_error`)::

         e = sat8(round((clip(o, 0, A) − A·y) / 2^k))      (gated: 0 where y has no 1)

     ``o`` the readout's integer membrane (the logits, sent as graded values each step),
     ``y`` the one-hot label (a teaching spike per step, all zeros outside the learning
     window), ``A = 2^(k − e_exp)`` the correct class's target in membrane LSBs. The float
     value is ``e·2^e_exp ≈ clip(o_f/A_f, 0, 1) − onehot``: ``softmax`` replaced by a
     clipped linear map of the logit. It keeps the signs and bounds of
     ``softmax − onehot`` (wrong classes ``∈ [0, 1]``, the target ``∈ [−1, 0]``) but is
     exactly 0 for a wrong class whose logit is ≤ 0 and for a target logit ≥ A
     (``softmax − onehot`` is never 0). ``clip=False`` gives the plain MSE-style
     ``(o − A·y)/A``;
   * DFA (:func:`project_signal`): ``L_l = sat8(round((e · B_l) / 2^k_l))`` with ``B_l``
     a fixed random int8 matrix per hidden layer (``kaiming_uniform`` like
     :class:`stllr.feedback.FeedbackHook`, quantized with the power-of-two exponent
     rule); sign-DFA projects ``sign(e)`` instead;
3. **BP through the readout's transposed weights** (simulation only):
   ``L = sat8(round((e · W_readout) / 2^k))`` for the readout's input layer. It needs
   the readout's *current* weights at the hidden layer's feedback neurons (weight
   transport, a non-local read of a changing synaptic matrix): no neuromorphic chip
   does this, so it is a reference to compare against, not a deployable rule.

Every rounding here is ``nearest`` (add half, arithmetic shift: ties upward); every
shift is exact when negative (a left shift). The kernels are written once for numpy
(one sample, inside Lava ``fixed_pt`` models) and torch (a batch, in the emulator);
matrix products go through :func:`quantization.backend.int_linear` (exact).

:class:`SignalPlan` holds every constant (error format, B matrices, shifts), built from
a seed by :func:`make_signal_plan`, so the emulator (:func:`emulate_online`) and the
Lava processes (``lava_models.online.run_lava_online``) use identical ones.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
import torch

from quantization.backend import int_linear, round_float, round_shift, saturate, xp_of
from quantization.exponents import power_of_two_exponent
from quantization.formats import ACT_SHIFT, SIGNAL_MAX, SIGNAL_MIN
from quantization.network import SPIKING_NODES, QNetwork, Readout

SOURCES = ("dfa", "sdfa", "bp")
#: Exponent of a unit error when the readout does not learn (its own l_exp otherwise).
DEFAULT_ERROR_EXP = power_of_two_exponent(1.0, 8)


# --- kernels (numpy or torch) ------------------------------------------------------------


def shift_nearest(x, k: int):
    """``x / 2^k`` rounded to nearest (ties upward) for ``k > 0``; exact ``x << −k`` for
    ``k ≤ 0``."""
    if k <= 0:
        return x << -k
    return round_shift(x, k, "nearest_up")


def sat8(x):
    """Saturate to the 8-bit signed third factor, ``[−128, 127]``."""
    return saturate(x, SIGNAL_MIN, SIGNAL_MAX)


def _has_label(y):
    """1 where the label vector (last axis) holds any non-zero entry, else 0 (keeps dims)."""
    if isinstance(y, torch.Tensor):
        return (y != 0).any(dim=-1, keepdim=True).to(torch.int64)
    return np.any(np.asarray(y) != 0, axis=-1, keepdims=True).astype(np.int64)


@dataclass(frozen=True)
class ErrorFormat:
    """Constants of :func:`output_error`: ``e = sat8(round((clip(o,0,A) − A·y) / 2^shift))``.

    ``A = 2^(shift − exp)`` (:attr:`target`) in readout-membrane LSBs; ``e·2^exp`` is the
    error in the units of ``softmax − onehot`` (a unit error is ``2^−exp`` LSBs). ``exp``
    equals the readout's ``l_exp`` when it learns, so ``e`` is the readout's own ``L``.
    """

    shift: int
    exp: int
    clip: bool = True

    @property
    def target_bits(self) -> int:
        return self.shift - self.exp

    @property
    def target(self) -> int:
        """``A``, the correct class's target membrane (integer, a power of two)."""
        return 1 << self.target_bits


def output_error(o, y, fmt: ErrorFormat):
    """Output error without softmax (module doc, item 2), ``[..., K]`` int64.

    ``o``: the readout's integer membrane ``[..., K]``; ``y``: one-hot label ``[..., K]``
    (all zeros: no label at this step, the error is 0).
    """
    a = fmt.target
    oc = saturate(o, 0, a) if fmt.clip else o
    return sat8(shift_nearest((oc - y * a) * _has_label(y), fmt.shift))


def sign_error(e):
    """``sign(e)`` ∈ {−1, 0, 1} (sign-DFA)."""
    return xp_of(e).sign(e)


def project_signal(e, matrix, shift: int, out_shape: tuple[int, ...] | None = None):
    """``sat8(round((e · M) / 2^shift))``: ``e`` ``[..., K]``, ``M`` ``[K, N]`` integers.

    DFA: ``M = B_l`` (fixed int8); BP: ``M = W_readout`` (``[K, N]``, its current weights,
    so ``e·M = W_readoutᵀ e``). ``out_shape`` reshapes the trailing ``N`` (a conv layer's
    ``[C, H, W]``).
    """
    prod = int_linear(e, _transpose(matrix))
    out = sat8(shift_nearest(prod, shift))
    if out_shape is not None:
        out = out.reshape(tuple(out.shape[:-1]) + tuple(out_shape))
    return out


def _transpose(m):
    return m.T if isinstance(m, torch.Tensor) else np.asarray(m).T


# --- constants: error format, feedback matrices, shifts ---------------------------------


def default_target_logit(num_classes: int) -> float:
    """``ln(9·(K − 1))``: the logit at which softmax gives the target 0.9 against
    ``K − 1`` zero logits (the error's ``A`` when nothing is calibrated)."""
    return math.log(9.0 * max(num_classes - 1, 1))


def readout_lsb(qnet: QNetwork) -> float:
    """Float value of one readout-membrane LSB (``2^(e − 6)``)."""
    return 2.0 ** (_readout(qnet).weight_exp - ACT_SHIFT)


def make_error_format(qnet: QNetwork, target_logit: float | None = None,
                      clip: bool = True) -> ErrorFormat:  # fmt: skip
    """The :class:`ErrorFormat` of ``qnet``'s readout for a float target logit.

    ``A`` is ``target_logit`` (default :func:`default_target_logit`) in membrane LSBs,
    rounded to the nearest power of two (in log2, at least 1); the error's exponent is the
    readout's ``l_exp`` if it learns (else :data:`DEFAULT_ERROR_EXP`, a unit error ≈ 64).
    """
    ro = _readout(qnet)
    if target_logit is None:
        target_logit = default_target_logit(qnet.num_classes)
    if not (math.isfinite(target_logit) and target_logit > 0):
        raise ValueError(f"target_logit must be a positive number, got {target_logit}")
    exp = ro.learning.l_exp if ro.learning is not None else DEFAULT_ERROR_EXP
    bits = max(0, round(math.log2(target_logit / readout_lsb(qnet))))
    return ErrorFormat(shift=bits + exp, exp=exp, clip=clip)


def calibrate_target_logit(qnet: QNetwork, calibration: Iterable[torch.Tensor],
                           percentile: float = 90.0) -> float:  # fmt: skip
    """A target logit from data: the ``percentile`` of the per-step largest readout
    logit (float units, positive part) over float calibration frames ``[T, B, ...]``."""
    from quantization.emulator import IntegerEmulator

    name = _readout(qnet).name
    emu = IntegerEmulator(qnet)
    tops = []
    for frames in calibration:
        res = emu.run(frames, record=(name,))
        tops += [o.max(dim=1).values.clamp(min=0) for o in res.records[name]]
    top = torch.cat(tops).double()
    value = float(torch.quantile(top, percentile / 100.0)) * readout_lsb(qnet)
    return value if value > 0 else default_target_logit(qnet.num_classes)


def dfa_signal_max(out_shape: tuple[int, ...]) -> float:
    """A ``signal_max`` for a DFA layer's :func:`~quantization.learning.attach_learning`:
    ``2·sqrt(6/N)``, the largest float DFA signal ``(softmax − onehot)·B`` can reach
    (``Σ|softmax − onehot| ≤ 2``, ``|B| ≤ sqrt(6/N)``). The default ``signal_max = 1``
    leaves a wide layer's ``L`` only a few LSBs (N = 2048: ±7)."""
    from stllr.feedback import kaiming_uniform_bound

    return 2.0 * kaiming_uniform_bound(int(np.prod(out_shape)))


def feedback_matrix(num_classes: int, out_shape: tuple[int, ...], seed: int,
                    stream: int = 0) -> tuple[torch.Tensor, int]:  # fmt: skip
    """A fixed random DFA matrix ``B`` ``[K, N]`` (``N = ∏ out_shape``) as int8 mantissas.

    Float ``B`` is uniform in ``±sqrt(6/N)`` (``kaiming_uniform_(a=0)`` with fan-in ``N``,
    as :class:`stllr.feedback.FeedbackHook`), drawn from a generator seeded by
    ``(seed, stream)``; it is quantized with the power-of-two exponent rule at 8 bits.
    Returns ``(B_int int64, b_exp)``: ``B ≈ B_int · 2^b_exp``.
    """
    from stllr.feedback import kaiming_uniform_bound

    n = int(np.prod(out_shape))
    bound = kaiming_uniform_bound(n)
    gen = torch.Generator().manual_seed(int(seed) * 1_000_003 + int(stream))
    b = (torch.rand(num_classes, n, generator=gen, dtype=torch.float64) * 2 - 1) * bound
    b_exp = power_of_two_exponent(bound, 8)
    b_int = saturate(round_float(b / 2.0**b_exp, "nearest_even"), SIGNAL_MIN, SIGNAL_MAX)
    return b_int.to(torch.int64), b_exp


@dataclass(frozen=True)
class Projection:
    """How one hidden layer gets its ``L`` from the error ``e``.

    ``kind``: ``"dfa"`` (``e·B``), ``"sdfa"`` (``sign(e)·B``) or ``"bp"`` (``e·W_readout``
    with the readout's current weights; ``matrix`` is then None). ``shift``: the right
    shift onto the layer's ``L`` scale; ``b_exp``: B's exponent (DFA).
    """

    node: str
    kind: str
    shift: int
    out_shape: tuple[int, ...]
    matrix: torch.Tensor | None = None
    b_exp: int = 0

    @property
    def sign(self) -> bool:
        return self.kind == "sdfa"

    @property
    def transport(self) -> bool:
        """True for BP: needs the readout's weights (weight transport, not on chip)."""
        return self.kind == "bp"


@dataclass(frozen=True)
class SignalPlan:
    """Every constant of the on-device signals of one network (see module doc)."""

    readout: str
    error: ErrorFormat
    readout_learns: bool  # e goes into the readout's own ls_in
    projections: tuple[Projection, ...] = ()
    source: str = "dfa"
    seed: int = 0
    num_classes: int = 0

    def signals(self, outs: dict, y, readout_weight=None) -> tuple[dict, object]:
        """``({node: L}, e)`` from one step's outputs (``outs[readout]`` the membrane) and
        the one-hot label ``y`` (zeros: no learning this step). ``readout_weight``
        (``[K, N]``, the readout's current integer weights) is needed for BP only."""
        e = output_error(outs[self.readout], y, self.error)
        sig = {self.readout: e} if self.readout_learns else {}
        for p in self.projections:
            sig[p.node] = projection_signal(p, e, readout_weight)
        return sig, e


def projection_signal(p: Projection, e, readout_weight=None):
    """``L`` of projection ``p`` from the error ``e`` (numpy one sample or torch batch)."""
    src = sign_error(e) if p.sign else e
    if p.transport:
        if readout_weight is None:
            raise ValueError(f"BP signal of {p.node!r} needs the readout's current weights")
        m = readout_weight
    else:
        m = p.matrix if isinstance(e, torch.Tensor) else p.matrix.numpy()
    if isinstance(e, torch.Tensor):
        m = torch.as_tensor(m).to(e.device)
    return project_signal(src, m, p.shift, p.out_shape)


def _readout(qnet: QNetwork) -> Readout:
    ro = qnet.nodes[-1]
    if not isinstance(ro, Readout):
        raise ValueError(f"on-device errors need a Readout as the last node, got "
                         f"{type(ro).__name__} {ro.name!r}")  # fmt: skip
    return ro


def _out_shape(qnet: QNetwork, name: str) -> tuple[int, ...]:
    from quantization.emulator import IntegerEmulator

    x = torch.zeros((1, *qnet.input_shape), dtype=torch.int64)
    return tuple(IntegerEmulator(qnet).forward(x)[name].shape[1:])


def make_signal_plan(
    qnet: QNetwork,
    source: str = "dfa",
    hidden: Iterable[str] | None = None,
    *,
    seed: int = 0,
    target_logit: float | None = None,
    clip: bool = True,
) -> SignalPlan:
    """Constants of the on-device signals for ``qnet`` (module doc).

    ``source``: ``"dfa"``, ``"sdfa"`` or ``"bp"``; ``hidden``: the plastic spiking layers
    that get a projected ``L`` (default: every plastic ``SpikingLayer`` or AdLIF layer; BP
    reaches only the readout's input layer). The readout (the last node) learns from ``e``
    itself if it is plastic. ``seed`` draws the B matrices (one stream per node index).
    """
    if source not in SOURCES:
        raise ValueError(f"source must be one of {SOURCES}, got {source!r}")
    ro = _readout(qnet)
    fmt = make_error_format(qnet, target_logit, clip)
    if hidden is None:
        hidden = [n.name for n in qnet.nodes if isinstance(n, SPIKING_NODES) and n.learning]
    k = qnet.num_classes
    projections = []
    for name in hidden:
        n = qnet.node(name)
        if not isinstance(n, SPIKING_NODES) or n.learning is None:
            raise ValueError(f"node {name!r} is not a plastic spiking layer")
        l_exp = n.learning.l_exp
        shape = _out_shape(qnet, name)
        if source == "bp":
            if ro.inputs != (name,):
                raise ValueError(
                    f"BP through transposed weights reaches only the readout's input layer "
                    f"{ro.inputs[0]!r}, not {name!r} (simulation only, see module doc)"
                )
            shift = l_exp - ro.weight_exp - fmt.exp
            projections.append(Projection(name, "bp", shift, shape))
            continue
        idx = next(i for i, m in enumerate(qnet.nodes) if m.name == name)
        b, b_exp = feedback_matrix(k, shape, seed, idx)
        e_exp = 0 if source == "sdfa" else fmt.exp  # sign(e) has unit scale
        projections.append(Projection(name, source, l_exp - b_exp - e_exp, shape, b, b_exp))
    return SignalPlan(ro.name, fmt, ro.learning is not None, tuple(projections), source,
                      int(seed), k)  # fmt: skip


# --- labels and the emulator's online learning --------------------------------------------


def label_schedule(labels, steps: int, num_classes: int,
                   learn_window: int | None = None) -> np.ndarray:  # fmt: skip
    """One-hot teaching vectors ``[N, T, K]`` (int64): the label at the last
    ``learn_window`` steps of each sample (``None``: every step), zeros elsewhere
    (docs/rule.md §6: the learning signal reaches steps ``T − D … T − 1``)."""
    labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"labels must be in [0, {num_classes}), got {labels.tolist()}")
    window = steps if learn_window is None else int(learn_window)
    if not 0 <= window <= steps:
        raise ValueError(f"learn_window must be in [0, {steps}], got {learn_window}")
    y = np.zeros((labels.size, steps, num_classes), dtype=np.int64)
    for i, c in enumerate(labels):
        y[i, steps - window :, c] = 1
    return y


def step_signals(emu, plan: SignalPlan, outs: dict, y) -> tuple[dict, torch.Tensor]:
    """The ``signals`` dict for ``emu.apply_signals`` from an
    :class:`~quantization.emulator.IntegerEmulator` step's ``outs`` and one-hot labels
    ``y`` ``[B, K]`` (and the error ``e``). BP reads the readout's current weights."""
    w = emu.weights(plan.readout)["w"] if any(p.transport for p in plan.projections) else None
    y = torch.as_tensor(np.asarray(y), dtype=torch.int64).to(emu.device)
    return plan.signals(outs, y, w)


@dataclass
class OnlineResult:
    """Outputs of on-device learning (emulator or Lava), one sample after another.

    ``outputs``: node → ``[N·T, *shape]``; ``errors``: ``e`` ``[N·T, K]``; ``signals``:
    node → its ``L`` ``[N·T, *shape]``; ``weights``: plastic node → ``{"w", "w_rec"}``
    after the run; ``predictions``: per sample, argmax of the logits summed over steps.
    """

    outputs: dict[str, np.ndarray]
    errors: np.ndarray
    signals: dict[str, np.ndarray]
    weights: dict[str, dict[str, np.ndarray]]
    predictions: np.ndarray
    plan: SignalPlan
    state: dict = field(default_factory=dict)  # emulator: the IntegerEmulator; Lava: Vars
    timing: dict = field(default_factory=dict)

    def rail_fraction(self) -> dict[str, float]:
        """Per signal node, the fraction of ``L`` values at the 8-bit rails (−128 or 127):
        how often the signal saturated (or sat exactly at a rail)."""
        return {k: float(((v <= SIGNAL_MIN) | (v >= SIGNAL_MAX)).mean())
                for k, v in self.signals.items()}  # fmt: skip


def emulate_online(
    qnet: QNetwork,
    frames,
    labels,
    source: str = "dfa",
    learn_window: int | None = None,
    *,
    plan: SignalPlan | None = None,
    seed: int = 0,
    target_logit: float | None = None,
    step_offset: int = 0,
    emulator=None,
) -> OnlineResult:
    """On-device learning in the integer emulator with signals made on device.

    ``frames``: integer frames ``[N, T, *input_shape]``, run one sample after another
    (batch 1: the weights learn across samples, as on the chip); ``labels`` ``[N]``.
    Per step: forward, ``e`` from the readout's membrane and the label (module doc),
    ``L`` per plastic node from ``plan`` (default :func:`make_signal_plan` with
    ``source``, ``seed``, ``target_logit``), then ``apply_signals`` — at every step, with
    zero signals outside the last ``learn_window`` steps. ``emulator``: continue an
    existing :class:`~quantization.emulator.IntegerEmulator` (its weights and step
    counter) instead of a new one starting at ``step_offset``.
    """
    from quantization.emulator import IntegerEmulator

    plan = plan or make_signal_plan(qnet, source, seed=seed, target_logit=target_logit)
    x = torch.as_tensor(np.asarray(frames))
    if x.dtype.is_floating_point and not torch.equal(x, torch.round(x)):
        raise ValueError("emulate_online: frames must be integers")
    x = x.to(torch.int64)
    if x.dim() != len(qnet.input_shape) + 2 or tuple(x.shape[2:]) != tuple(qnet.input_shape):
        raise ValueError(f"frames must be [N, T, {tuple(qnet.input_shape)}], got {list(x.shape)}")
    n_samples, steps = int(x.shape[0]), int(x.shape[1])
    y = label_schedule(labels, steps, qnet.num_classes, learn_window)
    if y.shape[0] != n_samples:
        raise ValueError(f"{y.shape[0]} labels for {n_samples} samples")
    emu = emulator or IntegerEmulator(qnet, delay=0)
    if emulator is None:
        emu.step_count = int(step_offset)
    outs_rec = {n.name: [] for n in qnet.nodes}
    errs, sigs, preds = [], {}, []
    for i in range(n_samples):
        emu.reset()
        total = 0
        for t in range(steps):
            outs = emu.forward(x[i, t][None])
            sig, e = step_signals(emu, plan, outs, y[i, t][None])
            emu.apply_signals(sig)
            for n in qnet.nodes:
                outs_rec[n.name].append(outs[n.name][0].cpu().numpy())
            errs.append(e[0].cpu().numpy())
            for k, v in sig.items():
                sigs.setdefault(k, []).append(v[0].cpu().numpy())
            total = total + outs[plan.readout][0]
        preds.append(int(torch.argmax(total)))
    weights = {}
    for n in qnet.nodes:
        if getattr(n, "learning", None) is not None:
            weights[n.name] = {k: v.cpu().numpy() for k, v in emu.weights(n.name).items()
                               if k in ("w", "w_rec")}  # fmt: skip
    return OnlineResult(
        outputs={k: np.stack(v) for k, v in outs_rec.items()},
        errors=np.stack(errs),
        signals={k: np.stack(v) for k, v in sigs.items()},
        weights=weights,
        predictions=np.asarray(preds, dtype=np.int64),
        plan=plan,
        state={"emulator": emu},
    )


__all__ = [
    "SOURCES",
    "ErrorFormat",
    "OnlineResult",
    "Projection",
    "SignalPlan",
    "calibrate_target_logit",
    "default_target_logit",
    "dfa_signal_max",
    "emulate_online",
    "feedback_matrix",
    "label_schedule",
    "make_error_format",
    "make_signal_plan",
    "output_error",
    "project_signal",
    "projection_signal",
    "readout_lsb",
    "sat8",
    "shift_nearest",
    "sign_error",
    "step_signals",
]
