"""Fixed-point formats, quantizers and the integer emulator (docs/fixed_point.md).

Depends on ``stllr``; never imports Lava.

* :mod:`quantization.formats` — every integer quantity's format (width, scale, rounding,
  overflow) and the constants of Lava's registers, one table (docs/fixed_point.md);
* :mod:`quantization.qformat` — quantize/dequantize into a format, saturation counters;
* :mod:`quantization.exponents` — the per-layer power-of-two exponent rule;
* :mod:`quantization.backend` — the numpy/torch operations the kernels share, and the
  rounding vocabulary (``round_float``, ``round_shift``, ``saturate``);
* :mod:`quantization.loihi`, :mod:`quantization.kernels` — integer LIF/Dense (bit-exact with
  Lava's ``fixed_pt``), traces, Ψ tables, stochastic rounding and the S-TLLR update;
* :mod:`quantization.convert` → :mod:`quantization.ptq` — float task models → a
  :class:`~quantization.network.QNetwork` of integer nodes;
* :mod:`quantization.nodes` — the node kinds: each kind's node, state, step, learning rule,
  shapes and float → integer converter, one module each (docs/node_kinds.md);
* :mod:`quantization.emulator` — batched integer inference and on-device learning;
* :mod:`quantization.learning` — calibrated on-device learning constants;
* :mod:`quantization.qat` — quantization-aware fine-tuning (straight-through estimator);
* :mod:`quantization.report` — the PTQ/QAT workflow of ``stllr quantize`` / ``stllr compare``;
  :mod:`quantization.comparison` — their rows and text tables, the paired accuracy
  difference; :mod:`quantization.accuracy_plot` — the accuracy-vs-bits figure.
"""
