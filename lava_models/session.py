"""One Lava run from start to stop: a deadline, and a clean shut-down whatever happens.

:class:`LavaSession` is the context every Lava run of the toolkit goes through
(:func:`lava_models.runner.run_lava`, :func:`lava_models.online.run_lava_online`,
:func:`lava_models.builtin.run_builtin`):

* it never hangs: the run is started non-blocking and polled against a deadline
  (``timeout_s``); a model that raises is reported, with its traceback, as
  :class:`~lava_models.errors.LavaRunError` as soon as its OS process ends;
* it always stops Lava: on success the runtime is stopped normally; on any failure the
  Lava processes (and Lava's shared-memory manager, all started by this run) are
  terminated by process handle, since Lava's own ``stop()`` could wait forever on a
  blocked process;
* while Lava runs, SIGTERM (which would end the process at once) raises
  ``SystemExit(143)`` in the main thread instead (:func:`exit_on_sigterm`), so the
  same clean-up runs.

Lava itself is imported lazily (inside :meth:`LavaSession.__enter__`).
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import threading
import time
from collections.abc import Callable

from lava_models.errors import LavaRunError


def exit_on_sigterm() -> Callable[[], None]:
    """Until the returned function is called, SIGTERM raises ``SystemExit(143)`` in this
    process (only from the main thread, and only where SIGTERM still has its default
    action), so that a terminated run stops Lava and removes its records in ``finally``.
    Forked Lava processes inherit the handler; in them it keeps SIGTERM's default action."""
    if (threading.current_thread() is not threading.main_thread()
            or signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL):  # fmt: skip
        return lambda: None
    owner = os.getpid()

    def handler(signum, frame):
        if os.getpid() != owner:  # a forked Lava process: die as it would have
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, handler)
    return lambda: signal.signal(signal.SIGTERM, signal.SIG_DFL)


class LavaSession:
    """Compile, start (non-blocking), wait with a deadline, and always shut down."""

    def __init__(self, source, run_cfg, steps: int, timeout_s: float):
        self.source, self.run_cfg, self.steps, self.timeout_s = source, run_cfg, steps, timeout_s
        self.run_s = self.stop_s = 0.0
        self._failed = True

    def __enter__(self):
        from lava.magma.core.run_conditions import RunSteps

        t0 = time.monotonic()
        deadline = t0 + self.timeout_s
        self._restore_sigterm = exit_on_sigterm()
        try:
            self.source.run(condition=RunSteps(num_steps=self.steps, blocking=False),
                            run_cfg=self.run_cfg)  # fmt: skip
            self._wait(deadline)
        except BaseException:
            try:
                self._shutdown(graceful=False)
            finally:
                self._restore_sigterm()
            raise
        self.run_s = time.monotonic() - t0
        self._failed = False
        return self

    def __exit__(self, exc_type, exc, tb):
        try:
            self._shutdown(graceful=exc_type is None and not self._failed)
        finally:
            self._restore_sigterm()
        return False

    def _actors(self) -> list:
        rt = self.source.runtime
        infra = getattr(rt, "_messaging_infrastructure", None) if rt is not None else None
        return list(getattr(infra, "actors", []) or [])

    def _wait(self, deadline: float) -> None:
        rt = self.source.runtime
        ports = list(rt.service_to_runtime)
        while not all(p.probe() for p in ports):
            for actor in self._actors():
                err = actor.exception  # a model raised: its OS process has ended
                if err is not None:
                    raise LavaRunError(f"a Lava process failed:\n{err[1]}")
            if time.monotonic() > deadline:
                raise LavaRunError(
                    f"Lava run of {self.steps} steps did not finish within {self.timeout_s} s"
                )
            time.sleep(0.005)  # leave the (few) cores to the Lava processes
        try:
            rt.wait()  # the runtime service has answered: returns at once (or raises)
        except RuntimeError as err:
            tbs = [a.exception[1] for a in self._actors() if a.exception is not None]
            raise LavaRunError(f"{err}\n" + "\n".join(tbs)) from err

    def _shutdown(self, graceful: bool) -> None:
        t0 = time.monotonic()
        rt = self.source.runtime
        try:
            if rt is None:
                return
            if graceful:
                self.source.stop()
                return
            # A failed run: Lava's stop() could wait forever on a blocked process.
            for actor in self._actors():
                if _alive(actor):
                    actor.terminate()
            for actor in self._actors():
                if _alive(actor):
                    mp.Process.join(actor, 5.0)  # Lava's SystemProcess.join has no timeout
                if _alive(actor):
                    actor.kill()
            infra = getattr(rt, "_messaging_infrastructure", None)
            smm = getattr(infra, "smm", None)
            if smm is not None:
                smm.shutdown()
            if getattr(rt, "_watchdog_manager", None) is not None:
                rt._watchdog_manager.stop()
            rt._is_started = rt._is_running = False  # keep Runtime.__del__ from stop()
        finally:
            self.stop_s = time.monotonic() - t0


def _alive(actor) -> bool:
    try:
        return actor.is_alive()
    except ValueError:  # already joined and closed by Lava's own error handling
        return False


__all__ = ["LavaSession", "exit_on_sigterm"]
