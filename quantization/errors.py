"""The errors a quantized network's nodes raise, in a module that imports nothing (so
``lava_models.errors`` and the torch-free netx reader can share them)."""

from __future__ import annotations


class UnsupportedNodeError(ValueError):
    """A node that a back end (Lava's built-in Dense/Conv + LIF, the toolkit's processes,
    or netx) cannot represent exactly; the message names the node."""
