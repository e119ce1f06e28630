"""Naive per-sample S-TLLR reference for the current-based/adaptive neurons, written from
the derivation in docs/neurons.md §3 (float64, Python loops, no matmuls, no stllr code).

Every neuron is simulated with scalars, and every synapse (i, j) keeps its own eligibility
vector ``(ε_v, ε_i)`` of the derivation, with the layer-wide trace decays::

    ε_i[t] = λ_syn·ε_i[t−1] + x_j[t]                  (current-based kinds)
    ε_v[t] = λ_pre·ε_v[t−1] + ε_i[t−1]   or   λ_pre·ε_v[t−1] + x_j[t]   (direct drive)
    e_ij[t] = α_pre·Ψ_i[t]·κ_i·ε_v[t] + α_post·Q_i[t−1]·x_j[t]
    ∂L/∂W_ij += δ_i[t]·e_ij[t]

and every neuron keeps the derivatives of its voltage with respect to its own parameters
(docs/neurons.md §3c, :func:`parameter_derivatives`), ``∂L/∂π_i += δ_i[t]·Ψ_i[t]·∂v_i[t]/∂π_i``.

For ``kind = "lif"`` the neuron is the toolkit's one-state LIF (docs/rule.md §2) with
κ = 1 and direct drive.
"""

from __future__ import annotations

import torch

from tests.reference_stllr import psi_fn


def neuron_scalar_step(kind, st, c, p):
    """One step of one neuron, re-typed from docs/neurons.md §2; ``st`` a dict of floats.

    Returns ``(s, v − θ)`` and updates ``st`` (keys i, v, w, h, s).
    """
    theta = p["theta"]
    if kind == "lif":
        m = p["gamma"] * st["v"] + c
        s = 1.0 if m - theta > 0 else 0.0
        st["v"] = m - theta * s if p["reset"] == "soft" else m * (1.0 - s)
        return s, m - theta
    alpha = p["alpha"]
    if kind in ("culif", "pculif"):
        v = alpha * st["v"] + (1 - alpha) * st["i"]
        st["i"] = p["beta"] * st["i"] + c
    elif kind == "adlif":
        v = alpha * st["v"] + (1 - alpha) * (c - st["w"])
        st["w"] = p["rho"] * st["w"] + p["a"] * st["h"] + p["b"] * st["s"]
    elif kind == "cuadlif":
        v = alpha * st["v"] + (1 - alpha) * (st["i"] - st["w"])
        st["i"] = p["beta"] * st["i"] + c
        st["w"] = p["rho"] * st["w"] + p["a"] * st["h"] + p["b"] * st["s"]
    else:
        raise ValueError(kind)
    s = 1.0 if v - theta > 0 else 0.0
    st["h"], st["s"] = v, s
    st["v"] = v - theta * s if p["reset"] == "soft" else v * (1.0 - s)
    return s, v - theta


def parameter_derivatives(kind, d, st, c, p):
    """Advance neuron ``d`` (dict of floats) = its ∂v/∂π and the auxiliary ∂i/∂β, ∂w/∂π,
    from the state ``st`` of t−1 and the input ``c[t]``, before the neuron steps."""
    if kind == "lif":
        return
    alpha = p["alpha"]
    drive = st["i"] if kind in ("culif", "pculif", "cuadlif") else c
    u = drive - st["w"]
    d["alpha"] = alpha * d["alpha"] + st["v"] - u
    d["beta"] = alpha * d["beta"] + (1 - alpha) * d["di"]
    d["di"] = p.get("beta", 0.0) * d["di"] + st["i"]
    for name, source in (("rho", "w"), ("a", "h"), ("b", "s")):
        d[name] = alpha * d[name] - (1 - alpha) * d["dw_" + name]
        d["dw_" + name] = p.get("rho", 0.0) * d["dw_" + name] + st[source]


def recurrent_sequence(kind, x, w, w_rec, b, delta, neuron_params, *, factors, lambda_syn, psi):
    """Gradients of a recurrent layer for ``delta[t] = ∂L_t/∂s[t]``.

    Args:
        x ``[T, B, in]``, w ``[out, in]``, w_rec ``[out, out]``, b ``[out]``,
        delta ``[T, B, out]``; ``neuron_params[i]``: neuron i's scalar constants
        (alpha, beta, rho, a, b or gamma; theta; reset); factors
        ``[λ_post, λ_pre, α_post, α_pre]``.

    Returns a dict: spikes, grad_w, grad_w_rec, grad_b, grad_x, and ``grad_params``
    ``{π: [out]}`` (per neuron, for π in alpha, beta, rho, a, b).
    """
    lam_post, lam_pre, a_post, a_pre = factors
    psi_f = psi_fn(psi)
    steps, batch, n_in = x.shape
    n_out = w.shape[0]
    current_based = kind in ("culif", "pculif", "cuadlif")
    gain = [1.0 if kind == "lif" else 1.0 - neuron_params[i]["alpha"] for i in range(n_out)]
    z = torch.zeros
    out = {
        "spikes": z(steps, batch, n_out, dtype=torch.float64),
        "grad_w": z(n_out, n_in, dtype=torch.float64),
        "grad_w_rec": z(n_out, n_out, dtype=torch.float64),
        "grad_b": z(n_out, dtype=torch.float64),
        "grad_x": z(steps, batch, n_in, dtype=torch.float64),
        "grad_params": {
            n: z(n_out, dtype=torch.float64) for n in ("alpha", "beta", "rho", "a", "b")
        },
    }
    names = ("alpha", "beta", "rho", "a", "b", "di", "dw_rho", "dw_a", "dw_b")
    for bi in range(batch):
        states = [dict(i=0.0, v=0.0, w=0.0, h=0.0, s=0.0) for _ in range(n_out)]
        derivs = [dict.fromkeys(names, 0.0) for _ in range(n_out)]
        # per-synapse eligibility vectors [ε_v, ε_i] for the input and the recurrent input
        eps = [[[0.0, 0.0] for _ in range(n_in)] for _ in range(n_out)]
        eps_rec = [[[0.0, 0.0] for _ in range(n_out)] for _ in range(n_out)]
        q = [0.0] * n_out
        s_prev = [0.0] * n_out
        for t in range(steps):
            xt = [float(v) for v in x[t, bi]]
            s_new, psi_v = [0.0] * n_out, [0.0] * n_out
            for i in range(n_out):
                c = float(b[i]) + sum(float(w[i, j]) * xt[j] for j in range(n_in))
                c += sum(float(w_rec[i, k]) * s_prev[k] for k in range(n_out))
                parameter_derivatives(kind, derivs[i], states[i], c, neuron_params[i])
                s_new[i], centred = neuron_scalar_step(kind, states[i], c, neuron_params[i])
                psi_v[i] = psi_f(centred)
            for i in range(n_out):
                for syn, pre in ((eps[i], xt), (eps_rec[i], s_prev)):
                    for j, e in enumerate(syn):
                        if current_based:
                            e[0] = lam_pre * e[0] + e[1]
                            e[1] = lambda_syn * e[1] + pre[j]
                        else:
                            e[0] = lam_pre * e[0] + pre[j]
            for i in range(n_out):
                d = float(delta[t, bi, i])
                g = psi_v[i] * gain[i] * d
                for j in range(n_in):
                    e_ij = a_pre * psi_v[i] * gain[i] * eps[i][j][0] + a_post * q[i] * xt[j]
                    out["grad_w"][i, j] += d * e_ij
                    out["grad_x"][t, bi, j] += float(w[i, j]) * g
                for k in range(n_out):
                    e_ik = a_pre * psi_v[i] * gain[i] * eps_rec[i][k][0] + a_post * q[i] * s_prev[k]
                    out["grad_w_rec"][i, k] += d * e_ik
                out["grad_b"][i] += g
                for name in out["grad_params"]:
                    out["grad_params"][name][i] += d * psi_v[i] * derivs[i][name]
                q[i] = lam_post * q[i] + psi_v[i]
            out["spikes"][t, bi] = torch.tensor(s_new, dtype=torch.float64)
            s_prev = s_new
    return out
