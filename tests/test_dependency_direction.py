"""``stllr`` never imports Lava (DESIGN.md: stllr ← quantization ← lava_models)."""

from __future__ import annotations

import pkgutil
import subprocess
import sys

import stllr


def test_stllr_modules_do_not_import_lava():
    names = [m.name for m in pkgutil.walk_packages(stllr.__path__, "stllr.")]
    names = [n for n in names if not n.startswith("stllr.cli")]  # the CLI may import lazily
    code = (
        "import importlib, sys\n"
        f"for n in {names!r}: importlib.import_module(n)\n"
        "bad = sorted(m for m in sys.modules if m == 'lava' or m.startswith('lava.'))\n"
        "print(len(bad)); sys.exit(1 if bad else 0)\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr
    assert len(names) > 10
