"""Epoch loop: mini-batches of variable-length sequences, training and evaluation.

A dataset is anything with ``len(ds)`` and ``ds[i] -> (frames [T_i, *input_shape], label)``
(e.g. :class:`ListDataset`, or the event datasets of :mod:`stllr.data`). Batches are
zero-padded at the end to the longest sample (``[T_max, B, *input_shape]``), so the
learning window counts from the end of the padded sequence, as in the reference code.
Each batch carries its samples' lengths, and evaluation scores every sample over its own
steps only (:func:`stllr.training.evaluate_batch`): a test accuracy does not depend on
the evaluation batch size.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from typing import Protocol

import torch

from stllr.devices import to_device
from stllr.distributed import all_reduce_sum, pad_to_global_steps, shard, world_size
from stllr.errors import UserError
from stllr.models.base import SpikingModel
from stllr.padding import pad_time, stack_samples  # noqa: F401 (pad_time: its old home)
from stllr.progress import bar as progress_bar
from stllr.spike_metrics import SpikeReadoutTally
from stllr.spike_training import SpikeReadout, evaluate_spike_batch, train_spike_batch
from stllr.training import evaluate_batch, train_batch


class Dataset(Protocol):
    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]: ...


class ListDataset:
    """Samples ``[T_i, *shape]`` held in memory with their labels ``[N]``."""

    def __init__(
        self, samples: list[torch.Tensor], labels: torch.Tensor, users: list[int] | None = None
    ):
        if len(samples) != len(labels):
            raise ValueError(f"{len(samples)} samples but {len(labels)} labels")
        if users is not None and len(users) != len(samples):
            raise ValueError(f"{len(samples)} samples but {len(users)} users")
        self.samples = samples
        self.labels = labels
        #: speaker or user of every sample, where the data set records one (else None)
        self.sample_users = None if users is None else [int(u) for u in users]

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.samples[index], int(self.labels[index])


@dataclass(frozen=True)
class EpochMetrics:
    """Metrics of one epoch (accuracies in %, losses of the summed logits)."""

    epoch: int
    train_loss: float
    train_acc: float
    test_loss: float
    test_acc: float
    seconds: float
    #: spiking-output runs: the test set's FS/FR metrics (SpikeReadoutMetrics.as_dict())
    readout: dict | None = None

    def as_dict(self) -> dict:
        """The fields (``readout`` only when set)."""
        d = asdict(self)
        if d["readout"] is None:
            del d["readout"]
        return d


def batches(
    data: Dataset,
    batch_size: int,
    generator: torch.Generator | None = None,
    device: torch.device | None = None,
    num_workers: int = 0,
) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Yield padded ``(x [T, B, ...], y [B], lengths [B])`` (:func:`stack_samples`);
    shuffled when a generator is given, on ``device`` when one is given.

    Under data-parallel training each rank gets its share of every batch
    (:func:`stllr.distributed.shard`), all ranks drawing the same order, padded to the
    whole batch's length (:func:`stllr.distributed.pad_to_global_steps`). With
    ``num_workers`` > 0 a :class:`torch.utils.data.DataLoader` loads the same batches in
    worker processes; batches bound for CUDA are stacked in pinned memory and copied
    asynchronously. The batches are the same whatever the workers and the device.
    """
    n = len(data)
    order = torch.randperm(n, generator=generator) if generator is not None else torch.arange(n)
    # a batch with fewer samples than ranks is skipped by all (distributed.shard)
    whole = [order[s : s + batch_size].tolist() for s in range(0, n, batch_size)]
    index_batches = [shard(b) for b in whole if len(b) >= world_size()]
    pin = device is not None and device.type == "cuda"
    if num_workers == 0 and not pin:
        loader = (stack_samples([data[i] for i in indices]) for indices in index_batches)
    else:
        loader = torch.utils.data.DataLoader(
            data,
            batch_sampler=index_batches,
            collate_fn=stack_samples,
            num_workers=num_workers,
            pin_memory=pin,
        )
    for batch in loader:
        x, y, lengths = to_device(batch, device)
        yield pad_to_global_steps(x), y, lengths


def model_device(model: torch.nn.Module) -> torch.device | None:
    """The device of ``model``'s parameters (None for a model without any)."""
    p = next(model.parameters(), None)
    return None if p is None else p.device


def run_epoch(
    model: SpikingModel,
    data: Dataset,
    batch_size: int,
    optimizer: torch.optim.Optimizer | None = None,
    mode: str = "stllr",
    window: int = 10,
    generator: torch.Generator | None = None,
    progress: bool = False,
    desc: str = "",
    device: torch.device | None = None,
    num_workers: int = 0,
    readout: SpikeReadout | None = None,
    tally: SpikeReadoutTally | None = None,
) -> tuple[float, float]:
    """Train (with ``optimizer``) or evaluate (without) over ``data``: (mean loss, accuracy %).

    Training stops with a :class:`~stllr.errors.UserError` naming ``desc`` and the batch
    as soon as the loss or a parameter is NaN or infinite, so a diverged model is never
    returned (nor saved by a caller) as a trained one. Evaluation scores each sample over
    its own steps (padding masked), so it does not depend on ``batch_size``; training sees
    the padded batch (module doc). Batches go to ``device`` (None: the model's), loaded by
    ``num_workers`` processes (:func:`batches`).

    With ``readout`` (a spiking-output network) the batches go through
    :mod:`stllr.spike_training` instead, each sample over its own steps in training too;
    evaluation then adds its FS/FR metrics to ``tally`` when one is given.
    """
    if device is None:
        device = model_device(model)
    total, correct, loss_sum = 0, 0, 0.0
    n_batches = -(-len(data) // batch_size)
    bar = progress_bar(show=progress, total=n_batches, desc=desc, leave=False, unit="batch")
    loader = batches(data, batch_size, generator, device, num_workers)
    for i, (x, y, lengths) in enumerate(loader, 1):
        if readout is not None:
            if optimizer is None:
                res = evaluate_spike_batch(model, x, y, readout, lengths, tally)
            else:
                res = train_spike_batch(model, x, y, optimizer, readout, lengths)
                problem = _non_finite(res.loss, model)
                if problem:
                    bar.close()
                    raise _diverged(desc, f"{problem} at batch {i} of {n_batches}", optimizer)
        elif optimizer is None:
            res = evaluate_batch(model, x, y, lengths)
        else:
            if hasattr(optimizer, "set_local_batch"):  # distributed.GradientAllReduce
                optimizer.set_local_batch(y.numel())
            res = train_batch(model, x, y, optimizer, mode=mode, window=window)
            problem = _non_finite(res.loss, model)
            if problem:
                bar.close()
                raise _diverged(desc, f"{problem} at batch {i} of {n_batches}", optimizer)
        total += y.numel()
        correct += res.correct(y)
        loss_sum += res.loss * y.numel()
        bar.update(1)
        bar.set_postfix(acc=f"{100.0 * correct / total:.1f}%")
    bar.close()
    loss_sum, correct, total = all_reduce_sum([loss_sum, correct, total])
    return loss_sum / max(total, 1), 100.0 * correct / max(total, 1)


def _non_finite(loss: float, model: torch.nn.Module) -> str:
    """What left the finite range in a training step ("" if nothing did)."""
    if not math.isfinite(loss):
        return f"the loss is {loss}"
    for name, p in model.named_parameters():
        if not torch.isfinite(p).all():
            return f"parameter {name} is not finite after the step"
    return ""


def _diverged(desc: str, what: str, optimizer: torch.optim.Optimizer) -> UserError:
    """The one-line error for a training epoch whose loss or weights left the finite range."""
    where = f" in {desc}" if desc else ""
    lr = optimizer.param_groups[0]["lr"]
    return UserError(
        f"training diverged{where}: {what} (lr {lr:g}: lower it, or look for NaN/inf in the inputs)"
    )


def fit(
    model: SpikingModel,
    train: Dataset,
    test: Dataset,
    *,
    epochs: int,
    batch_size: int,
    lr: float,
    mode: str = "stllr",
    window: int = 10,
    seed: int = 0,
    progress: bool = True,
    on_epoch: Callable[[EpochMetrics], None] | None = None,
    device: torch.device | None = None,
) -> list[EpochMetrics]:
    """Adam training for ``epochs`` epochs, evaluating on ``test`` after each; the model
    moves to ``device`` first when one is given (its batches follow)."""
    if epochs < 1 or batch_size < 1 or not 0 < lr < math.inf:
        raise ValueError(
            f"epochs and batch_size must be ≥ 1 and lr finite and > 0, "
            f"got {epochs}, {batch_size}, {lr}"
        )
    if device is not None:
        model.to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(seed)
    history = []
    for epoch in range(1, epochs + 1):
        t0 = time.perf_counter()
        tr_loss, tr_acc = run_epoch(
            model,
            train,
            batch_size,
            optimizer,
            mode,
            window,
            gen,
            progress,
            f"epoch {epoch} train",
            device,
        )
        te_loss, te_acc = run_epoch(
            model, test, batch_size, progress=progress, desc="test", device=device
        )
        m = EpochMetrics(epoch, tr_loss, tr_acc, te_loss, te_acc, time.perf_counter() - t0)
        history.append(m)
        if on_epoch is not None:
            on_epoch(m)
    return history
