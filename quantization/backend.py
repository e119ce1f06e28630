"""The few array operations the integer kernels need, for numpy arrays and torch tensors.

Kernels are written once against this namespace so that the
torch emulator and the Lava ``fixed_pt`` process models run the same code. Python
operators (``+ - * >> <<``, comparisons) already behave alike on integer numpy
arrays and torch tensors; the functions below cover what does not.
"""

from __future__ import annotations

import contextlib
from types import SimpleNamespace

import numpy as np
import torch

from quantization.formats import ROUNDINGS, SHIFT_ALIASES


def _np_mul_shift_toward_zero(x, m: int, k: int):
    p = np.asarray(x).astype(np.int64) * m
    return np.sign(p) * (np.abs(p) >> k)


def _torch_mul_shift_toward_zero(x, m: int, k: int):
    # trunc(p / 2^k) for int64 p: a floor shift after adding 2^k − 1 to negative p (the
    # same values as torch.div(p, 2^k, rounding_mode="trunc"), without an integer division)
    p = x.to(torch.int64) * m
    return (p + ((p >> 63) & ((1 << k) - 1))) >> k


def _float_mul_shift_toward_zero(x, m: int, k: int):
    # x = hi·2^k + lo with hi = trunc(x / 2^k) and lo of x's sign, |lo| < 2^k; then
    # trunc(x·m / 2^k) = hi·m + trunc(lo·m / 2^k), every step an exact float operation
    # while |x| < 2^24 (float32) and 0 ≤ m ≤ 2^(24 − k)
    hi = torch.div(x, float(1 << k), rounding_mode="trunc")
    lo = torch.add(x, hi, alpha=-float(1 << k)).mul_(m)
    return lo.div_(float(1 << k), rounding_mode="trunc").add_(hi, alpha=m)


_NUMPY = SimpleNamespace(
    name="numpy",
    sign=np.sign,
    abs=np.abs,
    where=np.where,
    clip=np.clip,
    int64=lambda x: np.asarray(x).astype(np.int64),
    int32=lambda x: np.asarray(x).astype(np.int32),
    zeros_like=np.zeros_like,
    shift_toward_zero=lambda x, k: np.sign(x) * (np.abs(x) >> k),
    mul_shift_toward_zero=_np_mul_shift_toward_zero,
    shl=lambda x, k: np.asarray(x).astype(np.int64) << k,
    positive=lambda x: x > 0,
)

_TORCH = SimpleNamespace(
    name="torch",
    sign=torch.sign,
    abs=torch.abs,
    where=torch.where,
    clip=torch.clamp,
    int64=lambda x: x.to(torch.int64),
    int32=lambda x: x.to(torch.int32),
    zeros_like=torch.zeros_like,
    # x / 2^k rounded toward zero; exact for int64 (same values as sign(x)·(|x| >> k))
    shift_toward_zero=lambda x, k: torch.div(x, 1 << k, rounding_mode="trunc"),
    mul_shift_toward_zero=_torch_mul_shift_toward_zero,
    shl=lambda x, k: x.to(torch.int64) << k,
    positive=lambda x: x > 0,
)

#: Float tensors that hold integers ("exact floats", e.g. the integer emulator's float32
#: LIF state): the names above that follow integer semantics keep the float dtype and
#: stay exact within the stated bounds; ``positive`` gives 0/1 instead of booleans.
_TORCH_EXACT_FLOAT = SimpleNamespace(
    **{
        **vars(_TORCH),
        "name": "torch-exact-float",
        "mul_shift_toward_zero": _float_mul_shift_toward_zero,
        "shl": lambda x, k: x * float(1 << k),
        "positive": lambda x: torch.clamp(x, 0, 1),
    }
)


def xp_of(x) -> SimpleNamespace:
    """The operation namespace for ``x`` (a numpy array or a torch tensor).

    Beyond the plain array functions, the integer kernels use

    * ``mul_shift_toward_zero(x, m, k)``: ``sign(x·m)·(|x·m| >> k)``, exact in 64 bits;
    * ``shl(x, k)``: ``x << k`` in 64 bits;
    * ``positive(x)``: ``x > 0`` (booleans).

    A floating torch tensor is taken to hold integers: its namespace computes the same
    values in its own dtype (``positive`` as 0/1), exact while the integers stay below
    2^24 in magnitude for float32 (``mul_shift_toward_zero``: and ``m ≤ 2^(24 − k)``);
    callers guarantee the bound (see ``IntegerEmulator``).
    """
    if isinstance(x, torch.Tensor):
        return _TORCH_EXACT_FLOAT if x.is_floating_point() else _TORCH
    if isinstance(x, (np.ndarray, np.generic, int)):
        return _NUMPY
    raise TypeError(f"expected a numpy array or a torch tensor, got {type(x).__name__}")


# ---------------------------------------------------------------------------
# The rounding vocabulary (quantization.formats.ROUNDINGS), once for numpy arrays, torch
# tensors and Python numbers.
# ---------------------------------------------------------------------------


def round_float(x, rounding: str = "nearest_even", noise=None):
    """``x`` (floats) rounded to integer values by ``rounding`` (:data:`~quantization.formats.
    ROUNDINGS`); same type and dtype as ``x`` (a Python float gives an ``int``).

    ``nearest_even`` is ``torch.round`` / ``np.rint`` / Python ``round``; ``nearest_up`` is
    ``floor(x + ½)``; ``stochastic`` is ``floor(x + noise)`` with ``noise`` in ``[0, 1)``.
    """
    if isinstance(x, int):
        return x
    fns = _TORCH_ROUND if isinstance(x, torch.Tensor) else _NUMPY_ROUND
    if rounding == "stochastic":
        if noise is None:
            raise ValueError("round_float: stochastic rounding needs noise in [0, 1)")
        x, rounding = x + noise, "floor"
    if rounding not in fns:
        raise ValueError(f"round_float: rounding must be one of {ROUNDINGS}, got {rounding!r}")
    if isinstance(x, float):  # Python and numpy scalars
        return int(fns[rounding](np.float64(x)))
    return fns[rounding](x)


def _exact(x):
    if not bool((x == _round_even(x)).all()):
        raise ValueError("round_float: rounding 'exact' of a value that is not an integer")
    return x


def _round_even(x):
    return torch.round(x) if isinstance(x, torch.Tensor) else np.rint(x)


def _rounders(rint, floor, trunc) -> dict:
    """The deterministic rules of :func:`round_float` from one library's functions."""
    return {
        "nearest_even": rint,
        "nearest_up": lambda x: floor(x + 0.5),
        "floor": floor,
        "toward_zero": trunc,
        "exact": _exact,
    }


_NUMPY_ROUND = _rounders(np.rint, np.floor, np.trunc)
_TORCH_ROUND = _rounders(torch.round, torch.floor, torch.trunc)


def round_shift(x, k: int, rounding: str, noise=None):
    """Integer ``x / 2^k`` rounded by ``rounding``; ``k ≥ 0``; int64 in and out.

    ``floor`` ``x >> k``; ``toward_zero`` ``sign(x)·(|x| >> k)``; ``nearest_up``
    ``(x + 2^(k−1)) >> k``; ``nearest_even`` the same with ties to the even quotient;
    ``stochastic`` ``(x + noise) >> k`` with ``noise`` integers uniform in ``[0, 2^k)``
    broadcastable to ``x``. ``"nearest"`` means ``nearest_up`` (:data:`~quantization.
    formats.SHIFT_ALIASES`).
    """
    if k < 0:
        raise ValueError(f"round_shift: k must be ≥ 0, got {k}")
    rounding = SHIFT_ALIASES.get(rounding, rounding)
    if rounding not in ROUNDINGS or rounding == "exact":
        raise ValueError(f"rounding must be one of {ROUNDINGS[:-1]}, got {rounding!r}")
    if k == 0:
        return x
    if rounding == "floor":
        return x >> k
    if rounding == "toward_zero":
        return xp_of(x).shift_toward_zero(x, k)
    if rounding == "nearest_up":
        return (x + (1 << (k - 1))) >> k
    if rounding == "nearest_even":  # a tie moves up only from an odd quotient
        return (x + ((1 << (k - 1)) - 1) + ((x >> k) & 1)) >> k
    if noise is None:
        raise ValueError("round_shift: stochastic rounding needs noise")
    return (x + noise) >> k


def saturate(x, lo: int, hi: int):
    """Clip to ``[lo, hi]`` (a saturating register)."""
    return xp_of(x).clip(x, lo, hi)


def fit(x, fmt):
    """Saturate ``x`` to the integer range of the :class:`~quantization.formats.QFormat`
    ``fmt`` (its overflow must be ``saturate``)."""
    if fmt.overflow != "saturate":
        raise ValueError(f"fit: format {fmt.name!r} does not saturate ({fmt.overflow})")
    return saturate(x, fmt.min_int, fmt.max_int)


# ---------------------------------------------------------------------------
# Exact integer products. Both backends compute in floating point where that is
# exact: every partial sum of integer operands is exact while it stays below
# 2^24 (float32) or 2^53 (float64); callers pick the dtype from a static bound
# (see :func:`exact_float_dtype`) and the result is converted back to int64.
# numpy operands go through torch, so the two backends share one implementation.
# ---------------------------------------------------------------------------


def exact_float_dtype(bound: float) -> torch.dtype:
    """float32 if every value and partial sum stays below 2^24 in magnitude, else float64.

    Raises if even float64 cannot hold ``bound`` exactly (≥ 2^53).
    """
    if bound < 2**24:
        return torch.float32
    if bound < 2**53:
        return torch.float64
    raise OverflowError(f"integer products reach {bound:.3g} ≥ 2^53: not exact in float64")


def _as_torch(x, dtype):
    if isinstance(x, torch.Tensor):
        return x.to(dtype), False
    return torch.as_tensor(np.asarray(x)).to(dtype), True


def _back(y: torch.Tensor, was_numpy: bool, keep_float: bool = False):
    # Exact integers by the dtype bound, so the conversion truncates nothing.
    if keep_float and not was_numpy:
        return y
    y = y.to(torch.int64)
    return y.numpy() if was_numpy else y


@contextlib.contextmanager
def no_tf32(t: torch.Tensor):
    """TF32 off while an exact float32 product runs on a CUDA tensor ``t``.

    cuDNN convolutions use TF32 by default (and matmuls when asked to): a 10-bit mantissa
    would round the integers the emulator keeps exact in float32, so its GPU results would
    differ from the CPU's. A no-op on the CPU.
    """
    if not t.is_cuda:
        yield
        return
    matmul, conv = torch.get_float32_matmul_precision(), torch.backends.cudnn.allow_tf32
    torch.set_float32_matmul_precision("highest")
    torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(matmul)
        torch.backends.cudnn.allow_tf32 = conv


def int_linear(x, w, dtype: torch.dtype = torch.float64, keep_float: bool = False):
    """``x @ wᵀ`` for integer ``x`` ``[..., in]`` and ``w`` ``[out, in]`` (int64 result;
    torch with ``keep_float``: the exact result in ``dtype``)."""
    xt, was_numpy = _as_torch(x, dtype)
    wt, _ = _as_torch(w, dtype)
    with no_tf32(xt):
        return _back(xt @ wt.T, was_numpy, keep_float)


def int_conv2d(x, w, stride, padding, dilation=(1, 1), groups=1, dtype=torch.float64,
               keep_float: bool = False):  # fmt: skip
    """2-D convolution of integer ``x`` ``[B, C, H, W]`` with integer ``w`` (int64 result;
    torch with ``keep_float``: the exact result in ``dtype``)."""
    xt, was_numpy = _as_torch(x, dtype)
    wt, _ = _as_torch(w, dtype)
    with no_tf32(xt):
        y = torch.nn.functional.conv2d(xt, wt, None, stride, padding, dilation, groups)
    return _back(y, was_numpy, keep_float)


def int_conv_transpose2d(x, w, stride, padding, output_padding=(0, 0), dilation=(1, 1),
                         groups=1, dtype=torch.float64, keep_float: bool = False):  # fmt: skip
    """2-D transposed convolution of integer ``x`` ``[B, C_in, H, W]`` with integer ``w``
    ``[C_in, C_out/g, kH, kW]``: ``y[o, p·stride − padding + k·dilation] += x[i, p]·w[i, o, k]``
    (int64 result; torch with ``keep_float``: the exact result in ``dtype``)."""
    xt, was_numpy = _as_torch(x, dtype)
    wt, _ = _as_torch(w, dtype)
    with no_tf32(xt):
        y = torch.nn.functional.conv_transpose2d(xt, wt, None, stride, padding, output_padding,
                                                 groups, dilation)  # fmt: skip
    return _back(y, was_numpy, keep_float)


def int_conv_transpose2d_weight(x, w_shape, a, stride, padding, dilation=(1, 1), groups=1,
                                dtype=torch.float64):  # fmt: skip
    """``Σ_b,positions`` correlation of the post factor ``a`` ``[B, C_out, H', W']`` with the
    input ``x`` ``[B, C_in, H, W]`` of a transposed convolution, in its weight's shape
    ``[C_in, C_out/g, kH, kW]`` (int64). A transposed convolution of ``x`` is the input
    gradient of the convolution with the same weight, so ``⟨a, convT(x, W)⟩ = ⟨conv(a, W), x⟩``
    and this is the weight gradient of that convolution with input ``a`` and output
    gradient ``x``."""
    xt, was_numpy = _as_torch(x, dtype)
    at, _ = _as_torch(a, dtype)
    with no_tf32(xt):
        g = torch.nn.grad.conv2d_weight(at, tuple(w_shape), xt, stride, padding, dilation, groups)
    return _back(g, was_numpy)


def int_outer_sum(a, x, dtype: torch.dtype = torch.float64):
    """``Σ_b aᵀ x`` for ``a`` ``[B, out]`` and ``x`` ``[B, in]`` (int64 ``[out, in]``)."""
    at, was_numpy = _as_torch(a, dtype)
    xt, _ = _as_torch(x, dtype)
    with no_tf32(xt):
        return _back(at.T @ xt, was_numpy)


def int_conv2d_weight(
    x, w_shape, a, stride, padding, dilation=(1, 1), groups=1, dtype=torch.float64
):
    """``Σ_b,positions`` correlation of ``a`` ``[B, C_out, H', W']`` with ``x`` (int64 weight)."""
    xt, was_numpy = _as_torch(x, dtype)
    at, _ = _as_torch(a, dtype)
    with no_tf32(xt):
        g = torch.nn.grad.conv2d_weight(xt, tuple(w_shape), at, stride, padding, dilation, groups)
    return _back(g, was_numpy)


def int_sum_pool2d(x, kernel: int):
    """Sum over non-overlapping ``kernel × kernel`` windows (avg pooling times kernel²)."""
    xt, was_numpy = _as_torch(x, torch.float64)
    y = torch.nn.functional.avg_pool2d(xt, kernel) * (kernel * kernel)
    return _back(y, was_numpy)


def int_max_pool2d(x, kernel: int):
    """Max over non-overlapping ``kernel × kernel`` windows."""
    xt, was_numpy = _as_torch(x, torch.float64)
    return _back(torch.nn.functional.max_pool2d(xt, kernel), was_numpy)
