"""Build a model and its training mode from an :class:`~stllr.config.ExperimentConfig`.

``arch`` × ``method``:

============  ===========================  ==============================
arch          method stllr/stllr_online/ottt  method bptt
============  ===========================  ==============================
shd_rsnn      SHDNetSTLLR                  SHDNetBPTT
vgg9          VGGSTLLR                     VGGBPTT (AvgPool, as the reference)
resnet18      SpikingResNet18 (S-TLLR)     SpikingResNet18 (BPTT)
auto          shd_rsnn for frames ``[T, C]`` (1-D sensors), vgg9 for ``[T, C, H, W]``
============  ===========================  ==============================

For ``ottt`` the factors are replaced by OTTT's (α_post = 0, λ_pre = γ of the
layers). New architectures register with :func:`register_arch`.
"""

from __future__ import annotations

from collections.abc import Callable

from stllr.config import ExperimentConfig
from stllr.errors import UserError
from stllr.models.base import SpikingModel
from stllr.models.shd import SHDNetBPTT, SHDNetSTLLR
from stllr.models.vgg import VGG9_CHANNELS, VGGBPTT, VGGSTLLR
from stllr.neuron import decay_from_leak
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
    fits = sorted(a for a, d in _INPUT_DIMS.items() if d == len(input_shape))
    layout = _INPUT_LAYOUT.get(len(input_shape), f"{len(input_shape)}-d")
    use = " or ".join(f"arch={a}" for a in fits) if fits else "another arch"
    raise UserError(
        f"arch {cfg.arch!r} takes frames {_INPUT_LAYOUT.get(dims, f'{dims}-d')}, but task "
        f"{cfg.task!r} gives {layout} {list(input_shape)}: use {use} (--set arch=...)"
    )


def _factors(cfg: ExperimentConfig, leak: float):
    return ottt_factors(decay_from_leak(leak)) if cfg.method == "ottt" else cfg.stllr_factors()


def _shd(cfg: ExperimentConfig, input_shape, num_classes) -> SpikingModel:
    (n_in,) = input_shape
    kw = {"num_inputs": n_in, "hidden": cfg.hidden, "num_classes": num_classes}
    psi = cfg.psi or "a"
    if cfg.method == "bptt":
        return SHDNetBPTT(psi=psi, threshold=cfg.threshold, **kw)
    return SHDNetSTLLR(
        factors=_factors(cfg, 5.0), psi=psi, feedback=cfg.feedback, threshold=cfg.threshold, **kw
    )


def _vgg(cfg: ExperimentConfig, input_shape, num_classes) -> SpikingModel:
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


register_arch("shd_rsnn", _shd, input_dims=1)
register_arch("vgg9", _vgg, input_dims=3)
register_arch("resnet18", _resnet, input_dims=3)
register_arch("auto", _auto)


def build_model(cfg: ExperimentConfig, input_shape: tuple[int, ...], num_classes: int):
    """Return ``(model, training_mode)``."""
    if cfg.arch not in _ARCHS:
        raise UserError(f"unknown arch {cfg.arch!r}; expected one of {sorted(_ARCHS)}")
    if cfg.method not in TRAINING_MODES:
        raise UserError(f"unknown method {cfg.method!r}; expected one of {TRAINING_MODES}")
    if cfg.method == "bptt" and cfg.feedback != "BP":
        raise UserError(f"feedback={cfg.feedback!r} needs an S-TLLR method, not bptt")
    _check_input_fits(cfg, tuple(input_shape))
    return _ARCHS[cfg.arch](cfg, input_shape, num_classes), cfg.method


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
