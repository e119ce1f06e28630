"""lava-dl netx hdf5 files for inference networks, written and read with h5py (no lava-dl).

:func:`write_netx` writes a :class:`~quantization.network.QNetwork` in the layout that
``lava.lib.dl.netx.hdf5.Network`` loads; :func:`read_netx` reads such a file (ours or
another writer's, in the same subset) back into a ``QNetwork`` for
:class:`~quantization.emulator.IntegerEmulator` or :mod:`lava_models.builtin`. Only
h5py, numpy, torch and :mod:`quantization` are used, all imported lazily: at module
level this package needs only numpy (it lives beside Lava processes, docs/lava.md §7,
pitfall 4).

Supported subset: a sequential chain of :class:`~quantization.network.SpikingLayer`
nodes with ``reset == "hard"`` and no learning spec, of kind ``"dense"`` (netx
``dense``; ``dense_rec`` with ``weight_rec``) or ``"conv"`` (netx ``conv``), a conv
never after a dense layer, optionally ending in a group-sum readout (written as
``average``). Other readouts, pools, global pools, adds, soft reset and learning specs
raise :class:`~lava_models.errors.UnsupportedNodeError` naming the node: netx has no
readout, raises ``NotImplementedError`` for ``pool``/``average``/``concat``
(``hdf5.py:546-564, 625-683``), and its LIF resets ``v`` to 0.

Modules:

* :mod:`~lava_models.netx.layout` — the file layout, its constants and limits, conv
  output shapes, and how netx runs the neuron, conv, flatten and timing (the errors,
  :class:`NetxFileError` and :class:`NetxInexactError`, live in :mod:`lava_models.errors`);
* :mod:`~lava_models.netx.synapse` — what netx and Lava make of dense weights
  (:func:`netx_dense_synapse`, :func:`check_netx_dense`) and the synaptic-sum bound;
* :mod:`~lava_models.netx.bias` — biases on netx's grid (:func:`snap_bias_to_netx`);
* :mod:`~lava_models.netx.plan` — checking what netx can hold (:func:`plan_netx`);
* :mod:`~lava_models.netx.write` — writing (:func:`write_netx`);
* :mod:`~lava_models.netx.fields` — reading one field (dataset, attribute, neuron group,
  bias, delays) with the checks and errors of the reader;
* :mod:`~lava_models.netx.read` — reading back (:func:`read_netx`).

Why netx then computes exactly what the emulator does (lava-dl 0.6.0 = the ``HEAD``
read, with lava-nc 0.10.0; ``hdf5.py``, ``utils.py``, ``blocks/process.py`` are netx's
files): row by row in the docstrings of :mod:`~lava_models.netx.layout` (neuron,
conv, flatten, timing), :mod:`~lava_models.netx.synapse` (dense, rec, range) and
:mod:`~lava_models.netx.bias` (bias).

Also read and written: a current decay (iDecay < 4096: a current-based LIF), synaptic
delays of dense layers (``delay``, as netx expands it; run by the node's delay line,
:mod:`quantization.synaptic_delay`) and a last ``average`` layer (slayer's group mean, read
as a group-sum readout). ``read_netx(path, num_layers=…)`` reads only the first layers.

Not representable (the writer refuses, the reader reports): graded spikes
(``messageBits``), an ``input`` layer with a neuron (netx's Input block), complex
weights, sigma-delta / resonate-and-fire neurons, delays on a conv layer (netx ignores
them). netx's runtime options (``reset_interval``, ``input_message_bits``) are not
in the file: load with the defaults (no reset; binary input spikes, or
``input_message_bits > 0`` for graded integer input).
"""

from __future__ import annotations

from lava_models.errors import NetxFileError, NetxInexactError
from lava_models.netx.bias import snap_bias_to_netx
from lava_models.netx.layout import (
    BIAS_MAX,
    BIAS_MIN,
    CONV_PARAM_MAX,
    CONV_WEIGHT_MAX,
    CONV_WEIGHT_MIN,
    DV_MAX,
    I_DECAY_NONE,
    NETX_BIAS_EXP,
    NETX_FORMAT,
    NETX_NOT_IMPLEMENTED,
    SYNAPSE_SUM_LIMIT,
    VTH_MAX,
)
from lava_models.netx.plan import plan_netx
from lava_models.netx.read import read_netx
from lava_models.netx.synapse import NetxSynapse, check_netx_dense, netx_dense_synapse
from lava_models.netx.write import write_netx

__all__ = [
    "BIAS_MAX",
    "BIAS_MIN",
    "CONV_PARAM_MAX",
    "CONV_WEIGHT_MAX",
    "CONV_WEIGHT_MIN",
    "DV_MAX",
    "I_DECAY_NONE",
    "NETX_BIAS_EXP",
    "NETX_FORMAT",
    "NETX_NOT_IMPLEMENTED",
    "SYNAPSE_SUM_LIMIT",
    "VTH_MAX",
    "NetxFileError",
    "NetxInexactError",
    "NetxSynapse",
    "check_netx_dense",
    "netx_dense_synapse",
    "plan_netx",
    "read_netx",
    "snap_bias_to_netx",
    "write_netx",
]
