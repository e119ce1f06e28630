"""The parity table (``python -m hw_tests.parity``) passes, is complete and can fail.

The ``--quick`` table is generated once by its own command (a subprocess, as a user runs
it): every row passes and the exit status is 0; it holds every task model × check ×
signal source of :func:`hw_tests.parity.expected_keys`; ``parity.md`` and ``parity.json``
say the same. Then each check group is run with a deliberately corrupted reference (one
weight of the emulator network, or of the torch reference, moved before comparing): its
rows must fail, and the command must exit non-zero.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import pytest

from hw_tests.parity import (
    GROUP_CHECKS,
    ROOT,
    TASK_MODELS,
    Row,
    build_table,
    expected_keys,
    main,
    parse_markdown,
    row_cells,
)

SHD = next(tm for tm in TASK_MODELS if tm.key == ("shd-standin", "shd_rsnn"))
#: the current-based (CuLIF) recurrent network
CULIF = next(tm for tm in TASK_MODELS if tm.task == "ntidigits-standin")
#: the adaptive (AdLIF) recurrent network, its AdLIF layer plastic
ADLIF = next(tm for tm in TASK_MODELS if tm.label == "shd-standin-adlif")
FSFN = next(tm for tm in TASK_MODELS if tm.arch == "fsfn")


@pytest.fixture(scope="module")
def quick_table(tmp_path_factory):
    out = tmp_path_factory.mktemp("parity")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "hw_tests.parity", "--quick", "--out", str(out)]
    res = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    doc = json.loads((out / "parity.json").read_text()) if (out / "parity.json").exists() else {}
    md = (out / "parity.md").read_text() if (out / "parity.md").exists() else ""
    return res, doc, md


def test_quick_table_passes(quick_table):
    res, doc, _ = quick_table
    failed = [r for r in doc.get("rows", []) if not r["passed"]]
    assert res.returncode == 0, (res.stdout[-4000:], res.stderr[-4000:], failed)
    assert doc["passed"] and doc["mode"] == "quick" and not failed
    assert "parity.md" in res.stdout and "| task | model | check |" in res.stdout


def test_quick_table_has_every_task_model_and_check(quick_table):
    _, doc, _ = quick_table
    keys = [(r["task"], r["model"], r["check"], r["source"]) for r in doc["rows"]]
    assert len(keys) == len(set(keys)), "a row appears twice"
    assert set(keys) == set(expected_keys(mode="quick"))
    tasks = {r["task"] for r in doc["rows"]}
    archs = {r["model"] for r in doc["rows"]}
    assert {"shd-standin", "gesture-standin", "cifar10dvs-standin", "ncaltech101-standin",
            "mvsec-standin", "shd-standin-adlif"} <= tasks  # fmt: skip
    assert {"shd_rsnn", "vgg9", "resnet18", "fsfn"} <= archs
    checks = {r["check"] for r in doc["rows"]}
    assert checks == {c for cs in GROUP_CHECKS.values() for c in cs}
    assert "host" in {r["source"] for r in doc["rows"] if r["check"] == "fixed_weights"}


def test_markdown_agrees_with_json(quick_table):
    _, doc, md = quick_table
    table = parse_markdown(md)
    assert len(table) == len(doc["rows"]) > 0
    for cells, row in zip(table, doc["rows"], strict=True):
        r = Row(**row)
        assert list(cells.values()) == [c.replace("\\|", "|") for c in row_cells(r)]
        assert cells["result"] == ("pass" if r.passed else "FAIL")
        if r.value is not None:
            assert math.isclose(float(cells["value"]), r.value, rel_tol=5e-3, abs_tol=0)
    n_ok = sum(r["passed"] for r in doc["rows"])
    assert f"{n_ok}/{len(doc['rows'])} rows pass" in md


@pytest.mark.parametrize("tm", [SHD, CULIF, ADLIF], ids=["lif", "culif", "adlif"])
@pytest.mark.parametrize("group", ["float", "fixed", "predictions"])
def test_corrupted_reference_fails_its_rows(group, tm):
    """One weight of the reference moved (the emulator's integer network; the torch
    model for the float group): the rows that compare weights/states must fail."""
    rows = build_table(quick=True, task_models=[tm], groups=[group], corrupt=[group])
    assert {r.check for r in rows} == set(GROUP_CHECKS[group])
    must_fail = {"float": "float_weights", "fixed": "fixed_weights",
                 "predictions": "fixed_inference"}[group]  # fmt: skip
    failing = [r for r in rows if r.check == must_fail]
    assert failing and all(not r.passed and r.value is not None for r in failing), failing
    assert all(r.value > r.bound for r in failing)


@pytest.mark.parametrize("group", ["float", "fixed", "predictions"])
def test_corrupted_fsfn_reference_fails_its_rows(group):
    """The flow model's rows can fail too: one weight of the finest flow head moved in the
    reference (torch for float, the emulator's integer network otherwise)."""
    rows = build_table(quick=True, task_models=[FSFN], groups=[group], corrupt=[group])
    assert {r.check for r in rows} == set(GROUP_CHECKS[group])
    must_fail = {"float": ("float_membrane", "float_weights"), "fixed": ("fixed_weights",),
                 "predictions": ("fixed_inference", "predictions")}[group]  # fmt: skip
    failing = [r for r in rows if r.check in must_fail]
    assert len(failing) == len(must_fail), rows
    assert all(not r.passed and r.value is not None and r.value > r.bound for r in failing)


def test_corrupted_command_exits_nonzero(tmp_path):
    code = main(["--quick", "--groups", "builtin", "--corrupt", "builtin", "--out", str(tmp_path)])
    assert code == 1
    doc = json.loads((tmp_path / "parity.json").read_text())
    assert not doc["passed"] and doc["corrupt"] == ["builtin"]
    assert {r["check"] for r in doc["rows"]} == {"builtin_dense", "builtin_conv"}
    assert all(not r["passed"] and r["value"] > 0 for r in doc["rows"])
    assert "FAIL" in (tmp_path / "parity.md").read_text()
