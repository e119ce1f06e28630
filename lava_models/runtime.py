"""Importing Lava safely next to torch, tqdm and DataLoaders.

Lava sets the multiprocessing start method to ``fork`` when its message
infrastructure is imported (LAVA.md §7, pitfall 3). If anything has fixed the
context before (tqdm's lock, an ``mp.Queue``, a DataLoader pool), that import
raises ``RuntimeError: context has already been set``. :func:`import_lava`
performs the import with the start method forced to ``fork`` instead.
"""

from __future__ import annotations

import multiprocessing as mp


def import_lava() -> None:
    """Import Lava's multiprocessing layer, forcing the ``fork`` start method."""
    original = mp.set_start_method

    def forced(method, force=False):
        return original(method, force=True)

    mp.set_start_method = forced
    try:
        import lava.magma.runtime.message_infrastructure.multiprocessing  # noqa: F401
    finally:
        mp.set_start_method = original
