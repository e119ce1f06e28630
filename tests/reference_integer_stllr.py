"""A naive integer reference of on-device S-TLLR, in Python ints with per-sample loops.

Written from the equations in quantization/learning_formats.py, quantization/loihi.py
and quantization/kernels.py (docstrings), not from their code: no numpy, no torch,
no vectorisation; every sum is an explicit loop over samples, neurons and inputs.
The random bits of stochastic rounding are the documented counter-based hash of
(seed, step, stream, element index), re-implemented here on Python ints.
"""

from __future__ import annotations

M32 = (1 << 32) - 1
UV = 1 << 23


def _hash(h: int) -> int:
    h ^= h >> 16
    h = (h * 0x45D9F3B) & M32
    h ^= h >> 16
    h = (h * 0x45D9F3B) & M32
    return h ^ (h >> 16)


def key_of(seed: int, step: int, stream: int) -> int:
    k = (seed * 0x3C6EF372 + 0x9E3779B9) & M32
    k ^= (step * 0x27D4EB2F) & M32
    k ^= (stream * 0x165667B1) & M32
    return k


def rand_bits(key: int, index: int, bits: int) -> int:
    """Uniform integer in [0, 2^bits) for element ``index`` (bits > 32: high bits only)."""
    h = _hash((index * 0x2C1B3C6D + key) & M32)
    if bits <= 32:
        return h >> (32 - bits)
    return h << (bits - 32)


def shift_round(x: int, k: int, mode: str, key: int, index: int) -> int:
    if k == 0:
        return x
    if mode == "stochastic":
        return (x + rand_bits(key, index, k)) // (1 << k)
    if mode == "floor":
        return x // (1 << k)
    if mode == "toward_zero":
        return -((-x) // (1 << k)) if x < 0 else x // (1 << k)
    if mode == "nearest":
        return (x + (1 << (k - 1))) // (1 << k)
    raise ValueError(mode)


def decay(x: int, d: int) -> int:
    """sign(x)·((|x|·(4096 − d)) >> 12)."""
    p = abs(x) * (4096 - d)
    return (p >> 12) * (1 if x >= 0 else -1)


def flat(shape, idx) -> int:
    """Row-major flat index of ``idx`` in ``shape``."""
    f = 0
    for n, i in zip(shape, idx, strict=True):
        f = f * n + i
    return f


def all_indices(shape):
    if not shape:
        yield ()
        return
    for i in range(shape[0]):
        for rest in all_indices(shape[1:]):
            yield (i, *rest)


class RefLayer:
    """One plastic node: ``kind`` dense/conv/deconv/readout, state per sample as nested dicts.

    ``deconv`` is a transposed convolution written from its definition: input ``(c, i, j)``
    adds ``x·w[c, o, ky, kz]`` to output ``(o, i·stride − padding + ky, j·stride − padding
    + kz)`` where that position exists.
    """

    def __init__(self, kind, w, spec, *, dv, vth=0, reset="soft", bias=None, w_rec=None,
                 psi=None, padding=0, node_index=0, stride=1):  # fmt: skip
        self.kind, self.spec, self.dv, self.vth, self.reset = kind, spec, dv, vth, reset
        self.w = w  # dict: index tuple → int
        self.w_shape = tuple(max(i[d] for i in w) + 1 for d in range(len(next(iter(w)))))
        self.w_rec = w_rec
        self.bias = bias
        self.psi = psi  # (table list, shift, half, frac) or None for a readout
        self.padding = padding
        self.stride = stride
        self.idx = node_index
        self.state = None

    # --- forward --------------------------------------------------------------------
    def _current(self, x, out_shape):
        a = {}
        if self.kind in ("dense", "readout"):
            n_out, n_in = self.w_shape
            for i in range(n_out):
                a[(i,)] = sum(self.w[(i, j)] * x[(j,)] for j in range(n_in))
            return a
        if self.kind == "deconv":
            a = {i: 0 for i in all_indices(out_shape)}
            for (c, i, j), xv in x.items():
                for o, ky, kz, y, z in self._taps(c, i, j, out_shape):
                    a[(o, y, z)] += xv * self.w[(c, o, ky, kz)]
            return a
        c_out, c_in, kh, kw = self.w_shape
        _, h, wd = out_shape
        for o, y, z in all_indices(out_shape):
            total = 0
            for c in range(c_in):
                for dy in range(kh):
                    for dz in range(kw):
                        yy, zz = y + dy - self.padding, z + dz - self.padding
                        if 0 <= yy < h and 0 <= zz < wd:
                            total += self.w[(o, c, dy, dz)] * x[(c, yy, zz)]
            a[(o, y, z)] = total
        return a

    def _taps(self, c, i, j, out_shape):
        """deconv: ``(o, ky, kz, y, z)`` for every output that input ``(c, i, j)`` reaches."""
        _, c_out, kh, kw = self.w_shape
        _, h, wd = out_shape
        for o in range(c_out):
            for ky in range(kh):
                for kz in range(kw):
                    y = i * self.stride - self.padding + ky
                    z = j * self.stride - self.padding + kz
                    if 0 <= y < h and 0 <= z < wd:
                        yield o, ky, kz, y, z

    def step(self, xs, in_shape, out_shape, seed_step):
        """Forward all samples ``xs`` (list of dicts) at global step ``seed_step``."""
        spec, n_samples = self.spec, len(xs)
        if self.state is None:
            zero_out = {i: 0 for i in all_indices(out_shape)}
            zero_in = {i: 0 for i in all_indices(in_shape)}
            self.state = [
                {"v": dict(zero_out), "o": dict(zero_out), "p": dict(zero_in),
                 "q": dict(zero_out), "s": dict(zero_out), "r": dict(zero_out)}
                for _ in range(n_samples)
            ]  # fmt: skip
        key = lambda q: key_of(spec.seed, seed_step, self.idx * 10 + q)  # noqa: E731
        bits_max = (1 << spec.trace_bits) - 1
        outs = []
        for b, x in enumerate(xs):
            st = st_b = self.state[b]
            a = self._current(x, out_shape)
            s_prev = dict(st["s"])
            if self.w_rec is not None:
                n = out_shape[0]
                for i in range(n):
                    a[(i,)] += sum(self.w_rec[(i, k)] * s_prev[(k,)] for k in range(n))
            # pre-trace P (and R for the recurrent input)
            for j in all_indices(in_shape):
                prod = st["p"][j] * spec.lam_pre
                d = shift_round(prod, 12, spec.trace_rounding, key(0), flat(in_shape, j))
                st["p"][j] = min(max(d + (x[j] << spec.p_frac), 0), bits_max)
            if self.kind == "readout":
                for i in all_indices(out_shape):
                    o = decay(st["o"][i], self.dv) if True else 0
                    o = o + (a[i] << 6) + (0 if self.bias is None else self.bias[i[0]])
                    st["o"][i] = min(max(o, -UV + 1), UV - 1)
                outs.append(dict(st["o"]))
                continue
            if self.w_rec is not None:
                for k in all_indices(out_shape):
                    prod = st["r"][k] * spec.lam_pre
                    d = shift_round(prod, 12, spec.trace_rounding, key(2), flat(out_shape, k))
                    st["r"][k] = min(max(d + (s_prev[k] << spec.p_frac), 0), bits_max)
            table, shift, half, frac = self.psi
            st_b["q_prev"] = dict(st["q"])
            st_b["psi"] = {}
            st_b["s_prev"] = s_prev
            for i in all_indices(out_shape):
                u = a[i] << 6
                if u > UV:
                    u -= 2 * UV
                if u <= -UV:
                    u += 2 * UV
                bias = 0 if self.bias is None else self.bias[i[0]]
                v = decay(st["v"][i], self.dv) + u + bias
                v = min(max(v, -UV + 1), UV - 1)
                theta = self.vth << 6
                spike = v > theta
                vc = v - theta
                if spike:
                    v = v - theta if self.reset == "soft" else 0
                st["v"][i] = v
                st["s"][i] = int(spike)
                psi = table[min(max(vc >> shift, -half), half) + half]
                st_b["psi"][i] = psi
                k = frac - spec.q_frac
                imp = shift_round(psi, k, spec.trace_rounding, key(3), flat(out_shape, i))
                prod = st["q"][i] * spec.lam_post
                d = shift_round(prod, 12, spec.trace_rounding, key(1), flat(out_shape, i))
                st["q"][i] = min(max(d + imp, 0), bits_max)
            outs.append(dict(st["s"]))
        return outs

    # --- learning -----------------------------------------------------------------------
    def learn(self, xs, signals, in_shape, out_shape, seed_step):
        """Apply one update from every sample's signal (list of dicts over out indices)."""
        spec = self.spec
        frac = self.psi[3] if self.psi is not None else 0
        align = frac - spec.q_frac

        def eligibility(b, i, pre_trace, pre_input):
            st, L = self.state[b], signals[b][i]
            if self.kind == "readout":
                return spec.a_pre * L * pre_trace
            causal = spec.a_pre * (L * st["psi"][i]) * pre_trace
            noncausal = spec.a_post * ((L * st["q_prev"][i]) << align) * (pre_input << spec.p_frac)
            return causal + noncausal

        acc = {}
        for widx in self.w:
            total = 0
            for b in range(len(xs)):
                if self.kind == "deconv":
                    c, o, ky, kz = widx
                    for cc, i, j in xs[b]:
                        if cc != c:
                            continue
                        for oo, yy, zz, y, z in self._taps(c, i, j, out_shape):
                            if (oo, yy, zz) == (o, ky, kz):
                                total += eligibility(b, (o, y, z), self.state[b]["p"][(c, i, j)],
                                                     xs[b][(c, i, j)])  # fmt: skip
                elif self.kind == "conv":
                    o, c, dy, dz = widx
                    _, h, wd = out_shape
                    for y in range(h):
                        for z in range(wd):
                            yy, zz = y + dy - self.padding, z + dz - self.padding
                            if 0 <= yy < h and 0 <= zz < wd:
                                total += eligibility(
                                    b,
                                    (o, y, z),
                                    self.state[b]["p"][(c, yy, zz)],
                                    xs[b][(c, yy, zz)],
                                )
                else:
                    i, j = widx
                    total += eligibility(b, (i,), self.state[b]["p"][(j,)], xs[b][(j,)])
            acc[widx] = total
        self.w = self._update(
            self.w, acc, self.w_shape, key_of(spec.seed, seed_step, self.idx * 10 + 4)
        )
        if self.w_rec is not None:
            acc = {}
            n = out_shape[0]
            for i, k in self.w_rec:
                acc[(i, k)] = sum(
                    eligibility(b, (i,), self.state[b]["r"][(k,)], self.state[b]["s_prev"][(k,)])
                    for b in range(len(xs))
                )
            self.w_rec = self._update(
                self.w_rec, acc, (n, n), key_of(spec.seed, seed_step, self.idx * 10 + 5)
            )

    def _update(self, w, acc, shape, key):
        spec = self.spec
        out = {}
        for widx, value in w.items():
            scaled = -acc[widx] * spec.lr_mant
            if spec.lr_shift > 0:
                dw = (scaled + rand_bits(key, flat(shape, widx), spec.lr_shift)) // (
                    1 << spec.lr_shift
                )
            else:
                dw = scaled << -spec.lr_shift
            out[widx] = min(max(value + dw, spec.w_min), spec.w_max)
        return out
