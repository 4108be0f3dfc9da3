"""Reference implementations of the non-uniform schemes, written apart from the kernels.

Pure Python on exact rationals (``fractions.Fraction``), integer powers and ``decimal``; it
imports nothing from hwsim. Decisions that the kernels take with float64 logarithms or
thresholds are taken here by exact comparisons of rational powers (x^n against 2^k). Inputs
are Python floats holding float32 values (or, for FP16, the float32 bit pattern as an int).

Stochastic rounding is specified on float64 values (``floor(t + u)`` with u from a counter
generator); the oracle evaluates it the same way, with its own splitmix64.
"""

from __future__ import annotations

import math
import struct
from decimal import Decimal, localcontext
from fractions import Fraction

RNE, RHAZ, RHU, STOCHASTIC = "rne", "rhaz", "rhu", "stochastic"
TWO = Fraction(2)
_M64 = (1 << 64) - 1


# ----------------------------------------------------------------------------- primitives
def splitmix64(z: int) -> int:
    z = (z + 0x9E3779B97F4A7C15) & _M64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _M64
    return z ^ (z >> 31)


def uniform(seed: int, index: int) -> float:
    """u in [0, 1): splitmix64(seed * 2^32 + index) >> 11, times 2^-53."""
    return (splitmix64((seed * (1 << 32) + index) & _M64) >> 11) / float(1 << 53)


def round_fraction(t: Fraction, mode: str) -> int:
    """Exact rounding of a rational to an integer (deterministic modes)."""
    f = math.floor(t)
    d = t - f
    if mode == RNE:
        if d != Fraction(1, 2):
            return f + (1 if d > Fraction(1, 2) else 0)
        return f + (f % 2)
    if mode == RHU:
        return f + (1 if d >= Fraction(1, 2) else 0)
    if mode == RHAZ:
        a = abs(t)
        r = math.floor(a) + (1 if a - math.floor(a) >= Fraction(1, 2) else 0)
        return -r if t < 0 else r
    raise ValueError(mode)


def round_stochastic(t: float, seed: int, index: int) -> int:
    return math.floor(t + uniform(seed, index))


def float32_bits(x: float) -> int:
    return struct.unpack("<I", struct.pack("<f", x))[0]


def decode_float32_bits(u: int) -> Fraction | str:
    """Exact value of a float32 bit pattern; 'nan', '+inf' or '-inf' for the specials."""
    s, e, m = u >> 31, (u >> 23) & 0xFF, u & 0x7FFFFF
    if e == 255:
        return "nan" if m else ("-inf" if s else "+inf")
    if e == 0:
        v = Fraction(m, 1 << 23) * TWO ** -126
    else:
        v = (1 + Fraction(m, 1 << 23)) * TWO ** (e - 127)
    return -v if s else v


def floor_log2(a: Fraction) -> int:
    """Exact floor(log2 a) for a > 0."""
    k = a.numerator.bit_length() - a.denominator.bit_length()
    while TWO ** k > a:
        k -= 1
    while TWO ** (k + 1) <= a:
        k += 1
    return k


def round_to_binary(a: Fraction, p: int, emin: int | None) -> Fraction:
    """|a| > 0 rounded (RNE) to p significant bits; below 2^emin onto the grid of unit
    2^(emin - p + 1) (subnormals); ``emin=None``: unbounded exponent range."""
    e = floor_log2(a)
    if emin is not None:
        e = max(e, emin)
    unit = TWO ** (e - p + 1)
    return round_fraction(a / unit, RNE) * unit


def round_to_float32(v: Fraction) -> float:
    """Exact RNE of a rational to float32 (subnormals; overflow to inf)."""
    if v == 0:
        return 0.0
    r = round_to_binary(abs(v), 24, -126)
    if r >= TWO ** 128:
        out = math.inf
    else:
        out = float(r)  # exact: r has <= 24 significant bits
    return -out if v < 0 else out


# ----------------------------------------------------------------------------- NNIE log
def log_z(clip: float, levels: int = 16) -> int:
    """z = round(L * log2 c) - 127, the rounding decided exactly:
    n with 2^(2n-1) < c^(2L) < 2^(2n+1)."""
    c = Fraction(clip)
    n = round(levels * math.log2(clip))
    for _ in range(4):
        p = c ** (2 * levels)
        if p <= TWO ** (2 * n - 1):
            n -= 1
        elif p >= TWO ** (2 * n + 1):
            n += 1
        else:
            return n - 127
    raise AssertionError("log_z did not converge")


def _log_k(a: Fraction, z: int, levels: int) -> int:
    """round(L*log2(a) - z) exactly: n with 2^(2n+2z-1) < a^(2L) < 2^(2n+2z+1)."""
    n = round(levels * math.log2(a) - z)
    p = a ** (2 * levels)
    for _ in range(8):
        if p <= TWO ** (2 * n + 2 * z - 1):
            n -= 1
        elif p >= TWO ** (2 * n + 2 * z + 1):
            n += 1
        else:
            return n
    raise AssertionError("_log_k did not converge")


def log_code(x: float, z: int, levels: int = 16, inclusive: bool = True, mode: str = RNE,
             seed: int = 0, index: int = 0) -> int:
    """NNIE sign-magnitude code of x (NaN -> 0x80, +Inf -> 0x7F, -Inf -> 0xFF)."""
    if math.isnan(x):
        return 0x80
    if x == math.inf:
        return 0x7F
    if x == -math.inf:
        return 0xFF
    a = Fraction(x)
    if a > 0:
        p, t = a ** levels, TWO ** (z - levels)
        if p > t or (inclusive and p == t):
            if mode == STOCHASTIC:
                k = round_stochastic(levels * math.log2(x) - z, seed, index)
            else:
                k = _log_k(a, z, levels)
            return min(max(k, 0), 127)
    elif a < 0 and (-a) ** levels > TWO ** (z - levels + 1):
        if mode == STOCHASTIC:
            k = round_stochastic(levels * math.log2(-x) - z, seed, index)
        else:
            k = _log_k(-a, z, levels)
        return 0x80 | min(max(k, 1), 127)
    return 0x80


def log_value(code: int, z: int, levels: int = 16) -> float:
    """float32 value of a log code: 2^((k+z)/L) to 60 digits (decimal), rounded once."""
    if code == 0x80:
        return 0.0
    k = code & 0x7F
    with localcontext() as ctx:
        ctx.prec = 60
        d = Decimal(2) ** (Decimal(k + z) / Decimal(levels))
    v = round_to_float32(Fraction(d))
    return -v if code > 0x80 else v


# ----------------------------------------------------------------------------- Ristretto
def ceil_log2(m: float) -> int:
    """Smallest n with 2^n >= m (m > 0)."""
    a = Fraction(m)
    n = floor_log2(a)
    return n if TWO ** n == a else n + 1


def ristretto_fl(max_abs: float, bits: int, il_rule: str) -> int:
    il = ceil_log2(max_abs) + (1 if il_rule == "weight" else 0)
    return bits - il


def fixed_point_code(x: float, fl: int, bits: int, mode: str = RNE, seed: int = 0,
                     index: int = 0) -> int:
    """Saturate, then round q = x * 2^fl; NaN -> qmax, +-Inf saturate."""
    qmin, qmax = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    if math.isnan(x) or x == math.inf:
        return qmax
    if x == -math.inf:
        return qmin
    t = min(max(Fraction(x) * TWO ** fl, Fraction(qmin)), Fraction(qmax))
    if mode == STOCHASTIC:
        q = round_stochastic(float(t), seed, index)  # float(t) exact: t = x * 2^fl
    else:
        q = round_fraction(t, mode)
    return min(max(q, qmin), qmax)


def minifloat_exp_bits(max_abs: float) -> int:
    """Smallest e >= 4 with max_abs <= 2^(2^(e-1) + 1) (Ristretto's rule, restated)."""
    e = 4
    while Fraction(max_abs) > TWO ** (2 ** (e - 1) + 1):
        e += 1
    return e


def minifloat_code(x: float, e: int, m: int, mode: str = RNE, seed: int = 0,
                   index: int = 0) -> int:
    """Ristretto minifloat code: value-based restatement of the rules (zero code 1 << bits)."""
    bits = 1 + e + m
    bias = 2 ** (e - 1) - 1
    zero = 1 << bits
    sat = ((1 << e) - 1, (1 << m) - 1)
    neg = math.copysign(1.0, x) < 0
    if math.isnan(x) or math.isinf(x):
        ex, f = sat
    else:
        a = abs(Fraction(x))
        if a < TWO ** -126:  # zero and float32 subnormals
            return zero
        E = floor_log2(a)
        if E + bias < 0:
            return zero
        if E + bias > (1 << e) - 1:
            ex, f = sat
        else:
            t = (a / TWO ** E - 1) * (1 << m)
            if mode == STOCHASTIC:
                f = round_stochastic(float(t), seed, index)
            else:
                f = round_fraction(t, RHAZ if mode == RHU else mode)
            ex = E + bias
            if f == 1 << m:
                ex, f = ex + 1, 0
                if ex > (1 << e) - 1:
                    ex, f = sat
    return (int(neg) << (bits - 1)) | (ex << m) | f


def minifloat_value(code: int, e: int, m: int) -> float:
    bits = 1 + e + m
    if code == 1 << bits:
        return 0.0
    bias = 2 ** (e - 1) - 1
    ex, f = (code >> m) & ((1 << e) - 1), code & ((1 << m) - 1)
    v = float((1 + Fraction(f, 1 << m)) * TWO ** (ex - bias))
    return -v if code >> (bits - 1) else v


def power_of_two_code(x: float, exp_min: int, exp_max: int, bits: int, mode: str = RNE,
                      seed: int = 0, index: int = 0) -> int:
    """sign * 2^clamp(round(log2|x|)); rounding decided by |x|^2 against 2^(2k+1)."""
    if math.isnan(x):
        neg, e = 1, exp_max
    else:
        neg = 1 if x < 0 else 0
        if x == 0:
            e = exp_min
        elif math.isinf(x):
            e = exp_max
        else:
            a = abs(Fraction(x))
            if mode == STOCHASTIC:
                k = round_stochastic(math.log2(abs(x)), seed, index)
            else:
                k = floor_log2(a)
                if a * a > TWO ** (2 * k + 1):
                    k += 1
            e = min(max(k, exp_min), exp_max)
    return (neg << (bits - 1)) | (e - exp_min)


def power_of_two_value(code: int, exp_min: int, bits: int) -> float:
    e = exp_min + (code & ((1 << (bits - 1)) - 1))
    v = math.ldexp(1.0, e)
    return -v if code >> (bits - 1) else v


# ----------------------------------------------------------------------------- FP16
FP16_MAX = Fraction(65504)


def _fp16_bits_of(v: Fraction, neg: bool) -> int:
    """Bit pattern of an exactly representable fp16 magnitude v (0 <= v <= 65504)."""
    s = 0x8000 if neg else 0
    if v == 0:
        return s
    e = floor_log2(v)
    if e < -14:
        return s | int(v / TWO ** -24)
    return s | ((e + 15) << 10) | int((v / TWO ** e - 1) * 1024)


def fp16_bits(u: int, subnormals: str = "keep", tininess: str | None = None,
              overflow: str = "inf", nan: str = "propagate", signed_zero: bool = True) -> int:
    """fp16 bit pattern for the float32 bit pattern u under the given options."""
    neg = bool(u >> 31)
    sgn = 0x8000 if neg else 0
    flushed = sgn if signed_zero else 0
    v = decode_float32_bits(u)
    if v == "nan":
        return 0 if nan == "zero" else sgn | 0x7E00 | ((u & 0x7FFFFF) >> 13)
    if v in ("+inf", "-inf"):
        return sgn | (0x7BFF if overflow == "saturate" else 0x7C00)
    a = abs(v)
    if a == 0:
        return sgn
    if subnormals == "flush":
        if a < TWO ** -126:
            return flushed  # DAZ
        if tininess == "before_rounding":
            if a < TWO ** -14:
                return flushed
            r = round_to_binary(a, 11, -14)
        else:
            r = round_to_binary(a, 11, None)  # unbounded exponent
            if r < TWO ** -14:
                return flushed
    else:
        r = round_to_binary(a, 11, -14)
    if r > FP16_MAX:
        return sgn | (0x7BFF if overflow == "saturate" else 0x7C00)
    return _fp16_bits_of(r, neg)


def fp16_widen_bits(h: int, subnormals: str = "keep", overflow: str = "inf",
                    nan: str = "propagate", signed_zero: bool = True) -> int:
    """float32 bit pattern a device reads for fp16 bits h."""
    s, e, m = h >> 15, (h >> 10) & 0x1F, h & 0x3FF
    if e == 31:
        if m:
            return 0 if nan == "zero" else (s << 31) | 0x7F800000 | (m << 13)
        return float32_bits(-65504.0 if s else 65504.0) if overflow == "saturate" else (
            (s << 31) | 0x7F800000)
    if e == 0 and m == 0:
        return s << 31
    if e == 0 and subnormals == "flush":
        return (s << 31) if signed_zero else 0
    v = Fraction(m, 1024) * TWO ** -14 if e == 0 else (1 + Fraction(m, 1024)) * TWO ** (e - 15)
    return float32_bits(float(-v if s else v))
