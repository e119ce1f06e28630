"""Progress bars: one switch for all of them.

Every bar of the toolkit (training and evaluation epochs, frame binning and caching,
stand-in generation, quantization, the pipeline's stages) comes from :func:`bar`. A bar is
shown when its caller asks for it *and* bars are enabled; the command line disables them
for ``--no-progress`` and when stderr is not a terminal (a log file, a pipe).
"""

from __future__ import annotations

from contextlib import contextmanager

_enabled = True


def set_enabled(on: bool) -> None:
    """Allow (``True``) or silence (``False``) every progress bar of this process."""
    global _enabled
    _enabled = bool(on)


def enabled() -> bool:
    return _enabled


@contextmanager
def switched(on: bool):
    """Bars allowed (or silenced) inside the ``with`` block, the previous state after it."""
    before = _enabled
    set_enabled(on)
    try:
        yield
    finally:
        set_enabled(before)


def bar(iterable=None, *, show: bool = True, **kwargs):
    """A ``tqdm`` bar over ``iterable`` (or with ``total=``), disabled unless ``show`` and
    bars are enabled; ``kwargs`` go to ``tqdm``."""
    from tqdm.auto import tqdm

    return tqdm(iterable, disable=not (show and _enabled), **kwargs)
