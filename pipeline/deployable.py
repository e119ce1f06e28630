"""Which trained networks the pipeline can deploy (quantize, run in Lava, adapt on device).

The integer node kinds (docs/node_kinds.md) hold the toolkit's LIF and the current-based
LIF (docs/neurons.md §1), with on-device S-TLLR for both (docs/fixed_point.md); so the
pipeline deploys ``neuron = "lif"``, ``"culif"`` and ``"pculif"`` with one decay per layer
(PTQ keeps one 12-bit decay per layer). It refuses, before any training, what it cannot
deploy yet: the adaptive neurons (AdLIF has an integer kind for inference,
``quantization/nodes/adaptive.py``, but no on-device learning, and the cost, latency and
adaptation stages count only LIF layers; CuAdLIF has none) and the networks with a
spiking output layer (``readout = first_spike`` / ``rate``, the ``fs_*`` archs).
"""

from __future__ import annotations

from stllr.config import ExperimentConfig
from stllr.errors import UserError

#: neurons with an integer kind (``pculif`` with ``decay_mode = "layer"`` only)
DEPLOYABLE_NEURONS = ("lif", "culif", "pculif")


def check_deployable(train: ExperimentConfig, source: str) -> None:
    """One-line :class:`UserError` naming ``source`` and the key when ``train`` trains a
    network the later stages cannot deploy (module docstring)."""
    where = source or "pipeline config"
    if train.neuron not in DEPLOYABLE_NEURONS:
        raise UserError(
            f"{where}: train.neuron = {train.neuron!r} cannot be deployed by the pipeline yet "
            f"(no on-device learning of its adaptation); the pipeline deploys train.neuron = "
            f'{", ".join(DEPLOYABLE_NEURONS)} (pculif with decay_mode = "layer"); train the '
            "float network with `stllr train`"
        )
    if train.neuron == "pculif" and train.decay_mode not in ("", "layer"):
        raise UserError(
            f"{where}: train.decay_mode = {train.decay_mode!r} with neuron pculif cannot be "
            'deployed (one 12-bit decay per layer); expected decay_mode = "layer"'
        )
    if train.readout != "accumulate":
        raise UserError(
            f"{where}: train.readout = {train.readout!r} (a spiking output layer) cannot be "
            'deployed yet; the pipeline expects readout = "accumulate" (train the first-spike '
            "network with `stllr train`)"
        )
