"""Quantization schemes: calibrate -> qparams, quantize -> codes, dequantize; numba kernels."""
