"""Lava needs the fork start method even after torch/tqdm fixed a context."""

from lava_models.runtime import import_lava

import_lava()
