"""The flow task seen as the parity groups see a classification task (hw_tests.parity_flow).

:class:`FlowView`: each test window's event frames ``[T, 2, crop, crop]`` with a dummy
label 0, ``num_classes = 2`` flow components; ``windows`` keeps the windows themselves
(gt, events) for the flow prediction rows. Its own module so that
:class:`hw_tests.parity_setup.TaskCache` can build it without importing the flow checks.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FlowView:
    """``test[i]`` = (frames ``[T, C, H, W]``, 0) over the test sequences' windows in
    order; ``train``: every 8th training window, the same way (PTQ calibration)."""

    test: list
    train: list
    windows: list
    input_shape: tuple
    num_classes: int = 2


def flow_view(data) -> FlowView:
    """:class:`FlowView` of a :class:`stllr.flow.tasks.FlowTaskData`."""
    windows = [d[i] for d in data.test.values() for i in range(len(d))]
    train = [(data.train[i].x, 0) for i in range(0, len(data.train), 8)]
    return FlowView([(w.x, 0) for w in windows], train, windows, tuple(data.input_shape))
