"""The project installs as a wheel, not only in editable mode.

A wheel is built from a copy of the source tree with this environment's setuptools (no
build isolation: no network), installed without dependencies into a fresh virtual
environment that borrows torch, Lava and the rest from this one through a ``.pth`` file,
and run from a folder outside the tree with no ``PYTHONPATH``: ``stllr pipeline --help``
and the loading of a pipeline config by task name must work there, from the installed
files alone. The reference for the configs is the source tree's ``pipeline/configs``.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import tomli

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("stllr", "quantization", "lava_models", "pipeline")
#: what ``pyproject.toml`` needs besides the packages
PROJECT_FILES = ("pyproject.toml", "README.md")
SITE_DIRS = ("site-packages", "dist-packages")


def _can_build_wheels() -> bool:
    """setuptools builds wheels itself from 70.1 on; before, the ``wheel`` package does."""
    import setuptools

    major, minor = (int(v) for v in setuptools.__version__.split(".")[:2])
    return (major, minor) >= (70, 1) or importlib.util.find_spec("wheel") is not None


def _run(cmd, cwd: Path, env: dict | None = None) -> str:
    res = subprocess.run(
        [str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=240
    )
    assert res.returncode == 0, f"{cmd}:\n{res.stdout}\n{res.stderr}"
    return res.stdout


def _copy_tree(dest: Path) -> Path:
    """The files a wheel is built from, so the build leaves nothing in the source tree."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    for name in PACKAGES:
        shutil.copytree(REPO / name, dest / name, ignore=ignore)
    for name in PROJECT_FILES:
        shutil.copy2(REPO / name, dest / name)
    return dest


def _fresh_venv(path: Path) -> Path:
    """A venv without pip whose ``.pth`` adds this environment's site-packages (torch,
    Lava, ...), not the source tree: its own site-packages comes first."""
    _run([sys.executable, "-m", "venv", "--without-pip", path], cwd=path.parent)
    python = path / "bin" / "python"
    own = _run([python, "-c", "import site; print(site.getsitepackages()[0])"], cwd=path)
    borrowed = [p for p in sys.path if Path(p).name in SITE_DIRS and Path(p).is_dir()]
    Path(own.strip(), "borrowed_site_packages.pth").write_text("\n".join(borrowed) + "\n")
    return python


def test_the_installed_wheel_runs_the_pipeline_cli_outside_the_source_tree(tmp_path):
    if not _can_build_wheels():
        message = "building a wheel needs setuptools ≥ 70.1 or the wheel package (dev extra)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    src = _copy_tree(tmp_path / "src")
    dist = tmp_path / "dist"
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
    _run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", dist, src], cwd=tmp_path)
    (wheel,) = dist.glob("stllr-*.whl")
    venv = tmp_path / "venv"
    python = _fresh_venv(venv)
    _run([*pip, "--python", python, "install", "--no-deps", "--no-index", wheel], cwd=tmp_path)

    outside = tmp_path / "elsewhere"
    outside.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    help_text = _run([venv / "bin" / "stllr", "pipeline", "--help"], cwd=outside, env=env)
    assert "usage: stllr pipeline" in help_text and "--task" in help_text

    probe = (
        "import json, sys\n"
        "import lava_models, pipeline, quantization, stllr\n"
        "from pipeline.config import config_path_for_task, load_pipeline_config, "
        "pipeline_tasks\n"
        "path = config_path_for_task('shd-standin')\n"
        "cfg = load_pipeline_config(path)\n"
        "print(json.dumps({'path': str(path), 'task': cfg.train.task,\n"
        "    'hidden': cfg.train.hidden, 'tasks': pipeline_tasks(), 'sys_path': sys.path,\n"
        "    'modules': [m.__file__ for m in (stllr, quantization, lava_models, pipeline)]}))\n"
    )
    got = json.loads(_run([python, "-c", probe], cwd=outside, env=env))

    installed = Path(_run([python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                          cwd=outside, env=env).strip())  # fmt: skip
    for module_file in got["modules"]:
        assert Path(module_file).is_relative_to(installed), module_file
    assert Path(got["path"]).is_relative_to(installed / "pipeline" / "configs")
    assert not any(Path(p).resolve() == REPO for p in got["sys_path"] if p)

    with (REPO / "pipeline" / "configs" / "shd_standin.toml").open("rb") as f:
        reference = tomli.load(f)["train"]
    assert (got["task"], got["hidden"]) == (reference["task"], reference["hidden"])
    in_tree = []
    for p in sorted((REPO / "pipeline" / "configs").glob("*.toml")):
        with p.open("rb") as f:
            in_tree.append(tomli.load(f)["train"]["task"])
    assert got["tasks"] == list(dict.fromkeys(in_tree))  # a task with two configs: once
