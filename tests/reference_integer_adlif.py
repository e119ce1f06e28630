"""A naive integer reference of the AdLIF node (quantization/nodes/adaptive.py), written
from the equations of docs/fixed_point.md ("Adaptive layers") in Python ints, one sample
and one neuron at a time::

    a     = Σ_j W_ij x_j + Σ_k W_rec,ik s_k[t−1]
    u     = wrap24(a·64)
    v     = clip24(decay(v̂[t−1], dv_i) + u + bias_i − ω_i[t−1])
    s     = [v > vth·64];   h = v;   v̂ = 0 (hard) or v − vth·64 (soft) where s
    ω_i   = clip24(decay(ω_i[t−1], dw_i) + tz(ka_i·h_i[t−1] / 2^24) + kb_i·s_i[t−1])

and, with a current decay ``du`` (the current-based AdLIF), ``a`` and the bias one step
late into a current that keeps ``(4095 − du_i)/4096`` of itself::

    u     = wrap24(decay(u_i[t−1], du_i + 1) + a[t−1]·64 + bias_i·[t ≥ 1])
    v     = clip24(decay(v̂[t−1], dv_i) + u − ω_i[t−1])
"""

from __future__ import annotations

from tests.reference_integer_stllr import UV, decay


def _tz_div(x: int, d: int) -> int:
    """x / d rounded toward zero (d > 0)."""
    q = abs(x) // d
    return q if x >= 0 else -q


class RefAdaptive:
    """Per-sample state lists; ``w``, ``w_rec`` nested lists; the constants lists of ints."""

    def __init__(self, w, w_rec, bias, dv, dw, ka, kb, vth, reset, du=None):
        self.w, self.w_rec, self.bias, self.du = w, w_rec, bias, du
        self.dv, self.dw, self.ka, self.kb = dv, dw, ka, kb
        self.vth, self.reset = vth, reset
        self.state = None

    def step(self, xs: list[list[int]]) -> list[list[int]]:
        n = len(self.w)
        if self.state is None:
            self.state = [{"v": [0] * n, "w": [0] * n, "h": [0] * n, "s": [0] * n, "u": [0] * n,
                           "a": None} for _ in xs]  # fmt: skip
        out = []
        for b, x in enumerate(xs):
            st = self.state[b]
            new = {"v": [], "w": [], "h": [], "s": [], "u": [], "a": []}
            for i in range(n):
                a = sum(self.w[i][j] * x[j] for j in range(len(x)))
                if self.w_rec is not None:
                    a += sum(self.w_rec[i][k] * st["s"][k] for k in range(n))
                new["a"].append(a)
                bias = self.bias[i]
                if self.du is None:
                    u = a * 64
                else:  # the current: last step's a and the bias (none at t = 0)
                    u = decay(st["u"][i], self.du[i] + 1)
                    if st["a"] is not None:
                        u += st["a"][i] * 64 + bias
                    bias = 0
                if u > UV:
                    u -= 2 * UV
                if u <= -UV:
                    u += 2 * UV
                v = decay(st["v"][i], self.dv[i]) + u + bias - st["w"][i]
                v = min(max(v, -UV + 1), UV - 1)
                omega = decay(st["w"][i], self.dw[i]) + _tz_div(self.ka[i] * st["h"][i], 1 << 24)
                omega = min(max(omega + self.kb[i] * st["s"][i], -UV + 1), UV - 1)
                theta = self.vth * 64
                s = int(v > theta)
                v_hat = (v - theta if self.reset == "soft" else 0) if s else v
                for key, val in (("v", v_hat), ("w", omega), ("h", v), ("s", s), ("u", u)):
                    new[key].append(val)
            self.state[b] = new
            out.append(new["s"])
        return out


# --- on-device S-TLLR (docs/fixed_point.md, "Adaptive layers") ---------------------------


def gains_by_hand(dv: list[int]) -> tuple[list[int], list[int]]:
    """The per-neuron 12-bit gains, from their definition: ``G_i`` = 4096·(dv_i/dv_m)² and
    ``H_i`` = 4096·dv_i/dv_m rounded to nearest (ties up), with Python fractions."""
    from fractions import Fraction
    from math import floor

    dm = max(max(dv), 1)
    g = [floor(Fraction(4096 * d * d, dm * dm) + Fraction(1, 2)) for d in dv]
    h = [floor(Fraction(4096 * d, dm) + Fraction(1, 2)) for d in dv]
    return g, h


class RefAdaptivePlastic(RefAdaptive):
    """:class:`RefAdaptive` with the S-TLLR traces and weight step of a plastic AdLIF layer,
    one sample, one neuron and one synapse at a time::

        Ψ_i    = table[clip((h_i − vth·64) >> shift, −half, half) + half]
        P_j    = sat(round(P_j·λ_pre / 2^12) + x_j·2^p_frac)       R_k the same of s_k[t−1]
        Q_i    = sat(round(Q_i·λ_post / 2^12) + round(Ψ_i / 2^(psi_frac − q_frac)))
        acc_ij = Σ_b a_pre·L_i·Ψ_i·G_i·P_j
                 + a_post·L_i·Q_i[t−1]·2^(psi_frac − q_frac)·H_i·x_j·2^p_frac
        W_ij   = sat(W_ij + round_stoch(−acc_ij·lr_mant / 2^lr_shift))

    and, after the update of every global step t with (t + 1) mod every = 0 (the spec's
    consolidation schedule), each weight pulled toward the deployed one ``W0``::

        W_ij   = W_ij − round_stoch((W_ij − W0_ij) / 2^k)

    A current-based layer (``du``) runs P and R through current traces (docs/fixed_point.md,
    "Current-based layers")::

        P_j    = sat(round((P_j·λ_pre + P^i_j·2^(12 − pi_frac + p_frac)) / 2^12))
        P^i_j  = sat(round(P^i_j·λ_syn / 2^12) + x_j·2^pi_frac)       R, R^i the same of s

    Random streams: those of tests/reference_integer_stllr.py (P 0, Q 1, R 2, Q's impulse 3,
    W 4, W_rec 5, P^i 6, R^i 7, the pulls of W 8 and W_rec 9 of the node). ``gains``
    ``(G, H)`` lists of ints (default: by hand)."""

    def __init__(self, *args, spec, psi, node_index=0, gains=None):
        super().__init__(*args)
        self.spec, self.psi, self.idx = spec, psi, node_index
        self.gains = gains or gains_by_hand(self.dv)
        self.w0, self.w_rec0 = self.w, self.w_rec
        self.tr = None

    def step_traces(self, xs: list[list[int]], seed_step: int) -> list[list[int]]:
        from tests.reference_integer_stllr import key_of, shift_round

        n = len(self.w)
        prev = None if self.state is None else [list(st["s"]) for st in self.state]
        out = self.step(xs)
        spec, (table, shift, half, frac) = self.spec, self.psi
        top = (1 << spec.trace_bits) - 1
        if self.tr is None:
            self.tr = [{"p": [0] * len(x), "q": [0] * n, "r": [0] * n, "pi": [0] * len(x),
                        "ri": [0] * n} for x in xs]  # fmt: skip
        rnd = spec.trace_rounding

        def key(q):
            return key_of(spec.seed, seed_step, self.idx * 10 + q)

        for b, x in enumerate(xs):
            tr, st = self.tr[b], self.state[b]
            s_prev = [0] * n if prev is None else prev[b]
            tr["x"], tr["s_prev"], tr["q_prev"] = list(x), s_prev, list(tr["q"])
            if self.du is None:
                for j in range(len(x)):
                    d = shift_round(tr["p"][j] * spec.lam_pre, 12, rnd, key(0), j)
                    tr["p"][j] = min(max(d + x[j] * (1 << spec.p_frac), 0), top)
                if self.w_rec is not None:
                    for k in range(n):
                        d = shift_round(tr["r"][k] * spec.lam_pre, 12, rnd, key(2), k)
                        tr["r"][k] = min(max(d + s_prev[k] * (1 << spec.p_frac), 0), top)
            else:
                pairs = [("p", "pi", x, 0, 6)]
                if self.w_rec is not None:
                    pairs.append(("r", "ri", s_prev, 2, 7))
                k_cur = 12 - spec.pi_frac + spec.p_frac
                for name, cur, imp, k_p, k_i in pairs:
                    for j in range(len(imp)):
                        total = tr[name][j] * spec.lam_pre + tr[cur][j] * (1 << k_cur)
                        p_new = shift_round(total, 12, rnd, key(k_p), j)
                        d = shift_round(tr[cur][j] * spec.lam_syn, 12, rnd, key(k_i), j)
                        tr[cur][j] = min(max(d + imp[j] * (1 << spec.pi_frac), 0), top)
                        tr[name][j] = min(max(p_new, 0), top)
            tr["psi"] = []
            for i in range(n):
                vc = st["h"][i] - self.vth * 64
                psi = table[min(max(vc >> shift, -half), half) + half]
                tr["psi"].append(psi)
                imp = shift_round(psi, frac - spec.q_frac, rnd, key(3), i)
                d = shift_round(tr["q"][i] * spec.lam_post, 12, rnd, key(1), i)
                tr["q"][i] = min(max(d + imp, 0), top)
        return out

    def learn(self, signals: list[list[int]], seed_step: int) -> None:
        from tests.reference_integer_stllr import key_of, rand_bits

        spec, frac = self.spec, self.psi[3]
        g_gain, h_gain = self.gains
        n = len(self.w)

        def update(w, pre, inp, stream):
            key = key_of(spec.seed, seed_step, self.idx * 10 + stream)
            cols = len(w[0])
            new = []
            for i in range(n):
                row = []
                for j in range(cols):
                    total = 0
                    for b, tr in enumerate(self.tr):
                        L = signals[b][i]
                        total += spec.a_pre * L * tr["psi"][i] * g_gain[i] * tr[pre][j]
                        if spec.a_post:
                            q = L * tr["q_prev"][i] * (1 << (frac - spec.q_frac)) * h_gain[i]
                            total += spec.a_post * q * tr[inp][j] * (1 << spec.p_frac)
                    scaled = -total * spec.lr_mant
                    if spec.lr_shift > 0:
                        r = rand_bits(key, i * cols + j, spec.lr_shift)
                        dw = (scaled + r) // (1 << spec.lr_shift)
                    else:
                        dw = scaled * (1 << -spec.lr_shift)
                    row.append(min(max(w[i][j] + dw, spec.w_min), spec.w_max))
                new.append(row)
            return new

        def pull(w, w0, stream):
            key, k = key_of(spec.seed, seed_step, self.idx * 10 + stream), spec.consolidate_shift
            cols = len(w[0])
            return [[w[i][j] - (w[i][j] - w0[i][j] + rand_bits(key, i * cols + j, k)) // (1 << k)
                     for j in range(cols)] for i in range(len(w))]  # fmt: skip

        self.w = update(self.w, "p", "x", 4)
        if self.w_rec is not None:
            self.w_rec = update(self.w_rec, "r", "s_prev", 5)
        every = spec.consolidate_every
        if spec.consolidate_shift and every and (seed_step + 1) % every == 0:
            self.w = pull(self.w, self.w0, 8)
            if self.w_rec is not None:
                self.w_rec = pull(self.w_rec, self.w_rec0, 9)
