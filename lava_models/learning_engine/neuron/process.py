"""``STLLRLearningLIF``: a LearningLIF that feeds Lava's learning engine the S-TLLR factors.

Lava's built-in ``LearningLIF`` models ignore the third factor and never send ``bap`` or
``y1..y3`` (docs/lava.md §3, §7, pitfall 5). This subclass's models (``models.py``) do, every
step ``t``, after the LIF update::

    v_c[t] = v[t] − θ                      centred membrane before the reset (Var ``v_c``)
    s[t]   = v_c[t] > 0                    then reset: soft v −= θ, or hard v = 0
    Ψ[t]   = Ψ(v_c[t])                     surrogate (float) / 7-bit lookup table (fixed)
    Q[t]   = λ_post·Q[t−1] + Ψ[t]          S-TLLR post trace
    y1 = Q[t]·s_Q,  y2 = L[t]·s_L,  y3 = Ψ[t]·s_Ψ,  bap = s[t] (or 0, see the config)

and sends ``s_out, s_out_bap, s_out_y1, s_out_y2, s_out_y3``. ``L[t]`` is read from
``a_third_factor_in`` in the same step (connect it, or the model blocks). The scales
``s_Q, s_L, s_Ψ`` come from :func:`lava_models.learning_engine.rule.calibrate_mapping`.

Keyword arguments besides LearningLIF's (``du, dv, vth, bias_mant, bias_exp,
learning_rule``): ``reset`` (``"soft"``, S-TLLR's default, or ``"hard"``, Lava's) and
``stllr`` (a :class:`~lava_models.learning_engine.config.STLLRNeuronConfig`).

This module imports only Lava and the config: Lava's model discovery executes every module
of this directory once per compiled Process (docs/lava.md §7, pitfall 4).
"""

from __future__ import annotations

from lava.magma.core.process.variable import Var
from lava.proc.lif.process import LearningLIF

from lava_models.learning_engine.config import STLLRNeuronConfig

RESETS = ("soft", "hard")


class STLLRLearningLIF(LearningLIF):
    """LearningLIF sending y1 = post trace Q, y2 = third factor L, y3 = Ψ (see module doc)."""

    def __init__(self, *, shape, stllr: STLLRNeuronConfig, reset: str = "soft", **kwargs):
        if reset not in RESETS:
            raise ValueError(f"STLLRLearningLIF: reset must be one of {RESETS}, got {reset!r}")
        if not isinstance(stllr, STLLRNeuronConfig):
            raise TypeError(f"STLLRLearningLIF: stllr must be an STLLRNeuronConfig, got {stllr!r}")
        super().__init__(shape=shape, reset=reset, stllr=stllr, **kwargs)
        #: Centred membrane v − θ before the reset (the argument of Ψ), for recording.
        self.v_c = Var(shape=shape, init=0)
