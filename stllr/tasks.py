"""Tasks: where a config's ``task`` finds its data, and the shape it has.

Each task returns a :class:`TaskData` (train and test datasets of
``(frames [T_i, *input_shape], label)`` plus shapes). ``*-standin`` tasks
generate their data deterministically on first use under the cache folder;
real tasks read ``cfg.data`` and never download. New tasks register with
:func:`register_task`.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from stllr.config import ExperimentConfig
from stllr.errors import UserError
from stllr.trainer import Dataset, ListDataset

CACHE_DIR = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "stllr"


@dataclass(frozen=True)
class TaskData:
    train: Dataset
    test: Dataset
    input_shape: tuple[int, ...]
    num_classes: int
    description: str


Loader = Callable[[ExperimentConfig], TaskData]
_TASKS: dict[str, Loader] = {}


def register_task(name: str, loader: Loader) -> None:
    _TASKS[name] = loader


def task_names() -> list[str]:
    return sorted(_TASKS)


def load_task(cfg: ExperimentConfig) -> TaskData:
    """The task's data; with ``cfg.flatten`` every frame ``[C, H, W]`` as ``[C·H'·W']``
    (:class:`FlatChannels`, pooled over ``cfg.flatten_pool`` pixels)."""
    if cfg.task not in _TASKS:
        raise UserError(f"unknown task {cfg.task!r}; expected one of {task_names()}")
    if cfg.flatten and is_flow_task(cfg.task):
        raise UserError(
            f"config flatten = true: task {cfg.task!r} predicts optical flow maps, which "
            "cannot be flattened; expected flatten = false"
        )
    data = _TASKS[cfg.task](cfg)
    k = cfg.flatten_pool
    if not cfg.flatten or (len(data.input_shape) == 1 and k == 1):
        return data  # (flat already)
    if len(data.input_shape) != 3:
        raise UserError(
            f"config flatten = true: task {cfg.task!r} gives frames "
            f"{list(data.input_shape)}, expected [channels, height, width]"
        )
    c, h, w = data.input_shape
    n = c * -(-h // k) * -(-w // k)
    what = f"{data.description}, frames{f' summed over {k}×{k} pixels and' if k > 1 else ''}"
    what += f" flattened to [{n}]"
    return TaskData(FlatChannels(data.train, k), FlatChannels(data.test, k), (n,),
                    data.num_classes, what)  # fmt: skip


def _shd_standin(cfg: ExperimentConfig) -> TaskData:
    from stllr.data.shd_frames import read_speakers, standin_shd_tensors
    from stllr.data.shd_standin import TEST_FILE, TRAIN_FILE

    n_train = cfg.standin_train or 1000
    n_test = cfg.standin_test or 400
    folder = Path(cfg.data) if cfg.data else CACHE_DIR / "shd_standin"
    d = standin_shd_tensors(folder, n_train=n_train, n_test=n_test, seed=0)
    return TaskData(
        ListDataset(d.train_frames, d.train_labels, read_speakers(folder / TRAIN_FILE)),
        ListDataset(d.test_frames, d.test_labels, read_speakers(folder / TEST_FILE)),
        (700,),
        20,
        f"SHD-like stand-in ({n_train} train / {n_test} test, held-out speakers) in {folder}",
    )


def _audio(cfg: ExperimentConfig, name: str, test_split: str, classes: int) -> TaskData:
    """SHD (20 classes) or SSC (35 classes): the same hdf5 layout and 10 ms frames."""
    from stllr.data.shd_frames import load_shd_frames, read_speakers

    if not cfg.data:
        raise UserError(
            f"task {name!r} reads real files: give data=<folder containing {name.upper()}/>"
        )
    folder = Path(cfg.data) / name.upper()
    files = {split: folder / f"{name}_{split}.h5" for split in ("train", test_split)}
    missing = [str(p) for p in files.values() if not p.is_file()]
    if missing:
        layout = "\n".join(f"  {cfg.data}/{name.upper()}/{p.name}" for p in files.values())
        raise FileNotFoundError(
            f"{name.upper()} files not found: {', '.join(missing)}. Expected layout:\n{layout}\n"
            "(the extracted files of the official release; nothing is downloaded)"
        )
    train = load_shd_frames(files["train"], num_classes=classes)
    test = load_shd_frames(files[test_split], num_classes=classes)
    return TaskData(
        ListDataset(*train, read_speakers(files["train"])),
        ListDataset(*test, read_speakers(files[test_split])),
        (700,),
        classes,
        f"{name.upper()} from {folder} (train / {test_split})",
    )


def _shd(cfg: ExperimentConfig) -> TaskData:
    return _audio(cfg, "shd", "test", 20)


def _ssc(cfg: ExperimentConfig) -> TaskData:
    """SSC: model selection on the validation split, as the reference does with SHD's test."""
    return _audio(cfg, "ssc", "valid", 35)


register_task("shd-standin", _shd_standin)
register_task("shd", _shd)
register_task("ssc", _ssc)


# --- event-camera tasks (stllr.data: tonic-based, offline) --------------------------------


def _standin_root(cfg: ExperimentConfig) -> Path:
    return Path(cfg.data) if cfg.data else CACHE_DIR / "standins"


def _event_task(train, test, num_classes: int, description: str) -> TaskData:
    if len(train) == 0 or len(test) == 0:
        raise UserError(f"{description}: empty split ({len(train)} train, {len(test)} test)")
    shape = tuple(train[0][0].shape[1:])
    return TaskData(train, test, shape, num_classes, description)


def _require_data(cfg: ExperimentConfig, task: str) -> str:
    if not cfg.data:
        raise UserError(
            f"task {task!r} reads real files: give data=<dataset root> "
            f"(or use task={task}-standin for the built-in stand-in)"
        )
    return cfg.data


def _gesture(cfg: ExperimentConfig, root: str, what: str) -> TaskData:
    from stllr.data.dvs_gesture import dvs_gesture_splits

    train, test = dvs_gesture_splits(root, seed=cfg.seed)
    return _event_task(train, test, 11, f"{what} in {root} (train slices T=20, full test)")


def _cifar(cfg: ExperimentConfig, root: str, what: str) -> TaskData:
    from stllr.data.cifar10_dvs import cifar10_dvs_splits

    train, test = cifar10_dvs_splits(root, seed=cfg.seed)
    return _event_task(train, test, 10, f"{what} in {root} (T=10, 48x48, normalised)")


def _ncaltech(cfg: ExperimentConfig, root: str, what: str) -> TaskData:
    from stllr.data.ncaltech101 import ncaltech101_splits

    train, test = ncaltech101_splits(root)
    classes = train.num_classes
    return _event_task(train, test, classes, f"{what} in {root} ({classes} classes, 90/10 split)")


def _standin(kind: str):
    def load(cfg: ExperimentConfig) -> TaskData:
        from stllr.data import standins

        root = _standin_root(cfg)
        ensure, build = {
            "gesture": (standins.ensure_gesture_standin, _gesture),
            "cifar10dvs": (standins.ensure_cifar10dvs_standin, _cifar),
            "ncaltech101": (standins.ensure_ncaltech101_standin, _ncaltech),
        }[kind]
        ensure(root)
        return build(cfg, str(root), f"{kind} stand-in")

    return load


def _real(kind: str, build):
    def load(cfg: ExperimentConfig) -> TaskData:
        return build(cfg, _require_data(cfg, kind), kind)

    return load


class FlatChannels:
    """Frames ``[T, P, H, W]`` as ``[T, P·H'·W']``, element ``p·H'·W' + y'·W' + x'``: the
    input of the dense/recurrent networks (``arch = shd_rsnn``). ``pool = k`` first sums
    ``k × k`` pixel blocks, pixel ``(y, x)`` into ``(y // k, x // k)`` (``H' = ⌈H/k⌉``;
    event counts stay counts); ``k = 1`` keeps every pixel (a 1-D sensor, ``H = 1``:
    channel ``p·W + x``). Other attributes of the wrapped dataset pass through."""

    def __init__(self, dataset: Dataset, pool: int = 1):
        self.dataset = dataset
        self.pool = pool

    def __getattr__(self, name: str):
        if name in ("dataset", "pool"):  # not set yet (unpickling): no recursion
            raise AttributeError(name)
        return getattr(self.dataset, name)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int):
        x, y = self.dataset[index]
        if self.pool > 1:
            x = sum_pool(x, self.pool)
        return x.reshape(x.shape[0], -1), y


def sum_pool(x, k: int):
    """``[T, P, H, W]`` summed over ``k × k`` blocks: ``[T, P, ⌈H/k⌉, ⌈W/k⌉]`` (zero-padded
    at the bottom and right)."""
    import torch.nn.functional as F

    t, p, h, w = x.shape
    x = F.pad(x, (0, -w % k, 0, -h % k))
    return x.reshape(t, p, x.shape[2] // k, k, x.shape[3] // k, k).sum(dim=(3, 5))


def _custom(cfg: ExperimentConfig) -> TaskData:
    """A bring-your-own events file (docs/data.md): camera sensors give ``[T, P, H, W]``
    frames, 1-D sensors (``H = 1``) ``[T, P·W]`` (:class:`FlatChannels`)."""
    from stllr.data.custom_events import CustomEventsConfig, custom_events_dataset, read_header
    from stllr.errors import UserError

    path = _require_data(cfg, "custom")
    info = read_header(path)
    kw = {"time_window_us": cfg.frame_us or None, "n_time_bins": cfg.n_time_bins or None}
    if (kw["time_window_us"] is None) == (kw["n_time_bins"] is None):
        raise UserError(
            "task 'custom' needs exactly one of frame_us=<µs> or n_time_bins=<N>, got "
            f"frame_us={cfg.frame_us} and n_time_bins={cfg.n_time_bins} (0 = unset; set the "
            "other one to 0)"
        )
    kw["progress"] = sys.stderr.isatty()
    train = custom_events_dataset(CustomEventsConfig(path, "train", **kw))
    test = custom_events_dataset(CustomEventsConfig(path, "test", **kw))
    w, h, p = info.sensor_size
    what = f"custom events from {path} (sensor {w}x{h}, {p} polarities)"
    if h == 1:
        train, test = FlatChannels(train), FlatChannels(test)
    return _event_task(train, test, int(info.num_classes), what)


register_task("gesture", _real("gesture", _gesture))
register_task("gesture-standin", _standin("gesture"))
register_task("cifar10dvs", _real("cifar10dvs", _cifar))
register_task("cifar10dvs-standin", _standin("cifar10dvs"))
register_task("ncaltech101", _real("ncaltech101", _ncaltech))
register_task("ncaltech101-standin", _standin("ncaltech101"))
register_task("custom", _custom)


def _first_spike_task(kind: str, standin: bool):
    """``ntidigits``, ``gesture32``, ``dvsplane`` (docs/data.md, "First-spike coding
    datasets"), read by :mod:`stllr.tasks_first_spike`."""

    def load(cfg: ExperimentConfig) -> TaskData:
        from stllr.tasks_first_spike import LOADERS

        root = _standin_root(cfg) if standin else Path(_require_data(cfg, kind))
        return TaskData(*LOADERS[kind](cfg, root, standin))

    return load


# --- optical flow (stllr.flow; docs/flow.md) ------------------------------------------------
#: tasks whose samples are flow windows (stllr.flow.dataset.FlowSample), trained and
#: scored by stllr.flow.run instead of the classification loop
FLOW_TASKS = ("mvsec", "mvsec-standin")


def is_flow_task(name: str) -> bool:
    return name in FLOW_TASKS


def _flow(standin: bool):
    def load(cfg: ExperimentConfig):
        from stllr.flow.tasks import load_flow_task

        return load_flow_task(cfg, standin=standin, cache_root=CACHE_DIR)

    return load


for _kind in ("ntidigits", "gesture32", "dvsplane"):
    register_task(_kind, _first_spike_task(_kind, False))
    register_task(f"{_kind}-standin", _first_spike_task(_kind, True))
register_task("mvsec", _flow(False))
register_task("mvsec-standin", _flow(True))
