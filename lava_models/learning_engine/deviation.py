"""How far Lava's learning engine is from the exact S-TLLR rule (``python -m`` prints JSON).

Network: ``n_in`` Bernoulli ("Poisson") inputs → ``LearningDense`` → ``n_out``
:class:`STLLRLearningLIF` (soft reset), ``T`` steps, a third factor ``L`` from a RingBuffer.
Each run records the centred membrane ``v_c`` of every step; the reference is S-TLLR in
float64 (:mod:`stllr.factors`, :mod:`stllr.surrogates`) evaluated on the *same* recorded
pre spikes, membranes and ``L`` (so dynamics are shared and only the learning differs):

* ``exact``: S-TLLR in the neuron's time line (input ``x[τ−1]`` drove ``v[τ]``, rule.py)::

      ΔW = −η Σ_τ L[τ]·(α_pre·Ψ[τ]·P[τ−1] + α_post·Q[τ−1]·x[τ−1])

* ``expressible``: what the grammar can compute: the non-causal term with ``L[τ]`` in place
  of ``L[τ+1]`` (``Σ_τ L[τ]·Q[τ]·x[τ]``); the ``direct`` alignment also pairs Ψ[τ] with P[τ].

Metrics: ``rel_err = ‖ΔW_lava − ΔW_ref‖ / ‖ΔW_ref‖`` and the cosine similarity, both in float
weight units (fixed: LSBs · 2^weight_exp), plus for fixed point the largest error in weight
LSBs, the number of weights at the engine's clip [−256, 255] and, with ``replay``, the split
of the error by :func:`engine_replay`: ``replay_vs_exact`` (7-bit factors, tables, product
floors) and ``lava_vs_replay`` (the per-step stochastic rounding of the weights).

Setup: 16 inputs at rate 0.1 (last step silent), 4 neurons, T = 300, θ = 0.6, soft reset,
weights ``N(w_mean, w_std)`` stored as even LSBs at ``2^−7``; ``L = (1, −0.5, 0.75, −1)`` per
neuron (profiles in :func:`third_factor`).

The learning rate is chosen so that the exact ΔW of a static (non-learning) float run of
the same network peaks at ``target_lsb`` weight LSBs; ``p_max`` is the input's pre-trace
maximum, ``q_max`` 1.25 × the static run's post-trace maximum.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

#: The two factor sets of the report: SHD (Ψ a, γ = σ(5)) and DVS Gesture (Ψ b, γ = 0.5).
FACTOR_SETS: dict[str, dict] = {
    "shd": {
        "factors": (0.5, 1.0, 1.0, 1.0),
        "psi": "a",
        "gamma": 1.0 / (1.0 + math.exp(-5.0)),
        "w_mean": 0.06,
        "w_std": 0.1,
    },
    "gesture": {
        "factors": (0.2, 0.75, -1.0, 1.0),
        "psi": "b",
        "gamma": 0.5,
        "w_mean": 0.15,
        "w_std": 0.3,
    },
}
THIRD_FACTOR = (1.0, -0.5, 0.75, -1.0)
PROFILES = ("constant", "window", "smooth")


@dataclass(frozen=True)
class Setup:
    """One experiment (inputs, weights, third factor), shared by the float and fixed runs."""

    factors: tuple[float, float, float, float]
    psi: str
    gamma: float
    theta: float
    pre: np.ndarray  # [n_in, T] 0/1
    third: np.ndarray  # [n_out, T] float
    w_lsb: np.ndarray  # [n_out, n_in] even integers
    weight_exp: int
    reset: str = "soft"

    @property
    def w_float(self) -> np.ndarray:
        return self.w_lsb * 2.0**self.weight_exp


def third_factor(profile: str, n_out: int, steps: int, start: int = 100) -> np.ndarray:
    """``L[i, t]``: ``constant`` (all steps), ``window`` (0 before ``start``, then constant) or
    ``smooth`` (window × (0.75 + 0.25·sin(2πt/40 + i)))."""
    if profile not in PROFILES:
        raise ValueError(f"profile must be one of {PROFILES}, got {profile!r}")
    vals = np.resize(np.asarray(THIRD_FACTOR), n_out)[:, None]
    t = np.arange(1, steps + 1)[None, :]
    out = np.repeat(vals, steps, axis=1)
    if profile != "constant":
        out = out * (t > start)
    if profile == "smooth":
        out = out * (0.75 + 0.25 * np.sin(2 * np.pi * t / 40 + np.arange(n_out)[:, None]))
    return out


def make_setup(
    name: str = "gesture",
    *,
    profile: str = "window",
    n_in: int = 16,
    n_out: int = 4,
    steps: int = 300,
    rate: float = 0.1,
    weight_exp: int = -7,
    theta: float = 0.6,
    seed: int = 0,
    sign: float = 1.0,
    reset: str = "soft",
) -> Setup:
    """A :class:`Setup` for one of :data:`FACTOR_SETS`. The input's last step is silent (so
    that with a ``constant`` L the grammar's extra end term vanishes); ``sign`` scales L."""
    from quantization.backend import round_float, saturate

    cfg = FACTOR_SETS[name]
    rng = np.random.default_rng(seed)
    pre = (rng.random((n_in, steps)) < rate).astype(np.float64)
    pre[:, -1] = 0.0
    w = rng.normal(cfg["w_mean"], cfg["w_std"], (n_out, n_in))
    w_lsb = 2 * saturate(round_float(w / 2.0 ** (weight_exp + 1), "nearest_even"), -64, 63)
    return Setup(
        factors=tuple(cfg["factors"]), psi=cfg["psi"], gamma=cfg["gamma"], theta=theta,
        pre=pre, third=sign * third_factor(profile, n_out, steps), w_lsb=w_lsb,
        weight_exp=weight_exp, reset=reset,
    )  # fmt: skip


def static_membranes(setup: Setup) -> np.ndarray:
    """``v_c [T, n_out]`` of the float network with frozen weights (Lava's one-step Dense delay)."""
    w = setup.w_float
    v = np.zeros(w.shape[0])
    out = np.zeros((setup.pre.shape[1], w.shape[0]))
    for t in range(setup.pre.shape[1]):
        a = w @ setup.pre[:, t - 1] if t > 0 else np.zeros(w.shape[0])
        v = setup.gamma * v + a
        v_c = v - setup.theta
        s = v_c > 0
        out[t] = v_c
        v = np.where(s, v - setup.theta if setup.reset == "soft" else 0.0, v)
    return out


def stllr_reference(
    pre: np.ndarray,
    v_c: np.ndarray,
    third: np.ndarray,
    factors: Sequence[float],
    lr: float,
    psi: str,
) -> dict[str, np.ndarray]:
    """S-TLLR ΔW ``[n_out, n_in]`` in float64 from recorded data (module doc).

    ``pre [n_in, T]`` spikes as the LearningDense received them, ``v_c [T, n_out]`` the
    centred membranes (float units), ``third [n_out, T]``. Returns ``exact``,
    ``expressible`` (corrected alignment), ``expressible_direct``, ``psi`` and ``q``.
    """
    import torch

    from stllr.factors import STLLRFactors, trace_step
    from stllr.surrogates import get_surrogate

    f = STLLRFactors.from_list(list(factors))
    x = torch.as_tensor(pre.T, dtype=torch.float64)  # [T, n_in]
    lt = torch.as_tensor(third.T, dtype=torch.float64)  # [T, n_out]
    ps = get_surrogate(psi)(torch.as_tensor(v_c, dtype=torch.float64))  # [T, n_out]
    steps = x.shape[0]
    p = torch.zeros_like(x)
    q = torch.zeros_like(ps)
    p_t = torch.zeros(x.shape[1], dtype=torch.float64)
    q_t = torch.zeros(ps.shape[1], dtype=torch.float64)
    for t in range(steps):
        p_t = trace_step(p_t, x[t], f.lambda_pre)
        q_t = trace_step(q_t, ps[t], f.lambda_post)
        p[t], q[t] = p_t, q_t

    def prev(z):
        return torch.cat([torch.zeros_like(z[:1]), z[:-1]])

    def dw(p_causal, q_nc, x_nc):
        causal = torch.einsum("ti,tj->ij", lt * ps, p_causal)
        noncausal = torch.einsum("ti,tj->ij", lt * q_nc, x_nc)
        return -lr * (f.alpha_pre * causal + f.alpha_post * noncausal)

    return {
        "exact": dw(prev(p), prev(q), prev(x)).numpy(),
        "expressible": dw(prev(p), q, x).numpy(),
        "expressible_direct": dw(p, q, x).numpy(),
        "psi": ps.numpy(),
        "q": q.numpy(),
    }


def auto_lr(setup: Setup, target_lsb: float) -> float:
    """Learning rate at which the static run's exact ΔW peaks at ``target_lsb`` weight LSBs."""
    ref = stllr_reference(
        setup.pre, static_membranes(setup), setup.third, setup.factors, 1.0, setup.psi
    )
    peak = float(np.abs(ref["exact"]).max())
    if peak == 0.0:
        raise ValueError("the static run learns nothing (no Ψ·L overlap): change the setup")
    return target_lsb * 2.0**setup.weight_exp / peak


def calibrate_for(setup: Setup, lr: float, mode: str, alignment: str = "corrected", **kw):
    """:func:`calibrate_mapping` with ranges measured on the setup (module doc)."""
    from lava_models.learning_engine.rule import calibrate_mapping
    from stllr.factors import trace_step

    if mode == "floating_pt":
        return calibrate_mapping(setup.factors, lr, mode=mode, psi=setup.psi, alignment=alignment)
    lam_post, lam_pre = setup.factors[0], setup.factors[1]
    p = np.zeros(setup.pre.shape[0])
    p_max = 0.0
    for t in range(setup.pre.shape[1]):
        p = trace_step(p, setup.pre[:, t], lam_pre)  # numpy: the same two operations
        p_max = max(p_max, float(p.max()))
    ref = stllr_reference(setup.pre, static_membranes(setup), setup.third, setup.factors, lr,
                          setup.psi)  # fmt: skip
    q_bound = float(ref["psi"].max(initial=0.0)) / max(1e-12, 1.0 - lam_post)
    q_max = min(1.25 * float(ref["q"].max()), q_bound) if lam_post < 1 else 1.25 * ref["q"].max()
    kw.setdefault("q_max", max(q_max, 1e-6))
    kw.setdefault("p_max", max(p_max, 1.0))
    kw.setdefault("l_max", float(np.abs(setup.third).max()) or 1.0)
    return calibrate_mapping(
        setup.factors, lr, mode=mode, psi=setup.psi, weight_exp=setup.weight_exp,
        alignment=alignment, **kw,
    )  # fmt: skip


def run_lava(setup: Setup, mapping, rng_seed: int = 0, *, replay: bool = False) -> dict:
    """Run the network on Lava (the mapping's mode); stops the runtime in every case.

    Returns ``dw`` (float weight units), ``w_end`` (as stored: float or LSBs) and ``v_c
    [T, n_out]`` (float units); with ``replay`` also ``y1, y3 [T, n_out]`` as sent and the
    engine's pre trace ``x1 [T, n_in]`` (each Monitor costs ≈ 5 ms per step).
    """
    from lava_models.runtime import import_lava

    import_lava()
    from lava.magma.core.run_conditions import RunSteps
    from lava.magma.core.run_configs import Loihi2SimCfg
    from lava.proc.io.source import RingBuffer
    from lava.proc.monitor.process import Monitor

    from lava_models.learning_engine.rule import (
        build_stllr_learning_dense,
        connect_plastic,
        make_stllr_neuron,
    )

    fixed = mapping.mode == "fixed_pt"
    steps = setup.pre.shape[1]
    w0 = setup.w_lsb if fixed else setup.w_float
    pre = setup.pre.astype(np.int32) if fixed else setup.pre
    src = RingBuffer(data=pre)
    lsrc = RingBuffer(data=mapping.quantize_signal(setup.third))
    syn = build_stllr_learning_dense(w0, mapping=mapping, rng_seed=rng_seed)
    neu = make_stllr_neuron(
        mapping, syn.rule, w0.shape[0], gamma=setup.gamma, theta=setup.theta, reset=setup.reset
    )
    src.s_out.connect(syn.dense.s_in)
    connect_plastic(syn.dense, neu)
    lsrc.s_out.connect(neu.a_third_factor_in)
    probes = [(neu, "v_c")]
    if replay:
        probes += [(neu, "y1"), (neu, "y3"), (syn.dense, "x1")]
    monitors = []
    for proc, var in probes:
        monitors.append(Monitor())
        monitors[-1].probe(getattr(proc, var), steps)
    try:
        neu.run(condition=RunSteps(num_steps=steps), run_cfg=Loihi2SimCfg(select_tag=mapping.mode))
        w_end = np.asarray(syn.dense.weights.get(), dtype=np.float64)
        data = {v: m.get_data()[p.name][v] for (p, v), m in zip(probes, monitors, strict=True)}
    finally:
        neu.stop()
    scale = 2.0**setup.weight_exp if fixed else 1.0
    v_lsb = 2.0**setup.weight_exp / 64.0 if fixed else 1.0
    out = {"dw": (w_end - w0) * scale, "w_end": w_end}
    out.update({k: np.asarray(v, dtype=np.float64) for k, v in data.items()})
    out["v_c"] = out["v_c"] * v_lsb
    return out


def engine_replay(mapping, pre: np.ndarray, third_int: np.ndarray, rec: dict) -> np.ndarray:
    """ΔW (weight LSBs) that the fixed engine's products add up to, replayed in numpy from a
    run's recorded ``x1, y1, y3`` and the sent ``y2``, *without* the per-step stochastic
    rounding of the weights (and without the engine's one-LSB y-decay noise).

    ``Lava − replay`` is then the weight-rounding noise, ``replay − exact`` the
    quantization of factors, tables and product floors.
    """
    x1 = rec["x1"].astype(np.int64)  # [T, n_in]
    y1 = rec["y1"].astype(np.int64)  # [T, n_out]
    y3 = rec["y3"].astype(np.int64)
    y2 = third_int.T.astype(np.int64)  # [T, n_out]
    x0 = pre.T > 0

    def product(lit, base_shift, prod):
        k = lit.const or 1
        shift = base_shift + lit.extra_shift()
        return ((lit.mant * k * prod) >> shift) << (lit.exp + 7)

    acc = np.zeros((y1.shape[1], x1.shape[1]), dtype=np.int64)
    c = int(mapping.x1_impulse)
    for t in range(x1.shape[0]):
        yy = (y2[t] * y3[t])[:, None]
        gate = x0[t][None, :]
        if mapping.lit_causal is not None:
            lit = mapping.lit_causal
            full = product(lit, 10, yy * x1[t][None, :])
            if mapping.alignment == "corrected":
                corr = product(lit, 10, yy * np.clip(x1[t] - c, -128, 127)[None, :])
                acc += np.where(gate, corr, full)
            else:
                acc += full
        if mapping.lit_noncausal is not None:
            pair = product(mapping.lit_noncausal, 3, (y1[t] * y2[t])[:, None])
            acc += np.where(gate, pair, 0)
    return acc / 128.0


def compare(dw: np.ndarray, ref: np.ndarray) -> dict[str, float]:
    """``rel_err`` and ``cosine`` of ``dw`` against ``ref``."""
    a, b = dw.ravel(), ref.ravel()
    nb = float(np.linalg.norm(b))
    return {
        "rel_err": float(np.linalg.norm(a - b)) / nb,
        "cosine": float(a @ b) / (float(np.linalg.norm(a)) * nb),
    }


def measure(
    setup: Setup,
    mode: str,
    lr: float,
    *,
    alignment: str = "corrected",
    rng_seed: int = 0,
    mapping=None,
    replay: bool = True,
) -> dict:
    """One Lava run against the references computed from its own recording (fixed point with
    ``replay``: also the split of the error by :func:`engine_replay`)."""
    if mapping is None:
        mapping = calibrate_for(setup, lr, mode, alignment)
    replay = replay and mode == "fixed_pt"
    out = run_lava(setup, mapping, rng_seed, replay=replay)
    ref = stllr_reference(setup.pre, out["v_c"], setup.third, setup.factors, lr, setup.psi)
    key = "expressible" if alignment == "corrected" else "expressible_direct"
    res = {
        "vs_exact": compare(out["dw"], ref["exact"]),
        "vs_expressible": compare(out["dw"], ref[key]),
        "expressible_vs_exact": compare(ref[key], ref["exact"]),
        "max_abs_dw_exact_lsb": float(np.abs(ref["exact"]).max() / 2.0**setup.weight_exp),
        "mapping": mapping.summary(),
    }
    if mode == "fixed_pt":
        lsb = 2.0**setup.weight_exp
        err = (out["dw"] - ref["exact"]) / lsb
        res["max_abs_err_lsb"] = float(np.abs(err).max())
        res["clipped_weights"] = int(np.sum((out["w_end"] <= -256) | (out["w_end"] >= 255)))
    if replay:
        lsb = 2.0**setup.weight_exp
        dw_replay = engine_replay(mapping, setup.pre, mapping.quantize_signal(setup.third), out)
        noise = out["dw"] / lsb - dw_replay
        res["replay_vs_exact"] = compare(dw_replay * lsb, ref["exact"])
        res["lava_vs_replay"] = {
            "rel_err_of_exact_norm": float(np.linalg.norm(noise))
            / float(np.linalg.norm(ref["exact"] / lsb)),
            "rms_lsb": float(np.sqrt(np.mean(noise**2))),
        }
    res["_dw"] = out["dw"]
    return res


def deviation_report(
    sets: Sequence[str] = ("shd", "gesture"),
    profiles: Sequence[str] = ("window", "smooth"),
    target_lsb: float = 48.0,
) -> dict:
    """ΔW deviation of both Lava modes for each factor set and L profile (JSON-friendly).

    Per set and profile: the learning rate and, per variant, the metrics of :func:`measure`:
    ``floating_pt``, ``floating_pt_direct`` (no x0 correction: what the correction buys),
    ``fixed_pt``; for the ``window`` profile also ``fixed_pt_send_bap`` (bap on: Lava's
    clip of negative y2), ``fixed_pt_small_lr`` (ΔW peak 4 LSB) and ``fixed_pt_large_lr``
    (peak 128 LSB): the weight-rounding noise shrinks relative to ΔW as ΔW grows.
    """
    report: dict = {}
    for name in sets:
        for profile in profiles:
            setup = make_setup(name, profile=profile)
            lr = auto_lr(setup, target_lsb)
            entry: dict = {"lr": lr, "factors": list(setup.factors), "psi": setup.psi}
            entry["floating_pt"] = measure(setup, "floating_pt", lr)
            entry["floating_pt_direct"] = measure(setup, "floating_pt", lr, alignment="direct")
            entry["fixed_pt"] = measure(setup, "fixed_pt", lr)
            if profile == "window":
                bap = calibrate_for(setup, lr, "fixed_pt", send_bap=True)
                entry["fixed_pt_send_bap"] = measure(setup, "fixed_pt", lr, mapping=bap)
                for key, tgt in (("fixed_pt_small_lr", 4.0), ("fixed_pt_large_lr", 128.0)):
                    lr_k = lr * tgt / target_lsb
                    entry[key] = measure(setup, "fixed_pt", lr_k)
                    entry[key]["lr"] = lr_k
            for v in entry.values():
                if isinstance(v, dict):
                    v.pop("_dw", None)
            report[f"{name}/{profile}"] = entry
    return report


def main() -> None:
    print(json.dumps(deviation_report(), indent=2))


if __name__ == "__main__":
    main()
