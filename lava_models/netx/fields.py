"""Field readers of netx hdf5 files: one dataset, attribute or neuron group → a checked value.

Each reader follows what netx's ``NetDict`` implies (a string is 0-d or the first
element; numbers may be stored as floats if they are integers) and raises
:class:`~lava_models.errors.NetxFileError` naming the layer (``where``) and the field.
Only numpy is imported at module level (h5py inside functions; docs/lava.md §7, pitfall 4).
"""

from __future__ import annotations

import numpy as np

from lava_models.errors import NetxFileError
from lava_models.netx.layout import (
    BIAS_MAX,
    BIAS_MIN,
    DV_MAX,
    I_DECAY_NONE,
    NETX_BIAS_EXP,
    NETX_DELAY_MAX,
    VTH_MAX,
)


def field(g, key: str, where: str):
    if key not in g:
        raise NetxFileError(f"{where}: missing field {key!r}")
    return g[key]


def dataset_field(g, key: str, where: str):
    import h5py

    obj = field(g, key, where)
    if not isinstance(obj, h5py.Dataset):
        raise NetxFileError(f"{where}: field {key!r} is a group, expected a dataset")
    return obj


def string_field(g, key: str, where: str) -> str:
    """A string field the way netx's NetDict reads it: 0-d or the first element."""
    ds = dataset_field(g, key, where)
    value = ds[()]
    if isinstance(value, np.ndarray):
        if value.size == 0:
            raise NetxFileError(f"{where}: field {key!r} is empty")
        value = value.reshape(-1)[0]
    if isinstance(value, (bytes, np.bytes_)):
        try:
            return bytes(value).decode("ascii")
        except UnicodeDecodeError:
            raise NetxFileError(f"{where}: field {key!r} is not an ASCII string") from None
    if isinstance(value, str):
        return value
    raise NetxFileError(f"{where}: field {key!r} = {value!r} is not a string")


def ints_field(g, key: str, where: str) -> np.ndarray:
    """A numeric field whose values are integers (int64 array, any shape)."""
    ds = dataset_field(g, key, where)
    a = np.asarray(ds[()])
    if a.dtype.kind == "b":
        a = a.astype(np.int64)
    if a.dtype.kind not in "iuf":
        raise NetxFileError(f"{where}: field {key!r} has dtype {a.dtype}, expected numbers")
    if a.dtype.kind == "f":
        if not np.all(np.isfinite(a)) or np.any(a != np.round(a)):
            raise NetxFileError(
                f"{where}: field {key!r} holds non-integer values (netx would truncate them)"
            )
        if a.size and np.abs(a).max() >= 2**62:
            raise NetxFileError(f"{where}: field {key!r} holds values beyond int64")
    return a.astype(np.int64)


def int_field(g, key: str, where: str) -> int:
    a = ints_field(g, key, where)
    if a.size != 1:
        raise NetxFileError(f"{where}: field {key!r} has shape {list(a.shape)}, expected a scalar")
    return int(a.reshape(-1)[0])


def pair_field(g, key: str, where: str) -> tuple[int, int]:
    """A conv parameter in file order (H, W): scalar, [v] or [h, w] (netx ``expand``)."""
    a = ints_field(g, key, where).reshape(-1)
    if a.size == 1:
        return (int(a[0]), int(a[0]))
    if a.size != 2:
        raise NetxFileError(f"{where}: field {key!r} has {a.size} values, expected 1 or 2")
    return (int(a[0]), int(a[1]))


def attr_field(g, key: str, where: str, kind: type, default):
    if key not in g.attrs:
        return default
    value = g.attrs[key]
    if isinstance(value, bytes):
        value = value.decode("utf-8")
    if kind is int:
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
            raise NetxFileError(f"{where}: attribute {key!r} = {value!r} is not an integer")
        return int(value)
    if kind is float:
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, (float, np.floating)):
            raise NetxFileError(f"{where}: attribute {key!r} = {value!r} is not a float")
        return float(value)
    if not isinstance(value, str):
        raise NetxFileError(f"{where}: attribute {key!r} = {value!r} is not a string")
    return value


def neuron_fields(g, where: str) -> tuple[int, int, int]:
    """``(du, dv, vth)`` of a layer's CUBA neuron (netx: ``du = iDecay − 1``, so iDecay 4096
    is the toolkit's LIF without current memory and smaller values a current-based LIF);
    errors for anything netx maps differently."""
    import h5py

    where = f"{where} neuron"
    if "neuron" not in g:
        raise NetxFileError(
            f"{where}: missing; netx then builds a non-leaky integrator (iDecay 0), which "
            "the toolkit's neurons cannot represent"
        )
    nrn = g["neuron"]
    if not isinstance(nrn, h5py.Group):
        raise NetxFileError(f"{where}: 'neuron' is a dataset, expected a group")
    kind = string_field(nrn, "type", where)
    if kind not in ("CUBA", "LOIHI"):
        raise NetxFileError(
            f"{where}: type {kind!r} is not supported (only CUBA/LOIHI map to Lava's LIF)"
        )
    i_decay = int_field(nrn, "iDecay", where)
    if not 1 <= i_decay <= I_DECAY_NONE:
        raise NetxFileError(
            f"{where}: iDecay = {i_decay} is not a current decay netx maps onto Lava's LIF "
            f"(1 … {I_DECAY_NONE}: du = iDecay − 1; {I_DECAY_NONE} = no current memory)"
        )
    dv = int_field(nrn, "vDecay", where)
    if not 0 <= dv <= DV_MAX:
        raise NetxFileError(f"{where}: vDecay = {dv} is not a 12-bit decay (0 … {DV_MAX})")
    vth = int_field(nrn, "vThMant", where)
    if not 0 <= vth <= VTH_MAX:
        raise NetxFileError(f"{where}: vThMant = {vth} is beyond 17 bits (0 … {VTH_MAX})")
    if "refDelay" in nrn and int_field(nrn, "refDelay", where) != 1:
        import warnings

        warnings.warn(
            f"{where}: refDelay = {int_field(nrn, 'refDelay', where)} is ignored, as netx "
            "ignores it (Lava's LIF has no refractory period)",
            stacklevel=3,
        )
    if "messageBits" in nrn and int_field(nrn, "messageBits", where) != 0:
        raise NetxFileError(f"{where}: messageBits > 0 (graded spikes) is not supported")
    return i_decay - 1, dv, vth


def bias_field(g, where: str, n_out: int, bias_exp: int):
    """``(bias_mant, bias_exp)`` from the netx ``bias`` (one per channel) or ``(None, 0)``."""
    if "bias" not in g:
        return None, bias_exp
    b = ints_field(g, "bias", where).reshape(-1)
    if b.size == 1 and n_out != 1:
        b = np.full(n_out, int(b[0]), dtype=np.int64)
    if b.size != n_out:
        raise NetxFileError(
            f"{where} field 'bias': {b.size} values for {n_out} channels (only one bias per "
            "neuron of a dense layer or per channel of a conv layer is supported)"
        )
    if b.min() < BIAS_MIN or b.max() > BIAS_MAX:
        raise NetxFileError(
            f"{where} field 'bias': values span [{int(b.min())}, {int(b.max())}], beyond 13 bits"
        )
    total = b << NETX_BIAS_EXP
    if bias_exp < 0 or np.any(total % (1 << bias_exp)):
        raise NetxFileError(
            f"{where}: attribute stllr_bias_exp = {bias_exp} does not divide the bias"
        )
    return total >> bias_exp, bias_exp


def delay_field(g, where: str, n_out: int, n_in: int) -> np.ndarray:
    """The ``[out, in]`` synaptic delays of a dense layer's ``delay`` field, as netx expands
    it (hdf5.py): a scalar for every synapse, ``[out]`` per output neuron (slayer's axonal
    delay), ``[in]`` per input, or ``[out, in]``; values above 62 clamped to 62 with a
    warning, as netx does."""
    import warnings

    d = ints_field(g, "delay", where)
    if d.size and d.min() < 0:
        raise NetxFileError(f"{where} field 'delay': negative delay {int(d.min())}")
    if d.size and d.max() > NETX_DELAY_MAX:
        warnings.warn(
            f"{where} field 'delay': delays up to {int(d.max())} clamped to {NETX_DELAY_MAX} "
            "(as netx does)",
            stacklevel=3,
        )
        d = np.minimum(d, NETX_DELAY_MAX)
    if d.ndim == 0 or (d.ndim == 1 and d.size == 1):
        return np.full((n_out, n_in), int(d.reshape(-1)[0]), dtype=np.int64)
    if d.ndim == 1 and d.size == n_out:
        return np.repeat(d.reshape(-1, 1), n_in, axis=1)
    if d.ndim == 1 and d.size == n_in:
        return np.repeat(d.reshape(1, -1), n_out, axis=0)
    if d.shape == (n_out, n_in):
        return d
    raise NetxFileError(
        f"{where} field 'delay': shape {list(d.shape)}, expected a scalar, [{n_out}] (per "
        f"neuron), [{n_in}] (per input) or [{n_out}, {n_in}]"
    )
