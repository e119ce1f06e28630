"""The neuron-side constants of the S-TLLR learning-engine route (a plain dataclass).

Kept out of :mod:`.neuron`: Lava's model discovery executes every module of the
Process's directory outside its package, and ``dataclasses`` cannot process a class whose
module is not in ``sys.modules`` (the exec fails with a warning per module).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class STLLRNeuronConfig:
    """What an :class:`~lava_models.learning_engine.neuron.process.STLLRLearningLIF` needs
    besides the LIF constants.

    Float model: ``psi_variant``, ``lam_post`` and the y scales ``s_q, s_l, s_psi``
    (y = factor·scale, exact). Fixed model: the integer Ψ tables over the centred
    membrane (``psi_table`` → y3, ``q_table`` → the Q impulse; both indexed as
    :func:`quantization.kernels.psi_lookup` does, with ``psi_shift``/``psi_half``; entries
    carry ``psi_extra_bits`` fractional bits that the model removes by stochastic rounding),
    ``lam_post_12 = round(λ_post·4096)``, the Q decay's rounding and the seed of both. The fixed
    model passes ``a_third_factor_in`` through as y2 (already integer, clipped to
    [−128, 127]).

    ``send_bap``: send the spikes on ``s_out_bap`` (else zeros). Off by default: the rule
    has no ``y0`` term, and Lava's fixed engine passes the y traces of every neuron that
    sent a bap through its impulse addition, which clips them to [0, 127], so a negative
    third factor y2 reads as 0 in every step in which the neuron spikes (measured, see
    docs/decisions.md).
    """

    psi_variant: str
    lam_post: float
    s_q: float = 1.0
    s_l: float = 1.0
    s_psi: float = 1.0
    psi_table: np.ndarray | None = None
    q_table: np.ndarray | None = None
    psi_shift: int = 0
    psi_half: int = 0
    psi_extra_bits: int = 0
    lam_post_12: int = 0
    trace_rounding: str = "stochastic"
    seed: int = 0
    send_bap: bool = False
