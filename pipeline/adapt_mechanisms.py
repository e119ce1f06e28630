"""Host-side mechanisms that keep on-device adaptation stable and stop it forgetting.

The device learns from a third factor ``L`` the host sends at each step of a sample's
learning window (:mod:`pipeline.learners`). The host decides *what* it sends and *which*
samples it streams; the mechanisms here are those decisions, pure functions of the step's
logits, the sample's index and the configuration (``[adaptation]`` keys in brackets):

* **Decaying rate** (``rate_decay`` = τ samples): the error sent for the ``k``-th streamed
  sample is scaled by ``s_k = 1 / (1 + k/τ)``, so the step ``ΔW = −η·s_k·e·L`` decays like
  ``η/k`` after ``τ`` samples (a Robbins–Monro schedule: later samples refine, they do not
  overwrite). On the device this is the third factor's value, so the integer rule and its
  constants are unchanged (and Lava, fed the same signals, learns the same weights).
* **Learning only when the error is large** (``error_gate`` = g): at step t the error
  ``e[t] = softmax(o[t]) − onehot(y)`` is sent only when the true class's error
  ``1 − p_y[t] ≥ g``; steps already answered confidently send nothing. This stops samples
  the network already knows from pushing its weights further (the over-confident drift
  that hurts the original condition).
* **Replay** (``replay_buffer`` = B samples, ``replay_every`` = r): the host keeps B
  labelled samples of the original condition and, after every r-th shifted sample, streams
  the next one of them (cycling) through the same learning path. The learned weights
  then serve both conditions, as rehearsal does in continual learning.
* **Pseudo-labels** (``pseudo_label`` = c, for a label-scarce stream, ``labelled``): a
  sample that arrives without a label (label ``−1``) learns at the steps where the
  network's own answer is confident, ``max p[t] ≥ c``, with that answer as the label
  (self-training); with ``c = 0`` unlabelled samples send nothing.
* **Passes over the labelled stream** (``passes`` = P): the host keeps the labelled
  shifted samples it has streamed and streams them P times in the same order (rehearsal
  of the new condition's buffer: an online learner's substitute for epochs). The device
  still learns one sample at a time with its own rule.
* **Per-input step sizes** (``precondition`` = R): the readout's update of input ``i``
  is scaled by ``2^−s_i``, ``s_i = clip(round(log2(E_i / Ē)), −R, R)`` from the energy
  ``E_i`` of its pre-trace over the window of the first calibration samples (the
  diagonal preconditioner of the readout's least-mean-squares problem,
  :mod:`quantization.preconditioning`; integer shifts the readout's node kind applies on
  the device, so Lava learns with them too).
* **Consolidation** (``consolidate_shift`` = k): after every learned sample each plastic
  weight is pulled ``2^−k`` of the way back to its deployed value
  (:func:`quantization.consolidation.consolidate`, an integer step the device's node
  kinds run themselves after a sample's last step, so Lava learns with it too).

All are off by default. What each does to accuracy is measured by
``benchmarks/adaptation.py`` (docs/adaptation.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch

from stllr.errors import UserError


@dataclass(frozen=True)
class Mechanisms:
    """The host's stabilising choices (module doc); the defaults switch everything off."""

    rate_decay: float = 0.0
    error_gate: float = 0.0
    replay_buffer: int = 0
    replay_every: int = 0
    consolidate_shift: int = 0
    pseudo_label: float = 0.0
    passes: int = 1
    precondition: int = 0

    @classmethod
    def from_section(cls, a, where: str = "[adaptation]") -> Mechanisms:
        """From an :class:`~pipeline.config.AdaptationSection`; one-line errors name the key."""
        m = cls(
            rate_decay=float(a.rate_decay),
            error_gate=float(a.error_gate),
            replay_buffer=int(a.replay_buffer),
            replay_every=int(a.replay_every),
            consolidate_shift=int(a.consolidate_shift),
            pseudo_label=float(a.pseudo_label),
            passes=int(a.passes),
            precondition=a.precondition,
        )
        m.check(where)
        return m

    def check(self, where: str = "[adaptation]") -> None:
        if not self.rate_decay >= 0.0:
            raise UserError(
                f"{where}: adaptation.rate_decay must be ≥ 0 samples (0 = constant rate), "
                f"got {self.rate_decay}"
            )
        if not 0.0 <= self.error_gate < 1.0:
            raise UserError(
                f"{where}: adaptation.error_gate must be in [0, 1) (0 = always learn), "
                f"got {self.error_gate}"
            )
        if self.replay_buffer < 0 or self.replay_every < 0:
            raise UserError(
                f"{where}: adaptation.replay_buffer and adaptation.replay_every must be ≥ 0, "
                f"got {self.replay_buffer} and {self.replay_every}"
            )
        if (self.replay_buffer > 0) != (self.replay_every > 0):
            raise UserError(
                f"{where}: replay needs both adaptation.replay_buffer > 0 and "
                f"adaptation.replay_every > 0 (or both 0), got {self.replay_buffer} and "
                f"{self.replay_every}"
            )
        if not 0.0 <= self.pseudo_label < 1.0:
            raise UserError(
                f"{where}: adaptation.pseudo_label must be in [0, 1) (0 = unlabelled samples "
                f"do not learn), got {self.pseudo_label}"
            )
        if self.passes < 1:
            raise UserError(
                f"{where}: adaptation.passes must be an integer ≥ 1 (1 = each sample once), "
                f"got {self.passes}"
            )
        if (
            isinstance(self.precondition, bool)
            or not isinstance(self.precondition, int)
            or not 0 <= self.precondition <= 8
        ):
            raise UserError(
                f"{where}: adaptation.precondition must be an integer in 0..8 (the largest "
                f"per-input step shift; 0 = off), got {self.precondition!r}"
            )
        if not 0 <= self.consolidate_shift <= 30:
            raise UserError(
                f"{where}: adaptation.consolidate_shift must be in 0..30 (0 = off), "
                f"got {self.consolidate_shift}"
            )

    def describe(self) -> str:
        parts = []
        if self.rate_decay:
            parts.append(f"rate decaying as 1/(1 + k/{self.rate_decay:g})")
        if self.error_gate:
            parts.append(f"learning only while 1 − p(label) ≥ {self.error_gate:g}")
        if self.replay_buffer:
            parts.append(
                f"replay of {self.replay_buffer} original-condition samples, one after every "
                f"{self.replay_every} shifted"
            )
        if self.passes > 1:
            parts.append(f"{self.passes} passes over the labelled stream")
        if self.precondition:
            parts.append(
                f"per-input step sizes of the readout (shifts within ±{self.precondition} from "
                "the inputs' trace energy)"
            )
        if self.pseudo_label:
            parts.append(f"unlabelled samples learn from answers with p ≥ {self.pseudo_label:g}")
        if self.consolidate_shift:
            parts.append(
                f"consolidation: weights pulled 2^-{self.consolidate_shift} of the way back "
                "to the deployed ones after every sample"
            )
        return "; ".join(parts) if parts else "no stabilising mechanism"


def rate_scale(k: int, tau: float) -> float:
    """``1 / (1 + k/τ)`` for the ``k``-th streamed sample (``k`` from 0); 1 when ``τ = 0``."""
    if k < 0:
        raise ValueError(f"sample index must be ≥ 0, got {k}")
    return 1.0 if tau == 0 else 1.0 / (1.0 + k / tau)


def step_error(
    logits: torch.Tensor, label: int, gate: float = 0.0, scale: float = 1.0, pseudo: float = 0.0
):
    """The third factor the host sends at one step, or ``None`` (nothing sent).

    ``logits`` ``[1, K]`` float; returns ``scale · (softmax(logits) − onehot(label))``
    ``[1, K]`` float64, or ``None`` when ``1 − p_label < gate``. ``label < 0`` (unlabelled):
    the label is the step's answer ``argmax p`` when ``max p ≥ pseudo > 0``, else ``None``.
    """
    p = torch.softmax(logits.double(), dim=1)
    if label < 0:
        top, answer = p.max(dim=1)
        if pseudo <= 0.0 or float(top[0]) < pseudo:
            return None
        label = int(answer[0])
    if gate > 0.0 and 1.0 - float(p[0, label]) < gate:
        return None
    err = p.clone()
    err[0, label] -= 1.0
    return err * scale if scale != 1.0 else err


def fs_step_error(
    state, teacher, label: int, gate: float = 0.0, scale: float = 1.0, pseudo: float = 0.0
):
    """The third factor of a first-spike output layer at one step, or ``None``.

    :func:`step_error` of the running first-spike logits ``z`` of
    :mod:`stllr.functional.first_spike_teacher` (``state``: its ``TeachState`` of one
    sample, ``teacher``: its ``FSTeacher``), times the tail window ``w``: so
    ``scale · w ⊙ (softmax(z) − onehot)`` ``[1, K]``, the teaching signal ``δ`` with the
    host's gate (on ``1 − p̂_label``), rate scale and pseudo-labels (the answer ``argmax z``).
    ``None`` also once the decision is right when ``teacher.stop_correct``.
    """
    from stllr.functional.first_spike_teacher import (
        decided_correctly,
        running_logits,
        tail_window,
    )

    z = running_logits(state, teacher.alpha)
    err = step_error(z, label, gate, scale, pseudo)
    if err is None:
        return None
    target = label if label >= 0 else int(z[0].argmax())
    if teacher.stop_correct and bool(decided_correctly(state, torch.tensor([target]))[0]):
        return None
    return err * tail_window(state, teacher.sigma)


class StreamItem(NamedTuple):
    """One sample the device learns from: ``source`` "shift" (index into the stream) or
    "replay" (index into the replay buffer)."""

    source: str
    index: int


def stream_schedule(
    n_stream: int, replay_every: int = 0, n_buffer: int = 0, passes: int = 1
) -> list[StreamItem]:
    """Arrival order: the ``n_stream`` shifted samples in order, ``passes`` times over
    (item ``k`` is shifted sample ``k mod n_stream``), and after every ``replay_every``-th
    of those the next replay-buffer sample (cycling through ``n_buffer``)."""
    out: list[StreamItem] = []
    replayed = 0
    for k in range(n_stream * passes):
        out.append(StreamItem("shift", k % n_stream))
        if replay_every and n_buffer and (k + 1) % replay_every == 0:
            out.append(StreamItem("replay", replayed % n_buffer))
            replayed += 1
    return out
