"""The emulator's input: checks, the exact-float quantization of frames and their bound.

Integer input to :meth:`IntegerEmulator.forward` must fit the network's input format
(:func:`check_input`); float frames given to :meth:`IntegerEmulator.run` are quantized
with the input format (``quantization.ptq.quantize_input``), here as exact floats in a
reused buffer (:func:`quantize_exact`), and their largest |integer| bounds every node's
values during the run (:func:`frames_bound`).
"""

from __future__ import annotations

import torch

from quantization.network import QNetwork
from quantization.ptq import quantize_input
from stllr.errors import UserError


def quantize_exact(frame: torch.Tensor, fmt, out: torch.Tensor) -> torch.Tensor:
    """:func:`~quantization.ptq.quantize_input` without its final cast to int64, into
    ``out``: the same integers in the frame's float dtype (NaN-free frames). In place, so
    not through ``round_float``: ``torch.round`` is its ``nearest_even``, the input's rule."""
    if fmt.exp == 0:
        torch.round(frame, out=out)
    else:
        torch.div(frame, fmt.scale(), out=out).round_()
    return out.clamp_(fmt.lo, fmt.hi)


def frames_bound(frames: torch.Tensor, fmt) -> int | None:
    """Largest |input integer| of ``frames`` (quantization is monotone, so the extremes of
    the frames give it); ``None`` if that cannot be told (no frames, not floats). Frames
    holding NaN raise :class:`~stllr.errors.UserError`."""
    if not frames.is_floating_point() or frames.numel() == 0:
        return None
    # per frame: aminmax of a strided slice of frames would copy it first
    ext = torch.stack([torch.stack(torch.aminmax(f)) for f in frames]).flatten()
    return int(quantize_input(ext, fmt, "IntegerEmulator.run: frames").abs().max())


def check_input(x, qnet: QNetwork, where: str) -> None:
    """Refuse input ``[B, *input_shape]`` that the network's input format cannot hold."""
    shape = tuple(qnet.input_shape)
    expected = f"[B, {', '.join(map(str, shape))}]"
    if not isinstance(x, torch.Tensor) or x.dtype == torch.bool or x.is_complex():
        got = x.dtype if isinstance(x, torch.Tensor) else type(x).__name__
        raise UserError(
            f"{where}: input must be an integer (or integral float) tensor {expected}, got {got}"
        )
    if x.ndim != len(shape) + 1 or tuple(x.shape[1:]) != shape:
        raise UserError(f"{where}: input must be {expected}, got {list(x.shape)}")
    if x.numel() == 0:
        return
    if x.is_floating_point() and not bool((x == torch.round(x)).all()):
        raise UserError(
            f"{where}: input values must be integers (NaN or fractions found); "
            "float frames become integers with quantization.ptq.quantize_input"
        )
    lo, hi = torch.aminmax(x)
    qnet.input_format.check_range(lo.item(), hi.item(), where)
