"""Tasks of the first-spike coding datasets: ``ntidigits``, ``gesture32``, ``dvsplane`` and
their ``-standin`` twins (docs/data.md, "First-spike coding datasets").

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

from stllr.config import ExperimentConfig
from stllr.data.fs_frames import BinnedDataset, BinSpec
from stllr.tasks import CACHE_DIR, TaskData, register_task


def _spec(cfg: ExperimentConfig, dt_us: int, steps: int, shape, ds: int, align) -> BinSpec:
    return BinSpec(
        cfg.n_time_bins or steps, cfg.frame_us or dt_us, tuple(shape), ds, cfg.empty_bins, align
    )


def _root(cfg: ExperimentConfig, task: str, standin: bool) -> Path:
    if standin:
        return Path(cfg.data) if cfg.data else CACHE_DIR / "standins"
    if not cfg.data:
        from stllr.errors import UserError

        raise UserError(
            f"task {task!r} reads real files: give data=<dataset root> "
            f"(or use task={task}-standin for the built-in stand-in)"
        )
    return Path(cfg.data)


def _missing(files: list[Path], layout: str) -> None:
    missing = [str(p) for p in files if not p.is_file()]
    if missing:
        raise FileNotFoundError(
            f"files not found: {', '.join(missing)}. Expected layout: {layout} "
            "(nothing is downloaded)"
        )


def _task(cfg, train, test, spec: BinSpec, classes: int, what: str) -> TaskData:
    description = f"{what} ({len(train)} train / {len(test)} test, T={spec.steps}+"
    description += f"{spec.empty} × {spec.dt_us} µs)"
    return TaskData(
        BinnedDataset(train, spec), BinnedDataset(test, spec), spec.shape, classes, description
    )


def _ntidigits(standin: bool):
    def load(cfg: ExperimentConfig) -> TaskData:
        from stllr.data import fs_h5
        from stllr.data.standin_first_spike import (
            NTidigitsStandinConfig,
            ensure_ntidigits_standin,
        )

        root = _root(cfg, "ntidigits", standin)
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
        return _task(cfg, train, test, spec, 11, f"{what} in {folder}")

    return load


def _gesture32(standin: bool):
    def load(cfg: ExperimentConfig) -> TaskData:
        from stllr.data import fs_h5
        from stllr.data.standin_first_spike import GESTURE32_FILES, ensure_gesture32_standin

        root = _root(cfg, "gesture32", standin)
        if standin:
            ensure_gesture32_standin(root)
        folder = root / "DVSGesture32"
        files = [folder / n for n in GESTURE32_FILES]
        _missing(files, f"{folder}/{{{','.join(GESTURE32_FILES)}}}")
        train = fs_h5.read_gesture32(files[0], "train")
        test = fs_h5.read_gesture32(files[1], "test")
        spec = _spec(cfg, 10_000, 120, (2, 32, 32), 4, "slice_then_shift")
        what = "DVS Gesture 32×32 stand-in" if standin else "DVS Gesture 32×32"
        return _task(cfg, train, test, spec, 10, f"{what} in {folder}")

    return load


def _dvsplane(standin: bool):
    def load(cfg: ExperimentConfig) -> TaskData:
        from stllr.data import fs_h5
        from stllr.data.standin_first_spike import DVSPLANE_FILES, ensure_dvsplane_standin

        root = _root(cfg, "dvsplane", standin)
        if standin:
            ensure_dvsplane_standin(root)
        folder = root / "DVSPlane"
        files = [folder / n for n in DVSPLANE_FILES]
        _missing(files, f"{folder}/{{{','.join(DVSPLANE_FILES)}}}")
        train, test = (fs_h5.read_dvsplane(p) for p in files)
        spec = _spec(cfg, 2000, 135, (2, 60, 76), 4, "shift_then_slice")
        what = "DVSPlane stand-in" if standin else "DVSPlane"
        return _task(cfg, train, test, spec, 4, f"{what} in {folder}")

    return load


for _standin in (False, True):
    _suffix = "-standin" if _standin else ""
    register_task("ntidigits" + _suffix, _ntidigits(_standin))
    register_task("gesture32" + _suffix, _gesture32(_standin))
    register_task("dvsplane" + _suffix, _dvsplane(_standin))
