"""Fixed-point formats, quantizers and the integer emulator.

Depends on ``stllr``; never imports Lava. Present so far:

* :mod:`quantization.qformat` — formats as data (bits, binary point, signedness,
  rounding, overflow) with quantize/dequantize and saturation counters;
* :mod:`quantization.backend` — the numpy/torch operations the kernels share;
* :mod:`quantization.loihi` — Lava's fixed-point Dense and LIF as kernels written once,
  bit-exact with lava-nc's ``fixed_pt`` models (``hw_tests``).

Still to come (issue: quantization): PTQ/QAT for the task models, the S-TLLR
on-device learning kernels and the batched emulator.
"""
