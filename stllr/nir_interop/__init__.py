"""NIR interchange (issue #18): export a float S-TLLR model to the Neuromorphic
Intermediate Representation and build an S-TLLR model from a NIR graph.

The discrete-time mapping (dt, τ ↔ γ, r, v_leak, reset) is in :mod:`.time_mapping` and
docs/nir.md. The ``nir`` package is imported only here; nothing imports Lava.
"""

from __future__ import annotations

from stllr.errors import UserError


def require_nir():
    """The ``nir`` module, or a one-line :class:`UserError` saying how to install it."""
    try:
        import nir
    except ImportError as exc:  # pragma: no cover - nir is a main dependency
        raise UserError(
            "NIR support needs the 'nir' package: pip install 'nir==1.0.8' (or -e '.[dev]')"
        ) from exc
    return nir
