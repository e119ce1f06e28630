"""Lava still imports and runs after tqdm has fixed the multiprocessing context."""

from __future__ import annotations

import subprocess
import sys


def test_import_lava_after_tqdm_lock():
    code = (
        "import multiprocessing as mp, tqdm\n"
        "list(tqdm.tqdm(range(2), disable=False))\n"  # tqdm creates an mp lock: context fixed
        "assert mp.get_start_method(allow_none=True) is not None\n"
        "from lava_models.runtime import import_lava\n"
        "import_lava()\n"
        "from lava.proc.lif.process import LIF\n"
        "print(mp.get_start_method())\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.strip().endswith("fork")
