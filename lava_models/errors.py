"""The errors of :mod:`lava_models`, in one module that imports no other lava_models module.

Every module of the package (the exporters, the runner, netx) raises these, so they
live below all of them: importing an error never imports Lava, the exporter or the
runner, and no two modules import each other to share one.
"""

from __future__ import annotations

# the node kinds raise it too (their output-shape checks), so it lives with them
from quantization.nodes.base import UnsupportedNodeError


class LavaRunError(RuntimeError):
    """A Lava run failed (a model raised, or the deadline passed); the message says which."""


class NetxFileError(ValueError):
    """A netx file that is malformed or outside the supported subset (names layer and field)."""


class NetxInexactError(ValueError):
    """netx's weight processing would change the weights (see
    :func:`~lava_models.netx.synapse.netx_dense_synapse`)."""


__all__ = ["LavaRunError", "NetxFileError", "NetxInexactError", "UnsupportedNodeError"]
