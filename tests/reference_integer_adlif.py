"""A naive integer reference of the AdLIF node (quantization/nodes/adaptive.py), written
from the equations of docs/fixed_point.md ("Adaptive layers") in Python ints, one sample
and one neuron at a time::

    a     = Σ_j W_ij x_j + Σ_k W_rec,ik s_k[t−1]
    u     = wrap24(a·64)
    v     = clip24(decay(v̂[t−1], dv_i) + u + bias_i − ω_i[t−1])
    s     = [v > vth·64];   h = v;   v̂ = 0 (hard) or v − vth·64 (soft) where s
    ω_i   = clip24(decay(ω_i[t−1], dw_i) + tz(ka_i·h_i[t−1] / 2^24) + kb_i·s_i[t−1])
"""

from __future__ import annotations

from tests.reference_integer_stllr import UV, decay


def _tz_div(x: int, d: int) -> int:
    """x / d rounded toward zero (d > 0)."""
    q = abs(x) // d
    return q if x >= 0 else -q


class RefAdaptive:
    """Per-sample state lists; ``w``, ``w_rec`` nested lists; the constants lists of ints."""

    def __init__(self, w, w_rec, bias, dv, dw, ka, kb, vth, reset):
        self.w, self.w_rec, self.bias = w, w_rec, bias
        self.dv, self.dw, self.ka, self.kb = dv, dw, ka, kb
        self.vth, self.reset = vth, reset
        self.state = None

    def step(self, xs: list[list[int]]) -> list[list[int]]:
        n = len(self.w)
        if self.state is None:
            self.state = [{"v": [0] * n, "w": [0] * n, "h": [0] * n, "s": [0] * n, "u": [0] * n}
                          for _ in xs]  # fmt: skip
        out = []
        for b, x in enumerate(xs):
            st = self.state[b]
            new = {"v": [], "w": [], "h": [], "s": [], "u": []}
            for i in range(n):
                a = sum(self.w[i][j] * x[j] for j in range(len(x)))
                if self.w_rec is not None:
                    a += sum(self.w_rec[i][k] * st["s"][k] for k in range(n))
                u = a * 64
                if u > UV:
                    u -= 2 * UV
                if u <= -UV:
                    u += 2 * UV
                v = decay(st["v"][i], self.dv[i]) + u + self.bias[i] - st["w"][i]
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
