"""Lava export of quantized stllr networks (the only package, with ``hw_tests``, that
imports Lava, and only inside functions).

* :mod:`lava_models.builtin` — hard-reset dense/conv inference networks on Lava's own
  ``Dense``/``Conv``/``LIF`` (``fixed_pt``), bit-exact with the emulator at ``delay=1``;
* :mod:`lava_models.processes` — the toolkit's own processes (fused synapse + neuron,
  third-factor port, on-device S-TLLR learning), ``fixed_pt`` models calling the
  shared integer kernels of :mod:`quantization` and ``floating_pt`` models calling
  stllr's float step functions (through :mod:`lava_models.float_ops`);
* :mod:`lava_models.exporter` — node converters (registries) from a ``QNetwork`` or
  from the float graph of ``quantization.convert.to_float_graph`` (``export_float``);
* :mod:`lava_models.runner` — runs an exported network and reads its records;
* :mod:`lava_models.session` — one Lava run with a deadline, always stopped;
* :mod:`lava_models.runtime` — importing Lava safely next to torch/tqdm;
* :mod:`lava_models.errors` — the package's errors (imports nothing).

Imports go one way, without circles (tests/test_dependency_direction.py): ``errors`` and
``runtime`` import no other module of the package, ``session`` only ``errors``; the
exporters (``builtin``, ``exporter``, ``netx``) build on those, ``runner`` on the
exporter, ``online`` on the runner. No module imports another's private names.
"""
