"""Shifted conditions a deployed network meets: the data of the adaptation scenario.

A scenario says which labelled samples stream into the deployed network while it adapts
(``stream``, in arrival order), which held-out samples of the shifted condition measure
it before, during and after (``eval``), and which samples of the original condition
measure what the adaptation cost there (``clean``): a :class:`ScenarioData`, built by
the scenario's ``build(data, section)`` from the task's data and the ``[adaptation]``
config section. Every choice is drawn from the scenario's seed, never from global state
(no state kept from one sample for the next).

Frame shifts (a pure function of ``(frames, split, index)``: the shifted version of
sample ``index`` of a split depends only on the seed, the split and the index):

``noisy_sensor`` (frames of event counts, ``[T, C]`` for SHD-like audio, ``[T, 2, H, W]``
for an event camera): a cheaper or ageing sensor, or a darker scene for an event camera,
that loses a fraction of its events and adds spurious ones::

    x'[t, c] = Binomial(x[t, c], 1 − event_loss) + Bernoulli(background)
    (then, for [T, C] frames and optionally, every channel moved by channel_shift)

``sensor_noise`` (any real frames, e.g. CIFAR10-DVS's normalised ones): a noisier
sensor read-out, ``x' = x + noise_std · N(0, 1)`` per element, in the units of the frames
the network sees. For both, the stream is ``samples`` shifted training samples (a seeded
draw without replacement), ``eval`` the first ``eval_samples`` shifted test samples and
``clean`` the same test samples unshifted.

``held_out_user`` (data with per-sample users, DVS Gesture): the test split's users are
never seen in training. A new user calibrates the device by performing each gesture once:
the first ``calib_frames`` frames of each of their recordings stream in (cycled, in a
seeded order per pass, until ``samples`` have arrived); the rest of every recording is
the evaluation (disjoint in time from what was learned); ``clean`` is a seeded draw of
training samples (the users the network was trained for).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

import torch

from stllr.errors import UserError

_SPLIT = {"train": 1, "test": 2}

Sample = tuple[torch.Tensor, int]


def _generator(seed: int, split: str, index: int) -> torch.Generator:
    return torch.Generator().manual_seed(
        (seed * 1_000_003 + _SPLIT[split] * 10_007 + index) % (2**63 - 1)
    )


@dataclass(frozen=True)
class ScenarioData:
    """What the adaptation stage runs: lists of ``(frames [T_i, ...], label)``."""

    stream: list[Sample]
    eval: list[Sample]
    clean: list[Sample]
    #: what ``eval`` and ``clean`` hold, for the report
    eval_name: str = "shifted test samples"
    clean_name: str = "clean test samples"


def _count(n: int, available: int) -> int:
    """``n`` samples of ``available`` (``0`` = all)."""
    return available if n == 0 else min(n, available)


class FrameShift:
    """A shift applied to every frame stack; subclasses define ``__call__`` and ``describe``."""

    seed: int

    def __call__(self, x: torch.Tensor, split: str, index: int) -> torch.Tensor:
        raise NotImplementedError

    def at(self, severity: float) -> FrameShift:
        """The same shift at ``severity`` ∈ [0, 1] of its strength (slow drift)."""
        raise NotImplementedError

    def build(self, data, section) -> ScenarioData:
        """Stream: ``section.samples`` shifted training samples (seeded, no repeats);
        eval: the first ``section.eval_samples`` test samples shifted; clean: unshifted.
        With ``section.drift`` the condition drifts in slowly: stream sample ``k`` (of
        ``n``) is shifted at severity ``(k + 1)/n`` (:meth:`at`), the evaluation at full
        strength."""
        gen = torch.Generator().manual_seed(self.seed)
        n_stream = min(section.samples, len(data.train))
        stream_idx = torch.randperm(len(data.train), generator=gen)[:n_stream].tolist()
        n_eval = _count(section.eval_samples, len(data.test))
        stream = []
        for k, i in enumerate(stream_idx):
            x, y = data.train[i]
            shift = self.at((k + 1) / n_stream) if getattr(section, "drift", False) else self
            stream.append((shift(x, "train", i), int(y)))
        test = [data.test[i] for i in range(n_eval)]
        shifted = [(self(x, "test", i), int(y)) for i, (x, y) in enumerate(test)]
        return ScenarioData(stream, shifted, [(x, int(y)) for x, y in test])


@dataclass(frozen=True)
class NoisySensor(FrameShift):
    """A sensor that loses ``event_loss`` of its events and adds ``background`` noise."""

    event_loss: float = 0.5
    background: float = 0.02
    channel_shift: int = 0
    seed: int = 7

    def at(self, severity: float) -> NoisySensor:
        return dataclasses.replace(
            self, event_loss=self.event_loss * severity, background=self.background * severity
        )

    def describe(self) -> str:
        parts = [
            f"{100 * self.event_loss:.3g}% of events lost",
            f"{100 * self.background:.3g}% background events per channel and step",
        ]
        if self.channel_shift:
            parts.append(f"channels shifted by {self.channel_shift}")
        return "noisy sensor: " + ", ".join(parts)

    def __call__(self, x: torch.Tensor, split: str, index: int) -> torch.Tensor:
        """Shifted frames ``[T, ...]`` (same shape and dtype) of sample ``index`` of ``split``;
        the frames must be event counts (non-negative integers)."""
        counts = x.double()
        if bool((counts < 0).any()) or not bool((counts == counts.round()).all()):
            raise UserError(
                "scenario noisy_sensor needs frames of event counts (non-negative integers); "
                "for normalised frames use adaptation.scenario=sensor_noise"
            )
        if self.channel_shift and x.dim() != 2:
            raise UserError(f"channel_shift needs frames [T, channels], got {list(x.shape)}")
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


@dataclass(frozen=True)
class SensorNoise(FrameShift):
    """Additive Gaussian read-out noise, ``x' = x + noise_std · N(0, 1)`` per element."""

    noise_std: float = 0.5
    seed: int = 7

    def at(self, severity: float) -> SensorNoise:
        return dataclasses.replace(self, noise_std=self.noise_std * severity)

    def describe(self) -> str:
        return f"noisier sensor read-out: Gaussian noise of std {self.noise_std:g} per value"

    def __call__(self, x: torch.Tensor, split: str, index: int) -> torch.Tensor:
        g = _generator(self.seed, split, index)
        noise = torch.randn(x.shape, generator=g, dtype=torch.float64)
        return (x.double() + self.noise_std * noise).to(x.dtype)


@dataclass(frozen=True)
class GainChange(FrameShift):
    """A sensor whose gain (or a scene whose contrast) changed by the factor ``gain``:
    event counts become ``Poisson(gain · x)`` (integers, so it stays an event sensor),
    real-valued frames ``gain · x``."""

    gain: float = 0.5
    seed: int = 7

    def at(self, severity: float) -> GainChange:
        return dataclasses.replace(self, gain=1.0 + (self.gain - 1.0) * severity)

    def describe(self) -> str:
        return f"gain change: the sensor's response scaled by {self.gain:g}"

    def __call__(self, x: torch.Tensor, split: str, index: int) -> torch.Tensor:
        v = x.double()
        counts = bool((v >= 0).all()) and bool((v == v.round()).all())
        if not counts:
            return (self.gain * v).to(x.dtype)
        g = _generator(self.seed, split, index)
        return torch.poisson(self.gain * v, generator=g).to(x.dtype)


@dataclass(frozen=True)
class HeldOutSpeaker:
    """Speakers (users) never seen in training: ``samples`` of their test recordings
    stream in (a seeded draw, at most half of them), the rest is the evaluation, and the
    test recordings of the training speakers are the original condition."""

    seed: int = 7

    def describe(self) -> str:
        return (
            "held-out speakers: speakers never seen in training, adapting on some of their "
            "recordings"
        )

    def build(self, data, section) -> ScenarioData:
        test_users = getattr(data.test, "sample_users", None)
        train_users = getattr(data.train, "sample_users", None)
        if test_users is None or train_users is None:
            raise UserError(
                "scenario held_out_speaker needs per-sample speakers in both splits (SHD, "
                f"its stand-in or DVS Gesture); this task's data ({type(data.test).__name__}) "
                "has none"
            )
        seen = set(train_users)
        new = [i for i, u in enumerate(test_users) if u not in seen]
        old = [i for i, u in enumerate(test_users) if u in seen]
        if len(new) < 2 or not old:
            raise UserError(
                "scenario held_out_speaker: the test split needs recordings of at least one "
                f"held-out and one training speaker; it has {len(new)} and {len(old)}"
            )
        gen = torch.Generator().manual_seed(self.seed)
        order = [new[j] for j in torch.randperm(len(new), generator=gen).tolist()]
        n_stream = min(section.samples, len(new) // 2)
        test = data.test
        stream = [(test[i][0], int(test[i][1])) for i in order[:n_stream]]
        rest = order[n_stream:]
        n_eval = _count(section.eval_samples, len(rest))
        evaluation = [(test[i][0], int(test[i][1])) for i in sorted(rest)[:n_eval]]
        n_clean = _count(section.eval_samples, len(old))
        clean = [(test[i][0], int(test[i][1])) for i in old[:n_clean]]
        return ScenarioData(
            stream,
            evaluation,
            clean,
            eval_name="held-out speakers' test recordings not streamed",
            clean_name="training speakers' test recordings",
        )


@dataclass(frozen=True)
class HeldOutUser:
    """A user never seen in training calibrates the device with ``calib_frames`` of each
    recording and is evaluated on the rest (module doc)."""

    calib_frames: int = 20
    users: tuple[int, ...] = ()
    seed: int = 7

    def describe(self) -> str:
        who = f"user(s) {', '.join(map(str, self.users))}" if self.users else "the test users"
        return (
            f"held-out user: {who}, never seen in training, adapt on the first "
            f"{self.calib_frames} frames of each of their recordings; evaluated on the rest"
        )

    def build(self, data, section) -> ScenarioData:
        test = data.test
        users = getattr(test, "sample_users", None)
        if users is None:
            raise UserError(
                "scenario held_out_user needs a test split with per-sample users (DVS Gesture "
                f"or its stand-in); this task's test split ({type(test).__name__}) has none"
            )
        wanted = set(self.users) if self.users else set(users)
        missing = wanted - set(users)
        if missing:
            raise UserError(
                f"adaptation.users: no test recording of user(s) {sorted(missing)}; "
                f"users of the test split: {sorted(set(users))}"
            )
        calib, rest = [], []
        for i, u in enumerate(users):
            if u not in wanted:
                continue
            x, y = test[i]
            if x.shape[0] > self.calib_frames:  # a recording too short to split is left out
                calib.append((x[: self.calib_frames], int(y)))
                rest.append((x[self.calib_frames :], int(y)))
        if not calib:
            raise UserError(
                f"adaptation.calib_frames = {self.calib_frames}: no recording of the held-out "
                "users is longer than that; lower it"
            )
        gen = torch.Generator().manual_seed(self.seed)
        stream = []
        while len(stream) < section.samples:  # every pass in a new seeded order
            for j in torch.randperm(len(calib), generator=gen).tolist():
                stream.append(calib[j])
        stream = stream[: section.samples]
        n_eval = _count(section.eval_samples, len(rest))
        n_clean = min(n_eval, len(data.train))
        clean_idx = torch.randperm(len(data.train), generator=gen)[:n_clean].tolist()
        clean = [(data.train[i][0], int(data.train[i][1])) for i in clean_idx]
        return ScenarioData(
            stream,
            rest[:n_eval],
            clean,
            eval_name="held-out users' recordings after the calibration frames",
            clean_name="training users' samples",
        )


#: scenario name → builder from the ``[adaptation]`` config section
SCENARIOS: dict[str, Callable] = {
    "noisy_sensor": lambda a: NoisySensor(a.event_loss, a.background, a.channel_shift, a.seed),
    "sensor_noise": lambda a: SensorNoise(a.noise_std, a.seed),
    "held_out_user": lambda a: HeldOutUser(a.calib_frames, tuple(a.users), a.seed),
    "gain_change": lambda a: GainChange(a.gain, a.seed),
    "held_out_speaker": lambda a: HeldOutSpeaker(a.seed),
}


def make_shift(section):
    """The scenario of an :class:`~pipeline.config.AdaptationSection` (one-line error if
    unknown)."""
    if section.scenario not in SCENARIOS:
        raise UserError(
            f"unknown adaptation scenario {section.scenario!r}; expected one of {sorted(SCENARIOS)}"
        )
    return SCENARIOS[section.scenario](section)
