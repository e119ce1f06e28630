"""Training memory vs sequence length T, S-TLLR vs BPTT, for the report.

Read from the benchmark results (``benchmarks/results.json``, written by ``make bench``:
every ``memory_time_vs_T*`` run's measured points) when the file exists; otherwise
measured here on a small SHD-shaped network (100 → 64 recurrent → 10, batch 4, S-TLLR
window 10) with the same meter, :class:`stllr.memory.SavedTensorTracker` (peak bytes
autograd holds for backward during one ``train_batch``). Points: ``{model, mode, T, mib}``.
"""

from __future__ import annotations

import json
from pathlib import Path

SMALL_T = (10, 20, 40, 80)


def from_benchmarks(path: Path) -> list[dict] | None:
    """The measured points of every ``memory_time_vs_T*`` run, or None without any."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        runs = json.loads(path.read_text()).get("runs", {})
    except (OSError, json.JSONDecodeError, AttributeError):
        return None
    points = []
    for name, run in runs.items():
        if not name.startswith("memory_time_vs_T"):
            continue
        for model, entry in run.get("models", {}).items():
            desc = entry.get("description", model)
            for p in entry.get("points", []):
                if p.get("peak_saved_mib") is not None:
                    points.append(
                        {
                            "model": desc,
                            "mode": p["mode"],
                            "T": int(p["T"]),
                            "mib": float(p["peak_saved_mib"]),
                        }
                    )
    return points or None


def measure_small(steps=SMALL_T, hidden: int = 64, batch: int = 4, window: int = 10) -> list[dict]:
    """S-TLLR and BPTT saved-tensor peaks on a small SHD-shaped network (seconds)."""
    import torch

    from stllr.memory import SavedTensorTracker
    from stllr.models.shd import SHDNetBPTT, SHDNetSTLLR
    from stllr.training import train_batch

    points = []
    desc = f"SHD RSNN 100→{hidden}→10, batch {batch}"
    for mode, cls in (("stllr", SHDNetSTLLR), ("bptt", SHDNetBPTT)):
        torch.manual_seed(0)
        model = cls(num_inputs=100, hidden=hidden, num_classes=10)
        opt = torch.optim.SGD(model.parameters(), lr=1e-4)
        for t in steps:
            gen = torch.Generator().manual_seed(t)
            x = (torch.rand(t, batch, 100, generator=gen) < 0.05).float()
            y = torch.randint(0, 10, (batch,), generator=gen)
            with SavedTensorTracker() as tracker:
                train_batch(model, x, y, opt, mode=mode, window=min(window, t))
            points.append({"model": desc, "mode": mode, "T": t, "mib": tracker.peak / 2**20})
    return points


def memory_points(path: Path) -> tuple[list[dict], str]:
    """(points, where they come from)."""
    points = from_benchmarks(path)
    if points is not None:
        return points, f"{path.name}, make bench"
    return measure_small(), "measured now, small network"
