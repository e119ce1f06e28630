"""Fixed-point formats, quantizers and the integer emulator (issue: quantization).

Depends on ``stllr``; never imports Lava. Not implemented yet: this package is
reserved so that the dependency direction ``stllr ← quantization ← lava_models``
is fixed from the start.
"""
