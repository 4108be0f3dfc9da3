"""Requantization: integer accumulator -> output code, in the arithmetic a runtime uses.

The arithmetics are the values of ``Arithmetic.requant`` in a device spec:

fp32_multiply (ONNX Runtime QLinearConv / QLinearMatMul, MLAS ``MlasRequantizeOutput``):
    multiplier = float32(float32(s_x * s_w[c]) / s_y), all in float32, in that order;
    y = RNE(clamp(float32(acc) * multiplier, qmin - zp, qmax - zp)) + zp.
q31_double_rounding (TFLite conv / depthwise reference kernels):
    M = double(s_x) * double(s_w[c]) / double(s_y); ``QuantizeMultiplier`` splits M with frexp
    into a Q0.31 significand (round half away) and a shift; ``MultiplyByQuantizedMultiplier``
    = RoundingDivideByPOT(SaturatingRoundingDoublingHighMul(acc * 2^left wrapping int32, q31),
    right) (gemmlowp ``fixedpoint.h``); y = clamp(result + zp wrapping int32, qmin, qmax).
    Accumulators wider than 32 bits (TFLite's 16x8 kernels, int64 accumulator) use the int64
    overload of ``MultiplyByQuantizedMultiplier`` (``kernels/internal/common.h``): the q31
    multiplier reduced to 16 bits, reduced = (q31 + 2^15) >> 16 (0x7FFF when q31 >= 0x7FFF0000),
    total_shift = 15 - shift, result = int32((acc * reduced + 2^(total_shift - 1)) >>
    total_shift) — one rounding, half toward +infinity.
double_multiply_rhaz:
    y = clamp(int32(round_half_away(double(acc) * M)) + zp, qmin, qmax); a product outside int32
    becomes INT32_MIN (what x86 ``cvttsd2si`` returns for an out-of-range double).
shift (power-of-two scales): M must be exactly 2^-n; y = clamp(round(acc / 2^n) + zp) with the
    spec's ``shift_rounding`` (rne, rhaz, rhu) computed in integers; n < 0 is an exact left shift.

All functions are vectorised numpy on int64 with int32 wrap-around emulated explicitly; none
loops in Python over elements. Per-channel multipliers broadcast along ``channel_axis``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numba
import numpy as np

from hwsim.errors import EmulationError

RequantArithmetic = Literal["fp32_multiply", "q31_double_rounding", "double_multiply_rhaz",
                            "shift"]
REQUANT_ARITHMETICS: tuple[str, ...] = ("fp32_multiply", "q31_double_rounding",
                                        "double_multiply_rhaz", "shift")
SHIFT_ROUNDINGS: tuple[str, ...] = ("rne", "rhaz", "rhu")

_INT32_MIN = -(1 << 31)
_INT32_MAX = (1 << 31) - 1


def wrap_int32(x: np.ndarray) -> np.ndarray:
    """Two's-complement wrap of int64 values to int32 range (returned as int64)."""
    x = np.asarray(x, dtype=np.int64)
    return ((x + (1 << 31)) & 0xFFFFFFFF) - (1 << 31)


def _along(v: np.ndarray, ndim: int, axis: int) -> np.ndarray:
    """Reshape a per-channel vector so it broadcasts along ``axis`` of an ``ndim`` array."""
    v = np.asarray(v)
    if v.ndim == 0:
        return v
    shape = [1] * ndim
    shape[axis] = v.shape[0]
    return v.reshape(shape)


# ----------------------------------------------------------------------------- fp32_multiply

def fp32_multiplier(input_scale: float, weight_scale: np.ndarray | float,
                    output_scale: float) -> np.ndarray:
    """ONNX Runtime's float32 requant multiplier float32(float32(s_x * s_w) / s_y)."""
    sx = np.float32(input_scale)
    sw = np.asarray(weight_scale, dtype=np.float32)
    sy = np.float32(output_scale)
    return ((sx * sw).astype(np.float32) / sy).astype(np.float32)


@numba.njit(cache=True)
def _fp32_requant_kernel(acc: np.ndarray, mult: np.ndarray, lo: np.float32, hi: np.float32,
                         zero_point: np.int32, out: np.ndarray) -> None:
    # acc (A, C, B) integers, mult (C,) float32; float32 conversion and product, clamp, RNE
    for a in range(acc.shape[0]):
        for c in range(acc.shape[1]):
            m = mult[c]
            for b in range(acc.shape[2]):
                v = np.float32(acc[a, c, b]) * m
                v = min(max(v, lo), hi)
                out[a, c, b] = np.int32(np.rint(v)) + zero_point


def requantize_fp32_multiply(acc: np.ndarray, multiplier: np.ndarray, zero_point: int,
                             qmin: int, qmax: int, channel_axis: int | None = None
                             ) -> np.ndarray:
    """float32(acc) * multiplier, clamp to [qmin - zp, qmax - zp], RNE, + zp (int32 codes).

    ``multiplier`` (float32) is a scalar or one value per index of ``channel_axis``.
    float32(acc) rounds to nearest even as ``cvtdq2ps`` does; the product is one float32
    multiply.
    """
    acc = np.asarray(acc)
    mult = np.asarray(multiplier, dtype=np.float32)
    if acc.ndim == 0:
        acc3 = acc.reshape(1, 1, 1)
    elif mult.ndim == 0 or channel_axis is None:
        acc3 = acc.reshape(1, 1, -1)
    else:
        ax = channel_axis % acc.ndim
        acc3 = acc.reshape(int(np.prod(acc.shape[:ax])), acc.shape[ax], -1)
    mult = np.broadcast_to(mult.reshape(-1), (acc3.shape[1],)).copy()
    if not np.issubdtype(acc3.dtype, np.integer):
        raise EmulationError(f"accumulator must be integer, got dtype {acc3.dtype}")
    out = np.empty(acc3.shape, np.int32)
    _fp32_requant_kernel(np.ascontiguousarray(acc3), mult, np.float32(qmin - zero_point),
                         np.float32(qmax - zero_point), np.int32(zero_point), out)
    return out.reshape(acc.shape)


# ----------------------------------------------------------------------- q31_double_rounding

def quantize_multiplier(multiplier: np.ndarray | float) -> tuple[np.ndarray, np.ndarray]:
    """TFLite ``QuantizeMultiplier``: M (float64, >= 0) -> (q31 int64, shift int64).

    q, e = frexp(M); q31 = round_half_away(q * 2^31); q31 == 2^31 -> (2^30, e + 1);
    shift < -31 -> (0, 0) (flush to zero); M == 0 -> (0, 0). M = q31 * 2^(shift - 31).
    """
    m = np.asarray(multiplier, dtype=np.float64)
    if np.any(~np.isfinite(m)) or np.any(m < 0):
        raise EmulationError(f"requant multiplier must be finite and >= 0, got {m}")
    frac, exp = np.frexp(m)
    scaled = frac * float(1 << 31)  # exact: a power-of-two scaling
    q = np.trunc(scaled) + (np.abs(scaled - np.trunc(scaled)) >= 0.5)  # half away; frac >= 0
    q = q.astype(np.int64)
    exp = exp.astype(np.int64)
    top = q == (1 << 31)
    q = np.where(top, q // 2, q)
    exp = np.where(top, exp + 1, exp)
    tiny = exp < -31
    q = np.where(tiny, 0, q)
    exp = np.where(tiny, 0, exp)
    return q, exp


def saturating_rounding_doubling_high_mul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """gemmlowp ``SaturatingRoundingDoublingHighMul`` on int32 values held in int64.

    (a*b + nudge) / 2^31 with C truncating division, nudge = 2^30 if a*b >= 0 else 1 - 2^30;
    a == b == INT32_MIN saturates to INT32_MAX.
    """
    a = np.asarray(a, dtype=np.int64)
    b = np.asarray(b, dtype=np.int64)
    ab = a * b  # |ab| <= 2^62: fits int64
    num = ab + np.where(ab >= 0, 1 << 30, 1 - (1 << 30))
    high = np.where(num >= 0, num >> 31, -((-num) >> 31))  # truncation toward zero
    overflow = (a == _INT32_MIN) & (b == _INT32_MIN)
    return np.where(overflow, _INT32_MAX, wrap_int32(high))


def rounding_divide_by_pot(x: np.ndarray, exponent: np.ndarray | int) -> np.ndarray:
    """gemmlowp ``RoundingDivideByPOT``: x / 2^exponent rounded to nearest, ties away from 0."""
    x = np.asarray(x, dtype=np.int64)
    e = np.asarray(exponent, dtype=np.int64)
    mask = (np.int64(1) << e) - 1
    remainder = x & mask
    threshold = (mask >> 1) + (x < 0)
    return (x >> e) + (remainder > threshold)


def multiply_by_quantized_multiplier(x: np.ndarray, q31: np.ndarray,
                                     shift: np.ndarray) -> np.ndarray:
    """TFLite ``MultiplyByQuantizedMultiplier(int32 x, q31, shift)`` (double rounding).

    x * 2^max(shift, 0) wraps in int32 (what the C++ does in practice), then the rounding
    doubling high multiply, then a rounding right shift by max(-shift, 0).
    """
    shift = np.asarray(shift, dtype=np.int64)
    left = np.maximum(shift, 0)
    right = np.maximum(-shift, 0)
    xl = wrap_int32(np.asarray(x, dtype=np.int64) << left)
    return rounding_divide_by_pot(saturating_rounding_doubling_high_mul(xl, q31), right)


def multiply_by_quantized_multiplier_int64(x: np.ndarray, q31: np.ndarray,
                                           shift: np.ndarray) -> np.ndarray:
    """TFLite ``MultiplyByQuantizedMultiplier(int64_t x, int32_t q31, int shift)`` (int64
    accumulators of the 16x8 kernels), returned as int32 values in int64.

    reduced = (q31 + 2^15) >> 16, or 0x7FFF when q31 >= 0x7FFF0000; total_shift = 15 - shift;
    result = int32((x * reduced + 2^(total_shift - 1)) >> total_shift), the product and sum
    wrapping in int64 and the final cast wrapping in int32 as compiled C++ does (TFLite asserts
    |x| < 2^47 and shift < 8, where neither wraps). shift > 14 is undefined in C++ (a negative
    shift count) and raises.
    """
    x = np.asarray(x, dtype=np.int64)
    q = np.asarray(q31, dtype=np.int64)
    shift = np.asarray(shift, dtype=np.int64)
    if np.any(shift > 14):
        raise EmulationError("q31 requant of a 64-bit accumulator needs shift <= 14 "
                             f"(multiplier < 2^14), got shift {np.max(shift)}")
    reduced = np.where(q < 0x7FFF0000, (q + (1 << 15)) >> 16, 0x7FFF)
    total = 15 - shift
    with np.errstate(over="ignore"):
        v = x * reduced + (np.int64(1) << (total - 1))  # int64 wrap-around, as in C++
    return wrap_int32(v >> total)


def requantize_q31(acc: np.ndarray, q31: np.ndarray, shift: np.ndarray, zero_point: int,
                   qmin: int, qmax: int, accumulator_bits: int = 32) -> np.ndarray:
    """TFLite conv requant: MultiplyByQuantizedMultiplier, + zp (int32 wrap), clamp.

    ``accumulator_bits`` <= 32: the int32 overload (double rounding); > 32: the int64 overload
    (``multiply_by_quantized_multiplier_int64``), as TFLite's 16x8 conv kernels.
    """
    acc = np.asarray(acc, dtype=np.int64)
    if accumulator_bits > 32:
        scaled = multiply_by_quantized_multiplier_int64(acc, q31, shift)
    else:
        if acc.size and (acc.min() < _INT32_MIN or acc.max() > _INT32_MAX):
            raise EmulationError("q31_double_rounding with a 32-bit accumulator takes int32 "
                                 f"values; got values in [{acc.min()}, {acc.max()}]")
        scaled = multiply_by_quantized_multiplier(acc, q31, shift)
    y = wrap_int32(scaled + zero_point)
    return np.clip(y, qmin, qmax).astype(np.int32)


# ---------------------------------------------------------------------- double_multiply_rhaz

def requantize_double_rhaz(acc: np.ndarray, multiplier: np.ndarray, zero_point: int,
                           qmin: int, qmax: int) -> np.ndarray:
    """int32(round_half_away(double(acc) * M)) (out of int32 range -> INT32_MIN), + zp, clamp."""
    v = np.asarray(acc, dtype=np.int64).astype(np.float64) * np.asarray(multiplier, np.float64)
    t = np.trunc(v)
    r = t + np.sign(v) * (np.abs(v - t) >= 0.5)  # v - t is exact for doubles
    bad = ~((r >= _INT32_MIN) & (r <= _INT32_MAX))  # NaN also lands here
    r = np.where(bad, _INT32_MIN, r).astype(np.int64)
    y = wrap_int32(r + zero_point)
    return np.clip(y, qmin, qmax).astype(np.int32)


# ------------------------------------------------------------------------------------- shift

def pot_shift(multiplier: np.ndarray | float) -> np.ndarray:
    """n with M == 2^-n exactly (int64); raises if any M is not an exact power of two."""
    m = np.asarray(multiplier, dtype=np.float64)
    frac, exp = np.frexp(m)
    if np.any(frac != 0.5):
        bad = m[frac != 0.5] if m.ndim else m
        raise EmulationError("requant 'shift' needs power-of-two scales (s_x * s_w / s_y == "
                             f"2^-n exactly); got multiplier(s) {np.ravel(bad)[:4]}")
    return (1 - exp).astype(np.int64)


def rounding_shift_right(x: np.ndarray, n: np.ndarray | int, rounding: str) -> np.ndarray:
    """x / 2^n rounded with ``rounding`` (rne, rhaz, rhu), exact in int64; n <= 0 shifts left."""
    x = np.asarray(x, dtype=np.int64)
    n = np.asarray(n, dtype=np.int64)
    if rounding not in SHIFT_ROUNDINGS:
        raise EmulationError(f"shift rounding {rounding!r} is not supported; allowed: "
                             f"{list(SHIFT_ROUNDINGS)}")
    pos = np.maximum(n, 0)
    floor = x >> pos
    rem = x - (floor << pos)  # in [0, 2^n)
    half = np.where(pos > 0, np.int64(1) << np.maximum(pos - 1, 0), 1)  # n == 0: rem is 0
    if rounding == "rhu":
        up = rem >= half
    elif rounding == "rhaz":
        up = (rem > half) | ((rem == half) & (x >= 0))
    else:  # rne
        up = (rem > half) | ((rem == half) & ((floor & 1) == 1))
    up &= pos > 0
    return np.where(n < 0, x << np.maximum(-n, 0), floor + up)


def requantize_shift(acc: np.ndarray, n: np.ndarray, zero_point: int, qmin: int, qmax: int,
                     rounding: str) -> np.ndarray:
    """round(acc / 2^n) with ``rounding``, + zp, clamp (int32 codes)."""
    y = rounding_shift_right(acc, n, rounding) + zero_point
    return np.clip(y, qmin, qmax).astype(np.int32)


# ------------------------------------------------------------------------------ requantizer

@dataclass(frozen=True, eq=False)
class Requantizer:
    """A requantization planned once per layer (multipliers precomputed), applied to accumulators.

    ``real_multiplier`` is M = s_x * s_w / s_y in float64 (per output channel, or a scalar);
    the arithmetic-specific parameters are derived from it (or, for fp32_multiply, from the
    float32 scales as ONNX Runtime does).
    """

    arithmetic: str
    zero_point: int
    qmin: int
    qmax: int
    real_multiplier: np.ndarray
    fp32_multiplier: np.ndarray
    q31: np.ndarray
    q31_shift: np.ndarray
    pot_shift: np.ndarray | None
    shift_rounding: str | None
    accumulator_bits: int = 32

    def __call__(self, acc: np.ndarray, channel_axis: int = 1) -> np.ndarray:
        """Codes (int32) for accumulators ``acc``; per-channel values apply along
        ``channel_axis``."""
        acc = np.asarray(acc)
        if self.real_multiplier.ndim == 1 and acc.ndim and (
                acc.shape[channel_axis] != self.real_multiplier.shape[0]):
            raise EmulationError(f"accumulator has {acc.shape[channel_axis]} channels on axis "
                                 f"{channel_axis}, requantizer has "
                                 f"{self.real_multiplier.shape[0]} multipliers")
        nd = acc.ndim
        if self.arithmetic == "fp32_multiply":
            return requantize_fp32_multiply(acc, self.fp32_multiplier, self.zero_point,
                                            self.qmin, self.qmax, channel_axis)
        if self.arithmetic == "q31_double_rounding":
            return requantize_q31(acc, _along(self.q31, nd, channel_axis),
                                  _along(self.q31_shift, nd, channel_axis), self.zero_point,
                                  self.qmin, self.qmax, self.accumulator_bits)
        if self.arithmetic == "double_multiply_rhaz":
            return requantize_double_rhaz(acc, _along(self.real_multiplier, nd, channel_axis),
                                          self.zero_point, self.qmin, self.qmax)
        return requantize_shift(acc, _along(self.pot_shift, nd, channel_axis), self.zero_point,
                                self.qmin, self.qmax, self.shift_rounding)


def make_requantizer(arithmetic: str, input_scale: float, weight_scale: np.ndarray | float,
                     output_scale: float, output_zero_point: int, qmin: int, qmax: int,
                     shift_rounding: str | None = None, accumulator_bits: int = 32
                     ) -> Requantizer:
    """Plan the requantization of a layer with scales s_x (scalar), s_w (scalar or per output
    channel) and s_y (scalar) into codes [qmin, qmax] with zero point ``output_zero_point``.
    ``accumulator_bits`` selects the int32 or int64 q31 arithmetic (q31_double_rounding only).

    Scales are taken as float32 (how runtimes store them); M is formed in float64 from them.
    """
    if arithmetic not in REQUANT_ARITHMETICS:
        raise EmulationError(f"unknown requant arithmetic {arithmetic!r}; allowed: "
                             f"{list(REQUANT_ARITHMETICS)} ('float' is not an integer "
                             "requantization)")
    sw = np.asarray(weight_scale, dtype=np.float32)
    if sw.ndim > 1:
        raise EmulationError(f"weight scale must be a scalar or 1-D, got shape {sw.shape}")
    for name, s in (("input", np.float32(input_scale)), ("weight", sw),
                    ("output", np.float32(output_scale))):
        if not np.all(np.isfinite(s)) or np.any(s <= 0):
            raise EmulationError(f"{name} scale must be finite and > 0, got {s}")
    if not qmin <= output_zero_point <= qmax:
        raise EmulationError(f"output zero point {output_zero_point} outside [{qmin}, {qmax}]")
    if (arithmetic == "shift") != (shift_rounding is not None):
        raise EmulationError("shift_rounding is required with requant 'shift' and only there")
    if shift_rounding is not None and shift_rounding not in SHIFT_ROUNDINGS:
        raise EmulationError(f"shift rounding {shift_rounding!r} is not supported; allowed: "
                             f"{list(SHIFT_ROUNDINGS)}")
    real = (np.float64(np.float32(input_scale)) * sw.astype(np.float64)
            / np.float64(np.float32(output_scale)))
    q31, q31_shift = quantize_multiplier(real)
    return Requantizer(
        arithmetic=arithmetic, zero_point=int(output_zero_point), qmin=int(qmin),
        qmax=int(qmax), real_multiplier=real,
        fp32_multiplier=fp32_multiplier(input_scale, sw, output_scale),
        q31=q31, q31_shift=q31_shift,
        pot_shift=pot_shift(real) if arithmetic == "shift" else None,
        shift_rounding=shift_rounding, accumulator_bits=int(accumulator_bits))
