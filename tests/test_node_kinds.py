"""The node-kind registry (docs/node_kinds.md): a kind is one module plus its registry line.

A new kind defined here, in this test file only (a dataclass, ``forward``, output shape,
value bound and one ``register_kind`` call), runs in the batched emulator after a
spiking layer and survives a save/load round trip; its output equals a naive per-element
formula written separately. The built-in kinds each own every part the hosts call, and
the emulator keeps typed state, not string keys.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
import torch

from quantization.emulator import IntegerEmulator
from quantization.network import (
    Add,
    GlobalSumPool,
    InputFormat,
    Pool,
    QNetwork,
    Readout,
    SpikingLayer,
)
from quantization.nodes import (
    NodeKind,
    ReadoutState,
    SpikingState,
    Step,
    Traces,
    UnsupportedNodeError,
    kind_of,
    register_kind,
    registered_kinds,
)
from tests.test_integer_learning import _spec


@dataclass(frozen=True)
class WindowCount:
    """Test-only kind: ``y[t] = Σ_{k<window} x[t−k]`` per element (a spike count over a
    sliding window), state = the last ``window − 1`` inputs."""

    name: str
    inputs: tuple[str, ...]
    window: int


def _wc_forward(node, state, inputs, host, step, index) -> Step:
    (x,) = inputs
    past = () if state is None else state
    kept = (x, *past)[: node.window]
    out = kept[0]
    for k in kept[1:]:
        out = out + k
    return Step(out, kept[: node.window - 1] if node.window > 1 else None)


def _wc_shape(node, in_shapes):
    return in_shapes[0]


def _wc_bound(node, in_bounds, in_shapes):
    return in_bounds[0] * node.window


register_kind(NodeKind(WindowCount, _wc_forward, _wc_shape, _wc_bound))


def _dense(name, inputs, n_in, n_out, gen, **kw):
    w = torch.randint(-60, 61, (n_out, n_in), generator=gen)
    return SpikingLayer(name, inputs, "dense", w, 0, dv=300, vth=40, reset="soft", **kw)


def test_a_new_kind_runs_in_the_emulator_and_saves(tmp_path):
    gen = torch.Generator().manual_seed(0)
    layer = _dense("l1", ("input",), 12, 6, gen)
    qnet = QNetwork((layer, WindowCount("win", ("l1",), 3)), (12,), 6, InputFormat(0, 0, 3))
    path = tmp_path / "net.pt"
    qnet.save(path)
    loaded = QNetwork.load(path)
    assert loaded.nodes[1] == WindowCount("win", ("l1",), 3)
    emu = IntegerEmulator(loaded)
    spikes, outs = [], []
    for _ in range(8):
        x = torch.randint(0, 4, (2, 12), generator=gen)
        o = emu.forward(x)
        spikes.append(o["l1"].tolist())
        outs.append(o["win"].tolist())
    assert any(any(any(r) for r in s) for s in spikes), "the layer never fired"
    for t in range(8):  # naive: the sum of the last three spike vectors, element by element
        for b in range(2):
            for j in range(6):
                want = sum(spikes[k][b][j] for k in range(max(0, t - 2), t + 1))
                assert outs[t][b][j] == want, (t, b, j)


def test_unregistered_node_is_refused_by_name():
    @dataclass(frozen=True)
    class Mystery:
        name: str
        inputs: tuple[str, ...]

    with pytest.raises(UnsupportedNodeError, match="'m'.*Mystery.*not a registered node kind"):
        kind_of(Mystery("m", ("input",)))
    with pytest.raises(UnsupportedNodeError, match="Mystery"):
        IntegerEmulator(QNetwork((Mystery("m", ("input",)),), (3,), 3))


@pytest.mark.parametrize("cls", [SpikingLayer, Readout, Pool, GlobalSumPool, Add])
def test_builtin_kinds_own_every_part(cls):
    (kind,) = [k for k in registered_kinds() if k.node is cls]
    assert kind.node is cls and kind.from_float is not None and kind.float_spec is not None
    assert kind.has_weights == (cls in (SpikingLayer, Readout))
    assert (kind.learn is not None) == (cls in (SpikingLayer, Readout))


def test_emulator_state_is_typed():
    """Plastic spiking and readout nodes keep their traces in typed state; the pre-trace
    after one step with λ_pre = 3500 (12-bit) and an empty history equals ``x << p_frac``."""
    gen = torch.Generator().manual_seed(1)
    spec = _spec(trace_rounding="nearest")
    from quantization.learning_formats import psi_table

    psi = psi_table("d", 1 / 64)
    rec = _dense("rec", ("input",), 5, 4, gen, weight_rec=torch.randint(-9, 10, (4, 4)),
                 psi=psi, learning=spec)  # fmt: skip
    out = Readout("out", ("rec",), torch.randint(-9, 10, (3, 4), generator=gen), 0, 4096,
                  learning=spec)  # fmt: skip
    emu = IntegerEmulator(QNetwork((rec, out), (5,), 3, InputFormat(0, 0, 3)))
    x = torch.randint(0, 4, (2, 5), generator=gen)
    emu.forward(x)
    st, ro = emu.state["rec"], emu.state["out"]
    assert isinstance(st, SpikingState) and isinstance(st.traces, Traces)
    assert isinstance(ro, ReadoutState) and ro.traces.q is None
    np.testing.assert_array_equal(st.traces.p.numpy(), (x << spec.p_frac).numpy())
    assert st.traces.r is not None and not st.traces.r.any()  # s[−1] = 0


def test_concat_joins_channels_with_shifts():
    """``Concat`` (one module, quantization/nodes/concat.py): output channel ``c`` is input
    0's channel ``c`` for ``c < C_0`` and input 1's channel ``c − C_0`` shifted left by
    ``shifts[1]`` after that, element by element; PTQ gives the shifts of the scales."""
    from quantization.layer_quantization import PTQConfig
    from quantization.nodes import Concat, kind_of

    gen = torch.Generator().manual_seed(2)
    a = SpikingLayer("a", ("input",), "conv", torch.randint(-9, 10, (2, 1, 3, 3), generator=gen),
                     0, 300, 6, "soft", padding=(1, 1))  # fmt: skip
    b = SpikingLayer("b", ("input",), "conv", torch.randint(-9, 10, (3, 1, 1, 1), generator=gen),
                     0, 300, 4, "soft")  # fmt: skip
    cat = Concat("cat", ("a", "b"), (0, 2))
    emu = IntegerEmulator(QNetwork((a, b, cat), (1, 4, 4), 5, InputFormat(0, 0, 3)))
    for _ in range(4):
        o = emu.forward(torch.randint(0, 4, (2, 1, 4, 4), generator=gen))
        sa, sb, y = o["a"].tolist(), o["b"].tolist(), o["cat"].tolist()
        for n in range(2):
            for c in range(5):
                for i in range(4):
                    for j in range(4):
                        want = sa[n][c][i][j] if c < 2 else sb[n][c - 2][i][j] << 2
                        assert y[n][c][i][j] == want
    made = kind_of(cat).from_float(Concat("cat", ("a", "b")), {"a": 0.25, "b": 1.0}, PTQConfig())
    assert made.node.shifts == (0, 2) and made.scale == 0.25


def test_current_based_layer_needs_a_spec_with_current_traces():
    """A current-based layer (``du < 4095``) runs (its equality with Lava's LIF is in
    hw_tests/test_emulator_vs_lava_builtin.py); on-device S-TLLR needs the current traces
    (tests/test_culif_learning.py), so a LIF's spec is refused by name."""
    w = torch.ones(2, 3, dtype=torch.int64)
    SpikingLayer("cu", ("input",), "dense", w, 0, 300, 6, "hard", du=1000)
    with pytest.raises(ValueError, match="'?cu'?.*du = 1000.*with current traces"):
        SpikingLayer("cu", ("input",), "dense", w, 0, 300, 6, "hard", du=1000, learning=_spec())
    with pytest.raises(ValueError, match="du must be in 0 … 4095"):
        SpikingLayer("cu", ("input",), "dense", w, 0, 300, 6, "hard", du=5000)
