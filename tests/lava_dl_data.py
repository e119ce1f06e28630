"""lava-dl's published netx test data, fetched at test time and cached.

The lava-dl 0.6.0 wheel on PyPI ships ``tests/lava/lib/dl/netx/`` with real slayer
exports (``gts/ntidigits/ntidigits.net``: CUBA neurons with a current decay, per-neuron
synaptic delays, an ``average`` output layer) and the spikes lava-dl's own netx run
produced on them (``input.npy``, ``output.npy``). :func:`lava_dl_netx_dir` downloads the
wheel once with pip (no dependencies), extracts only that folder into the cache
(``$STLLR_TEST_CACHE`` or ``~/.cache/stllr-tests``) and returns it; without network or
pip it calls ``pytest.skip``. :func:`lava_dl_package_root` is the folder that holds
lava-dl's ``lava/lib/dl`` package from the same wheel, to put on ``PYTHONPATH`` of a
separate process that runs netx itself on the Lava of this environment.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import pytest

LAVA_DL = "lava-dl==0.6.0"
PREFIX = "tests/lava/lib/dl/netx/"
PACKAGE = "lava/lib/dl/"  # lava-dl's python package (for running netx itself)


def cache_dir() -> Path:
    root = os.environ.get("STLLR_TEST_CACHE") or Path.home() / ".cache" / "stllr-tests"
    return Path(root) / LAVA_DL.replace("==", "-")


def lava_dl_netx_dir() -> Path:
    """The cached ``tests/lava/lib/dl/netx`` folder of the lava-dl wheel (skip if unavailable)."""
    out = cache_dir() / PREFIX
    done = cache_dir() / ".complete"
    if done.exists():
        return out
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "pip", "download", LAVA_DL, "--no-deps", "--only-binary",
               ":all:", "-d", tmp, "-q", "--disable-pip-version-check"]  # fmt: skip
        try:
            subprocess.run(cmd, check=True, capture_output=True, timeout=300)
        except (subprocess.SubprocessError, OSError) as e:
            pytest.skip(f"could not download {LAVA_DL} for its netx test data: {e}")
        wheels = list(Path(tmp).glob("lava_dl-*.whl"))
        if not wheels:
            pytest.skip(f"pip did not deliver a wheel of {LAVA_DL}")
        with zipfile.ZipFile(wheels[0]) as z:
            members = [m for m in z.namelist() if m.startswith(PREFIX) and not m.endswith(".py")]
            z.extractall(cache_dir(), members)
            z.extractall(cache_dir() / "pkg", [m for m in z.namelist() if m.startswith(PACKAGE)])
    done.touch()
    return out


def lava_dl_package_root() -> Path:
    """The folder to put on ``PYTHONPATH`` for ``import lava.lib.dl`` (skip if unavailable)."""
    lava_dl_netx_dir()
    return cache_dir() / "pkg"
