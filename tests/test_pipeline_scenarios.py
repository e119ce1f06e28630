"""The adaptation scenarios' data (pipeline.shift) and the on-device signal choice
(pipeline.learners), checked against direct constructions on small synthetic data."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from pipeline.config import AdaptationSection
from pipeline.shift import HeldOutUser, NoisySensor, SensorNoise, make_shift
from stllr.errors import UserError
from stllr.trainer import ListDataset


class _UserDataset(ListDataset):
    """A test split whose samples carry users, as the DVS Gesture datasets do."""

    def __init__(self, samples, labels, users):
        super().__init__(samples, labels)
        self.sample_users = list(users)


@dataclasses.dataclass
class _Data:
    train: object
    test: object


def _frames(n: int, steps: int, value_of=lambda i, t: i * 1000 + t):
    """Frames ``[T, 2]`` whose values name (sample, step), so slices can be identified."""
    return [
        torch.tensor([[value_of(i, t), 0.0] for t in range(steps)], dtype=torch.float32)
        for i in range(n)
    ]


def _gesture_like():
    lengths = [30, 25, 12, 40, 22]  # recording 2 (12 frames) is too short to split at 20
    users = [24, 24, 24, 25, 25]
    test = _UserDataset(
        [f[:L] for f, L in zip(_frames(5, 40), lengths, strict=True)],
        torch.tensor([0, 1, 2, 3, 4]),
        users,
    )
    train = ListDataset(_frames(8, 20, lambda i, t: -(i + 1)), torch.arange(8) % 5)
    return _Data(train, test)


def test_held_out_user_splits_each_recording_in_time_and_cycles_the_calibration():
    data = _gesture_like()
    section = AdaptationSection(scenario="held_out_user", calib_frames=20, samples=10)
    sc = HeldOutUser(20, (), seed=3).build(data, section)
    # recordings 0, 1, 3, 4 are longer than 20 frames; each gives its first 20 frames ...
    calib = {int(x[0, 0]) // 1000: x for x, _ in sc.stream}
    assert sorted(calib) == [0, 1, 3, 4]
    for i, x in calib.items():
        assert torch.equal(x, data.test[i][0][:20])
    # ... 10 stream samples = 2 full passes + 2, each pass a permutation of the 4 recordings
    ids = [int(x[0, 0]) // 1000 for x, _ in sc.stream]
    assert len(ids) == 10 and sorted(ids[:4]) == sorted(ids[4:8]) == [0, 1, 3, 4]
    assert [y for _, y in sc.stream] == [int(data.test.labels[i]) for i in ids]
    # evaluation: the rest of the same recordings, disjoint in time from the calibration
    assert [(int(x[0, 0]), x.shape[0], y) for x, y in sc.eval] == [
        (20, 10, 0),
        (1020, 5, 1),
        (3020, 20, 3),
        (4020, 2, 4),
    ]
    # the original condition: training samples
    assert len(sc.clean) == len(sc.eval) and all(x[0, 0] < 0 for x, _ in sc.clean)
    # the same seed gives the same stream; users restrict the recordings
    again = HeldOutUser(20, (), seed=3).build(data, section)
    assert [int(x[0, 0]) for x, _ in again.stream] == [int(x[0, 0]) for x, _ in sc.stream]
    only25 = HeldOutUser(20, (25,), seed=3).build(data, section)
    assert {int(x[0, 0]) // 1000 for x, _ in only25.stream} == {3, 4}


def test_held_out_user_errors_name_the_problem():
    data = _gesture_like()
    section = AdaptationSection(scenario="held_out_user")
    with pytest.raises(ValueError, match=r"no test recording of user\(s\) \[7\]"):
        HeldOutUser(20, (7,)).build(data, section)
    with pytest.raises(ValueError, match="calib_frames = 50"):
        HeldOutUser(50).build(data, section)
    plain = _Data(data.train, ListDataset(data.test.samples, data.test.labels))
    with pytest.raises(ValueError, match="per-sample users"):
        HeldOutUser(20).build(plain, section)


def test_sensor_noise_is_gaussian_per_sample_and_seeded():
    x = torch.zeros(50, 2, 20, 20)
    shift = SensorNoise(noise_std=0.3, seed=5)
    a, b = shift(x, "test", 4), shift(x, "test", 4)
    assert torch.equal(a, b) and not torch.equal(a, shift(x, "test", 5))
    assert not torch.equal(a, shift(x, "train", 4))
    assert abs(float(a.mean())) < 0.01 and float(a.std()) == pytest.approx(0.3, rel=0.02)


def test_frame_shift_streams_training_samples_and_evaluates_the_first_test_samples():
    data = _Data(
        ListDataset([torch.full((5, 3), float(i)) for i in range(6)], torch.arange(6)),
        ListDataset([torch.full((5, 3), 10.0 + i) for i in range(4)], torch.arange(4)),
    )
    section = AdaptationSection(samples=4, eval_samples=3)
    shift = NoisySensor(event_loss=0.0, background=0.0, seed=1)  # the identity shift
    sc = shift.build(data, section)
    gen = torch.Generator().manual_seed(1)
    expected = torch.randperm(6, generator=gen)[:4].tolist()
    assert [int(x[0, 0]) for x, _ in sc.stream] == expected
    assert [int(x[0, 0]) for x, _ in sc.eval] == [10, 11, 12]
    assert [int(x[0, 0]) for x, _ in sc.clean] == [10, 11, 12]


def test_noisy_sensor_refuses_normalised_frames_and_points_to_sensor_noise():
    with pytest.raises(ValueError, match="sensor_noise"):
        NoisySensor()(torch.tensor([[0.5, -1.0]]), "test", 0)


def test_make_shift_builds_every_scenario_from_its_keys():
    a = AdaptationSection(scenario="held_out_user", calib_frames=7, users=(24,), seed=2)
    assert make_shift(a) == HeldOutUser(7, (24,), 2)
    a = AdaptationSection(scenario="sensor_noise", noise_std=0.2, seed=2)
    assert make_shift(a) == SensorNoise(0.2, 2)


def _small_vgg_qnet():
    from quantization.ptq import quantize_model
    from stllr.models.vgg import VGGSTLLR

    torch.manual_seed(0)
    model = VGGSTLLR((2, 8, 8), 3, channels=(4, 4), pool_after=(0,)).eval()
    x = (torch.rand(6, 4, 2, 8, 8) < 0.3).float()
    return model, quantize_model(model, [x])[0], x


def test_check_layers_lets_dfa_reach_layers_behind_pooling_but_not_host_signals():
    from pipeline.learners import check_layers

    _, qnet, _ = _small_vgg_qnet()
    assert check_layers(qnet, ("conv1", "head"), "dfa") == ("head", ["conv1"])
    with pytest.raises(ValueError, match="does not feed 'head' directly"):
        check_layers(qnet, ("conv1", "head"), "host")
    with pytest.raises(ValueError, match="only spiking layers"):
        check_layers(qnet, ("pool0", "head"), "dfa")
    with pytest.raises(ValueError, match="adaptation.signal must be one of"):
        check_layers(qnet, ("head",), "bp")


def test_float_learner_uses_the_devices_feedback_matrix():
    """The float twin's DFA hook injects (softmax − onehot)·B with the plan's B: the
    gradient reaching conv1's output equals that product computed directly."""
    from pipeline.float_learner import float_twin, use_device_feedback
    from pipeline.learners import make_plan, make_plastic
    from stllr.feedback import FeedbackContext

    model, qnet, x = _small_vgg_qnet()
    plastic = make_plastic(qnet, ("conv1", "head"), [x], lr=1e-3, seed=3, signal="dfa")
    plan = make_plan(plastic, ("conv1", "head"), "dfa", seed=3)
    twin = float_twin(model, ("conv1", "head"))
    use_device_feedback(twin, plan)
    (proj,) = plan.projections
    b = (proj.matrix.double() * 2.0**proj.b_exp).float()
    hook = twin.hooks[1]
    assert hook.mode == "DFA" and twin.feedback_mode == "DFA"
    h = torch.randn(2, 4, 4, 4, requires_grad=True)
    ctx = FeedbackContext(torch.nn.functional.one_hot(torch.tensor([2, 0]), 3).float())
    logits = torch.randn(2, 3)
    ctx.set_output(logits)
    hook(h, ctx).sum().backward()
    err = torch.softmax(logits, 1) - ctx.onehot
    assert torch.allclose(h.grad.reshape(2, -1), err @ b, atol=1e-6)


@pytest.mark.parametrize("task", ["gesture", "cifar10dvs", "ncaltech101", "shd", "ssc"])
def test_every_real_task_resolves_with_data_and_refuses_without(task, tmp_path):
    """``stllr pipeline --task T --data PATH`` reads T's config and points training at
    PATH; without --data the real task is a one-line error pointing to the stand-in."""
    import argparse

    from stllr.cli.pipeline import _resolve

    def args(**kw):
        base = {"task": task, "data": None, "config": None, "out": tmp_path / "run"}
        base.update(resume=False, rerun_from=None, skip_lava=False, qat_epochs=None, from_nir=None)
        base.update(threads=0, set=[])
        return argparse.Namespace(**{**base, **kw})

    cfg, out = _resolve(args(data=tmp_path))
    assert cfg.train.task == task and cfg.train.data == str(tmp_path)
    assert cfg.train.epochs >= 100  # the paper's schedule, not the stand-in's
    with pytest.raises(ValueError, match=f"task '{task}' reads real files: give --data PATH"):
        _resolve(args())


def _speaker_data():
    """Train speakers 0, 1; the test split adds speaker 5 (held out) with 6 recordings."""
    train = ListDataset(_frames(4, 5, lambda i, t: -(i + 1)), torch.arange(4) % 3, [0, 1, 0, 1])
    test_users = [0, 5, 1, 5, 5, 0, 5, 5, 5]
    test = ListDataset(_frames(9, 5), torch.arange(9) % 3, test_users)
    return _Data(train, test)


def test_held_out_speaker_streams_half_of_the_new_speakers_and_evaluates_the_rest():
    from pipeline.shift import HeldOutSpeaker

    data = _speaker_data()
    section = AdaptationSection(scenario="held_out_speaker", samples=10, eval_samples=0)
    sc = HeldOutSpeaker(seed=4).build(data, section)
    ids = lambda items: [int(x[0, 0]) // 1000 for x, _ in items]  # noqa: E731
    new = {1, 3, 4, 6, 7, 8}
    assert len(sc.stream) == 3  # at most half of the 6 held-out recordings
    assert set(ids(sc.stream)) | set(ids(sc.eval)) == new
    assert not set(ids(sc.stream)) & set(ids(sc.eval))
    assert ids(sc.clean) == [0, 2, 5]  # the training speakers' test recordings
    for x, y in sc.stream:
        i = int(x[0, 0]) // 1000
        assert torch.equal(x, data.test[i][0]) and y == int(data.test[i][1])
    with pytest.raises(UserError, match="needs per-sample speakers"):
        HeldOutSpeaker().build(
            _Data(ListDataset(_frames(2, 3), torch.arange(2)), data.test), section
        )


def test_gain_change_is_poisson_on_counts_and_a_product_on_real_frames():
    from pipeline.shift import GainChange

    counts = torch.full((400, 5), 4.0)
    out = GainChange(gain=0.5, seed=1)(counts, "train", 3)
    assert bool((out == out.round()).all()) and bool((out >= 0).all())
    # Poisson(2): mean 2, variance 2 (analytic), over 2000 draws
    assert abs(float(out.mean()) - 2.0) < 0.15 and abs(float(out.var()) - 2.0) < 0.3
    assert torch.equal(out, GainChange(gain=0.5, seed=1)(counts, "train", 3))
    real = torch.tensor([[0.5, -1.25]])
    assert torch.equal(GainChange(gain=3.0)(real, "test", 0), torch.tensor([[1.5, -3.75]]))
    assert GainChange(gain=0.5).at(0.5) == GainChange(gain=0.75)


def test_drift_shifts_the_stream_at_growing_severity():
    """With drift, stream sample k of n is the shift at severity (k + 1)/n: the last one
    equals the full shift, the first the shift at 1/n (checked against NoisySensor.at)."""
    data = _Data(ListDataset([torch.full((50, 40), 3.0)] * 4, torch.arange(4)), None)
    data.test = ListDataset([torch.full((50, 40), 3.0)] * 2, torch.arange(2))
    shift = NoisySensor(event_loss=0.8, background=0.1, seed=2)
    section = AdaptationSection(samples=4, drift=True)
    sc = shift.build(data, section)
    gen = torch.Generator().manual_seed(2)
    order = torch.randperm(4, generator=gen).tolist()
    for k, (i, (x, _)) in enumerate(zip(order, sc.stream, strict=True)):
        expect = shift.at((k + 1) / 4)(data.train[i][0], "train", i)
        assert torch.equal(x, expect)
    assert shift.at(0.25) == NoisySensor(event_loss=0.2, background=0.025, seed=2)
    assert torch.equal(sc.eval[0][0], shift(data.test[0][0], "test", 0))
