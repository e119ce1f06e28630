"""The netx file layout: its constants and limits, the errors, and conv output shapes.

File layout (``shape`` always C, H, W — netx reverses it to Lava's W, H, C)::

    simulation/{Ts = 1, tSample}                    int64 scalars (netx ignores them)
    layer/0          type 'input', shape [C, H, W] or [N]           (no neuron: no Input block)
    layer/<i>        type 'flatten', shape [C·H·W, 1, 1]            (before a dense reading C, H, W)
    layer/<i>        type 'dense' | 'dense_rec', shape [out], inFeatures, outFeatures,
                     weight [out, in] (weight_rec [out, out]), bias [out] (if any)
    layer/<i>        type 'conv', shape [C_out, H', W'], inChannels, outChannels,
                     kernelSize, stride, padding, dilation [H, W], groups,
                     weight [C_out, C_in/groups, kH, kW, 1], bias [C_out] (if any)
    layer/<i>/neuron type 'CUBA', iDecay 4096, vDecay dv, vThMant vth, refDelay 1,
                     gradedSpike False

``type`` is ``S10`` of shape (1,) and ``neuron/type`` a variable-length string, as
slayer writes them; weights and biases are int32, the other numbers int64 scalars or
vectors. Fields netx does not have (node names, the weight exponent, the split of the
bias into mantissa and exponent, weight bits, the input format, ``num_classes``,
``meta``) are HDF5 *attributes* (``stllr_*``), which netx never reads (its ``NetDict``
only indexes datasets and groups, ``utils.py:53-74``), so our round trip is lossless.
Ψ tables and S-TLLR factors (learning metadata) are not written.

How netx runs these layers (the rest of the exactness argument is in
:mod:`lava_models.netx.synapse` and :mod:`lava_models.netx.bias`)::

    neuron   hdf5.py:144-159  LIF(vth = vThMant, du = iDecay − 1, dv = vDecay,
                              bias_mant = bias, bias_exp = 6). iDecay = 4096 gives
                              du = 4095, Lava's full current decay (ds_offset 1):
                              u = a << 6, our du. vth and dv are ours unchanged.
    conv     hdf5.py:505-506 flips the stored kernel in both spatial axes and
             transposes (out, in, kH, kW) to Lava's (out, kW, kH, in); 507-509 reverse
             stride/padding/dilation to (W, H). Lava convolves (conv/utils.py:221-296,
             scipy convolve2d flips the kernel back), so the layer correlates like
             torch's conv2d. No optimize_weight_bits, no weight_exp
             (blocks/process.py:451-459); the fixed Conv uses the int32 weights as they
             are and wraps its output to 24 bits (conv/models.py:45-51, 76-79).
    flatten  hdf5.py:634-663: the next dense reads out.transpose([2, 1, 0]).flatten(),
             i.e. (W, H, C) → (C, H, W) → row-major: our C·H·W column order.
    timing   every Dense/Conv sends last step's sum: IntegerEmulator(qnet, delay=1).

Only numpy is imported.
"""

from __future__ import annotations

from quantization.formats import BIAS_MANT_MAX, BIAS_MANT_MIN, DU_NONE
from quantization.formats import DV_MAX as DV_MAX  # re-exported (netx plan and read)
from quantization.formats import VTH_MAX as VTH_MAX

#: Marks files written by :func:`~lava_models.netx.write.write_netx` (a root attribute;
#: netx ignores it).
NETX_FORMAT = "stllr-netx/1"
#: netx maps ``du = iDecay − 1``; 4096 gives Lava's du = 4095 (no current memory).
I_DECAY_NONE = DU_NONE + 1
#: netx's fixed bias exponent (``hdf5.py:158``).
NETX_BIAS_EXP = 6
#: Loihi's 13-bit signed bias mantissa (the 17-bit threshold ``VTH_MAX`` and the 12-bit
#: voltage decay ``DV_MAX`` are imported above).
BIAS_MIN, BIAS_MAX = BIAS_MANT_MIN, BIAS_MANT_MAX
#: Conv weights go to Lava unchanged; kept within Loihi's signed 8-bit-magnitude range.
CONV_WEIGHT_MIN, CONV_WEIGHT_MAX = -256, 255
#: Lava's ``Conv`` stores kernel size, stride, padding, dilation and groups as int8.
CONV_PARAM_MAX = 127
#: Bound on Σ|w| per neuron below which no synaptic sum can wrap
#: (:mod:`lava_models.netx.synapse`, "range").
SYNAPSE_SUM_LIMIT = 1 << 23
#: netx layer types that netx itself cannot load (``hdf5.py:546-564, 625-683``).
NETX_NOT_IMPLEMENTED = ("pool", "convT", "unpool", "average", "concat")
#: netx clamps larger delays to this (hdf5.py, with a warning); Lava's DelayDense takes 0 … 63
NETX_DELAY_MAX = 62
#: a readout integrator without memory (the ``dv`` of an ``average`` layer's readout)
READOUT_NO_MEMORY = 4096


def conv_out_hw(weight_shape, in_hw, stride, padding, dilation) -> tuple[int, int]:
    """``(H', W')`` of a conv layer with weight ``[C_out, C_in/groups, kH, kW]`` on ``in_hw``."""
    kh, kw = (int(v) for v in weight_shape[2:4])
    h, w = in_hw
    return (
        (h + 2 * padding[0] - dilation[0] * (kh - 1) - 1) // stride[0] + 1,
        (w + 2 * padding[1] - dilation[1] * (kw - 1) - 1) // stride[1] + 1,
    )
