"""The format table (quantization/formats.py) is the one home of the integer formats:
docs/fixed_point.md shows exactly it, its limits are Lava's, and no other module defines
its constants again."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest
import torch

from quantization import formats
from quantization.formats import FORMATS, markdown_table, render_doc
from quantization.learning import quantize_signal
from quantization.learning_formats import LearningSpec, psi_table
from quantization.loihi import LIFFixedParams, LIFFixedState, lif_int_step
from quantization.ptq import quantize_decay

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "docs" / "fixed_point.md"


def test_doc_tables_are_the_generated_ones():
    text = DOC.read_text(encoding="utf-8")
    assert render_doc(text) == text, (
        "docs/fixed_point.md differs from quantization/formats.py: run "
        "`python -m quantization.formats docs/fixed_point.md`"
    )


def _doc_rows() -> list[list[str]]:
    rows = []
    for line in DOC.read_text(encoding="utf-8").splitlines():
        if line.startswith("| ") and not line.startswith("| quantity"):
            rows.append([c.strip() for c in line.replace("\\|", "¦").strip("|").split(" | ")])
    return rows


def test_every_doc_row_states_the_code_format():
    """Parsed independently of the generator: each row's width, rounding and overflow."""
    by_quantity = {f.quantity.replace("\\|", "¦"): f for f in FORMATS.values()}
    rows = _doc_rows()
    assert len(rows) == len(FORMATS)
    for quantity, width, _scale, rounding, overflow in rows:
        fmt = by_quantity[quantity]
        assert str(fmt.bits) in width or fmt.width == width, quantity
        assert rounding.split(":")[0] == fmt.rule, quantity
        assert overflow.split(":")[0] == fmt.overflow, quantity
        assert fmt.rule in formats.ROUNDINGS and fmt.overflow in formats.OVERFLOWS


def test_markdown_table_rejects_unknown_section():
    with pytest.raises(ValueError, match="no formats in section 'x'"):
        markdown_table("x")


def test_limits_are_lavas_registers():
    """Against Lava's documented registers (docs/lava.md §4), not the table's own arithmetic."""
    assert (formats.ACT_SHIFT, formats.VTH_SHIFT, formats.DECAY_UNITY) == (6, 6, 4096)
    assert (formats.DU_NONE, formats.DV_MAX) == (4095, 4095)
    assert (formats.UV_LIMIT, formats.STATE_MAX, formats.VTH_MAX) == (2**23, 2**23 - 1, 131071)
    assert (formats.BIAS_MANT_MIN, formats.BIAS_MANT_MAX) == (-4096, 4095)
    assert (FORMATS["membrane"].min_int, FORMATS["membrane"].max_int) == (-(2**23 - 1), 2**23 - 1)
    assert (FORMATS["psi"].min_int, FORMATS["psi"].max_int) == (0, 255)
    assert (FORMATS["signal"].min_int, FORMATS["signal"].max_int) == (-128, 127)


def test_code_follows_the_table():
    """The sites that read the table saturate and round as its rows say."""
    # membrane: saturates at ±(2^23 − 1) in the LIF kernel
    huge = np.array([2**30, -(2**30)], dtype=np.int64)
    _, _, st = lif_int_step(LIFFixedState(huge * 0, huge * 0), huge, LIFFixedParams(4095, 0, 10**5))
    assert st.v.tolist() == [0, -(2**23 - 1)]  # the first spiked (hard reset)
    # third factor: nearest, ties to even, saturated to 8 bits
    spec = LearningSpec(0, 0, 0, 0, 0, 0, 0, 0, 64, 0)
    sig = torch.tensor([0.5, 1.5, 2.5, -0.5, 300.0, -300.0])
    assert quantize_signal(sig, spec).tolist() == [0, 2, 2, 0, 127, -128]
    # decay: nearest-even of (1 − γ)·4096, clipped at 4095 (4096 for readouts)
    assert quantize_decay(1 - 0.5 / 4096) == 0 and quantize_decay(1 - 1.5 / 4096) == 2
    assert quantize_decay(-1.0) == 4095 and quantize_decay(-1.0, allow_full=True) == 4096
    # Ψ entries fit the 8-bit unsigned format
    t = psi_table("a", 2.0**-10).table
    assert int(t.min()) >= 0 and int(t.max()) <= 255


CONSTANTS = {
    "ACT_SHIFT", "VTH_SHIFT", "DECAY_SHIFT", "DECAY_UNITY", "DU_NONE", "DV_MAX", "UV_LIMIT",
    "STATE_MAX", "VTH_MAX", "BIAS_MANT_MIN", "BIAS_MANT_MAX", "PSI_BITS", "SIGNAL_MIN",
    "SIGNAL_MAX", "ROUNDINGS",
}  # fmt: skip


def test_constants_are_defined_once():
    """No module of quantization/ or lava_models/ but formats.py assigns the table's
    constants (importing and re-exporting them is fine)."""
    found = []
    for path in [*(REPO / "quantization").rglob("*.py"), *(REPO / "lava_models").rglob("*.py")]:
        if path.name == "formats.py" and path.parent.name == "quantization":
            continue
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            targets = node.targets if isinstance(node, ast.Assign) else []
            for t in targets:
                names = t.elts if isinstance(t, ast.Tuple) else [t]
                found += [f"{path.name}: {n.id}" for n in names
                          if isinstance(n, ast.Name) and n.id in CONSTANTS]  # fmt: skip
    assert found == []
