"""Data of the first-spike coding tasks ``ntidigits``, ``gesture32``, ``dvsplane`` and their
``-standin`` twins (docs/data.md, "First-spike coding datasets"), registered in
:mod:`stllr.tasks`: each loader takes the config, the dataset root and whether it is the
stand-in, and returns :class:`FirstSpikeSplits`.

Frames are fixed-length (:mod:`stllr.data.fs_frames`): ``n_time_bins`` frames of
``frame_us`` µs (0 = the reference repository's setting below), then ``empty_bins`` zero
frames.

==========  =============================================  =========  ====  =============
task        files under ``data``                           dt         T     frame
==========  =============================================  =========  ====  =============
ntidigits   NTIDIGITS18/n-tidigits-single.hdf5 (or         5 ms       250   [64]
            NTIDIGITS18/n-tidigits.hdf5, tonic's layout)
gesture32   DVSGesture32/DVS-Gesture-{train,test}10.hdf5   10 ms      120   [2, 32, 32]
dvsplane    DVSPlane/DVSPlane-{train,test}.hdf5            2 ms       135   [2, 60, 76]
==========  =============================================  =========  ====  =============
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

from stllr.config import ExperimentConfig
from stllr.data import fs_h5
from stllr.data.fs_frames import BinnedDataset, BinSpec
from stllr.data.standin_first_spike import (
    DVSPLANE_FILES,
    GESTURE32_FILES,
    NTidigitsStandinConfig,
    ensure_dvsplane_standin,
    ensure_gesture32_standin,
    ensure_ntidigits_standin,
)


class FirstSpikeSplits(NamedTuple):
    """What :class:`stllr.tasks.TaskData` is built from."""

    train: BinnedDataset
    test: BinnedDataset
    input_shape: tuple[int, ...]
    num_classes: int
    description: str


def _spec(cfg: ExperimentConfig, dt_us: int, steps: int, shape, ds: int, align) -> BinSpec:
    return BinSpec(
        cfg.n_time_bins or steps, cfg.frame_us or dt_us, tuple(shape), ds, cfg.empty_bins, align
    )


def _missing(files: list[Path], layout: str) -> None:
    missing = [str(p) for p in files if not p.is_file()]
    if missing:
        raise FileNotFoundError(
            f"files not found: {', '.join(missing)}. Expected layout: {layout} "
            "(nothing is downloaded)"
        )


def _splits(train, test, spec: BinSpec, classes: int, what: str) -> FirstSpikeSplits:
    description = f"{what} ({len(train)} train / {len(test)} test, T={spec.steps}+"
    description += f"{spec.empty} × {spec.dt_us} µs)"
    return FirstSpikeSplits(
        BinnedDataset(train, spec), BinnedDataset(test, spec), spec.shape, classes, description
    )


def ntidigits_splits(cfg: ExperimentConfig, root: Path, standin: bool) -> FirstSpikeSplits:
    """N-TIDIGITS from ``root/NTIDIGITS18``: the single-digit file if present, else tonic's."""
    if standin:
        size = NTidigitsStandinConfig(cfg.standin_train or 330, cfg.standin_test or 110)
        ensure_ntidigits_standin(root, size)
    folder = root / "NTIDIGITS18"
    single, original = folder / "n-tidigits-single.hdf5", folder / "n-tidigits.hdf5"
    if single.is_file():
        train, test = (fs_h5.read_ntidigits_single(single, s) for s in ("train", "test"))
    else:
        _missing([original], f"{folder}/n-tidigits-single.hdf5 or {original}")
        train, test = (fs_h5.read_ntidigits_tonic(original, s) for s in ("train", "test"))
    spec = _spec(cfg, 5000, 250, (64,), 1, "slice_then_shift")
    what = "N-TIDIGITS stand-in" if standin else "N-TIDIGITS"
    return _splits(train, test, spec, 11, f"{what} in {folder}")


def gesture32_splits(cfg: ExperimentConfig, root: Path, standin: bool) -> FirstSpikeSplits:
    """DVS Gesture 32×32 from ``root/DVSGesture32``."""
    if standin:
        ensure_gesture32_standin(root)
    folder = root / "DVSGesture32"
    files = [folder / n for n in GESTURE32_FILES]
    _missing(files, f"{folder}/{{{','.join(GESTURE32_FILES)}}}")
    train = fs_h5.read_gesture32(files[0], "train")
    test = fs_h5.read_gesture32(files[1], "test")
    spec = _spec(cfg, 10_000, 120, (2, 32, 32), 4, "slice_then_shift")
    what = "DVS Gesture 32×32 stand-in" if standin else "DVS Gesture 32×32"
    return _splits(train, test, spec, 10, f"{what} in {folder}")


def dvsplane_splits(cfg: ExperimentConfig, root: Path, standin: bool) -> FirstSpikeSplits:
    """DVSPlane from ``root/DVSPlane``."""
    if standin:
        ensure_dvsplane_standin(root)
    folder = root / "DVSPlane"
    files = [folder / n for n in DVSPLANE_FILES]
    _missing(files, f"{folder}/{{{','.join(DVSPLANE_FILES)}}}")
    train, test = (fs_h5.read_dvsplane(p) for p in files)
    spec = _spec(cfg, 2000, 135, (2, 60, 76), 4, "shift_then_slice")
    what = "DVSPlane stand-in" if standin else "DVSPlane"
    return _splits(train, test, spec, 4, f"{what} in {folder}")


#: task base name → its loader
LOADERS = {
    "ntidigits": ntidigits_splits,
    "gesture32": gesture32_splits,
    "dvsplane": dvsplane_splits,
}
