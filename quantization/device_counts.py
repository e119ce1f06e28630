"""Saturation counts of the batched emulator, kept on the device until read.

Per quantity (``"<node>/membrane"``, ``"<node>/current"``, ...), the values at or beyond
its limit and how many values were seen, summed without a host sync per step; only the
samples that are not padding at the current step count (``IntegerEmulator.run`` with
lengths). :meth:`DeviceCounts.flush` moves the sums into a
:class:`~quantization.qformat.SaturationCounter`.
"""

from __future__ import annotations

import torch

from quantization.qformat import SaturationCounter


class DeviceCounts:
    """Pending per-quantity counts ``[over, total]`` and the counter they flush into."""

    def __init__(self, counter: SaturationCounter | None = None):
        self.counter = counter if counter is not None else SaturationCounter()
        self._pending: dict[str, list] = {}
        # which samples count at this step ([B] 0/1, on the device) and how many (None:
        # every sample counts)
        self.active: torch.Tensor | None = None
        self.n_active = 0

    def set_active(self, active: torch.Tensor | None, n_active: int = 0) -> None:
        self.active, self.n_active = active, n_active

    def counted(self, values: torch.Tensor) -> int:
        """How many of this step's values ``[B, ...]`` count: those of the samples that are
        not padding at this step, else all."""
        if self.active is None:
            return values.numel()
        return values[0].numel() * self.n_active

    def count(self, name: str, values: torch.Tensor, limit: int) -> None:
        """Count values at or beyond ``limit`` (kept on the device; see :meth:`flush`), of
        the samples that count at this step (:meth:`counted`)."""
        # Σ [|x| ≥ limit] as Σ clamp(|x| − (limit − 1), 0, 1): exact for integers, and
        # faster than summing booleans; float sums in float64 stay exact when accumulated
        over = values.abs().sub_(limit - 1).clamp_(0, 1)
        if self.active is not None:
            over = over * self.active.to(over.dtype).view(-1, *([1] * (over.dim() - 1)))
        over = over.sum(dtype=torch.float64) if over.is_floating_point() else over.sum()
        total = self.counted(values)
        if name in self._pending:  # not in place: an int64 sum may meet a float64 one
            self._pending[name][0] = self._pending[name][0] + over
            self._pending[name][1] += total
        else:
            self._pending[name] = [over, total]

    def count_none(self, name: str, values: torch.Tensor) -> None:
        """Record this step's ``values`` (:meth:`counted`), none of which can saturate (a
        static bound says so)."""
        total = self.counted(values)
        if name in self._pending:
            self._pending[name][1] += total
        else:
            self._pending[name] = [0, total]

    def flush(self) -> dict:
        """Per quantity: values that saturated or wrapped, out of how many (since creation)."""
        for name, (over, total) in self._pending.items():
            self.counter.add(name, int(over), total)
        self._pending = {}
        return self.counter.as_dict()
