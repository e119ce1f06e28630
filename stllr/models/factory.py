"""Build a model and its training mode from an :class:`~stllr.config.ExperimentConfig`.

``arch`` × ``method``:

============  ===========================  ==============================
arch          method stllr/stllr_online/ottt  method bptt
============  ===========================  ==============================
shd_rsnn      SHDNetSTLLR                  SHDNetBPTT
  neuron≠lif  SHDNeuronNetSTLLR            SHDNeuronNetBPTT (culif, pculif, adlif, cuadlif)
vgg9          VGGSTLLR                     VGGBPTT (AvgPool, as the reference)
resnet18      SpikingResNet18 (S-TLLR)     SpikingResNet18 (BPTT)
auto          shd_rsnn for frames ``[T, C]`` (1-D sensors), vgg9 for ``[T, C, H, W]``
nir           the graph of ``nir_file``, imported as SHDNetSTLLR, SpikingChain or VGGSTLLR
              (:mod:`stllr.nir_interop`; methods stllr and stllr_online only)
fs_fc         —                            FSFCNet (spiking output)
fs_gesture    —                            FSConvNet, DVSGestureNet layout
fs_plane      —                            FSConvNet, DVSPlaneNet layout
============  ===========================  ==============================

The ``fs_*`` archs (:mod:`stllr.models.spiking_output`) go with ``readout = first_spike``
or ``rate`` (docs/first_spike.md); the others with ``readout = accumulate``.

For ``ottt`` the factors are replaced by OTTT's (α_post = 0, λ_pre = γ of the
layers). New architectures register with :func:`register_arch`.
"""

from __future__ import annotations

from collections.abc import Callable

from stllr.config import ExperimentConfig
from stllr.errors import UserError
from stllr.models.base import SpikingModel
from stllr.models.shd import SHDNetBPTT, SHDNetSTLLR
from stllr.models.shd_neurons import SHDNeuronNetBPTT, SHDNeuronNetSTLLR
from stllr.models.vgg import VGG9_CHANNELS, VGGBPTT, VGGSTLLR
from stllr.neuron import decay_from_leak
from stllr.neurons.population import NEURON_KINDS, NeuronSpec, decay_from_tau
from stllr.spike_events import set_event_inputs
from stllr.training import TRAINING_MODES, ottt_factors

Builder = Callable[[ExperimentConfig, tuple[int, ...], int], SpikingModel]
_ARCHS: dict[str, Builder] = {}
#: arch → the number of dimensions of one input frame it takes (1: [channels], as SHD;
#: 3: [channels, height, width], as the event cameras); None: not declared
_INPUT_DIMS: dict[str, int | None] = {}
_INPUT_LAYOUT = {1: "[channels]", 3: "[channels, height, width]"}


def register_arch(name: str, builder: Builder, input_dims: int | None = None) -> None:
    """Make ``arch = name`` available to configs; ``input_dims``: see ``_INPUT_DIMS``."""
    _ARCHS[name] = builder
    _INPUT_DIMS[name] = input_dims


def _check_input_fits(cfg: ExperimentConfig, input_shape: tuple[int, ...]) -> None:
    """A one-line error naming the archs that fit when ``cfg.arch`` cannot take the data."""
    dims = _INPUT_DIMS.get(cfg.arch)
    if dims is None or len(input_shape) == dims:
        return
    spiking = cfg.readout != "accumulate"  # suggest archs with the config's kind of output
    fits = sorted(
        a
        for a, d in _INPUT_DIMS.items()
        if d == len(input_shape) and (a in SPIKING_OUTPUT_ARCHS) == spiking
    )
    layout = _INPUT_LAYOUT.get(len(input_shape), f"{len(input_shape)}-d")
    use = " or ".join(f"arch={a}" for a in fits) if fits else "another arch"
    raise UserError(
        f"arch {cfg.arch!r} takes frames {_INPUT_LAYOUT.get(dims, f'{dims}-d')}, but task "
        f"{cfg.task!r} gives {layout} {list(input_shape)}: use {use} (--set arch=...)"
    )


def _factors(cfg: ExperimentConfig, leak: float):
    return ottt_factors(decay_from_leak(leak)) if cfg.method == "ottt" else cfg.stllr_factors()


def _neuron_spec(cfg: ExperimentConfig) -> NeuronSpec | None:
    """The hidden neurons of the SHD network: None for the LIF, else their spec."""
    if cfg.neuron == "lif":
        if cfg.reset not in ("", "soft"):
            raise UserError(
                f"config reset={cfg.reset!r} applies to neuron = {' | '.join(NEURON_KINDS)}; "
                'the SHD network\'s lif resets softly (set reset = "soft")'
            )
        return None
    if cfg.neuron not in NEURON_KINDS:
        raise UserError(
            f"config neuron must be one of {['lif', *NEURON_KINDS]}, got {cfg.neuron!r}"
        )
    try:
        return NeuronSpec(
            kind=cfg.neuron,
            tau_mem=cfg.tau_mem,
            tau_syn=cfg.tau_syn,
            tau_adapt=cfg.tau_adapt,
            threshold=cfg.threshold,
            reset=cfg.reset or "hard",
            decay_mode=cfg.decay_mode,
        )
    except ValueError as exc:
        raise UserError(f"config (neuron = {cfg.neuron!r}): {exc}") from None


def _shd(cfg: ExperimentConfig, input_shape, num_classes) -> SpikingModel:
    (n_in,) = input_shape
    kw = {"num_inputs": n_in, "hidden": cfg.hidden, "num_classes": num_classes}
    spec = _neuron_spec(cfg)
    if spec is not None:
        # the reference networks' surrogate for these neurons (MySoftSign), Ψ (e)
        psi = cfg.psi or "e"
        if cfg.method == "bptt":
            return SHDNeuronNetBPTT(spec, psi=psi, **kw)
        factors = (
            ottt_factors(decay_from_tau(spec.tau_mem))
            if cfg.method == "ottt"
            else cfg.stllr_factors()
        )
        return SHDNeuronNetSTLLR(spec, factors=factors, psi=psi, feedback=cfg.feedback, **kw)
    psi = cfg.psi or "a"
    if cfg.method == "bptt":
        return SHDNetBPTT(psi=psi, threshold=cfg.threshold, **kw)
    return SHDNetSTLLR(
        factors=_factors(cfg, 5.0), psi=psi, feedback=cfg.feedback, threshold=cfg.threshold, **kw
    )


def _lif_only(cfg: ExperimentConfig) -> None:
    """Only the SHD network has the current-based/adaptive neurons (so far)."""
    if cfg.neuron != "lif":
        raise UserError(
            f"config neuron={cfg.neuron!r} is available for arch=shd_rsnn only; "
            f'arch {cfg.arch!r} needs neuron = "lif"'
        )


def _vgg(cfg: ExperimentConfig, input_shape, num_classes) -> SpikingModel:
    _lif_only(cfg)
    channels = cfg.channels or VGG9_CHANNELS
    kw = {"input_shape": tuple(input_shape), "num_classes": num_classes, "channels": channels}
    psi = cfg.psi or "b"
    if cfg.method == "bptt":
        return VGGBPTT(psi=psi, dropout=cfg.dropout, threshold=cfg.threshold, **kw)
    return VGGSTLLR(
        pooling=cfg.pooling,
        factors=_factors(cfg, 0.0),
        psi=psi,
        dropout=cfg.dropout,
        feedback=cfg.feedback,
        threshold=cfg.threshold,
        **kw,
    )


def _resnet(cfg: ExperimentConfig, input_shape, num_classes) -> SpikingModel:
    _lif_only(cfg)
    from stllr.models.resnet import RESNET18_WIDTHS, SpikingResNet18

    family = "bptt" if cfg.method == "bptt" else "stllr"
    widths = cfg.channels or RESNET18_WIDTHS
    return SpikingResNet18(
        tuple(input_shape),
        num_classes,
        family=family,
        widths=widths,
        factors=_factors(cfg, 0.0),
        psi=cfg.psi or "b",
        feedback=cfg.feedback,
        threshold=cfg.threshold,
    )


def _auto(cfg: ExperimentConfig, input_shape, num_classes) -> SpikingModel:
    """The model for the data's shape: the recurrent SHD network for ``[T, C]`` frames,
    VGG-9 for ``[T, C, H, W]`` (each reads only its own keys: hidden; channels, pooling)."""
    if len(input_shape) == 1:
        return _shd(cfg, input_shape, num_classes)
    if len(input_shape) == 3:
        return _vgg(cfg, input_shape, num_classes)
    raise UserError(
        f"arch=auto: samples [T, {', '.join(map(str, input_shape))}] are neither [T, channels] "
        "nor [T, C, H, W]; choose an arch (shd_rsnn, vgg9, resnet18)"
    )


def _nir(cfg: ExperimentConfig, input_shape, num_classes) -> SpikingModel:
    """The network of the NIR graph ``cfg.nir_file`` as a toolkit model class, learning
    with the config's factors, Ψ and feedback; its input and output sizes must be the task's."""
    from stllr.nir_interop.load import read_nir, require_toolkit_model

    if cfg.method not in ("stllr", "stllr_online"):
        raise UserError(
            f"arch 'nir' fine-tunes with S-TLLR: method must be stllr or stllr_online, "
            f"got {cfg.method!r}"
        )
    _lif_only(cfg)
    path = cfg.nir_file
    model = read_nir(
        path, cfg.nir_dt or None, factors=cfg.stllr_factors(), psi=cfg.psi, feedback=cfg.feedback
    )
    require_toolkit_model(model, path)
    if tuple(model.input_shape) != tuple(input_shape) or model.num_classes != num_classes:
        raise UserError(
            f"{path}: the graph takes input {list(model.input_shape)} and gives "
            f"{model.num_classes} outputs, but task {cfg.task!r} has samples "
            f"{list(input_shape)} and {num_classes} classes; export the network for this task"
        )
    return model


def _specs(cfg: ExperimentConfig):
    from stllr.models.neuron_kinds import NeuronSpec

    hidden = NeuronSpec(cfg.neuron, cfg.tau_mem, cfg.tau_syn, cfg.threshold, cfg.tau_adapt,
                        cfg.reset, cfg.decay_mode)  # fmt: skip
    out = NeuronSpec(cfg.out_neuron, cfg.out_tau_mem, cfg.out_tau_syn, cfg.out_threshold,
                     cfg.tau_adapt, cfg.reset)  # fmt: skip
    return hidden, out


def _fs_fc(cfg: ExperimentConfig, input_shape, num_classes) -> SpikingModel:
    from stllr.models.spiking_output import FC_HIDDEN, FSFCNet

    spec, out_spec = _specs(cfg)
    (n_in,) = input_shape
    hidden = cfg.hidden_sizes or FC_HIDDEN
    psi = cfg.psi or "e"
    return FSFCNet(n_in, num_classes, hidden, spec, out_spec, cfg.dropout, psi)


def _fs_conv(arch: str) -> Builder:
    def build(cfg: ExperimentConfig, input_shape, num_classes) -> SpikingModel:
        from stllr.models.spiking_output import FSConvNet, conv_layout

        channels, hidden, first = conv_layout(arch)
        channels = cfg.channels or channels
        if len(channels) != 3:
            raise UserError(f"arch {arch} takes channels = [c0, c1, c2], got {list(channels)}")
        (width,) = cfg.hidden_sizes or hidden
        spec, out_spec = _specs(cfg)
        psi = cfg.psi or "e"
        return FSConvNet(input_shape, num_classes, channels, width, first, spec, out_spec, psi)

    return build


#: archs whose output layer spikes (read-outs first_spike and rate)
SPIKING_OUTPUT_ARCHS = ("fs_fc", "fs_gesture", "fs_plane")

register_arch("fs_fc", _fs_fc, input_dims=1)
register_arch("fs_gesture", _fs_conv("fs_gesture"), input_dims=3)
register_arch("fs_plane", _fs_conv("fs_plane"), input_dims=3)
register_arch("shd_rsnn", _shd, input_dims=1)
register_arch("vgg9", _vgg, input_dims=3)
register_arch("resnet18", _resnet, input_dims=3)
register_arch("auto", _auto)
register_arch("nir", _nir)


def _check_readout_fits(cfg: ExperimentConfig) -> None:
    """Spiking-output archs need readout first_spike/rate and BPTT; the others accumulate."""
    spiking = cfg.arch in SPIKING_OUTPUT_ARCHS
    if spiking and cfg.readout == "accumulate":
        raise UserError(
            f"arch {cfg.arch!r} has a spiking output layer: set readout=first_spike or readout=rate"
        )
    if not spiking and cfg.readout != "accumulate":
        raise UserError(
            f"readout={cfg.readout!r} needs a spiking output layer: arch one of "
            f"{list(SPIKING_OUTPUT_ARCHS)}, got arch={cfg.arch!r}"
        )
    if spiking and cfg.method != "bptt":
        raise UserError(
            f"readout={cfg.readout!r} (arch {cfg.arch!r}) trains through time: set "
            f"method=bptt, got method={cfg.method!r}"
        )


def build_model(cfg: ExperimentConfig, input_shape: tuple[int, ...], num_classes: int):
    """Return ``(model, training_mode)``."""
    if cfg.arch not in _ARCHS:
        raise UserError(f"unknown arch {cfg.arch!r}; expected one of {sorted(_ARCHS)}")
    if cfg.method not in TRAINING_MODES:
        raise UserError(f"unknown method {cfg.method!r}; expected one of {TRAINING_MODES}")
    if cfg.method == "bptt" and cfg.feedback != "BP":
        raise UserError(f"feedback={cfg.feedback!r} needs an S-TLLR method, not bptt")
    _check_input_fits(cfg, tuple(input_shape))
    _check_readout_fits(cfg)
    model = _ARCHS[cfg.arch](cfg, input_shape, num_classes)
    set_event_inputs(model, cfg.event_inputs)
    return model, cfg.method


def _fsfn(cfg: ExperimentConfig, input_shape, num_classes) -> SpikingModel:
    """FSFN for flow tasks: ``input_shape`` = (channels, crop, crop) of one step."""
    from stllr.models.fsfn import FSFN, FSFN_DECODER, FSFN_ENCODER
    from stllr.tasks import FLOW_TASKS

    if cfg.task not in FLOW_TASKS:
        raise UserError(
            f"arch 'fsfn' predicts optical flow: use it with task {' or '.join(FLOW_TASKS)}, "
            f"not {cfg.task!r}"
        )
    c, h, w = input_shape
    return FSFN(
        c,
        family="bptt" if cfg.method == "bptt" else "stllr",
        encoder=cfg.channels or FSFN_ENCODER,
        decoder=cfg.flow_decoder or FSFN_DECODER,
        factors=cfg.stllr_factors(),
        psi=cfg.psi or "d",
        threshold=cfg.threshold,
        readout=cfg.flow_readout,
        input_size=(h, w),
    )


register_arch("fsfn", _fsfn)  # flow tasks only: never suggested for class data
