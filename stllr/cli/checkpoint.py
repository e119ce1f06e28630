"""Load a checkpoint written by ``stllr train`` with its model, config and task data.

The same steps as ``stllr eval``: the checkpoint carries its config; ``overrides``
(``KEY=VALUE`` strings, as ``--set``) change it before the task is loaded, e.g.
``data=/datasets`` to read the real files.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from stllr.errors import UserError


@dataclass
class LoadedCheckpoint:
    path: Path
    cfg: object  # stllr.config.ExperimentConfig
    model: object  # stllr.models.base.SpikingModel, float weights of the checkpoint
    mode: str  # training mode of cfg.method (for fine-tuning)
    data: object  # stllr.tasks.TaskData
    epoch: int | None


def load_checkpoint(path: Path, overrides: list[str] = ()) -> LoadedCheckpoint:
    """Raise ``FileNotFoundError``/:class:`~stllr.errors.UserError` (one line) on bad input."""
    import torch

    from stllr.config import ExperimentConfig, apply_overrides, field_types
    from stllr.models.factory import build_model
    from stllr.tasks import load_task

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # noqa: BLE001 — any unpickling failure means a bad file
        raise UserError(f"{path} is not a readable stllr checkpoint ({exc})") from None
    if not isinstance(ckpt, dict) or "model" not in ckpt or "config" not in ckpt:
        raise UserError(f"{path} has no 'model'/'config' entries: not written by train")
    known = field_types()
    stored = {
        k: (tuple(v) if isinstance(v, list) else v) for k, v in ckpt["config"].items() if k in known
    }
    cfg = apply_overrides(ExperimentConfig(**stored), list(overrides))
    data = load_task(cfg)
    model, mode = build_model(cfg, data.input_shape, data.num_classes)
    model.load_state_dict(ckpt["model"])
    model.eval()
    return LoadedCheckpoint(path, cfg, model, mode, data, ckpt.get("epoch"))
