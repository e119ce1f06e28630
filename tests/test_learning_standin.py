"""Every learning rule learns the SHD-like stand-in well above chance (5 %) in CI time.

400 training / 200 test recordings (held-out speakers in the test split), a
700 → 128 recurrent network, 8 epochs of Adam (lr 2e-3, batch 32), learning
window 10 for S-TLLR. Measured on this machine (single thread, seed 0): S-TLLR BP
57.5 %, S-TLLR DFA 28 %, BPTT 62 %, OTTT 68 %; each run takes 15–20 s. The bounds
leave room for numerical differences between machines.
"""

from __future__ import annotations

import pytest
import torch

from stllr.config import ExperimentConfig
from stllr.models.factory import build_model
from stllr.trainer import ListDataset, fit


@pytest.mark.parametrize(
    "method,feedback,minimum",
    [("stllr", "BP", 35.0), ("stllr", "DFA", 15.0), ("bptt", "BP", 35.0), ("ottt", "BP", 35.0)],
)
def test_learns_standin_well_above_chance(shd_standin_small, method, feedback, minimum):
    d = shd_standin_small
    torch.manual_seed(0)
    cfg = ExperimentConfig(method=method, feedback=feedback, hidden=128)
    model, mode = build_model(cfg, (700,), 20)
    history = fit(
        model,
        ListDataset(d.train_frames, d.train_labels),
        ListDataset(d.test_frames, d.test_labels),
        epochs=8,
        batch_size=32,
        lr=2e-3,
        mode=mode,
        window=10,
        progress=False,
    )
    accs = [m.test_acc for m in history]
    assert accs[-1] >= minimum, f"{method}/{feedback} test accuracy per epoch: {accs}"
    assert accs[-1] > accs[0], f"{method}/{feedback} did not improve: {accs}"
