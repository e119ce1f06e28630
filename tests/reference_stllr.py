"""A naive S-TLLR reference written directly from the equations (docs/rule.md §2, §3, §5).

Per sample, per step, per synapse: explicit outer products and, for
convolutions, explicit patches at every output position. Slow by design and
independent of ``stllr.functional`` (no autograd, no ``F.conv2d``, no fused
matmuls). Every function simulates a whole sequence and accumulates the
gradients that the per-step backward passes would give for upstream signals
``delta[t] = ∂L_t/∂s[t]`` (zero outside the learning window).
"""

from __future__ import annotations

import math

import torch


def psi_fn(name: str):
    """Ψ variants re-typed from the paper/code table (not imported from stllr)."""
    if name == "a":
        return lambda v: 1.0 / (100.0 * abs(v) + 1.0) ** 2
    if name == "b":
        return lambda v: 0.3 * max(1.0 - abs(v), 0.0)
    if name == "c":
        return lambda v: 4.0 / (1.0 + math.exp(-4.0 * v)) * (1.0 - 1.0 / (1.0 + math.exp(-4.0 * v)))
    if name == "d":
        return lambda v: 1.0 / (1.0 + (10.0 * v) ** 2)
    if name == "e":
        return lambda v: 1.0 / (5.0 * abs(v) + 1.0) ** 2
    raise ValueError(name)


def _lif(m_prev_after_reset: float, current: float, gamma: float, theta: float, reset: str):
    m = gamma * m_prev_after_reset + current
    v = m - theta
    s = 1.0 if v > 0 else 0.0
    u = m - theta * s if reset == "soft" else m * (1.0 - s)
    return s, v, u


def linear_sequence(x, w, b, delta, *, gamma, theta, reset, factors, psi, w_rec=None):
    """Dense (optionally recurrent) S-TLLR layer, float64 loops.

    Args:
        x: ``[T, B, in]``; w: ``[out, in]``; b: ``[out]`` or None; delta: ``[T, B, out]``;
        factors: ``[λ_post, λ_pre, α_post, α_pre]``; w_rec: ``[out, out]`` or None.

    Returns:
        dict with ``spikes [T,B,out]``, ``grad_w``, ``grad_b``, ``grad_x [T,B,in]`` and
        ``grad_w_rec`` when recurrent.
    """
    lam_post, lam_pre, a_post, a_pre = factors
    psi_f = psi_fn(psi)
    steps, batch, n_in = x.shape
    n_out = w.shape[0]
    out = {
        "spikes": torch.zeros(steps, batch, n_out, dtype=torch.float64),
        "grad_w": torch.zeros_like(w),
        "grad_b": torch.zeros(n_out, dtype=torch.float64),
        "grad_x": torch.zeros_like(x),
    }
    if w_rec is not None:
        out["grad_w_rec"] = torch.zeros_like(w_rec)
    for bi in range(batch):
        u = [0.0] * n_out
        p = torch.zeros(n_in, dtype=torch.float64)
        q = torch.zeros(n_out, dtype=torch.float64)  # Q[t-1]
        r = torch.zeros(n_out, dtype=torch.float64)  # R[t]
        s_prev = torch.zeros(n_out, dtype=torch.float64)
        for t in range(steps):
            xt = x[t, bi]
            p = lam_pre * p + xt
            r = lam_pre * r + s_prev  # R[t] = λ_pre R[t−1] + s[t−1]
            s = torch.zeros(n_out, dtype=torch.float64)
            psi_v = torch.zeros(n_out, dtype=torch.float64)
            for i in range(n_out):
                current = sum(float(w[i, j]) * float(xt[j]) for j in range(n_in))
                if b is not None:
                    current += float(b[i])
                if w_rec is not None:
                    current += sum(float(w_rec[i, k]) * float(s_prev[k]) for k in range(n_out))
                s[i], v, u[i] = _lif(u[i], current, gamma, theta, reset)
                psi_v[i] = psi_f(v)
            d = delta[t, bi]
            g = psi_v * d
            out["grad_w"] += a_pre * torch.outer(g, p) + a_post * torch.outer(d * q, xt)
            if w_rec is not None:
                out["grad_w_rec"] += a_pre * torch.outer(g, r) + a_post * torch.outer(d * q, s_prev)
            out["grad_b"] += g
            for j in range(n_in):
                out["grad_x"][t, bi, j] = sum(float(w[i, j]) * float(g[i]) for i in range(n_out))
            q = lam_post * q + psi_v
            out["spikes"][t, bi] = s
            s_prev = s
    return out


def conv_sequence(x, w, b, delta, *, stride, padding, gamma, theta, reset, factors, psi):
    """Conv2d S-TLLR layer with explicit patches; x ``[T,B,C,H,W]``, w ``[O,C,k,k]``."""
    lam_post, lam_pre, a_post, a_pre = factors
    psi_f = psi_fn(psi)
    steps, batch, n_c, height, width = x.shape
    n_o, _, k, _ = w.shape
    h_out = (height + 2 * padding - k) // stride + 1
    w_out = (width + 2 * padding - k) // stride + 1
    xp = torch.zeros(steps, batch, n_c, height + 2 * padding, width + 2 * padding, dtype=x.dtype)
    xp[..., padding : padding + height, padding : padding + width] = x
    grad_w = torch.zeros_like(w)
    grad_b = torch.zeros(n_o, dtype=torch.float64)
    grad_xp = torch.zeros_like(xp)
    spikes = torch.zeros(steps, batch, n_o, h_out, w_out, dtype=torch.float64)
    for bi in range(batch):
        u = torch.zeros(n_o, h_out, w_out, dtype=torch.float64)
        p = torch.zeros_like(xp[0, bi])
        q = torch.zeros(n_o, h_out, w_out, dtype=torch.float64)
        for t in range(steps):
            xt = xp[t, bi]
            p = lam_pre * p + xt
            psi_v = torch.zeros(n_o, h_out, w_out, dtype=torch.float64)
            for o in range(n_o):
                for i in range(h_out):
                    for j in range(w_out):
                        rows = slice(i * stride, i * stride + k)
                        cols = slice(j * stride, j * stride + k)
                        current = float((w[o] * xt[:, rows, cols]).sum())
                        if b is not None:
                            current += float(b[o])
                        s, v, u[o, i, j] = _lif(float(u[o, i, j]), current, gamma, theta, reset)
                        spikes[t, bi, o, i, j] = s
                        psi_v[o, i, j] = psi_f(v)
                        d = float(delta[t, bi, o, i, j])
                        g = float(psi_v[o, i, j]) * d
                        grad_w[o] += a_pre * g * p[:, rows, cols]
                        grad_w[o] += a_post * d * float(q[o, i, j]) * xt[:, rows, cols]
                        grad_b[o] += g
                        grad_xp[t, bi, :, rows, cols] += g * w[o]
            q = lam_post * q + psi_v
    grad_x = grad_xp[..., padding : padding + height, padding : padding + width]
    return {"spikes": spikes, "grad_w": grad_w, "grad_b": grad_b, "grad_x": grad_x}


def readout_sequence(h, w, b, delta, *, gamma, lambda_pre):
    """Accumulate readout: o[t] = γ o[t−1] + W h[t] + b; grad_W = Σ δ ⊗ P_o[t]."""
    steps, batch, n_in = h.shape
    n_out = w.shape[0]
    logits = torch.zeros(steps, batch, n_out, dtype=torch.float64)
    grad_w = torch.zeros_like(w)
    grad_b = torch.zeros(n_out, dtype=torch.float64)
    grad_h = torch.zeros_like(h)
    for bi in range(batch):
        o = torch.zeros(n_out, dtype=torch.float64)
        p = torch.zeros(n_in, dtype=torch.float64)
        for t in range(steps):
            p = lambda_pre * p + h[t, bi]
            o = gamma * o + torch.mv(w, h[t, bi]) + (b if b is not None else 0.0)
            logits[t, bi] = o
            grad_w += torch.outer(delta[t, bi], p)
            grad_b += delta[t, bi]
            grad_h[t, bi] = torch.mv(w.t(), delta[t, bi])
    return {"logits": logits, "grad_w": grad_w, "grad_b": grad_b, "grad_x": grad_h}


def conv_transpose_sequence(x, w, b, delta, *, stride, padding, gamma, theta, reset, factors, psi):
    """Transposed-conv S-TLLR layer by explicit scatter; x ``[T,B,C,H,W]``, w ``[O,C,k,k]``
    (output channel first): input pixel (c, i, j) adds ``w[o, c, a, e]·x`` to output
    (o, i·s − p + a, j·s − p + e)."""
    lam_post, lam_pre, a_post, a_pre = factors
    psi_f = psi_fn(psi)
    steps, batch, n_c, height, width = x.shape
    n_o, _, k, _ = w.shape
    h_out = (height - 1) * stride - 2 * padding + k
    w_out = (width - 1) * stride - 2 * padding + k
    taps = [  # (input row, input col, kernel row, kernel col, output row, output col)
        (i, j, a, e, i * stride - padding + a, j * stride - padding + e)
        for i in range(height)
        for j in range(width)
        for a in range(k)
        for e in range(k)
    ]
    taps = [tp for tp in taps if 0 <= tp[4] < h_out and 0 <= tp[5] < w_out]
    grad_w = torch.zeros_like(w)
    grad_b = torch.zeros(n_o, dtype=torch.float64)
    grad_x = torch.zeros_like(x)
    spikes = torch.zeros(steps, batch, n_o, h_out, w_out, dtype=torch.float64)
    for bi in range(batch):
        u = torch.zeros(n_o, h_out, w_out, dtype=torch.float64)
        p = torch.zeros(n_c, height, width, dtype=torch.float64)
        q = torch.zeros(n_o, h_out, w_out, dtype=torch.float64)
        for t in range(steps):
            xt = x[t, bi]
            p = lam_pre * p + xt
            current = torch.zeros(n_o, h_out, w_out, dtype=torch.float64)
            for o in range(n_o):
                for c in range(n_c):
                    for i, j, a, e, oi, oj in taps:
                        current[o, oi, oj] += float(w[o, c, a, e]) * float(xt[c, i, j])
            psi_v = torch.zeros_like(current)
            g = torch.zeros_like(current)
            for o in range(n_o):
                for oi in range(h_out):
                    for oj in range(w_out):
                        cur = float(current[o, oi, oj]) + (float(b[o]) if b is not None else 0.0)
                        s, v, u[o, oi, oj] = _lif(float(u[o, oi, oj]), cur, gamma, theta, reset)
                        spikes[t, bi, o, oi, oj] = s
                        psi_v[o, oi, oj] = psi_f(v)
                        g[o, oi, oj] = psi_v[o, oi, oj] * float(delta[t, bi, o, oi, oj])
                        grad_b[o] += g[o, oi, oj]
            d = delta[t, bi]
            for o in range(n_o):
                for c in range(n_c):
                    for i, j, a, e, oi, oj in taps:
                        grad_w[o, c, a, e] += a_pre * float(g[o, oi, oj]) * float(p[c, i, j])
                        grad_w[o, c, a, e] += (
                            a_post * float(d[o, oi, oj]) * float(q[o, oi, oj]) * float(xt[c, i, j])
                        )
                        grad_x[t, bi, c, i, j] += float(g[o, oi, oj]) * float(w[o, c, a, e])
            q = lam_post * q + psi_v
    return {"spikes": spikes, "grad_w": grad_w, "grad_b": grad_b, "grad_x": grad_x}
