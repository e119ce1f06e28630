"""The ``device`` setting: parsing, the loader's device and workers, the backend choice,
and (on a CUDA host only) a training step on the GPU against the CPU."""

from __future__ import annotations

import json

import pytest
import torch

from stllr import distributed
from stllr.cli.main import main
from stllr.config import ExperimentConfig, apply_overrides, check_training
from stllr.devices import backend_for, resolve_device
from stllr.errors import UserError
from stllr.padding import stack_samples
from stllr.trainer import ListDataset, batches

CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def _data(n=10):
    g = torch.Generator().manual_seed(0)
    samples = [(torch.rand(5 + i % 4, 6, generator=g) < 0.3).float() for i in range(n)]
    return ListDataset(samples, torch.randint(0, 3, (n,), generator=g))


def test_device_spellings():
    assert resolve_device("cpu") == torch.device("cpu")
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected
    for bad in ("gpu", "cuda:", "cuda:x", "CPU", ""):
        with pytest.raises(UserError, match=r"^device must be one of auto, cpu, cuda, cuda:N"):
            resolve_device(bad)


@pytest.mark.skipif(torch.cuda.is_available(), reason="the error is for hosts without CUDA")
def test_cuda_without_cuda_is_a_one_line_user_error():
    with pytest.raises(UserError, match="'cuda:1' but CUDA is not available here"):
        resolve_device("cuda:1", "config device")


def test_config_checks_device_and_workers():
    with pytest.raises(UserError, match="^config device must be one of"):
        check_training(apply_overrides(ExperimentConfig(), ["device=gpu"]))
    with pytest.raises(UserError, match="^config num_workers must be ≥ 0"):
        check_training(ExperimentConfig(num_workers=-1))


def test_backend_follows_the_device():
    assert backend_for(torch.device("cpu")) == "gloo"
    assert backend_for(torch.device("cuda", 0)) == "nccl"


def test_cpu_training_on_a_cuda_host_uses_gloo(monkeypatch):
    """The old code chose NCCL whenever CUDA was present, with the tensors on the CPU."""
    chosen = []
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.distributed, "is_initialized", lambda: False)
    monkeypatch.setattr(torch.distributed, "init_process_group", chosen.append)
    assert distributed.init_from_env("cpu")
    assert chosen == ["gloo"]


def test_workers_load_the_same_batches():
    """Worker processes change how batches are loaded, never which: the reference is
    :func:`stack_samples` over the shuffled order."""
    data = _data()
    order = torch.randperm(len(data), generator=torch.Generator().manual_seed(3)).tolist()
    expected = [stack_samples([data[i] for i in order[s : s + 4]]) for s in range(0, 10, 4)]
    for workers in (0, 2):
        gen = torch.Generator().manual_seed(3)
        got = list(batches(data, 4, gen, torch.device("cpu"), workers))
        assert len(got) == len(expected)
        for a, b in zip(got, expected, strict=True):
            for ta, tb in zip(a, b, strict=True):
                assert torch.equal(ta, tb)


def test_cli_device_option_reaches_the_run(tmp_path, capsys):
    args = ["train", "--no-progress", "--device", "cpu", "--set", f"out_dir={tmp_path}"]
    args += ["name=d", "epochs=1", "hidden=8", "window=2", "standin_train=8", "standin_test=4"]
    args += ["batch_size=4", "val_batch_size=4", "num_workers=1"]
    assert main(args) == 0
    cfg = json.loads((tmp_path / "d" / "config.json").read_text())
    assert cfg["device"] == "cpu" and cfg["num_workers"] == 1
    assert main(["train", "--device", "gpu", "--set", f"out_dir={tmp_path}", "name=e"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["stllr: error: --device must be one of auto, cpu, cuda, cuda:N, got 'gpu'"]


@CUDA
def test_a_training_run_on_cuda_matches_the_cpu(tmp_path):
    """Same config, device cpu vs cuda: float64 weights after one epoch agree closely."""
    from stllr.checkpoints import load_pt
    from stllr.run import run_experiment
    from stllr.tasks import TaskData

    data = _data(16)
    task = TaskData(data, data, (6,), 3, "tiny")
    states = {}
    torch.set_default_dtype(torch.float64)
    try:
        for dev in ("cpu", "cuda"):
            cfg = ExperimentConfig(
                name=dev, hidden=8, epochs=1, batch_size=4, val_batch_size=4, window=3,
                lr=1e-2, out_dir=str(tmp_path), device=dev,
            )  # fmt: skip
            run_experiment(cfg, progress=False, log=lambda s: None, data=task)
            states[dev] = load_pt(tmp_path / dev / "trial_1" / "checkpoint.pt")["model"]
    finally:
        torch.set_default_dtype(torch.float32)
    for k, w in states["cpu"].items():
        assert torch.allclose(states["cuda"][k].cpu(), w, rtol=1e-9, atol=1e-12), k


def test_resume_may_change_the_device_and_fingerprints_ignore_it(tmp_path):
    """Where a run executes is not what it computes: a run resumes on another device, and a
    pipeline stage's fingerprint (its settings) does not see the device or the workers."""
    from pipeline.config import PipelineConfig
    from stllr.run import run_experiment
    from stllr.tasks import TaskData

    data = _data(8)
    task = TaskData(data, data, (6,), 3, "tiny")
    kw = dict(name="r", hidden=8, batch_size=4, val_batch_size=4, window=3, out_dir=str(tmp_path))
    first = ExperimentConfig(epochs=1, device="cpu", **kw)
    run_experiment(first, progress=False, log=print, data=task)
    again = ExperimentConfig(epochs=2, device="auto", num_workers=1, **kw)
    summary = run_experiment(again, resume=True, progress=False, log=print, data=task)
    assert summary["trials"][0]["epochs"] == 2
    a = PipelineConfig().settings()
    b = PipelineConfig(train=ExperimentConfig(device="cpu", num_workers=3)).settings()
    assert a == b and "device" not in a["train"]


@CUDA
def test_the_emulator_on_cuda_equals_the_cpu_bit_for_bit():
    """With torch's default TF32 for cuDNN convolutions: the emulator turns it off."""
    from quantization.emulator import IntegerEmulator
    from quantization.ptq import PTQConfig, quantize_model
    from stllr.models.factory import build_model

    torch.manual_seed(0)
    cfg = ExperimentConfig(arch="vgg9", channels=(8,) * 8)
    model, _ = build_model(cfg, (2, 16, 16), 4)
    x = (torch.rand(6, 3, 2, 16, 16) < 0.2).float()
    qnet, _ = quantize_model(model.eval(), [x], PTQConfig(weight_bits=8))
    cpu = IntegerEmulator(qnet).run(x)
    gpu = IntegerEmulator(qnet, device="cuda").run(x)
    assert torch.equal(cpu.logits_sum, gpu.logits_sum.cpu())
    assert cpu.spike_counts == gpu.spike_counts


@pytest.mark.parametrize(
    "argv",
    [["demo"], ["eval", "x.pt"], ["quantize", "x.pt"], ["compare", "x.pt"], ["pipeline"]],
)
def test_every_subcommand_checks_device_first(argv, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "x.pt").write_bytes(b"")
    assert main([*argv, "--device", "tpu"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["stllr: error: --device must be one of auto, cpu, cuda, cuda:N, got 'tpu'"]
