"""Load a checkpoint written by ``stllr train`` with its model, config and task data.

The same steps as ``stllr eval``: the checkpoint carries its config; ``overrides``
(``KEY=VALUE`` strings, as ``--set``) change it before the task is loaded, e.g.
``data=/datasets`` to read the real files.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass
class LoadedCheckpoint:
    path: Path
    cfg: object  # stllr.config.ExperimentConfig
    model: object  # stllr.models.base.SpikingModel, float weights of the checkpoint
    mode: str  # training mode of cfg.method (for fine-tuning)
    data: object  # stllr.tasks.TaskData
    epoch: int | None


def load_checkpoint(path: Path, overrides: list[str] = ()) -> LoadedCheckpoint:
    """Raise ``FileNotFoundError``/``UserError`` with a one-line message on bad input: a
    missing, truncated or unsafe file (:func:`stllr.checkpoints.load_pt`), or weights that
    do not fit the model its config (with ``overrides``) builds."""
    from stllr.checkpoints import built_from, load_model_state, load_pt, stored_config
    from stllr.config import apply_overrides
    from stllr.models.factory import build_model
    from stllr.tasks import load_task

    path = Path(path)
    ckpt = load_pt(path, keys=("model", "config"))
    stored = stored_config(ckpt, path)
    cfg = apply_overrides(stored, list(overrides))
    data = load_task(cfg)
    model, mode = build_model(cfg, data.input_shape, data.num_classes)
    load_model_state(model, ckpt, path, built_from(stored, cfg, "its config"))
    model.eval()
    return LoadedCheckpoint(path, cfg, model, mode, data, ckpt.get("epoch"))
