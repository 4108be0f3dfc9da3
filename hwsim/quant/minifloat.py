"""Ristretto minifloat (DESIGN.md B5; pmgysel/caffe ``Trim2MiniFloat_cpu`` /
``Trim2MiniFloat_device``).

Format: 1 sign bit, e = ``exp_bits`` exponent bits, m = bits - 1 - e mantissa bits, bias
2^(e-1) - 1. Every exponent field 0 .. 2^e - 1 is a normal binade (no subnormals, no Inf/NaN
codes): a nonzero value is (-1)^s * (1 + f/2^m) * 2^(E - bias).

quantize, as Ristretto's kernel does it on the float32 bit fields of x:
  * float32 exponent field 0 (+-0 and float32 subnormals) -> 0;
  * E = e32 - 127 + bias; E < 0 -> 0 (underflow is decided on the *unrounded* exponent, so
    values just below 2^-bias also become 0);
  * E > 2^e - 1 -> saturate to +-(2 - 2^-m) * 2^(2^e - 1 - bias) (sign kept);
  * otherwise the 23-bit mantissa is rounded to m bits with the spec's rounding (Ristretto GPU
    ``rint`` = rne, CPU ``round`` = rhaz; the mantissa is >= 0 so rhu equals rhaz; stochastic
    ``floor(t + u)``); a carry out of the mantissa moves to the next binade.
NaN and +-Inf have the float32 exponent field 255, so they saturate to +-max with the sign bit of
the input (NaN included), exactly as Ristretto's code does.

Deviations from Ristretto, deliberate:
  * A carry out of the top binade (x within half a unit of the largest binade's end) gives
    Ristretto 2^(2^e - bias), a value with no code; here it saturates to the largest value.
  * Ristretto's CPU loop ``return``s at the first zero/underflowing element, leaving the rest
    of the tensor unquantized (a bug); here every element is quantized.
  * Codes: Ristretto's value set is zero plus 2^bits nonzero values, one more than ``bits`` bits
    hold. Nonzero values get their bit pattern (sign << (bits-1)) | (E << m) | f; zero (of
    either sign: Ristretto writes +0) gets the out-of-band code ``1 << bits``
    (``minifloat_zero_code``).
  * Formats wider than float32 (e > 7 or m > 23) are refused, because dequantized values must be
    normal float32 numbers (e <= 7 keeps every value within 2^-63 .. 2^65).

exp_bits 'auto' (``ristretto_exp_bits``): Ristretto's ``Quantize2MiniFloat`` takes
e = max(4, ceil(log2(log2(m) - 1) + 1)) over the maxima m of every layer's inputs and outputs
(parameters ignored) and uses one e for the whole net. Here e comes from the tensor being
calibrated; m <= 2 (log of a non-positive number in Ristretto, an undefined int conversion that
the max(4, .) absorbs) gives 4.

Plain functions: ``ristretto_exp_bits``, ``minifloat_qparams``, ``minifloat_quantize``,
``minifloat_dequantize``, ``minifloat_zero_code``.
"""

from __future__ import annotations

import math
from typing import Any

import numba
import numpy as np

from hwsim.devices.spec import MinifloatNumerics
from hwsim.errors import QuantError
from hwsim.quant.clip_observer import ClipStatistics
from hwsim.quant.qparams import MinifloatQParams
from hwsim.quant.quantizer import Observer, Quantizer
from hwsim.quant.rounding import round_mode
from hwsim.quant.tensor_input import float32_tensor, int64_codes, reject_context, rounding_args

MAX_EXP_BITS = 7
MAX_MANT_BITS = 23


def ristretto_exp_bits(max_abs: float) -> int:
    """e = max(4, ceil(log2(log2(m) - 1) + 1)) for the calibration maximum m = max |x| > 0."""
    m = float(max_abs)
    if not (math.isfinite(m) and m > 0.0):
        raise QuantError(f"minifloat: the calibration maximum |x| must be finite and > 0, got "
                         f"{max_abs!r}")
    t = math.log2(m) - 1.0
    if t <= 0.0:
        return 4
    return max(4, math.ceil(math.log2(t) + 1.0))


def minifloat_qparams(exp_bits: int, bits: int) -> MinifloatQParams:
    """Qparams of a ``bits``-bit minifloat with ``exp_bits`` exponent bits."""
    e, b = int(exp_bits), int(bits)
    m = b - 1 - e
    if not 1 <= e <= MAX_EXP_BITS:
        raise QuantError(f"minifloat: exp_bits {e} outside 1..{MAX_EXP_BITS} (wider exponents "
                         "give values outside the float32 normal range)")
    if not 1 <= m <= MAX_MANT_BITS:
        raise QuantError(f"minifloat: {b} bits with {e} exponent bits leave {m} mantissa bits; "
                         f"allowed 1..{MAX_MANT_BITS}")
    return MinifloatQParams(exp_bits=e, mant_bits=m)


def minifloat_zero_code(qp: MinifloatQParams) -> int:
    """The out-of-band code of zero, 1 << bits (module docstring)."""
    return 1 << (1 + qp.exp_bits + qp.mant_bits)


@numba.njit(cache=True)
def _minifloat_quantize_kernel(u: np.ndarray, out: np.ndarray, e_bits: int, m_bits: int,
                               mode: int, seed: np.uint64) -> None:
    bias = (1 << (e_bits - 1)) - 1
    max_e = (1 << e_bits) - 1
    max_f = (1 << m_bits) - 1
    sign_shift = e_bits + m_bits
    zero = np.int64(1) << (sign_shift + 1)
    drop = float(1 << (23 - m_bits))
    for i in range(u.size):
        bitsv = np.int64(u[i])
        s = (bitsv >> 31) & 1
        e32 = (bitsv >> 23) & 0xFF
        mant = bitsv & 0x7FFFFF
        if e32 == 0:
            out[i] = zero
            continue
        ex = e32 - 127 + bias
        if ex < 0:
            out[i] = zero
            continue
        if ex > max_e:  # saturate (NaN and +-Inf included)
            ex = max_e
            f = max_f
        else:
            f = np.int64(round_mode(float(mant) / drop, mode, seed, np.uint64(i)))
            if f > max_f:  # carry into the next binade
                f = 0
                ex += 1
                if ex > max_e:  # deviation: Ristretto returns 2^(max_e + 1 - bias), no code
                    ex = max_e
                    f = max_f
        out[i] = (s << sign_shift) | (ex << m_bits) | f


@numba.njit(cache=True)
def _minifloat_dequantize_kernel(codes: np.ndarray, out: np.ndarray, e_bits: int,
                                 m_bits: int) -> None:
    bias = (1 << (e_bits - 1)) - 1
    sign_shift = e_bits + m_bits
    zero = np.int64(1) << (sign_shift + 1)
    for i in range(codes.size):
        c = codes[i]
        if c == zero:
            out[i] = np.float32(0.0)
            continue
        ex = (c >> m_bits) & ((1 << e_bits) - 1)
        f = c & ((1 << m_bits) - 1)
        v = math.ldexp(1.0 + f / float(1 << m_bits), np.int64(ex - bias))
        out[i] = np.float32(-v if (c >> sign_shift) & 1 else v)


def minifloat_quantize(x: Any, exp_bits: int, bits: int, rounding: str = "rne",
                       seed: int | None = None) -> np.ndarray:
    """int64 minifloat codes of float32 ``x`` (module docstring)."""
    qp = minifloat_qparams(exp_bits, bits)
    a = float32_tensor(x, "minifloat")
    mode, seed64 = rounding_args(rounding, seed, "minifloat")
    out = np.empty(a.shape, dtype=np.int64)
    _minifloat_quantize_kernel(a.reshape(-1).view(np.uint32), out.reshape(-1), qp.exp_bits,
                               qp.mant_bits, mode, seed64)
    return out


def minifloat_dequantize(codes: Any, exp_bits: int, bits: int) -> np.ndarray:
    """float32 values of minifloat codes (exact: every value is a normal float32)."""
    qp = minifloat_qparams(exp_bits, bits)
    c = int64_codes(codes, "minifloat", 0, minifloat_zero_code(qp))
    out = np.empty(c.shape, dtype=np.float32)
    _minifloat_dequantize_kernel(c.reshape(-1), out.reshape(-1), qp.exp_bits, qp.mant_bits)
    return out


class MinifloatObserver(Observer):
    """Fixed ``exp_bits``: no statistics needed. 'auto': running max |x| ->
    ``ristretto_exp_bits``."""

    def __init__(self, numerics: MinifloatNumerics) -> None:
        self._numerics = numerics
        self._stats = ClipStatistics(numerics.calibration, "minifloat")

    def update(self, x: np.ndarray) -> MinifloatObserver:
        a = float32_tensor(x, "minifloat")
        if self._numerics.exp_bits == "auto":
            self._stats.update(a)
        return self

    def qparams(self) -> MinifloatQParams:
        n = self._numerics
        if n.exp_bits == "auto":
            return minifloat_qparams(ristretto_exp_bits(self._stats.positive_clip()), n.bits)
        return minifloat_qparams(n.exp_bits, n.bits)


class MinifloatQuantizer(Quantizer):
    """Ristretto minifloat per a ``MinifloatNumerics`` record (module docstring)."""

    def __init__(self, numerics: MinifloatNumerics) -> None:
        if not isinstance(numerics, MinifloatNumerics):
            raise QuantError(f"MinifloatQuantizer needs MinifloatNumerics, got "
                             f"{type(numerics).__name__}")
        self.numerics = numerics
        if numerics.exp_bits == "auto":
            ClipStatistics(numerics.calibration, "minifloat")  # rejects bad methods early
        else:
            minifloat_qparams(numerics.exp_bits, numerics.bits)

    def observer(self) -> MinifloatObserver:
        return MinifloatObserver(self.numerics)

    def calibrate(self, x: np.ndarray, **context: Any) -> MinifloatQParams:
        reject_context(context, "minifloat")
        return self.observer().update(x).qparams()

    def _check(self, qp: MinifloatQParams) -> int:
        if not isinstance(qp, MinifloatQParams):
            raise QuantError(f"minifloat: qparams must be MinifloatQParams, got "
                             f"{type(qp).__name__}")
        bits = 1 + qp.exp_bits + qp.mant_bits
        if bits != self.numerics.bits:
            raise QuantError(f"minifloat: qparams describe {bits} bits, the spec "
                             f"{self.numerics.bits}")
        return bits

    def quantize(self, x: np.ndarray, qp: MinifloatQParams) -> np.ndarray:
        bits = self._check(qp)
        n = self.numerics
        return minifloat_quantize(x, qp.exp_bits, bits, n.rounding.value, n.seed)

    def dequantize(self, codes: np.ndarray, qp: MinifloatQParams) -> np.ndarray:
        return minifloat_dequantize(codes, qp.exp_bits, self._check(qp))
