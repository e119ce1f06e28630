"""The discrete-time ↔ continuous-time mapping of LIF and leaky-integrator parameters.

NIR's neurons are continuous: ``τ dv/dt = (v_leak − v) + R·I``. The toolkit steps
``m[t] = γ·ũ[t−1] + I[t]``. Forward Euler with step ``dt`` gives
``v[t] = (1 − dt/τ)·v[t−1] + (dt·R/τ)·I[t] + (dt/τ)·v_leak``, so the two agree exactly when

    γ = 1 − dt/τ  (τ = dt / (1 − γ)),   R = τ/dt  (input gain 1),   v_leak = 0,

the threshold is θ_eff = max(θ, 0.5) and the reset potential is 0. NIR's leak-free
neurons (``IF``: ``dv/dt = R·I``; the integrator ``I``) step ``v[t] = v[t−1] + dt·R·I[t]``:
the toolkit's neuron with γ = 1 (``leak`` = :data:`NO_LEAK`) when ``dt·R = 1``. A
current-based ``CubaLIF`` (``τ_syn dI/dt = −I + w_in·x``, the membrane fed the current of
the same step) is a LIF exactly when its current has no memory: ``1 − dt/τ_syn = 0`` and
``dt·w_in/τ_syn = 1``; one with memory behind a one-step ``Delay`` is the toolkit's
CuLIF (:mod:`.cuba`). Graphs whose values the toolkit cannot represent exactly are
refused (docs/nir.md), never approximated.
"""

from __future__ import annotations

import math

import numpy as np

from stllr.errors import UserError
from stllr.neuron import THRESHOLD_FLOOR, LIFParams, decay_from_leak

#: the time step of exported graphs, in seconds (the graph's metadata states it)
DEFAULT_DT = 1e-3
#: the pre-sigmoid leak of a neuron without leak: sigmoid(40) is exactly 1.0 in float64
NO_LEAK = 40.0


def tau_from_gamma(gamma: float, dt: float) -> float:
    """``τ = dt / (1 − γ)``."""
    return dt / (1.0 - gamma)


def lif_arrays(lif: LIFParams, n: int | tuple[int, ...], dt: float) -> dict[str, np.ndarray]:
    """NIR ``LIF`` parameters (float32 arrays of shape ``n``) of a toolkit population."""
    tau = tau_from_gamma(lif.gamma, dt)
    return {
        "tau": np.full(n, tau, dtype=np.float64),
        "r": np.full(n, tau / dt, dtype=np.float64),
        "v_leak": np.zeros(n, dtype=np.float64),
        "v_threshold": np.full(n, lif.theta_eff, dtype=np.float64),
        "v_reset": np.zeros(n, dtype=np.float64),
    }


def if_arrays(lif: LIFParams, n, dt: float) -> dict[str, np.ndarray]:
    """NIR ``IF`` parameters of a leak-free toolkit population (γ = 1)."""
    return {
        "r": np.full(n, 1.0 / dt, dtype=np.float64),
        "v_threshold": np.full(n, lif.theta_eff, dtype=np.float64),
        "v_reset": np.zeros(n, dtype=np.float64),
    }


def li_arrays(gamma: float, n: int, dt: float) -> dict[str, np.ndarray]:
    """NIR ``LI`` parameters of a leaky readout with decay ``gamma``."""
    tau = tau_from_gamma(gamma, dt)
    return {
        "tau": np.full(n, tau, dtype=np.float64),
        "r": np.full(n, tau / dt, dtype=np.float64),
        "v_leak": np.zeros(n, dtype=np.float64),
    }


def _uniform(where: str, field: str, values) -> float:
    """The one value of a per-neuron array (the toolkit's constants are per population)."""
    arr = np.asarray(values, dtype=np.float64).ravel()
    if arr.size == 0 or not np.all(arr == arr[0]) or not math.isfinite(arr[0]):
        raise UserError(
            f"{where}: field '{field}' must be one finite value for all neurons (the toolkit's "
            f"constants are per population), got {np.unique(arr)[:4].tolist()}"
        )
    return float(arr[0])


def leak_from_tau(
    where: str, tau_values, r_values, v_leak_values, dt: float, tau_field: str = "tau"
) -> float:
    """The toolkit's pre-sigmoid ``leak`` for NIR ``tau`` (``tau_field``: its name in the
    node), ``r``, ``v_leak``; raises :class:`UserError` naming the field when it cannot be
    represented exactly."""
    tau = _uniform(where, tau_field, tau_values)
    r = _uniform(where, "r", r_values)
    if _uniform(where, "v_leak", v_leak_values) != 0.0:
        raise UserError(f"{where}: field 'v_leak' must be 0 (the toolkit has no resting offset)")
    gamma = 1.0 - dt / tau
    if not 0.0 < gamma < 1.0:
        raise UserError(
            f"{where}: field '{tau_field}' must be > dt = {dt} so that the decay γ = 1 − dt/τ "
            f"is in (0, 1), got τ = {tau} (a graph without metadata 'dt' needs --dt, or "
            "nir_dt in a pipeline; snnTorch's is 1e-4)"
        )
    if np.float32(r * dt / tau) != np.float32(1.0):
        raise UserError(
            f"{where}: field 'r' must be τ/dt = {tau / dt} (input gain dt·R/τ = 1), got {r}"
        )
    leak = math.log(gamma / (1.0 - gamma))
    if np.float32(decay_from_leak(leak)) != np.float32(gamma):
        raise UserError(
            f"{where}: field '{tau_field}' gives γ = {gamma}, not representable as sigmoid(leak)"
        )
    return leak


def threshold_from_nir(where: str, v_threshold, v_reset) -> float:
    """The toolkit threshold for NIR ``v_threshold`` / ``v_reset`` (refused unless exact)."""
    theta = _uniform(where, "v_threshold", v_threshold)
    if theta < THRESHOLD_FLOOR:
        raise UserError(
            f"{where}: field 'v_threshold' must be ≥ {THRESHOLD_FLOOR} (the toolkit clamps the "
            f"threshold to max(θ, {THRESHOLD_FLOOR})), got {theta}"
        )
    if v_reset is not None and _uniform(where, "v_reset", v_reset) != 0.0:
        raise UserError(f"{where}: field 'v_reset' must be 0 (reset to zero or subtractive)")
    return theta


def _unit_gain(where: str, field: str, gain: float, expected: str) -> None:
    if np.float32(gain) != np.float32(1.0):
        raise UserError(
            f"{where}: field '{field}' must be {expected} (input gain 1), got gain {gain}"
        )


def leak_free(where: str, r_values, dt: float) -> float:
    """The leak of NIR ``IF`` / ``I`` (no leak: γ = 1) when ``dt·r = 1``, else a one-line
    :class:`UserError` naming ``r``."""
    r = _uniform(where, "r", r_values)
    _unit_gain(where, "r", r * dt, f"1/dt = {1.0 / dt}")
    assert decay_from_leak(NO_LEAK) == 1.0
    return NO_LEAK


def check_memoryless_current(where: str, tau_syn_values, w_in_values, dt: float) -> None:
    """A ``CubaLIF``'s synaptic current maps only when it has no memory (α = 1 − dt/τ_syn
    = 0, the toolkit's neurons have no current state) and unit gain (dt·w_in/τ_syn = 1)."""
    tau_syn = _uniform(where, "tau_syn", tau_syn_values)
    if np.float32(dt / tau_syn) != np.float32(1.0):
        raise UserError(
            f"{where}: field 'tau_syn' must be dt = {dt} (a current without memory: a LIF), "
            f"got {tau_syn}; a current with memory maps only behind a Delay of dt (the "
            "toolkit's CuLIF voltage reads the previous step's current, docs/nir.md)"
        )
    w_in = _uniform(where, "w_in", w_in_values)
    _unit_gain(where, "w_in", w_in * dt / tau_syn, "τ_syn/dt = 1")
