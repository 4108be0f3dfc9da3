"""Conversion of user inputs (tensors, codes, rounding settings) to non-uniform kernel arguments.

The devices receive float32 tensors; a scheme's kernels therefore read float32. float16 and
integer inputs convert to float32 exactly; float64 inputs are rounded to float32 first (round to
nearest even), which is what handing a float64 tensor to the device would do.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from hwsim.errors import QuantError
from hwsim.quant.rounding import STOCHASTIC, mode_code


def float32_tensor(x: Any, scheme: str) -> np.ndarray:
    """``x`` as a C-contiguous float32 array; QuantError (naming ``scheme``) for non-numeric
    input such as strings, objects or complex numbers."""
    a = np.asarray(x)
    if a.dtype == np.bool_ or not (np.issubdtype(a.dtype, np.floating)
                                   or np.issubdtype(a.dtype, np.integer)):
        raise QuantError(f"{scheme}: input must be a real float or integer tensor, got dtype "
                         f"{a.dtype} with shape {a.shape}")
    return np.asarray(a, dtype=np.float32, order="C")  # keeps 0-d as 0-d


def int64_codes(codes: Any, scheme: str, lo: int, hi: int) -> np.ndarray:
    """``codes`` as a C-contiguous int64 array whose values lie in [lo, hi]; QuantError naming
    ``scheme``, the allowed range and the first offending value otherwise."""
    a = np.asarray(codes)
    if not np.issubdtype(a.dtype, np.integer):
        raise QuantError(f"{scheme}: codes must be an integer array, got dtype {a.dtype} with "
                         f"shape {a.shape}")
    a = np.asarray(a, dtype=np.int64, order="C")
    if a.size:
        bad = (a < lo) | (a > hi)
        if bad.any():
            first = int(a[bad].flat[0])
            raise QuantError(f"{scheme}: code {first} outside the allowed range [{lo}, {hi}] "
                             f"({int(bad.sum())} of {a.size} codes)")
    return a


def reject_context(context: dict[str, Any], scheme: str) -> None:
    """Calibration context keys are scheme-specific; these schemes accept none (a typo must not
    be swallowed silently)."""
    if context:
        raise QuantError(f"{scheme}: calibrate() takes no context keys, got {sorted(context)}")


def rounding_args(rounding: str, seed: int | None, scheme: str) -> tuple[int, np.uint64]:
    """(kernel mode code, uint64 seed) for a rounding name; stochastic rounding needs a seed
    (any Python int; taken modulo 2^64)."""
    mode = mode_code(rounding)
    if mode == STOCHASTIC and seed is None:
        raise QuantError(f"{scheme}: stochastic rounding needs an integer seed")
    return mode, np.uint64(0 if seed is None else int(seed) % (1 << 64))
