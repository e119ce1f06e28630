"""torch and Lava live in one environment: both import, and Lava's fixed-point LIF runs.

The check is analytic (docs/lava.md §4): with ``u = 0``, ``bias_mant = 100``,
``bias_exp = 2`` and ``vth = 10`` the voltage gains ``100 << 2 = 400`` per step
and fires when it exceeds ``10 << 6 = 640``, i.e. ``v = 400, 0 (spike), 400, 0, …``.
"""

from __future__ import annotations

import numpy as np
import torch  # noqa: F401  (imported first on purpose: torch before Lava must work)


def test_lava_fixed_point_lif_runs_next_to_torch():
    from lava.magma.core.run_conditions import RunSteps
    from lava.magma.core.run_configs import Loihi2SimCfg
    from lava.proc.lif.process import LIF
    from lava.proc.monitor.process import Monitor

    lif = LIF(shape=(1,), du=4095, dv=0, vth=10, bias_mant=100, bias_exp=2)
    mon = Monitor()
    mon.probe(lif.v, 6)
    try:
        lif.run(condition=RunSteps(num_steps=6), run_cfg=Loihi2SimCfg(select_tag="fixed_pt"))
        v = mon.get_data()[lif.name]["v"][:, 0]
    finally:
        lif.stop()
    np.testing.assert_array_equal(v, [400, 0, 400, 0, 400, 0])
