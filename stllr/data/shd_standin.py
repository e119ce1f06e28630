"""A generated, deterministic stand-in for the Spiking Heidelberg Digits (SHD) data set.

The real SHD files cannot be downloaded in CI, so this module writes files with the same
shape and on-disk layout: 700 cochlea channels, 20 classes, recordings of at most
``duration_s`` seconds, stored as ``shd_train.h5`` / ``shd_test.h5``.

HDF5 layout (the keys ``tonic.datasets.SHD`` reads and the real files have)::

    spikes/times    [N] variable-length float32, spike times in seconds, ascending
                        (the real files most likely store float16, i.e. ~0.5 ms steps near
                        1 s; that was not checked here. float32 keeps the generated times)
    spikes/units    [N] variable-length uint16, channel index 0..num_channels-1; spikes
                        with equal times are ordered by unit
    labels          [N] uint16, class index 0..num_classes-1 (balanced, shuffled)
    extra/keys      [num_classes] byte strings, class names b"standin-0", b"standin-1", ...
    extra/speaker   [N] uint16, generated speaker id

The root attribute ``stllr_standin`` holds the generation parameters as JSON, so a caller
can tell a stand-in file (and which one) from a real SHD file. The real files also carry
``extra/meta_info``; it is not generated.

How a recording is made (all channel numbers are in cochlea channels, times in seconds):

* Each class is a *spectro-temporal template*: ``formants_per_class`` "formants", each a
  channel trajectory (start channel → end channel with a bend) that is active for an
  interval of the word and emits spikes in a Gaussian band around the trajectory.
  Formant ``k`` lives in the ``k``-th of overlapping low/mid/high channel ranges.
* Classes come in groups of ``group_size`` (pairs by default) that share their word
  length and first ``shared_formants`` formants exactly and differ only in the later ones.
* Every sample is spoken by a speaker: a global channel shift (tens of channels), a tempo
  (time stretch, 0.8-1.25 in total with the per-sample stretch) and a loudness gain.
  Per sample there is a further channel shift, a time offset, per-spike time and channel
  jitter, randomly dropped formants and uniform background spikes.
* Speakers ``0 .. num_speakers - num_heldout_speakers - 1`` record the training split; the
  test split mixes those with the held-out speakers (like SHD, where two of the twelve
  speakers appear only in the test set).

Determinism: everything is drawn from ``numpy.random.default_rng`` streams keyed by
``(seed, stream[, index])``, so the same arguments give identical arrays (and, with the same
h5py/HDF5 build, byte-identical files) and a different seed gives different data.
"""

from __future__ import annotations

import dataclasses
import json
import os
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from stllr.errors import UserError

TRAIN_FILE = "shd_train.h5"
TEST_FILE = "shd_test.h5"
ATTR_NAME = "stllr_standin"
FORMAT_VERSION = 1
PROGRESS_MIN_SAMPLES = 5000

_STREAM_TEMPLATES = 0
_STREAM_SPEAKERS = 1
_SPLIT_STREAM = {"train": 2, "test": 3}


@dataclass(frozen=True)
class ShdStandinConfig:
    """Difficulty knobs of the stand-in. Channel quantities are in cochlea channels (of 700;
    they are used as given for other ``num_channels``), rates in Hz, times in seconds.

    Attributes:
        formants_per_class: formants (spike bands) per class template.
        group_size: classes per group; a group shares its first ``shared_formants``.
        shared_formants: how many leading formants the classes of a group share exactly.
        formant_rate_hz: spikes per second of one formant summed over its band (at gain 1).
        formant_width: standard deviation of a formant's channel band.
        word_duration_s: range of a group's word length before the speaker's stretch.
        speaker_shift_max: speakers' global channel shifts are spread over ``±`` this.
        sample_shift_std: standard deviation of the extra per-sample channel shift.
        stretch_range: total time stretch (speaker tempo × sample tempo) is clipped to this.
        speaker_tempo_range: range of the speakers' tempos (spread log-uniformly).
        sample_tempo_range: range of the per-sample tempo (log-uniform).
        speaker_gain_range: range of the speakers' rate gains (spread uniformly).
        onset_range_s: range of the word onset (uniform).
        tail_range_s: range of the silence (background spikes only) after the word; the
            recording ends there or at ``duration_s``, whichever is first.
        time_jitter_s: standard deviation of the per-spike time jitter.
        channel_jitter: standard deviation of the per-spike channel jitter (on top of the band).
        drop_prob: probability that one formant is missing from a sample (one always stays).
        noise_rate_hz: background spikes per second per channel.
        num_speakers: speakers in total.
        num_heldout_speakers: speakers that only appear in the test split.
        test_heldout_fraction: fraction of test samples spoken by held-out speakers.
    """

    formants_per_class: int = 3
    group_size: int = 2
    shared_formants: int = 1
    formant_rate_hz: float = 5000.0
    formant_width: float = 8.0
    word_duration_s: tuple[float, float] = (0.4, 0.7)
    speaker_shift_max: float = 40.0
    sample_shift_std: float = 6.0
    stretch_range: tuple[float, float] = (0.8, 1.25)
    speaker_tempo_range: tuple[float, float] = (0.85, 1.15)
    sample_tempo_range: tuple[float, float] = (0.9, 1.1)
    speaker_gain_range: tuple[float, float] = (0.75, 1.25)
    onset_range_s: tuple[float, float] = (0.01, 0.15)
    tail_range_s: tuple[float, float] = (0.02, 0.1)
    time_jitter_s: float = 0.003
    channel_jitter: float = 2.0
    drop_prob: float = 0.15
    noise_rate_hz: float = 3.0
    num_speakers: int = 12
    num_heldout_speakers: int = 2
    test_heldout_fraction: float = 0.5

    def __post_init__(self) -> None:
        _check_config(self)


@dataclass(frozen=True)
class Formant:
    """One band of a class template (channels and word-relative times in [0, 1])."""

    start_channel: float
    end_channel: float
    bend: float
    onset: float
    offset: float
    gain: float


@dataclass(frozen=True)
class ClassTemplate:
    """A class: its formants and its word length in seconds before stretching."""

    formants: tuple[Formant, ...]
    word_duration_s: float


@dataclass(frozen=True)
class Speaker:
    """Speaker traits: channel shift, tempo (time stretch factor) and rate gain."""

    shift: float
    tempo: float
    gain: float


def _check_config(cfg: ShdStandinConfig) -> None:
    def bad(field: str, expected: str) -> ValueError:
        value = getattr(cfg, field)
        return ValueError(f"ShdStandinConfig.{field} must be {expected}, got {value!r}")

    if cfg.formants_per_class < 1:
        raise bad("formants_per_class", "≥ 1")
    if cfg.group_size < 1:
        raise bad("group_size", "≥ 1")
    if not 0 <= cfg.shared_formants < cfg.formants_per_class:
        raise bad("shared_formants", "in [0, formants_per_class)")
    for name in ("formant_rate_hz", "formant_width"):
        if not getattr(cfg, name) > 0:
            raise bad(name, "> 0")
    for name in (
        "speaker_shift_max",
        "sample_shift_std",
        "time_jitter_s",
        "channel_jitter",
        "noise_rate_hz",
    ):
        if not getattr(cfg, name) >= 0:
            raise bad(name, "≥ 0")
    for name in (
        "word_duration_s",
        "stretch_range",
        "speaker_tempo_range",
        "sample_tempo_range",
        "speaker_gain_range",
    ):
        lo, hi = getattr(cfg, name)
        if not 0 < lo <= hi:
            raise bad(name, "a (low, high) pair with 0 < low ≤ high")
    for name in ("onset_range_s", "tail_range_s"):
        lo, hi = getattr(cfg, name)
        if not 0 <= lo <= hi:
            raise bad(name, "a (low, high) pair with 0 ≤ low ≤ high")
    if not 0 <= cfg.drop_prob < 1:
        raise bad("drop_prob", "in [0, 1)")
    if not 1 <= cfg.num_heldout_speakers < cfg.num_speakers:
        raise bad("num_heldout_speakers", "in [1, num_speakers)")
    if not 0 <= cfg.test_heldout_fraction <= 1:
        raise bad("test_heldout_fraction", "in [0, 1]")


def _rng(seed: int, *keys: int) -> np.random.Generator:
    return np.random.default_rng([seed, *keys])


def _formant_band(k: int, num_formants: int, num_channels: int) -> tuple[float, float]:
    """Channel range of formant ``k``: overlapping bands from low to high channels."""
    width = 0.86 / (num_formants + 1) * 2
    lo = 0.07 + k * width / 2
    return lo * num_channels, (lo + width) * num_channels


def _draw_formant(
    rng: np.random.Generator, k: int, cfg: ShdStandinConfig, num_channels: int
) -> Formant:
    lo, hi = _formant_band(k, cfg.formants_per_class, num_channels)
    start, end = rng.uniform(lo, hi, size=2)
    onset = rng.uniform(0.0, 0.35)
    offset = min(1.0, onset + rng.uniform(0.35, 0.65))
    return Formant(
        start_channel=float(start),
        end_channel=float(end),
        bend=float(rng.uniform(-0.08, 0.08) * num_channels),
        onset=float(onset),
        offset=float(offset),
        gain=float(rng.uniform(0.7, 1.3)),
    )


def make_templates(
    seed: int, num_classes: int, num_channels: int, cfg: ShdStandinConfig
) -> list[ClassTemplate]:
    """The ``num_classes`` class templates. Classes of a group share the word length and
    the leading ``cfg.shared_formants`` formants; their later formants are drawn per class."""
    rng = _rng(seed, _STREAM_TEMPLATES)
    templates: list[ClassTemplate] = []
    shared: tuple[Formant, ...] = ()
    duration = 0.0
    for c in range(num_classes):
        if c % cfg.group_size == 0:
            duration = float(rng.uniform(*cfg.word_duration_s))
            shared = tuple(
                _draw_formant(rng, k, cfg, num_channels) for k in range(cfg.shared_formants)
            )
        own = tuple(
            _draw_formant(rng, k, cfg, num_channels)
            for k in range(cfg.shared_formants, cfg.formants_per_class)
        )
        templates.append(ClassTemplate(formants=shared + own, word_duration_s=duration))
    return templates


def _log_uniform(rng: np.random.Generator, bounds: tuple[float, float]) -> float:
    return float(np.exp(rng.uniform(np.log(bounds[0]), np.log(bounds[1]))))


def _stratified(rng: np.random.Generator, n: int, low: float, high: float) -> np.ndarray:
    """``n`` values, one uniform draw in each of ``n`` equal strata of ``[low, high]``,
    in random order: as random as uniform draws but never all bunched together."""
    u = (rng.permutation(n) + rng.random(n)) / n
    return low + (high - low) * u


def make_speakers(seed: int, cfg: ShdStandinConfig) -> list[Speaker]:
    """``cfg.num_speakers`` speakers (the last ``num_heldout_speakers`` are test-only).

    Shifts, log-tempos and gains are stratified over their ranges (see :func:`_stratified`).
    """
    rng = _rng(seed, _STREAM_SPEAKERS)
    n = cfg.num_speakers
    shifts = _stratified(rng, n, -cfg.speaker_shift_max, cfg.speaker_shift_max)
    tempos = np.exp(_stratified(rng, n, *np.log(cfg.speaker_tempo_range)))
    gains = _stratified(rng, n, *cfg.speaker_gain_range)
    return [
        Speaker(shift=float(s), tempo=float(t), gain=float(g))
        for s, t, g in zip(shifts, tempos, gains, strict=True)
    ]


def _formant_spikes(
    rng: np.random.Generator,
    formant: Formant,
    word_s: float,
    onset_s: float,
    shift: float,
    gain: float,
    cfg: ShdStandinConfig,
) -> tuple[np.ndarray, np.ndarray]:
    """Spike times (s, float64) and channels (float) of one formant in one sample."""
    active_s = (formant.offset - formant.onset) * word_s
    n = rng.poisson(cfg.formant_rate_hz * formant.gain * gain * active_s)
    v = rng.beta(1.5, 1.5, size=n)  # position within the formant; fades in and out
    times = onset_s + (formant.onset + v * (formant.offset - formant.onset)) * word_s
    times = times + rng.normal(0.0, cfg.time_jitter_s, size=n)
    centre = (
        formant.start_channel
        + (formant.end_channel - formant.start_channel) * v
        + formant.bend * np.sin(np.pi * v)
    )
    spread = np.hypot(cfg.formant_width, cfg.channel_jitter)
    channels = centre + shift + rng.normal(0.0, spread, size=n)
    return times, channels


def make_sample(
    rng: np.random.Generator,
    template: ClassTemplate,
    speaker: Speaker,
    cfg: ShdStandinConfig,
    num_channels: int,
    duration_s: float,
) -> tuple[np.ndarray, np.ndarray]:
    """One recording: ``(times [S] float32 s ascending, units [S] uint16)``."""
    stretch = float(
        np.clip(speaker.tempo * _log_uniform(rng, cfg.sample_tempo_range), *cfg.stretch_range)
    )
    word_s = template.word_duration_s * stretch
    onset_s = float(rng.uniform(*cfg.onset_range_s))
    shift = speaker.shift + float(rng.normal(0.0, cfg.sample_shift_std))
    keep = rng.random(len(template.formants)) >= cfg.drop_prob
    if not keep.any():
        keep[rng.integers(len(template.formants))] = True
    parts = [
        _formant_spikes(rng, f, word_s, onset_s, shift, speaker.gain, cfg)
        for f, kept in zip(template.formants, keep, strict=True)
        if kept
    ]
    end_s = min(duration_s, onset_s + word_s + float(rng.uniform(*cfg.tail_range_s)))
    n_noise = rng.poisson(cfg.noise_rate_hz * num_channels * end_s)
    parts.append(
        (rng.uniform(0.0, end_s, size=n_noise), rng.uniform(0, num_channels, size=n_noise))
    )
    times = np.concatenate([p[0] for p in parts]).astype(np.float32)
    channels = np.floor(np.concatenate([p[1] for p in parts]))
    # Compare after rounding to float32 so that no stored time reaches ``end_s``.
    inside = (times >= 0) & (times < end_s) & (channels >= 0) & (channels < num_channels)
    times = times[inside]
    units = channels[inside].astype(np.uint16)
    order = np.lexsort((units, times))
    return times[order], units[order]


def split_speakers(
    rng: np.random.Generator, n: int, split: str, cfg: ShdStandinConfig
) -> np.ndarray:
    """Speaker id per sample ``[n]``: train speakers only, or a held-out mix for ``test``."""
    n_train_speakers = cfg.num_speakers - cfg.num_heldout_speakers
    seen = rng.integers(0, n_train_speakers, size=n)
    if split == "train":
        return seen
    heldout = n_train_speakers + rng.integers(0, cfg.num_heldout_speakers, size=n)
    return np.where(rng.random(n) < cfg.test_heldout_fraction, heldout, seen)


def balanced_labels(rng: np.random.Generator, n: int, num_classes: int) -> np.ndarray:
    """``[n]`` labels, each class ``n // num_classes`` or one more times, shuffled."""
    return rng.permutation(np.arange(n) % num_classes)


def generate_split(
    split: str,
    n: int,
    seed: int,
    num_classes: int,
    num_channels: int,
    duration_s: float,
    cfg: ShdStandinConfig,
    progress: bool = False,
) -> tuple[list[np.ndarray], list[np.ndarray], np.ndarray, np.ndarray]:
    """Recordings of one split: ``(times, units, labels [n], speakers [n])``."""
    templates = make_templates(seed, num_classes, num_channels, cfg)
    speakers = make_speakers(seed, cfg)
    stream = _SPLIT_STREAM[split]
    meta_rng = _rng(seed, stream, 0)
    labels = balanced_labels(meta_rng, n, num_classes)
    speaker_ids = split_speakers(meta_rng, n, split, cfg)
    indices: Sequence[int] = range(n)
    if progress:
        from stllr.progress import bar as progress_bar

        indices = progress_bar(indices, desc=f"SHD stand-in ({split})", unit="sample")
    times, units = [], []
    for i in indices:
        rng = _rng(seed, stream, 1, i)
        t, u = make_sample(
            rng, templates[labels[i]], speakers[speaker_ids[i]], cfg, num_channels, duration_s
        )
        times.append(t)
        units.append(u)
    return times, units, labels.astype(np.uint16), speaker_ids.astype(np.uint16)


def _vlen_column(arrays: list[np.ndarray]) -> np.ndarray:
    """An object array ``[N]`` of 1-d arrays, the form h5py writes as a vlen dataset."""
    column = np.empty(len(arrays), dtype=object)
    for i, a in enumerate(arrays):
        column[i] = a
    return column


def write_shd_file(
    path: Path,
    times: list[np.ndarray],
    units: list[np.ndarray],
    labels: np.ndarray,
    speakers: np.ndarray,
    class_names: list[bytes],
    attrs: dict,
) -> None:
    """Write one file in the SHD layout, atomically (temp file in the folder + ``os.replace``)."""
    tmp = path.parent / f".{path.name}.{os.getpid()}.{uuid.uuid4().hex}.tmp"
    try:
        with h5py.File(tmp, "w") as f:
            f.create_dataset(
                "spikes/times",
                data=_vlen_column(times),
                dtype=h5py.vlen_dtype(np.float32),
            )
            f.create_dataset(
                "spikes/units",
                data=_vlen_column(units),
                dtype=h5py.vlen_dtype(np.uint16),
            )
            f.create_dataset("labels", data=labels.astype(np.uint16))
            f.create_dataset("extra/keys", data=np.array(class_names, dtype=np.bytes_))
            f.create_dataset("extra/speaker", data=speakers.astype(np.uint16))
            f.attrs[ATTR_NAME] = json.dumps(attrs, sort_keys=True)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def standin_attrs(
    split: str,
    n: int,
    seed: int,
    num_classes: int,
    num_channels: int,
    duration_s: float,
    cfg: ShdStandinConfig,
) -> dict:
    """The generation parameters stored (as JSON) in the file's ``stllr_standin`` attribute."""
    return {
        "version": FORMAT_VERSION,
        "split": split,
        "n": n,
        "seed": seed,
        "num_classes": num_classes,
        "num_channels": num_channels,
        "duration_s": duration_s,
        "config": dataclasses.asdict(cfg),
    }


def read_standin_attrs(path: Path) -> dict | None:
    """The stored generation parameters of a stand-in file, or ``None`` if it has none."""
    try:
        f = h5py.File(path, "r")
    except OSError as err:
        raise UserError(f"{path}: cannot be opened as an HDF5 file ({err})") from err
    with f:
        raw = f.attrs.get(ATTR_NAME)
    if raw is None:
        return None
    return json.loads(raw)


def _check_args(n_train: int, n_test: int, num_classes: int, num_channels: int, duration_s):
    for name, value, low in (
        ("n_train", n_train, 1),
        ("n_test", n_test, 1),
        ("num_classes", num_classes, 1),
        ("num_channels", num_channels, 1),
    ):
        if not isinstance(value, int) or isinstance(value, bool) or value < low:
            raise UserError(f"{name} must be an integer ≥ {low}, got {value!r}")
    if num_channels > 65536:
        raise UserError(f"num_channels must be ≤ 65536 (units are uint16), got {num_channels}")
    if num_classes > 65536:
        raise UserError(f"num_classes must be ≤ 65536 (labels are uint16), got {num_classes}")
    if not duration_s > 0:
        raise UserError(f"duration_s must be > 0 seconds, got {duration_s!r}")


def generate_shd_standin(
    folder: str | os.PathLike,
    n_train: int = 1000,
    n_test: int = 400,
    seed: int = 0,
    num_classes: int = 20,
    num_channels: int = 700,
    duration_s: float = 1.0,
    config: ShdStandinConfig | None = None,
    progress: bool | None = None,
) -> tuple[Path, Path]:
    """Write ``shd_train.h5`` and ``shd_test.h5`` (SHD layout, see the module docstring).

    Args:
        folder: output folder (created if missing). Existing files are replaced atomically.
        n_train, n_test: recordings per split.
        seed: generation seed; the same arguments give identical data.
        num_classes, num_channels: classes and cochlea channels (SHD: 20 and 700).
        duration_s: maximum recording length in seconds; spikes are in ``[0, duration_s)``.
        config: difficulty knobs, :class:`ShdStandinConfig` defaults if ``None``.
        progress: show a tqdm bar; ``None`` shows it when there are ≥ 5000 samples.

    Returns:
        ``(train_path, test_path)``.
    """
    cfg = ShdStandinConfig() if config is None else config
    _check_args(n_train, n_test, num_classes, num_channels, duration_s)
    if progress is None:
        progress = n_train + n_test >= PROGRESS_MIN_SAMPLES
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    class_names = [f"standin-{c}".encode("ascii") for c in range(num_classes)]
    paths = []
    for split, n, name in (("train", n_train, TRAIN_FILE), ("test", n_test, TEST_FILE)):
        args = (split, n, seed, num_classes, num_channels, duration_s, cfg)
        times, units, labels, speakers = generate_split(*args, progress=progress)
        path = out / name
        write_shd_file(path, times, units, labels, speakers, class_names, standin_attrs(*args))
        paths.append(path)
    return paths[0], paths[1]
