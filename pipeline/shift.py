"""Shifted conditions a deployed network meets: the inputs of the adaptation scenario.

A scenario is a frozen description plus a pure function of ``(frames, split, index)``:
the shifted version of sample ``index`` of a split depends only on the scenario's
seed, the split and the index (a counter-based generator per sample), never on the
order in which samples are drawn or on earlier calls (no state carried between
samples; DESIGN.md principle 9).

``noisy_sensor`` (frames of event counts, ``[T, C]`` for SHD-like audio, ``[T, 2, H, W]``
for an event camera): a cheaper or ageing sensor, or a darker scene for an event camera,
that loses a fraction of its events and adds spurious ones::

    x'[t, c] = Binomial(x[t, c], 1 − event_loss) + Bernoulli(background)
    (then, for [T, C] frames and optionally, every channel moved by channel_shift)

— the kind of change a keyword-spotting device meets in the field (a different
microphone or cochlea front end, a noisier environment). New scenarios (a held-out user
or new lighting for gesture data) register in :data:`SCENARIOS`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

_SPLIT = {"train": 1, "test": 2}


def _generator(seed: int, split: str, index: int) -> torch.Generator:
    return torch.Generator().manual_seed(
        (seed * 1_000_003 + _SPLIT[split] * 10_007 + index) % (2**63 - 1)
    )


@dataclass(frozen=True)
class NoisySensor:
    """A sensor that loses ``event_loss`` of its events and adds ``background`` noise."""

    event_loss: float = 0.5
    background: float = 0.02
    channel_shift: int = 0
    seed: int = 7

    def describe(self) -> str:
        parts = [
            f"{100 * self.event_loss:.0f}% of events lost",
            f"{100 * self.background:.0f}% background events per channel and step",
        ]
        if self.channel_shift:
            parts.append(f"channels shifted by {self.channel_shift}")
        return "noisy sensor: " + ", ".join(parts)

    def __call__(self, x: torch.Tensor, split: str, index: int) -> torch.Tensor:
        """Shifted frames ``[T, ...]`` (same shape and dtype) of sample ``index`` of ``split``;
        the frames must be event counts (non-negative integers)."""
        counts = x.double()
        if bool((counts < 0).any()) or not bool((counts == counts.round()).all()):
            raise ValueError("noisy_sensor needs frames of event counts (non-negative integers)")
        if self.channel_shift and x.dim() != 2:
            raise ValueError(f"channel_shift needs frames [T, channels], got {list(x.shape)}")
        g = _generator(self.seed, split, index)
        if self.event_loss > 0:
            keep = torch.full_like(counts, 1.0 - self.event_loss)
            counts = torch.binomial(counts, keep, generator=g)
        if self.background > 0:
            counts = (
                counts
                + (
                    torch.rand(counts.shape, generator=g, dtype=torch.float64) < self.background
                ).double()
            )
        if self.channel_shift:
            k = self.channel_shift
            shifted = torch.zeros_like(counts)
            if k > 0:
                shifted[:, k:] = counts[:, :-k]
            else:
                shifted[:, :k] = counts[:, -k:]
            counts = shifted
        return counts.to(x.dtype)


#: scenario name → builder from the ``[adaptation]`` config section
SCENARIOS: dict[str, Callable] = {
    "noisy_sensor": lambda a: NoisySensor(a.event_loss, a.background, a.channel_shift, a.seed),
}


def make_shift(section):
    """The scenario of an :class:`~pipeline.config.AdaptationSection` (one-line error if
    unknown)."""
    if section.scenario not in SCENARIOS:
        raise ValueError(
            f"unknown adaptation scenario {section.scenario!r}; expected one of {sorted(SCENARIOS)}"
        )
    return SCENARIOS[section.scenario](section)
