"""Measure the memory that autograd keeps for the backward pass.

:class:`SavedTensorTracker` counts the bytes of every tensor autograd saves
for backward while it is alive (packed, not yet freed), and records the peak.
This is the part of training memory that BPTT grows with T and S-TLLR keeps
flat; it is an allocation count, independent of timing and of the allocator.
On CUDA, :func:`cuda_peak_bytes` gives the device allocator's own peak.
"""

from __future__ import annotations

import torch


class _Held:
    """Keeps a saved tensor and returns its bytes to the tracker when autograd frees it."""

    __slots__ = ("tensor", "tracker", "nbytes")

    def __init__(self, tensor: torch.Tensor, tracker: SavedTensorTracker):
        self.tensor = tensor
        self.tracker = tracker
        self.nbytes = tensor.numel() * tensor.element_size()
        tracker.current += self.nbytes
        tracker.peak = max(tracker.peak, tracker.current)

    def __del__(self):
        self.tracker.current -= self.nbytes


class SavedTensorTracker:
    """Context manager: ``peak`` = max bytes held by autograd for backward inside it."""

    def __init__(self):
        self.current = 0
        self.peak = 0
        self._hooks = None

    def __enter__(self) -> SavedTensorTracker:
        self._hooks = torch.autograd.graph.saved_tensors_hooks(
            lambda t: _Held(t, self), lambda held: held.tensor
        )
        self._hooks.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._hooks.__exit__(*exc)


def cuda_peak_bytes(device: torch.device) -> int:
    """Peak bytes allocated on a CUDA device since the last reset."""
    return int(torch.cuda.max_memory_allocated(device))
