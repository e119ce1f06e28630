"""The flow tasks ``mvsec`` and ``mvsec-standin``: which sequences, which windows
(docs/flow.md §2).

``mvsec`` reads the real files under ``data`` (never downloads): training on
``outdoor_day2`` (skipping the first and last 100 images), evaluation on
``indoor_flying1/2/3`` and ``outdoor_day1`` (skipping 20 at each end), the windows of
Spike-FlowNet. ``mvsec-standin`` writes the synthetic sequences of the same names
(:mod:`stllr.flow.standin`) under ``data`` (default: the cache) and reads them with the
same code, skipping 2 images at each end (its sequences are short).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from stllr.config import ExperimentConfig
from stllr.errors import UserError
from stllr.flow.dataset import ConcatWindows, WindowDataset
from stllr.flow.encoding import ENCODINGS
from stllr.flow.mvsec_files import expected_layout, find_sequence

TRAIN_SEQUENCES = ("outdoor_day2",)
TEST_SEQUENCES = ("indoor_flying1", "indoor_flying2", "indoor_flying3", "outdoor_day1")
MVSEC_SKIP = {"train": 100, "test": 20}
STANDIN_SKIP = {"train": 2, "test": 2}


@dataclass(frozen=True)
class FlowTaskData:
    """Training windows, the evaluation sequences (name → windows) and the input shape
    ``(C, crop, crop)`` of one time step."""

    train: ConcatWindows
    test: dict[str, WindowDataset]
    input_shape: tuple[int, int, int]
    steps: int
    description: str
    #: the model's outputs: the two flow components (x, y) (``build_model``'s num_classes)
    num_classes: int = 2


def check_flow_config(cfg: ExperimentConfig) -> None:
    """One-line errors for flow settings no run can use."""
    if cfg.flow_encoding not in ENCODINGS:
        raise UserError(
            f"config flow_encoding must be one of {ENCODINGS}, got {cfg.flow_encoding!r}"
        )
    if cfg.flow_dt < 1 or cfg.flow_bins < 1:
        raise UserError(
            f"config flow_dt and flow_bins must be ≥ 1, got {cfg.flow_dt}, {cfg.flow_bins}"
        )
    if cfg.flow_encoding == "4x5" and (cfg.flow_dt * cfg.flow_bins) % 2:
        raise UserError("config flow_encoding '4x5' needs an even number of bins per window")
    if cfg.flow_crop < 16 or cfg.flow_crop % 16:
        raise UserError(
            "config flow_crop must be a multiple of 16 (FSFN halves it 4 times), "
            f"got {cfg.flow_crop}"
        )
    if cfg.flow_loss not in ("photometric", "supervised"):
        raise UserError(
            f"config flow_loss must be 'photometric' or 'supervised', got {cfg.flow_loss!r}"
        )
    if cfg.flow_readout not in ("sum", "last"):
        raise UserError(f"config flow_readout must be 'sum' or 'last', got {cfg.flow_readout!r}")


def input_channels(cfg: ExperimentConfig) -> int:
    return 2 if cfg.flow_encoding == "2x10" else 4


def steps_per_window(cfg: ExperimentConfig) -> int:
    t = cfg.flow_dt * cfg.flow_bins
    return t if cfg.flow_encoding == "2x10" else t // 2


def load_flow_task(cfg: ExperimentConfig, standin: bool, cache_root: Path) -> FlowTaskData:
    check_flow_config(cfg)
    if standin:
        from stllr.flow.standin import STANDIN_SEQUENCES, ensure_standin, specs_digest

        # the default folder is named by the specs' digest: changed defaults never reuse
        # recordings written by an older generator
        default = Path(cache_root) / "mvsec_standin" / specs_digest(STANDIN_SEQUENCES)
        root = Path(cfg.data) if cfg.data else default
        folder = ensure_standin(root)[TRAIN_SEQUENCES[0]].data.parent
        skip = STANDIN_SKIP
        what = f"MVSEC-format stand-in in {folder}"
    else:
        if not cfg.data:
            raise UserError(
                "task 'mvsec' reads real files: give data=<folder>, expected "
                + expected_layout("<folder>", "outdoor_day2")
                + " and the same for indoor_flying1/2/3, outdoor_day1 (or use task=mvsec-standin)"
            )
        folder = Path(cfg.data)
        skip = MVSEC_SKIP
        what = f"MVSEC in {folder}"
    cache = Path(cache_root) / "mvsec_counts"
    kw = dict(dt=cfg.flow_dt, bins=cfg.flow_bins, encoding=cfg.flow_encoding, crop=cfg.flow_crop)
    train = ConcatWindows(
        [
            WindowDataset(
                find_sequence(folder, n), cache, skip=skip["train"], train=True, seed=cfg.seed, **kw
            )
            for n in TRAIN_SEQUENCES
        ]
    )
    test = {
        n: WindowDataset(find_sequence(folder, n), cache, skip=skip["test"], **kw)
        for n in TEST_SEQUENCES
    }
    shape = (input_channels(cfg), cfg.flow_crop, cfg.flow_crop)
    t = steps_per_window(cfg)
    desc = (
        f"{what}: train {'+'.join(TRAIN_SEQUENCES)} ({len(train)} windows), test "
        f"{', '.join(f'{n} ({len(d)})' for n, d in test.items())}; dt={cfg.flow_dt}, "
        f"T={t}×{shape[0]} channels, crop {cfg.flow_crop}"
    )
    return FlowTaskData(train, test, shape, t, desc)
