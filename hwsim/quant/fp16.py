"""FP16 numerics: float32 -> float16 conversion on bit patterns, IEEE and device variants.

Rounding is always to nearest, ties to even, on the exact float32 value (no double rounding).
The options (``FloatNumerics`` fields, DESIGN.md B4):

subnormals
  keep: IEEE 754 binary16; results below 2^-14 round onto the subnormal grid (unit 2^-24).
  flush: no subnormals. Subnormal float32 inputs read as zero (DAZ), subnormal float16 codes
  read as zero in ``dequantize`` (DAZ), and results whose magnitude is tiny become zero (FTZ).
tininess (flush only)
  before_rounding: tiny when the exact input |x| < 2^-14.
  after_rounding: tiny when |x| rounded to 11 significant bits *with an unbounded exponent
  range* is < 2^-14 (IEEE 754-2019 7.5). Only inputs that round up to exactly 2^-14 escape the
  flush: x >= 2^-14 - 2^-26. Note the consequence: x in [2^-14 - 2^-25, 2^-14 - 2^-26) flushes
  to 0 although IEEE rounding with subnormals would give 2^-14.
  Known answer (DESIGN.md B4): 2^-14 * (1 - 2^-12) -> 0 before, 2^-14 after.
signed_zero_on_flush
  True: a flushed result keeps the input's sign (Arm NEON behaviour); False: +0.
overflow
  inf: IEEE; |x| >= 65520 (rounds past 65504) and +-Inf give +-Inf.
  saturate: such values (and +-Inf inputs) give +-65504 (Ascend saturation mode,
  ``aclrtFloatOverflowMode``; that Inf *inputs* saturate too is an assumption).
nan
  propagate: NaN -> quiet NaN with the input's sign and the top 10 payload bits, quiet bit set
  (x86 F16C / Arm FCVT behaviour; numpy keeps a signalling NaN signalling instead).
  zero: NaN -> +0 (Ascend saturation mode).

Kernels work on the uint32 bit patterns, never on ``astype``. Plain functions for callers without
a spec: ``fp16_round`` (float32 -> float16) and ``fp16_widen`` (float16 -> float32), and the
numba scalars ``fp16_bits_from_fp32_bits`` / ``fp32_bits_from_fp16_bits``.
"""

from __future__ import annotations

from typing import Any

import numba
import numpy as np

from hwsim.devices.spec import FloatNumerics
from hwsim.errors import QuantError
from hwsim.quant.qparams import FloatQParams
from hwsim.quant.quantizer import Observer, Quantizer
from hwsim.quant.tensor_input import float32_tensor, reject_context

FP16_MAX = 65504.0
FP16_MIN_NORMAL = 2.0 ** -14

_SUBNORMALS = ("keep", "flush")
_TININESS = ("before_rounding", "after_rounding")
_OVERFLOW = ("inf", "saturate")
_NAN = ("propagate", "zero")


@numba.njit(cache=True, inline="always")
def fp16_bits_from_fp32_bits(u: np.uint32, flush: bool, after_rounding: bool, saturate: bool,
                             nan_zero: bool, signed_zero: bool) -> np.uint16:
    """The binary16 bit pattern of the float32 with bit pattern ``u`` (RNE; options as in the
    module docstring, as booleans)."""
    u = np.uint32(u)
    sign = np.uint32((u >> np.uint32(16)) & np.uint32(0x8000))
    e = np.int64((u >> np.uint32(23)) & np.uint32(0xFF))
    mant = np.uint32(u & np.uint32(0x7FFFFF))
    if e == 255:
        if mant != 0:  # NaN
            if nan_zero:
                return np.uint16(0)
            return np.uint16(sign | np.uint32(0x7E00) | (mant >> np.uint32(13)))
        if saturate:  # +-Inf input
            return np.uint16(sign | np.uint32(0x7BFF))
        return np.uint16(sign | np.uint32(0x7C00))
    flushed = np.uint16(sign) if signed_zero else np.uint16(0)
    if e == 0:  # +-0 or a float32 subnormal (< 2^-126): zero in every mode
        if flush and mant != 0:
            return flushed  # DAZ
        return np.uint16(sign)
    ex = e - 127  # unbiased exponent: |x| = (1 + mant/2^23) * 2^ex
    if ex >= 16:
        h = np.uint32(0x7C00)  # |x| >= 65536: overflows
    elif ex >= -14:  # normal range of binary16
        m = mant >> np.uint32(13)
        rem = mant & np.uint32(0x1FFF)
        h = (np.uint32(ex + 15) << np.uint32(10)) | m
        if rem > np.uint32(0x1000) or (rem == np.uint32(0x1000) and (m & np.uint32(1)) == 1):
            h += np.uint32(1)  # a carry out of the mantissa increments the exponent
    else:  # |x| < 2^-14
        if flush:
            if not after_rounding or ex < -15:
                return flushed
            # ex == -15: with an unbounded exponent the result is 1.m * 2^-15 rounded to 10
            # fraction bits; it is not tiny only when it rounds up to 2^-14.
            m = mant >> np.uint32(13)
            rem = mant & np.uint32(0x1FFF)
            if m == np.uint32(0x3FF) and rem >= np.uint32(0x1000):  # tie goes to even 2^-14
                return np.uint16(sign | np.uint32(0x0400))
            return flushed
        shift = np.uint32(-ex - 1)  # subnormal unit 2^-24: value/2^-24 = sig * 2^(ex+1)
        if shift >= np.uint32(25):
            return np.uint16(sign)  # |x| < 2^-25 rounds to zero
        sig = mant | np.uint32(0x800000)
        m = sig >> shift
        rem = sig & ((np.uint32(1) << shift) - np.uint32(1))
        half = np.uint32(1) << (shift - np.uint32(1))
        h = m
        if rem > half or (rem == half and (m & np.uint32(1)) == 1):
            h += np.uint32(1)  # may become 0x0400 = 2^-14, the correct encoding
    if h >= np.uint32(0x7C00):
        if saturate:
            return np.uint16(sign | np.uint32(0x7BFF))
        return np.uint16(sign | np.uint32(0x7C00))
    return np.uint16(sign | h)


@numba.njit(cache=True, inline="always")
def fp32_bits_from_fp16_bits(h: np.uint16, flush: bool, saturate: bool, nan_zero: bool,
                             signed_zero: bool) -> np.uint32:
    """The float32 bit pattern of binary16 ``h`` (exact), with DAZ when ``flush``, +-Inf read
    as +-65504 when ``saturate`` and NaN read as +0 when ``nan_zero``."""
    h = np.uint32(h)
    sign = (h & np.uint32(0x8000)) << np.uint32(16)
    e = np.int64((h >> np.uint32(10)) & np.uint32(0x1F))
    m = h & np.uint32(0x3FF)
    if e == 31:
        if m != 0:
            if nan_zero:
                return np.uint32(0)
            return sign | np.uint32(0x7F800000) | (m << np.uint32(13))
        if saturate:
            return sign | np.uint32(0x477FE000)  # 65504
        return sign | np.uint32(0x7F800000)
    if e == 0:
        if m == 0:
            return sign
        if flush:
            return sign if signed_zero else np.uint32(0)
        # subnormal m * 2^-24: normalise; m < 2^10 so the float32 is normal and exact
        k = np.int64(0)
        while (m & np.uint32(0x400)) == 0:
            m <<= np.uint32(1)
            k += 1
        return sign | (np.uint32(127 - 14 - k) << np.uint32(23)) | (
            (m & np.uint32(0x3FF)) << np.uint32(13))
    return sign | (np.uint32(e - 15 + 127) << np.uint32(23)) | (m << np.uint32(13))


@numba.njit(cache=True, parallel=True)
def _round_kernel(u: np.ndarray, out: np.ndarray, flush: bool, after: bool, saturate: bool,
                  nan_zero: bool, signed_zero: bool) -> None:
    for i in numba.prange(u.size):
        out[i] = fp16_bits_from_fp32_bits(u[i], flush, after, saturate, nan_zero, signed_zero)


@numba.njit(cache=True, parallel=True)
def _widen_kernel(h: np.ndarray, out: np.ndarray, flush: bool, saturate: bool, nan_zero: bool,
                  signed_zero: bool) -> None:
    for i in numba.prange(h.size):
        out[i] = fp32_bits_from_fp16_bits(h[i], flush, saturate, nan_zero, signed_zero)


def _flags(subnormals: str, tininess: str | None, overflow: str, nan: str) -> tuple[bool, ...]:
    if subnormals not in _SUBNORMALS:
        raise QuantError(f"fp16: subnormals must be one of {_SUBNORMALS}, got {subnormals!r}")
    if overflow not in _OVERFLOW:
        raise QuantError(f"fp16: overflow must be one of {_OVERFLOW}, got {overflow!r}")
    if nan not in _NAN:
        raise QuantError(f"fp16: nan must be one of {_NAN}, got {nan!r}")
    if subnormals == "flush" and tininess not in _TININESS:
        raise QuantError(f"fp16: subnormals 'flush' needs tininess in {_TININESS}, got "
                         f"{tininess!r}")
    if subnormals == "keep" and tininess is not None:
        raise QuantError("fp16: tininess is only meaningful with subnormals 'flush'")
    return (subnormals == "flush", tininess == "after_rounding", overflow == "saturate",
            nan == "zero")


def fp16_round(x: Any, subnormals: str = "keep", tininess: str | None = None,
               overflow: str = "inf", nan: str = "propagate",
               signed_zero_on_flush: bool = True) -> np.ndarray:
    """float32 tensor ``x`` -> float16 array of the same shape (RNE; options as in the module
    docstring). Non-float32 input is converted to float32 first."""
    flush, after, saturate, nan_zero = _flags(subnormals, tininess, overflow, nan)
    a = float32_tensor(x, "fp16")
    out = np.empty(a.shape, dtype=np.uint16)
    _round_kernel(a.reshape(-1).view(np.uint32), out.reshape(-1), flush, after, saturate,
                  nan_zero, bool(signed_zero_on_flush))
    return out.view(np.float16)


def fp16_widen(h: Any, subnormals: str = "keep", overflow: str = "inf", nan: str = "propagate",
               signed_zero_on_flush: bool = True) -> np.ndarray:
    """float16 array -> float32 values a device with these options reads (exact widening; DAZ
    of subnormals for ``flush``, Inf read as 65504 for ``saturate``, NaN read as +0 for
    ``zero``)."""
    a = np.asarray(h)
    if a.dtype != np.float16:
        raise QuantError(f"fp16: codes must be a float16 array, got dtype {a.dtype} with shape "
                         f"{a.shape}")
    flush, _, saturate, nan_zero = _flags(subnormals, "before_rounding" if subnormals == "flush"
                                          else None, overflow, nan)
    a = np.asarray(a, order="C")
    out = np.empty(a.shape, dtype=np.uint32)
    _widen_kernel(a.reshape(-1).view(np.uint16), out.reshape(-1), flush, saturate, nan_zero,
                  bool(signed_zero_on_flush))
    return out.view(np.float32)


class Fp16Observer(Observer):
    """FP16 needs no statistics; ``qparams()`` names the format."""

    def update(self, x: np.ndarray) -> Fp16Observer:
        float32_tensor(x, "fp16")
        return self

    def qparams(self) -> FloatQParams:
        return FloatQParams(format="fp16")


class Fp16Quantizer(Quantizer):
    """float32 -> float16 per a ``FloatNumerics`` record; codes are float16 arrays.

    quantize: ``fp16_round`` with the spec's options. dequantize: ``fp16_widen`` (float32).
    NaN/Inf: as the module docstring (propagate/zero, inf/saturate).
    """

    def __init__(self, numerics: FloatNumerics) -> None:
        if not isinstance(numerics, FloatNumerics):
            raise QuantError(f"Fp16Quantizer needs FloatNumerics, got {type(numerics).__name__}")
        self.numerics = numerics

    def observer(self) -> Fp16Observer:
        return Fp16Observer()

    def calibrate(self, x: np.ndarray, **context: Any) -> FloatQParams:
        reject_context(context, "fp16")
        return self.observer().update(x).qparams()

    def _check(self, qp: FloatQParams) -> None:
        if not isinstance(qp, FloatQParams) or qp.format != "fp16":
            raise QuantError(f"fp16: qparams must be FloatQParams(format='fp16'), got {qp!r}")

    def quantize(self, x: np.ndarray, qp: FloatQParams) -> np.ndarray:
        self._check(qp)
        n = self.numerics
        return fp16_round(x, n.subnormals, n.tininess, n.overflow, n.nan, n.signed_zero_on_flush)

    def dequantize(self, codes: np.ndarray, qp: FloatQParams) -> np.ndarray:
        self._check(qp)
        n = self.numerics
        return fp16_widen(codes, n.subnormals, n.overflow, n.nan, n.signed_zero_on_flush)
