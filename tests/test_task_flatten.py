"""``flatten = true``: camera frames ``[T, C, H, W]`` read as ``[T, C·H·W]`` so that the
dense recurrent network (``shd_rsnn``, any neuron) takes a camera task (docs/neurons.md §4),
checked against a naive index loop; and the pipeline configs that use it."""

from __future__ import annotations

import pytest
import torch

from stllr.config import ExperimentConfig
from stllr.errors import UserError
from stllr.tasks import _TASKS, FlatChannels, TaskData, load_task, register_task
from stllr.trainer import ListDataset

SHAPE = (2, 3, 4)  # C, H, W


def _frames(n: int, steps: int = 5) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(3)
    return [torch.randint(0, 4, (steps, *SHAPE), generator=g).float() for _ in range(n)]


@pytest.fixture
def camera_task():
    """A registered task with frames [T, 2, 3, 4] (removed afterwards)."""
    frames = _frames(6)

    def load(cfg):
        train = ListDataset(frames[:4], torch.arange(4) % 2)
        test = ListDataset(frames[4:], torch.tensor([0, 1]))
        return TaskData(train, test, SHAPE, 2, "camera")

    register_task("_camera_test", load)
    yield frames
    _TASKS.pop("_camera_test")


def test_flat_channels_order_equals_a_naive_loop():
    (x,) = _frames(1)
    flat, label = FlatChannels(ListDataset([x], torch.tensor([1])))[0]
    c_n, h_n, w_n = SHAPE
    assert flat.shape == (x.shape[0], c_n * h_n * w_n) and label == 1
    for t in range(x.shape[0]):
        for c in range(c_n):
            for y in range(h_n):
                for xx in range(w_n):
                    assert flat[t, c * h_n * w_n + y * w_n + xx] == x[t, c, y, xx]


def test_pooled_flattening_equals_a_naive_block_sum():
    """k = 2 on 3×4 pixels: blocks (y // 2, x // 2), the last row of blocks half empty."""
    (x,) = _frames(1)
    k, (c_n, h_n, w_n) = 2, SHAPE
    hp, wp = -(-h_n // k), -(-w_n // k)
    flat, _ = FlatChannels(ListDataset([x], torch.tensor([0])), pool=k)[0]
    want = torch.zeros(x.shape[0], c_n * hp * wp)
    for t in range(x.shape[0]):
        for c in range(c_n):
            for y in range(h_n):
                for xx in range(w_n):
                    want[t, c * hp * wp + (y // k) * wp + xx // k] += x[t, c, y, xx]
    assert torch.equal(flat, want)
    assert flat.sum() == x.sum()


def test_load_task_flattens_camera_frames_only_when_asked(camera_task):
    cfg = ExperimentConfig(task="_camera_test")
    plain = load_task(cfg)
    assert plain.input_shape == SHAPE
    flat = load_task(cfg.replace(flatten=True))
    assert flat.input_shape == (24,) and flat.num_classes == 2
    assert "flattened to [24]" in flat.description
    for i, x in enumerate(camera_task[4:]):
        got, y = flat.test[i]
        assert torch.equal(got, x.reshape(x.shape[0], -1)) and y == i
    pooled = load_task(cfg.replace(flatten=True, flatten_pool=2))
    assert pooled.input_shape == (2 * 2 * 2,) and "summed over 2×2 pixels" in pooled.description


def test_flatten_keeps_flat_frames_and_refuses_pooling_them():
    frames = [torch.ones(5, 7)]
    register_task("_flat_test", lambda cfg: TaskData(ListDataset(frames, torch.tensor([0])),
                                                     ListDataset(frames, torch.tensor([0])),
                                                     (7,), 2, "flat"))  # fmt: skip
    try:
        cfg = ExperimentConfig(task="_flat_test", flatten=True)
        assert load_task(cfg).input_shape == (7,)
        with pytest.raises(UserError, match=r"gives frames \[7\], expected \[channels, height"):
            load_task(cfg.replace(flatten_pool=2))
    finally:
        _TASKS.pop("_flat_test")


def test_flatten_refuses_flow_tasks():
    with pytest.raises(UserError, match="flatten = true: task 'mvsec-standin' predicts"):
        load_task(ExperimentConfig(task="mvsec-standin", flatten=True))


def test_flatten_pool_needs_flatten():
    from stllr.config import check_training

    with pytest.raises(UserError, match="flatten_pool must be ≥ 1 and needs flatten = true"):
        check_training(ExperimentConfig(flatten_pool=2))
    with pytest.raises(UserError, match="got flatten_pool = 0 with flatten = true"):
        check_training(ExperimentConfig(flatten=True, flatten_pool=0))


def test_flatten_stays_out_of_stored_configs_at_its_default():
    """Configs and checkpoints written before the key existed still match."""
    assert "flatten" not in ExperimentConfig().as_dict()
    assert ExperimentConfig(flatten=True).as_dict()["flatten"] is True
