"""Which trained networks the pipeline can deploy (quantize, run in Lava, adapt on device).

The integer node kinds (docs/node_kinds.md) hold the toolkit's LIF and the current-based
LIF (docs/neurons.md §1), with on-device S-TLLR for both (docs/fixed_point.md); so the
pipeline deploys ``neuron = "lif"``, ``"culif"`` and ``"pculif"`` with one decay per layer
(PTQ keeps one 12-bit decay per layer), and ``"adlif"`` and ``"cuadlif"`` (the
``AdaptiveLayer`` kind, ``quantization/nodes/adaptive.py``, the latter with a current),
whose layer learns on device too (docs/fixed_point.md, "Adaptive layers"). A
first-spike-coded network (``arch`` one of :data:`FS_ARCHS`, ``readout = "first_spike"``,
hidden and output neurons ``lif``, ``culif`` or ``pculif`` per layer; ``fs_fc`` also with
``adlif`` hidden layers, docs/first_spike.md, "AdLIF hidden layers") deploys as integer
spiking layers read by its first output spike
(docs/first_spike.md, "In the pipeline"; the convolutional ``fs_gesture`` / ``fs_plane``
with pooling and flatten nodes between them); it adapts on device from a host-computed
first-spike teaching signal (docs/first_spike.md, "On-device learning of a first-spike
network"), and it is not fine-tuned with QAT. It refuses, before any training, what it
cannot deploy yet: PCuLIF with per-neuron decays, the rate-coded spiking-output networks
(``readout = rate``), AdLIF in a spiking-output network other than ``fs_fc``'s hidden
layers and QAT of a first-spike network.
"""

from __future__ import annotations

from stllr.config import ExperimentConfig
from stllr.errors import UserError

#: neurons with an integer kind (``pculif`` with ``decay_mode = "layer"`` only)
DEPLOYABLE_NEURONS = ("lif", "culif", "pculif", "adlif", "cuadlif")
#: neurons of a deployable first-spike network (hidden and output layers)
FS_NEURONS = ("lif", "culif", "pculif")
#: archs whose hidden layers may be AdLIF (``AdaptiveLayer``; never the output layer)
FS_ADLIF_ARCHS = ("fs_fc",)
#: first-spike archs with an integer converter (quantization/convert_spiking_output.py)
FS_ARCHS = ("fs_fc", "fs_gesture", "fs_plane")


def is_first_spike(train: ExperimentConfig) -> bool:
    """The network is read by its first output spike (``readout = "first_spike"``)."""
    return train.readout == "first_spike"


def check_deployable(
    train: ExperimentConfig, source: str, layers: tuple[str, ...] = (), qat_epochs: int = 0
) -> None:
    """One-line :class:`UserError` naming ``source`` and the key when ``train`` trains a
    network the later stages cannot deploy, or asks QAT of a first-spike network (module
    docstring). ``layers`` (``adaptation.layers``): every layer kind the pipeline deploys
    learns on device, so none is refused here."""
    where = source or "pipeline config"
    if train.neuron not in DEPLOYABLE_NEURONS:
        raise UserError(
            f"{where}: train.neuron = {train.neuron!r} cannot be deployed yet (no integer kind); "
            f"the pipeline deploys train.neuron = {', '.join(DEPLOYABLE_NEURONS)} (pculif with "
            'decay_mode = "layer"); train the float network with `stllr train`'
        )
    if train.neuron == "pculif" and train.decay_mode not in ("", "layer"):
        raise UserError(
            f"{where}: train.decay_mode = {train.decay_mode!r} with neuron pculif cannot be "
            'deployed (one 12-bit decay per layer); expected decay_mode = "layer"'
        )
    if train.readout == "first_spike":
        _check_first_spike(train, where)
        if qat_epochs > 0:
            raise UserError(
                f"{where}: quantize.qat_epochs = {qat_epochs} with readout first_spike: QAT of "
                "a first-spike network is not implemented; expected quantize.qat_epochs = 0"
            )
    elif train.readout != "accumulate":
        raise UserError(
            f"{where}: train.readout = {train.readout!r} (a spiking output layer) cannot be "
            'deployed yet; the pipeline expects readout = "accumulate" or "first_spike" '
            "(train the network with `stllr train`)"
        )


def _check_first_spike(train: ExperimentConfig, where: str) -> None:
    if train.arch not in FS_ARCHS:
        raise UserError(
            f"{where}: train.arch = {train.arch!r} with readout first_spike cannot be deployed "
            f"(no integer converter); expected arch one of {', '.join(FS_ARCHS)}"
        )
    if train.neuron == "adlif" and train.arch in FS_ADLIF_ARCHS:
        keys: tuple[str, ...] = ("out_neuron",)
    elif train.neuron == "adlif":
        raise UserError(
            f"{where}: train.neuron = 'adlif' in a first-spike network cannot be deployed yet "
            f"with arch {train.arch!r}; expected arch {', '.join(FS_ADLIF_ARCHS)} (AdLIF hidden "
            "layers) or neuron one of " + ", ".join(FS_NEURONS)
        )
    else:
        keys = ("neuron", "out_neuron")
    for key in keys:
        if getattr(train, key) not in FS_NEURONS:
            raise UserError(
                f"{where}: train.{key} = {getattr(train, key)!r} in a first-spike network "
                f"cannot be deployed yet; expected one of {', '.join(FS_NEURONS)}"
            )
