"""Each classification task's model trains a few steps on its stand-in, S-TLLR and BPTT.

The stand-ins are generated in the real on-disk formats and read by the same
tonic-based loaders as the real data sets (narrow VGG widths keep this fast).
"""

from __future__ import annotations

import itertools

import pytest
import torch

from stllr.config import ExperimentConfig
from stllr.models.factory import build_model
from stllr.tasks import load_task
from stllr.trainer import batches
from stllr.training import evaluate_batch, train_batch

NARROW = (4, 4, 8, 8, 8, 8, 8, 8)
SHAPES = {"gesture": (2, 32, 32), "cifar10dvs": (2, 48, 48), "ncaltech101": (2, 45, 60)}


@pytest.fixture(scope="module")
def standin_root(tmp_path_factory):
    return tmp_path_factory.mktemp("standins")


@pytest.mark.parametrize("task", ["gesture", "cifar10dvs", "ncaltech101"])
@pytest.mark.parametrize("method", ["stllr", "bptt"])
def test_task_model_trains_on_standin(standin_root, task, method):
    cfg = ExperimentConfig(
        task=f"{task}-standin",
        arch="vgg9",
        method=method,
        channels=NARROW,
        data=str(standin_root),
        window=3,
        psi="b",
        pooling="max",
    )
    data = load_task(cfg)
    assert data.input_shape == SHAPES[task]
    torch.manual_seed(0)
    model, mode = build_model(cfg, data.input_shape, data.num_classes)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    gen = torch.Generator().manual_seed(0)
    for x, y, _ in itertools.islice(batches(data.train, 4, gen), 2):
        res = train_batch(model, x, y, opt, mode=mode, window=cfg.window)
        assert torch.isfinite(torch.tensor(res.loss))
    now = dict(model.named_parameters())
    # At initialisation deep layers are nearly silent (sparse events, standardised weights),
    # so their weights cannot move yet; the learning signal must still reach every layer's
    # bias (Ψ is non-zero below threshold) and the first layer's weights.
    first = "convs.0.weight" if method == "stllr" else "features.0.weight"
    biases = [n for n in now if n.endswith(".bias")]
    assert len(biases) == len(NARROW) + 1
    for name in [first, *biases]:
        assert not torch.equal(before[name], now[name]), name
    x, y, lengths = next(iter(batches(data.test, 4)))
    logits = evaluate_batch(model, x, y, lengths).logits
    assert logits.shape == (len(y), data.num_classes)
    if task == "gesture":
        assert x.shape[0] > 20, "DVS Gesture test sequences are full length, not 20-step slices"
