"""A naive integer reference of on-device S-TLLR for a current-based (CuLIF) dense layer.

Written from the equations of docs/fixed_point.md ("Current-based layers") and
docs/neurons.md §1, §3b in Python ints with per-sample, per-neuron loops, on a host
without synaptic delay (the node holds ``a[t−1]`` itself)::

    a[t]   = Σ_j W_ij x_j[t] + Σ_k W_rec,ik s_k[t−1]
    u[t]   = wrap24(decay(u[t−1], du + 1) + (a[t−1] << 6) + bias·[t ≥ 1])
    v[t]   = clip24(decay(v[t−1], dv) + u[t]);   s = v > vth << 6;   reset
    P[t]   = sat(round((P[t−1]·λ_pre + (P^i[t−1] << (12 − pi_frac + p_frac))) / 2^12))
    P^i[t] = sat(round(P^i[t−1]·λ_syn / 2^12) + (x[t] << pi_frac))
    R, R^i the same of s[t−1];   Q as for the LIF

The random streams are those of tests/reference_integer_stllr.py, with P^i on stream 6 and
R^i on stream 7 of the node. The weight step is :meth:`RefLayer.learn` (the LIF's, which
reads P, R, Q[t−1] and Ψ kept here).
"""

from __future__ import annotations

from tests.reference_integer_stllr import UV, RefLayer, decay, key_of, shift_round


def _wrap(u: int) -> int:
    if u > UV:
        return u - 2 * UV
    if u <= -UV:
        return u + 2 * UV
    return u


class RefCurrentLayer(RefLayer):
    """A dense current-based plastic layer (``du`` its 12-bit current decay)."""

    def __init__(self, w, spec, *, du, dv, vth, reset, bias=None, w_rec=None, psi=None,
                 node_index=0):  # fmt: skip
        super().__init__("dense", w, spec, dv=dv, vth=vth, reset=reset, bias=bias, w_rec=w_rec,
                         psi=psi, node_index=node_index)  # fmt: skip
        self.du = du
        self.cur = None  # per sample: the layer's state as lists of ints

    def _traces(self, p, p_i, impulse, key_p, key_pi):
        """Advance one pair (P, P^i) over its elements (lists of ints) in place."""
        spec = self.spec
        top = (1 << spec.trace_bits) - 1
        k = spec.pi_frac - spec.p_frac
        for j in range(len(p)):
            total = p[j] * spec.lam_pre + p_i[j] * (1 << (12 - k))  # P^i[t−1]
            p_new = shift_round(total, 12, spec.trace_rounding, key_p, j)
            d = shift_round(p_i[j] * spec.lam_syn, 12, spec.trace_rounding, key_pi, j)
            p_i[j] = min(max(d + impulse[j] * (1 << spec.pi_frac), 0), top)
            p[j] = min(max(p_new, 0), top)

    def step(self, xs, in_shape, out_shape, seed_step):
        """Forward every sample (``xs``: list of dicts ``(j,) → int``); returns the spikes."""
        spec, (n_in,), (n_out,) = self.spec, in_shape, out_shape
        if self.cur is None:
            self.cur = [
                {"u": [0] * n_out, "v": [0] * n_out, "s": [0] * n_out, "a": None,
                 "p": [0] * n_in, "pi": [0] * n_in, "r": [0] * n_out, "ri": [0] * n_out,
                 "q": [0] * n_out}
                for _ in xs
            ]  # fmt: skip
        key = lambda q: key_of(spec.seed, seed_step, self.idx * 10 + q)  # noqa: E731
        table, shift, half, frac = self.psi
        top = (1 << spec.trace_bits) - 1
        outs, views = [], []
        for b, xd in enumerate(xs):
            st = self.cur[b]
            x = [xd[(j,)] for j in range(n_in)]
            s_prev = list(st["s"])
            a = []
            for i in range(n_out):
                total = sum(self.w[(i, j)] * x[j] for j in range(n_in))
                if self.w_rec is not None:
                    total += sum(self.w_rec[(i, k)] * s_prev[k] for k in range(n_out))
                a.append(total)
            first = st["a"] is None
            psi_now, spikes = [], []
            for i in range(n_out):
                a_prev = 0 if first else st["a"][i]
                bias = 0 if first or self.bias is None else self.bias[i]
                u = _wrap(decay(st["u"][i], self.du + 1) + a_prev * 64 + bias)
                v = min(max(decay(st["v"][i], self.dv) + u, -UV + 1), UV - 1)
                theta = self.vth * 64
                fired = v > theta
                psi_now.append(table[min(max((v - theta) >> shift, -half), half) + half])
                if fired:
                    v = v - theta if self.reset == "soft" else 0
                st["u"][i], st["v"][i] = u, v
                spikes.append(int(fired))
            st["a"] = a
            st["s"] = spikes
            self._traces(st["p"], st["pi"], x, key(0), key(6))
            if self.w_rec is not None:
                self._traces(st["r"], st["ri"], s_prev, key(2), key(7))
            q_prev = list(st["q"])
            for i in range(n_out):
                imp = shift_round(psi_now[i], frac - spec.q_frac, spec.trace_rounding, key(3), i)
                d = shift_round(q_prev[i] * spec.lam_post, 12, spec.trace_rounding, key(1), i)
                st["q"][i] = min(max(d + imp, 0), top)
            views.append({  # what RefLayer.learn reads: dicts over index tuples
                "p": {(j,): st["p"][j] for j in range(n_in)},
                "r": {(k,): st["r"][k] for k in range(n_out)},
                "psi": {(i,): psi_now[i] for i in range(n_out)},
                "q_prev": {(i,): q_prev[i] for i in range(n_out)},
                "s_prev": {(k,): s_prev[k] for k in range(n_out)},
                "q": {(i,): st["q"][i] for i in range(n_out)},
                "pi": {(j,): st["pi"][j] for j in range(n_in)},
            })  # fmt: skip
            outs.append({(i,): spikes[i] for i in range(n_out)})
        self.state = views
        return outs
