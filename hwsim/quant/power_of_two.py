"""Ristretto power-of-two weights (DESIGN.md B5; pmgysel/caffe ``Trim2IntegerPowerOf2``).

value = s * 2^e with s = +1 if x >= 0 else -1 and e = clamp(round(log2|x|), exp_min, exp_max)
(Ristretto's net uses exp_min = -8, exp_max = -1).

Rounding is in the log domain. For finite x != 0 the deterministic modes (rne, rhaz, rhu) all
round up exactly when |x| > 2^(k + 1/2) for k = floor(log2|x|): a tie would need |x| = 2^(k+1/2),
which no float is. The kernel decides this exactly from the binary exponent and the mantissa
compared with sqrt(2). Ristretto evaluates ``log2f`` in float32 and rounds that; for the few
float32 values within a float32 ulp of 2^(k+1/2) its result depends on the libm's ``log2f``.
Stochastic rounding: e = floor(log2|x| + u), log2 in float64.

Zero, NaN and Inf, as Ristretto's CUDA kernel (``log2f``, then ``fminf``/``fmaxf``, which return
the non-NaN operand): +-0 -> +2^exp_min (log2 0 = -inf, and -0 >= 0); +Inf -> +2^exp_max;
-Inf -> -2^exp_max; NaN -> -2^exp_max (NaN >= 0 is false, and fminf(NaN, exp_max) = exp_max).

Codes: (sign << (bits - 1)) | (e - exp_min), sign 1 for negative values; the spec guarantees
that 2 * (exp_max - exp_min + 1) <= 2^bits.

Plain functions: ``power_of_two_quantize(x, exp_min, exp_max, bits, ...)`` and
``power_of_two_dequantize(codes, exp_min, exp_max, bits)``.
"""

from __future__ import annotations

import math
from typing import Any

import numba
import numpy as np

from hwsim.devices.spec import PowerOfTwoNumerics
from hwsim.errors import QuantError
from hwsim.quant.qparams import PowerOfTwoQParams
from hwsim.quant.quantizer import Observer, Quantizer
from hwsim.quant.rounding import STOCHASTIC, uniform_from_counter
from hwsim.quant.tensor_input import float32_tensor, reject_context, rounding_args

# sqrt(2) rounded to float64 lies 1e-16 above the true value; no float32 mantissa in [1, 2)
# lies between the two (the nearest are 1.41421353... and 1.41421365...), so comparing a
# float32 mantissa with it decides |x| > 2^(k + 1/2) exactly.
_SQRT2 = math.sqrt(2.0)


def _check_range(exp_min: int, exp_max: int, bits: int) -> None:
    if not -126 <= exp_min <= exp_max <= 127:
        raise QuantError(f"power_of_two: need -126 <= exp_min <= exp_max <= 127 (normal float32 "
                         f"values), got exp_min {exp_min}, exp_max {exp_max}")
    if 2 * (exp_max - exp_min + 1) > (1 << bits):
        raise QuantError(f"power_of_two: {exp_max - exp_min + 1} exponents with a sign do not "
                         f"fit in {bits} bits")


@numba.njit(cache=True)
def _power_of_two_quantize_kernel(x: np.ndarray, out: np.ndarray, exp_min: int, exp_max: int,
                                  sign_shift: int, mode: int, seed: np.uint64) -> None:
    for i in range(x.size):
        v = np.float64(x[i])
        if v != v:
            e = exp_max
            neg = 1
        else:
            neg = 1 if v < 0.0 else 0
            a = abs(v)
            if a == 0.0:
                e = exp_min
            elif a == math.inf:
                e = exp_max
            else:
                if mode == STOCHASTIC:
                    r = math.floor(math.log2(a) + uniform_from_counter(seed, np.uint64(i)))
                    k = np.int64(r)
                else:
                    fr, ex = math.frexp(a)  # a = fr * 2^ex, fr in [0.5, 1)
                    k = np.int64(ex - 1)
                    if 2.0 * fr > _SQRT2:
                        k += 1
                e = min(max(k, exp_min), exp_max)
        out[i] = (np.int64(neg) << sign_shift) | np.int64(e - exp_min)


@numba.njit(cache=True)
def _power_of_two_dequantize_kernel(codes: np.ndarray, out: np.ndarray, exp_min: int,
                                    sign_shift: int) -> None:
    low = (np.int64(1) << sign_shift) - 1
    for i in range(codes.size):
        c = codes[i]
        v = math.ldexp(1.0, np.int64(exp_min + (c & low)))
        out[i] = np.float32(-v if (c >> sign_shift) & 1 else v)


def power_of_two_quantize(x: Any, exp_min: int, exp_max: int, bits: int, rounding: str = "rne",
                          seed: int | None = None) -> np.ndarray:
    """int64 codes of float32 ``x`` (module docstring)."""
    _check_range(exp_min, exp_max, bits)
    a = float32_tensor(x, "power_of_two")
    mode, seed64 = rounding_args(rounding, seed, "power_of_two")
    out = np.empty(a.shape, dtype=np.int64)
    _power_of_two_quantize_kernel(a.reshape(-1), out.reshape(-1), int(exp_min), int(exp_max),
                                  int(bits) - 1, mode, seed64)
    return out


def power_of_two_dequantize(codes: Any, exp_min: int, exp_max: int, bits: int) -> np.ndarray:
    """float32 values +-2^e of codes (exact)."""
    _check_range(exp_min, exp_max, bits)
    c = np.asarray(codes)
    if not np.issubdtype(c.dtype, np.integer):
        raise QuantError(f"power_of_two: codes must be an integer array, got dtype {c.dtype}")
    c = np.asarray(c, dtype=np.int64, order="C")
    low = c & ((1 << (bits - 1)) - 1)
    bad = (c < 0) | (c >= (1 << bits)) | (low > exp_max - exp_min)
    if bad.any():
        raise QuantError(f"power_of_two: code {int(c[bad].flat[0])} is not (sign << {bits - 1}) "
                         f"| offset with offset in 0..{exp_max - exp_min} "
                         f"({int(bad.sum())} of {c.size} codes)")
    out = np.empty(c.shape, dtype=np.float32)
    _power_of_two_dequantize_kernel(c.reshape(-1), out.reshape(-1), int(exp_min), int(bits) - 1)
    return out


class PowerOfTwoObserver(Observer):
    """The exponent range is part of the spec; data are only checked."""

    def __init__(self, numerics: PowerOfTwoNumerics) -> None:
        self._numerics = numerics

    def update(self, x: np.ndarray) -> PowerOfTwoObserver:
        float32_tensor(x, "power_of_two")
        return self

    def qparams(self) -> PowerOfTwoQParams:
        return PowerOfTwoQParams(exp_min=self._numerics.exp_min, exp_max=self._numerics.exp_max)


class PowerOfTwoQuantizer(Quantizer):
    """Ristretto power-of-two weights per a ``PowerOfTwoNumerics`` record."""

    def __init__(self, numerics: PowerOfTwoNumerics) -> None:
        if not isinstance(numerics, PowerOfTwoNumerics):
            raise QuantError(f"PowerOfTwoQuantizer needs PowerOfTwoNumerics, got "
                             f"{type(numerics).__name__}")
        _check_range(numerics.exp_min, numerics.exp_max, numerics.bits)
        self.numerics = numerics

    def observer(self) -> PowerOfTwoObserver:
        return PowerOfTwoObserver(self.numerics)

    def calibrate(self, x: np.ndarray, **context: Any) -> PowerOfTwoQParams:
        reject_context(context, "power_of_two")
        return self.observer().update(x).qparams()

    def _check(self, qp: PowerOfTwoQParams) -> None:
        if not isinstance(qp, PowerOfTwoQParams):
            raise QuantError(f"power_of_two: qparams must be PowerOfTwoQParams, got "
                             f"{type(qp).__name__}")
        _check_range(qp.exp_min, qp.exp_max, self.numerics.bits)

    def quantize(self, x: np.ndarray, qp: PowerOfTwoQParams) -> np.ndarray:
        self._check(qp)
        n = self.numerics
        return power_of_two_quantize(x, qp.exp_min, qp.exp_max, n.bits, n.rounding.value,
                                     n.seed)

    def dequantize(self, codes: np.ndarray, qp: PowerOfTwoQParams) -> np.ndarray:
        self._check(qp)
        return power_of_two_dequantize(codes, qp.exp_min, qp.exp_max, self.numerics.bits)
