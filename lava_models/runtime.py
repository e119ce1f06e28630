"""Importing Lava safely next to torch, tqdm and DataLoaders, and never leaving its
processes behind.

Lava sets the multiprocessing start method to ``fork`` when its message
infrastructure is imported (docs/lava.md §7, pitfall 3). If anything has fixed the
context before (tqdm's lock, an ``mp.Queue``, a DataLoader pool), that import
raises ``RuntimeError: context has already been set``. :func:`import_lava`
performs the import with the start method forced to ``fork`` instead.

Lava runs every process model, and its shared-memory manager, in a forked OS process
(~430 MB each). If the Python process that started them is killed (``kill -9``, the OOM
killer, a SIGTERM), nothing stops them: they would keep running, orphaned, for minutes.
:func:`import_lava` therefore also calls :func:`die_with_parent`: from then on, every
process this interpreter forks (and every process those fork in turn) asks Linux to
send it SIGKILL when its parent dies (``prctl(PR_SET_PDEATHSIG)``). When the Lava
processes are gone, multiprocessing's resource tracker (which they share) sees its pipe
close and unlinks the shared-memory segments they leaked.
"""

from __future__ import annotations

import ctypes
import multiprocessing as mp
import os
import signal
import sys

_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
_libc = None  # loaded once, before any fork
_forking_pid = 0  # the pid of the process that is forking (read in the child)


def import_lava() -> None:
    """Import Lava's multiprocessing layer, forcing the ``fork`` start method, and make
    every process forked from now on die with its parent (:func:`die_with_parent`)."""
    die_with_parent()
    original = mp.set_start_method

    def forced(method, force=False):
        return original(method, force=True)

    mp.set_start_method = forced
    try:
        import lava.magma.runtime.message_infrastructure.multiprocessing  # noqa: F401
    finally:
        mp.set_start_method = original


def die_with_parent() -> None:
    """Make every child forked by this process from now on (and, since the hook is
    inherited, every grandchild) receive SIGKILL when its parent exits, however it exits.

    Registered once per process (``os.register_at_fork``); a no-op outside Linux. Only
    ``fork`` children are covered: ``subprocess`` and ``spawn`` do not run the hook. Linux
    signals the child when the *thread* that forked it ends, so start Lava from a thread
    that outlives the run (the main thread, as this toolkit does).
    """
    global _libc
    if _libc is not None or not sys.platform.startswith("linux"):
        return
    _libc = ctypes.CDLL(None, use_errno=True)
    os.register_at_fork(before=_remember_forking_pid, after_in_child=_set_parent_death_signal)


def _remember_forking_pid() -> None:
    global _forking_pid
    _forking_pid = os.getpid()


def _set_parent_death_signal() -> None:
    """In a fresh child: SIGKILL when the parent dies; if it already has, die now."""
    if _libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0) != 0:
        return  # not permitted here: the child lives on as before
    if os.getppid() != _forking_pid:  # the parent died between fork() and prctl()
        os.kill(os.getpid(), signal.SIGKILL)
