"""The four ways of training the SHD recurrent network, by name.

=============  ==========================  ==========  ======================================
method         model                       mode        factors [λ_post, λ_pre, α_post, α_pre]
=============  ==========================  ==========  ======================================
``stllr``      SHDNetSTLLR, BP signal      stllr       [0.5, 1, 1, 1] (README SHD command)
``stllr-dfa``  SHDNetSTLLR, DFA signal     stllr       [0.5, 1, 1, 1]
``bptt``       SHDNetBPTT                  bptt        —
``ottt``       SHDNetSTLLR, BP signal      ottt        [0, γ, 0, 1], γ = σ(5)
=============  ==========================  ==========  ======================================
"""

from __future__ import annotations

import math

from stllr.models.base import SpikingModel
from stllr.models.shd import SHD_FACTORS, SHDNetBPTT, SHDNetSTLLR
from stllr.training import ottt_factors

SHD_METHODS: tuple[str, ...] = ("stllr", "stllr-dfa", "bptt", "ottt")


def build_shd_model(method: str, hidden: int, num_inputs: int = 700, num_classes: int = 20):
    """Return ``(model, training_mode)`` for ``method`` (see the table above)."""
    kw = {"num_inputs": num_inputs, "hidden": hidden, "num_classes": num_classes}
    if method == "stllr":
        return SHDNetSTLLR(factors=SHD_FACTORS, feedback="BP", **kw), "stllr"
    if method == "stllr-dfa":
        return SHDNetSTLLR(factors=SHD_FACTORS, feedback="DFA", **kw), "stllr"
    if method == "bptt":
        return SHDNetBPTT(**kw), "bptt"
    if method == "ottt":
        gamma = 1.0 / (1.0 + math.exp(-5.0))
        model: SpikingModel = SHDNetSTLLR(factors=ottt_factors(gamma), feedback="BP", **kw)
        return model, "ottt"
    raise ValueError(f"unknown method {method!r}; expected one of {SHD_METHODS}")
