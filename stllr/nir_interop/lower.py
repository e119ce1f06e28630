"""The toolkit model class of an imported NIR graph (:func:`toolkit_model`).

An imported graph is first a list of units (S-TLLR layers, pools, flatten, readouts) with
the units each one sums (:mod:`stllr.nir_interop.load`). When that list has the shape of a
network the toolkit trains, the units are placed into that class, so the imported model
is quantized, exported to Lava and adapted like a trained one:

- ``RecurrentLinearSTLLR`` → ``AccumulateReadout`` → :class:`~stllr.models.shd.SHDNetSTLLR`
  (the recurrent CuLIF layer ``RecurrentNeuronSTLLR`` instead:
  :class:`~stllr.models.shd_neurons.SHDNeuronNetSTLLR`, neuron culif);
- spiking layers only (dense, recurrent, conv; flatten between them) →
  :class:`~stllr.models.chain.SpikingChain` (output: the last layer's spikes);
- 3×3 / stride 1 / padding 1 convolutions, each optionally followed by one kind of 2×2
  pooling (average or max), then global average pooling, flatten and a ``Linear`` head →
  :class:`~stllr.models.vgg.VGGSTLLR`.

Anything else (e.g. a ResNet's residual sums) stays a generic
:class:`~stllr.nir_interop.load.NIRNetwork`, which runs in float but is not deployed.
"""

from __future__ import annotations

from torch import nn

from stllr.layers.readout import AccumulateReadout
from stllr.layers.stllr_layers import Conv2dSTLLR, LinearSTLLR, RecurrentLinearSTLLR
from stllr.models.base import SpikingModel
from stllr.models.chain import SpikingChain
from stllr.models.shd import SHDNetSTLLR
from stllr.models.shd_neurons import SHDNeuronNetSTLLR
from stllr.models.vgg import VGGSTLLR
from stllr.neurons.layers import RecurrentNeuronSTLLR

SPIKING = (LinearSTLLR, RecurrentLinearSTLLR, Conv2dSTLLR)
#: the toolkit classes an imported graph can become, for messages
CLASSES = (
    "SHDNetSTLLR / SHDNeuronNetSTLLR (recurrent layer → LI readout), SpikingChain "
    "(spiking layers), VGGSTLLR"
)


def _sequence(order, sources, outputs) -> bool:
    """Whether the units form one path: each fed by the one before it (the first by the input)."""
    prev = "input"
    for name in order:
        if sources[name] != [prev]:
            return False
        prev = name
    return outputs == [prev]


def _is_flatten(m: nn.Module) -> bool:
    return type(m).__name__ == "_Flatten"


def _shd(input_shape, num_classes, seq, feedback) -> SpikingModel | None:
    if len(seq) != 2 or len(input_shape) != 1:
        return None
    rec, ro = seq
    if not isinstance(ro, AccumulateReadout):
        return None
    n_in, hidden = input_shape[0], rec.out_features
    if isinstance(rec, RecurrentLinearSTLLR):
        model = SHDNetSTLLR(n_in, hidden, num_classes, feedback=feedback)
    elif isinstance(rec, RecurrentNeuronSTLLR):
        spec = rec.neurons.spec
        model = SHDNeuronNetSTLLR(spec, n_in, hidden, num_classes, feedback=feedback)
    else:
        return None
    model.rec, model.readout = rec, ro
    return model


def _chain(input_shape, seq) -> SpikingModel | None:
    if not seq or not all(isinstance(m, SPIKING) for m in seq):
        return None
    return SpikingChain(input_shape, seq)


def _vgg_conv(m) -> bool:
    o = getattr(m, "_ops", None)
    return (
        isinstance(m, Conv2dSTLLR)
        and tuple(m.weight.shape[2:]) == (3, 3)
        and (o.stride, o.padding, o.dilation, o.groups) == ((1, 1), (1, 1), (1, 1), 1)
    )


def _pool_kind(m) -> str | None:
    if isinstance(m, (nn.AvgPool2d, nn.MaxPool2d)) and m.kernel_size in (2, (2, 2)):
        if m.stride in (2, (2, 2)) and m.padding in (0, (0, 0)):
            if isinstance(m, nn.MaxPool2d) or m.divisor_override is None:
                return "max" if isinstance(m, nn.MaxPool2d) else "avg"
    return None


def _vgg(input_shape, num_classes, seq, feedback) -> SpikingModel | None:
    if len(input_shape) != 3 or len(seq) < 4:
        return None
    *body, gap, flat, head = seq
    _, h, w = input_shape
    convs, pool_after, kinds = [], [], set()
    for m in body:
        if _vgg_conv(m):
            convs.append(m)
        elif _pool_kind(m) and convs and (not pool_after or pool_after[-1] != len(convs) - 1):
            pool_after.append(len(convs) - 1)
            kinds.add(_pool_kind(m))
            h, w = h // 2, w // 2
        else:
            return None
    global_pool = isinstance(gap, nn.AvgPool2d) and gap.kernel_size in ((h, w), [h, w])
    if not (convs and global_pool and _is_flatten(flat) and isinstance(head, nn.Linear)):
        return None
    if len(kinds) > 1 or head.bias is None:
        return None
    channels = [c.out_channels for c in convs]
    model = VGGSTLLR(
        tuple(input_shape), num_classes, channels=channels, pool_after=pool_after,
        pooling=kinds.pop() if kinds else "avg", feedback=feedback,
    )  # fmt: skip
    for i, conv in enumerate(convs):
        model.convs[i] = conv
    model.head = head
    return model


def toolkit_model(input_shape, num_classes, order, units, sources, outputs, feedback="BP"):
    """The toolkit model holding ``units`` (module doc), or None when none fits."""
    if not _sequence(order, sources, outputs):
        return None
    seq = [units[n] for n in order]
    spiking_only = [m for m in seq if not _is_flatten(m)]
    for build in (
        lambda: _shd(input_shape, num_classes, seq, feedback),
        lambda: _chain(input_shape, spiking_only),
        lambda: _vgg(input_shape, num_classes, seq, feedback),
    ):
        model = build()
        if model is not None and model.num_classes == num_classes:
            return model
    return None
