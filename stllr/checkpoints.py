"""Reading ``.pt`` files safely, and fitting a stored state dict to a model.

Every ``.pt`` file of the toolkit (``checkpoint.pt``, ``best.pt``, the pipeline's
``adaptation/weights.pt``) holds tensors and plain data only (dicts, lists, tuples,
numbers, strings; configs as :meth:`ExperimentConfig.as_dict`), so it is read with
``torch.load(weights_only=True)``: a file whose pickle names any other class or function
(which a full unpickler would import and call) is refused instead of run. Every failure
is a one-line :class:`~stllr.errors.UserError` that names the file.
"""

from __future__ import annotations

import pickle
import re
from collections.abc import Iterable, Mapping
from pathlib import Path

import torch

from stllr.config import ExperimentConfig, coerce_value, field_types
from stllr.errors import UserError

#: how many differing parameters an error message lists before "and N more"
_SHOWN = 3


def load_pt(path: str | Path, keys: Iterable[str] = (), what: str = "checkpoint") -> dict:
    """The dict stored in ``path`` (on the CPU), read without running code.

    Raises ``FileNotFoundError`` when the file is missing and a ``UserError`` when it is
    truncated, not a ``.pt`` file, needs more than plain data to load, is not a dict, or
    lacks one of ``keys``; ``what`` says what the file should be ("checkpoint").
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} {path} does not exist")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 — any failure: an unsafe, truncated or foreign file
        raise _unreadable(path, exc, what) from None
    if not isinstance(payload, dict):
        raise UserError(f"{path} holds a {type(payload).__name__}, expected a dict")
    missing = [k for k in keys if k not in payload]
    if missing:
        raise UserError(
            f"{path} has no {', '.join(repr(k) for k in missing)} entries: not written by "
            "stllr train"
        )
    return payload


def _unreadable(path: Path, exc: Exception, what: str) -> UserError:
    """The one-line error for a file ``torch.load(weights_only=True)`` could not read."""
    names = re.findall(r"GLOBAL ([\w.]+)", str(exc))
    if isinstance(exc, pickle.UnpicklingError) and names:
        return UserError(
            f"{path} holds more than tensors and plain data ({names[0]}); refused, since "
            "loading it could run code (stllr writes .pt files as plain data)"
        )
    detail = f"{type(exc).__name__}: {str(exc).splitlines()[0]}" if str(exc) else repr(exc)
    return UserError(
        f"{path} is not a readable stllr {what}: truncated, or not written by torch.save ({detail})"
    )


def stored_config(ckpt: Mapping, path: str | Path) -> ExperimentConfig:
    """The :class:`ExperimentConfig` stored in a checkpoint's ``config`` entry.

    Keys this version does not know are skipped; a badly typed value is a one-line error
    naming ``path`` and the key.
    """
    stored = ckpt.get("config")
    if not isinstance(stored, Mapping):
        raise UserError(f"{path}: 'config' must be a dict, got {type(stored).__name__}")
    known = field_types()
    values = {k: coerce_value(k, v, known[k], str(path)) for k, v in stored.items() if k in known}
    return ExperimentConfig(**values)


def state_mismatch(model: torch.nn.Module, state: Mapping) -> list[str]:
    """What differs between ``model``'s state dict and ``state`` (empty if it fits)."""
    own = model.state_dict()
    out = []
    for name, tensor in own.items():
        if name not in state:
            out.append(f"{name} is missing from the file")
        elif not isinstance(state[name], torch.Tensor):
            out.append(f"{name} is a {type(state[name]).__name__} in the file, not a tensor")
        elif state[name].shape != tensor.shape:
            out.append(
                f"{name} is {list(state[name].shape)} in the file, {list(tensor.shape)} "
                "in the model"
            )
    out += [f"{name} is in the file but not in the model" for name in state if name not in own]
    return out


def load_model_state(model: torch.nn.Module, ckpt: Mapping, path: str | Path, built: str) -> None:
    """Load ``ckpt["model"]`` into ``model``, or raise a one-line ``UserError`` that names
    ``path`` and the parameters that differ; ``built`` says where the model came from
    (e.g. "its config with hidden=64")."""
    state = ckpt.get("model")
    if not isinstance(state, Mapping):
        raise UserError(f"{path}: 'model' must be a state dict, got {type(state).__name__}")
    diff = state_mismatch(model, state)
    if diff:
        more = f" (and {len(diff) - _SHOWN} more)" if len(diff) > _SHOWN else ""
        raise UserError(
            f"{path} does not fit the model built from {built}: {'; '.join(diff[:_SHOWN])}{more}"
        )
    model.load_state_dict(state)


def built_from(stored: ExperimentConfig, cfg: ExperimentConfig, source: str) -> str:
    """How :func:`load_model_state` names a model built from ``cfg`` when the file's
    config was ``stored``: ``source`` plus the keys that differ, e.g. ``"its config with
    hidden=64"``."""
    a, b = stored.as_dict(), cfg.as_dict()
    changes = ", ".join(f"{k}={_show(b[k])}" for k in a if a[k] != b[k])
    return f"{source} with {changes}" if changes else source


def _show(value) -> str:
    return ",".join(map(str, value)) if isinstance(value, tuple) else str(value)
