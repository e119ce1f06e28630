"""The flow pipeline's data: the ±x stand-in and its shifted twin, written once, loaded once.

:func:`standin_specs` gives the five recordings of ``[flow]`` (docs/flow.md §5, the ±x
translation; MVSEC's names with the stand-in's scene seeds), :func:`shifted_specs` the
same recordings seen by the shifted sensor (:mod:`pipeline.flow_config`): same scene,
motion, frames and gt, other events. Each set is written under
``<root>/<digest of its specs>/seed0/`` (``root``: ``train.data``, else the stand-in cache
``stllr.tasks.CACHE_DIR/mvsec_standin_pipeline``), atomically per file by
:func:`stllr.flow.mvsec_files.write_sequence`, so a second run reuses it. The windows
are read with the MVSEC code (:func:`stllr.flow.tasks.load_flow_task`).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from stllr.flow.standin import StandinSpec, specs_digest, translation_specs
from stllr.flow.tasks import FlowTaskData


def standin_specs(cfg) -> dict[str, tuple[StandinSpec, int]]:
    """Sequence name → (spec, scene seed) of the original condition (``cfg``: PipelineConfig)."""
    f = cfg.flow
    return translation_specs(f.size, f.train_frames, f.test_frames, f.x_speed)


def shifted_specs(cfg) -> dict[str, tuple[StandinSpec, int]]:
    """The same recordings seen by the shifted sensor of ``flow.shift``."""
    f = cfg.flow
    change = {"noise_rate": f.noise_rate} if f.shift == "sensor_noise" else {"contrast": f.contrast}
    return {n: (dataclasses.replace(s, **change), k) for n, (s, k) in standin_specs(cfg).items()}


def _root(cfg) -> Path:
    import stllr.tasks

    if cfg.train.data:
        return Path(cfg.train.data)
    return Path(stllr.tasks.CACHE_DIR) / "mvsec_standin_pipeline"


def write_standin(root: Path, specs: dict) -> Path:
    """Write ``specs``' recordings under ``root/<digest>/seed0`` unless there; the folder
    that ``load_flow_task`` reads (``data``)."""
    from stllr.flow.mvsec_files import find_sequence, write_sequence
    from stllr.flow.standin import make_recording

    folder = Path(root) / specs_digest(specs)
    for name, (spec, seed) in specs.items():
        try:
            find_sequence(folder / "seed0", name)
        except ValueError:
            write_sequence(folder / "seed0", name, *make_recording(spec, seed))
    return folder


def load(ctx, shifted: bool = False) -> FlowTaskData:
    """The windows of the original (or shifted) condition, loaded once per invocation."""
    import stllr.tasks
    from stllr.flow.tasks import load_flow_task

    cache = ctx.cache
    key = ("flow", shifted)
    if key not in cache:
        specs = (shifted_specs if shifted else standin_specs)(ctx.cfg)
        folder = write_standin(_root(ctx.cfg), specs)
        train = ctx.cfg.train.replace(data=str(folder))
        cache[key] = load_flow_task(train, standin=True, cache_root=stllr.tasks.CACHE_DIR)
    return cache[key]


def calibration(data: FlowTaskData, n: int = 16):
    """Every 8th training window's frames ``[T, 1, C, H, W]``, at most ``n`` (PTQ's input
    calibration, as benchmarks/flow_quantized_aee.py does)."""
    return [data.train[i].x[:, None] for i in range(0, len(data.train), 8)][:n]
