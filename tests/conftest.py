"""Shared pytest setup.

Tests run torch single-threaded: results are then independent of the machine's
core count, and small ops do not suffer from OpenMP spinning when the 2 CI cores
are shared with another process (measured here: up to 20× slower with 2 threads).
"""

import pytest
import torch

torch.set_num_threads(1)


@pytest.fixture(scope="session")
def shd_standin_small(tmp_path_factory):
    """400 train / 200 test SHD-like recordings (generated once per session, ~1 s)."""
    from stllr.data.shd_frames import standin_shd_tensors

    return standin_shd_tensors(tmp_path_factory.mktemp("shd_standin"), n_train=400, n_test=200)
