"""Data-parallel training across processes (torchrun; NCCL on GPUs, gloo on CPUs).

The backend follows the ``device`` setting (:func:`stllr.devices.backend_for`): NCCL only
when the model, and so every gradient and metric this module reduces, is on a GPU; gloo
with everything on the CPU. A collective's tensors are always on its backend's device.

S-TLLR computes its gradients with per-step backward passes inside one
optimiser step, which DistributedDataParallel's one-backward-per-forward hooks
do not fit. Instead :class:`GradientAllReduce` wraps the optimiser and reduces
the accumulated ``.grad`` of every parameter right before each ``step()``.

The reduction must reproduce single-process training on the global batch:

* gradients of a batch-**mean** loss (the CE at the output, every BP path) are
  **averaged** over ranks, each weighted by its share: Σ_r B_r·mean_r / Σ_r B_r = the
  mean over the whole batch, also when the shares differ (the last batch of an epoch);
* DFA/sDFA learning signals are **not** batch-averaged (docs/rule.md §7), so the
  hidden-layer gradients they drive are batch **sums**, and must be **summed**
  over ranks.

A model states which parameters are batch sums through
``batch_summed_parameters()`` (see :class:`~stllr.models.base.SpikingModel`).
Each rank sees a disjoint shard of the same shuffled order (:func:`shard`), zero-padded
to the whole batch's length (:func:`pad_to_global_steps`).
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist

from stllr.devices import backend_for, resolve_device


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def init_from_env(device: str | torch.device = "auto") -> bool:
    """Initialise the process group when launched by torchrun (``WORLD_SIZE`` > 1).

    ``device`` is the training device (a setting as in :func:`stllr.devices.resolve_device`
    or a :class:`torch.device`): NCCL with this rank's GPU made current when it is CUDA,
    gloo when it is the CPU, so the backend and the tensors always agree.
    """
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or dist.is_initialized():
        return is_distributed()
    device = resolve_device(device) if isinstance(device, str) else device
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(backend_for(device))
    return True


def collective_device() -> torch.device:
    """Where a collective's tensors must be: this rank's GPU under NCCL, else the CPU."""
    if is_distributed() and dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def shard(indices: list[int]) -> list[int]:
    """This rank's contiguous share of a batch's indices (all ranks see the same order).

    Shares differ in size by at most one, so every rank has samples whenever the batch has
    at least as many as there are ranks (:func:`stllr.trainer.batches` skips a smaller
    one on every rank, so no rank waits in a collective alone).
    """
    w, r = world_size(), rank()
    base, extra = divmod(len(indices), w)
    start = r * base + min(r, extra)
    return indices[start : start + base + (r < extra)]


def all_reduce_sum(values: list[float]) -> list[float]:
    """Sum scalars over ranks (metrics: correct counts, loss sums)."""
    if not is_distributed():
        return values
    t = torch.tensor(values, dtype=torch.float64, device=collective_device())
    dist.all_reduce(t)
    return t.tolist()


def all_reduce_max(value: int) -> int:
    """The largest ``value`` over ranks (a batch's padded length)."""
    if not is_distributed():
        return value
    t = torch.tensor([value], dtype=torch.int64, device=collective_device())
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return int(t.item())


def pad_to_global_steps(x: torch.Tensor) -> torch.Tensor:
    """``x`` ``[T, B, ...]`` zero-padded at the end to the longest shard's ``T``.

    A single process pads the whole batch to its longest sample, and the S-TLLR learning
    window counts from the end of the padded sequence; each rank's shard must be padded to
    the same length, or its samples would learn at other steps than in one process.
    """
    steps = all_reduce_max(x.shape[0])
    if steps == x.shape[0]:
        return x
    return torch.cat([x, x.new_zeros(steps - x.shape[0], *x.shape[1:])])


class GradientAllReduce:
    """Optimiser wrapper: reduce gradients over ranks, then step.

    Gradients are reduced where they are, on the parameters' device, which must be the
    backend's (:func:`init_from_env` with the training device sees to it).

    Args:
        optimizer: the per-rank optimiser (identical initial state on all ranks).
        summed: parameters whose gradients are batch sums (reduced with SUM);
            every other parameter's gradient is averaged.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, summed: list[torch.nn.Parameter]):
        self.optimizer = optimizer
        self._summed = {id(p) for p in summed}
        self.local_batch = 1  # this rank's samples in the current batch (set_local_batch)

    def set_local_batch(self, size: int) -> None:
        """This rank's share of the batch about to be trained: the averaged gradients are
        weighted by it, so unequal shares still give the mean over the whole batch."""
        self.local_batch = size

    def __getattr__(self, name):
        return getattr(self.optimizer, name)

    def reduce_gradients(self) -> None:
        """Batch-mean gradients: Σ_r B_r·g_r / Σ_r B_r (the mean over the whole batch);
        batch-sum gradients (DFA/sDFA): Σ_r g_r."""
        if not is_distributed():
            return
        total = all_reduce_sum([float(self.local_batch)])[0]
        for group in self.optimizer.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    p.grad = torch.zeros_like(p)
                if id(p) in self._summed:
                    dist.all_reduce(p.grad)
                else:
                    p.grad *= self.local_batch
                    dist.all_reduce(p.grad)
                    p.grad /= total

    def step(self, closure=None):
        self.reduce_gradients()
        return self.optimizer.step(closure)

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.optimizer.zero_grad(set_to_none=set_to_none)
