"""The errors of :mod:`lava_models`, in one module that imports nothing.

Every module of the package (the exporters, the runner, netx) raises these, so they
live below all of them: importing an error never imports Lava, the exporter or the
runner, and no two modules import each other to share one.
"""

from __future__ import annotations


class UnsupportedNodeError(ValueError):
    """A node that an export (Lava's built-in Dense/Conv + LIF, the toolkit's processes,
    or netx) cannot represent exactly; the message names the node."""


class LavaRunError(RuntimeError):
    """A Lava run failed (a model raised, or the deadline passed); the message says which."""


class NetxFileError(ValueError):
    """A netx file that is malformed or outside the supported subset (names layer and field)."""


class NetxInexactError(ValueError):
    """netx's weight processing would change the weights (see
    :func:`~lava_models.netx.synapse.netx_dense_synapse`)."""


__all__ = ["LavaRunError", "NetxFileError", "NetxInexactError", "UnsupportedNodeError"]
