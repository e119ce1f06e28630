"""Which trained networks the pipeline can deploy (quantize, run in Lava, adapt on device).

The integer node kinds (docs/node_kinds.md) hold the toolkit's LIF and the current-based
LIF (docs/neurons.md §1), with on-device S-TLLR for both (docs/fixed_point.md); so the
pipeline deploys ``neuron = "lif"``, ``"culif"`` and ``"pculif"`` with one decay per layer
(PTQ keeps one 12-bit decay per layer), and ``"adlif"`` (the ``AdaptiveLayer`` kind,
``quantization/nodes/adaptive.py``), whose layer runs but does not learn on device: only
its readout adapts. It refuses, before any training, what it cannot deploy yet: CuAdLIF
(no integer kind), a plastic AdLIF layer, and the networks with a spiking output layer
(``readout = first_spike`` / ``rate``, the ``fs_*`` archs).
"""

from __future__ import annotations

from stllr.config import ExperimentConfig
from stllr.errors import UserError

#: neurons with an integer kind (``pculif`` with ``decay_mode = "layer"`` only)
DEPLOYABLE_NEURONS = ("lif", "culif", "pculif", "adlif")


def check_deployable(train: ExperimentConfig, source: str, layers: tuple[str, ...] = ()) -> None:
    """One-line :class:`UserError` naming ``source`` and the key when ``train`` trains a
    network the later stages cannot deploy, or ``layers`` (``adaptation.layers``) names a
    layer that cannot learn on device (module docstring)."""
    where = source or "pipeline config"
    if train.neuron not in DEPLOYABLE_NEURONS:
        raise UserError(
            f"{where}: train.neuron = {train.neuron!r} cannot be deployed yet (no integer kind); "
            f"the pipeline deploys train.neuron = {', '.join(DEPLOYABLE_NEURONS)} (pculif with "
            'decay_mode = "layer"); train the float network with `stllr train`'
        )
    if train.neuron == "adlif" and "rec" in layers:
        raise UserError(
            f"{where}: adaptation.layers names 'rec', an AdLIF layer, which does not learn on "
            'device; expected adaptation.layers = ["readout"]'
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
