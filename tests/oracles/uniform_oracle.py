"""Independent reference for uniform affine quantization: exact rational arithmetic
(``fractions.Fraction``) element by element. It implements the documented semantics of
``hwsim.quant.uniform`` / ``uniform_kernels`` from their definitions and never imports them.

float32 operations are modelled as "exact result, then rounded to the nearest float32, ties to
even" (IEEE 754), written here with integer arithmetic.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np

RNE, RHAZ, RHU, STOCHASTIC = 0, 1, 2, 3
_MASK64 = (1 << 64) - 1


def pow2(e: int) -> Fraction:
    return Fraction(1 << e) if e >= 0 else Fraction(1, 1 << -e)


def round_to_f32(q: Fraction) -> float:
    """The float32 nearest to the rational ``q`` (ties to even), as a Python float; overflow
    gives +-inf."""
    if q == 0:
        return 0.0
    sign = -1.0 if q < 0 else 1.0
    a = abs(q)
    e = a.numerator.bit_length() - a.denominator.bit_length()
    while pow2(e) > a:
        e -= 1
    while pow2(e + 1) <= a:
        e += 1
    e = max(e, -126)  # subnormals share the exponent of the smallest normal
    ulp = pow2(e - 23)
    m = a / ulp
    n = m.numerator // m.denominator
    rem = m - n
    if rem > Fraction(1, 2) or (rem == Fraction(1, 2) and n % 2 == 1):
        n += 1
    val = n * ulp
    if val >= pow2(128):
        return sign * math.inf
    return sign * float(val)


def round_to_f64(q: Fraction) -> float:
    return float(q)  # Python converts a Fraction to the nearest double, ties to even


def round_int(v: Fraction, mode: int, seed: int = 0, index: int = 0) -> int:
    """Round the rational ``v`` to an integer: RNE, RHAZ, RHU exactly; STOCHASTIC as defined by
    hwsim (``floor(fl64(v + u))`` with ``u`` from the counter-based generator below)."""
    fl = v.numerator // v.denominator
    rem = v - fl
    if mode == RNE:
        if rem > Fraction(1, 2) or (rem == Fraction(1, 2) and fl % 2 == 1):
            return fl + 1
        return fl
    if mode == RHU:
        return fl + 1 if rem >= Fraction(1, 2) else fl
    if mode == RHAZ:
        a = abs(v)
        f = a.numerator // a.denominator
        r = f + 1 if a - f >= Fraction(1, 2) else f
        return -r if v < 0 else r
    if mode == STOCHASTIC:
        return math.floor(float(v) + uniform_u(seed, index))
    raise ValueError(mode)


def splitmix64(z: int) -> int:
    z = (z + 0x9E3779B97F4A7C15) & _MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return z ^ (z >> 31)


def uniform_u(seed: int, index: int) -> float:
    """u in [0, 1): top 53 bits of splitmix64(seed * 2^32 + index) (mod 2^64), times 2^-53."""
    z = splitmix64((seed * (1 << 32) + index) & _MASK64)
    return (z >> 11) / float(1 << 53)


def quantize_value(x: float, scale: float, zp: int, qmin: int, qmax: int, mode: int,
                   divide: bool, zp_before: bool, clip: tuple[float, float] | None = None,
                   seed: int = 0, index: int = 0, fused: bool = False) -> int:
    """Code of one float32 value ``x`` (a Python float holding a float32). ``fused``: the zero
    point joins the exact product x * fl32(1/s) before one rounding to float32."""
    if math.isnan(x):
        return zp
    if clip is not None:
        lo = round_to_f32(Fraction(clip[0]))
        hi = round_to_f32(Fraction(clip[1]))
        x = min(max(x, lo), hi)
    if math.isinf(x):
        return qmax if x > 0 else qmin
    s = Fraction(scale)
    if divide:
        v = round_to_f32(Fraction(x) / s)
    else:
        inv = round_to_f32(1 / s)
        v = round_to_f32(Fraction(x) * Fraction(inv))
    if math.isinf(v):
        return qmax if v > 0 else qmin
    if fused:
        if divide:
            raise ValueError("fused zero point needs reciprocal scaling")
        t = round_to_f32(Fraction(x) * Fraction(round_to_f32(1 / s)) + zp)
        if math.isinf(t):
            return qmax if t > 0 else qmin
        r = round_int(Fraction(t), mode, seed, index)
    elif zp_before:
        t = round_to_f32(Fraction(v) + zp)
        r = round_int(Fraction(t), mode, seed, index)
    else:
        r = round_int(Fraction(v), mode, seed, index) + zp
    return min(max(r, qmin), qmax)


def dequantize_value(q: int, scale: float, zp: int) -> float:
    """``fl32(fl32(q - zp) * scale)``."""
    d = round_to_f32(Fraction(q - zp))
    return round_to_f32(Fraction(d) * Fraction(scale))


def _channels(shape: tuple[int, ...], axis: int | None) -> np.ndarray:
    """Channel index of every element (C order)."""
    if axis is None:
        return np.zeros(int(np.prod(shape)), dtype=np.int64)
    idx = np.indices(shape)[axis]
    return idx.reshape(-1)


def quantize(x: np.ndarray, scale, zp, qmin: int, qmax: int, mode: int, divide: bool,
             zp_before: bool, axis: int | None = None, clip=None, seed: int = 0,
             fused: bool = False) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    scale = np.atleast_1d(np.asarray(scale, dtype=np.float32))
    zp = np.atleast_1d(np.asarray(zp, dtype=np.int64))
    ch = _channels(x.shape, axis)
    flat = x.reshape(-1)
    out = [quantize_value(float(flat[n]), float(scale[ch[n]]), int(zp[ch[n]]), qmin, qmax,
                          mode, divide, zp_before, clip, seed, n, fused)
           for n in range(flat.size)]
    return np.array(out, dtype=np.int64).reshape(x.shape)


def dequantize(codes: np.ndarray, scale, zp, axis: int | None = None) -> np.ndarray:
    codes = np.asarray(codes)
    scale = np.atleast_1d(np.asarray(scale, dtype=np.float32))
    zp = np.atleast_1d(np.asarray(zp, dtype=np.int64))
    ch = _channels(codes.shape, axis)
    flat = codes.reshape(-1)
    out = [dequantize_value(int(flat[n]), float(scale[ch[n]]), int(zp[ch[n]]))
           for n in range(flat.size)]
    return np.array(out, dtype=np.float32).reshape(codes.shape)


# --- qparams -----------------------------------------------------------------------------------

def scale_from_f64(num: Fraction, den: int) -> float:
    """float64 quotient rounded to float32; below 2^-126 -> 1.0 (hwsim's documented rule)."""
    s = round_to_f32(Fraction(round_to_f64(num / den)))
    return 1.0 if s < 2.0 ** -126 else s


def standard_symmetric(amax: float, qmax: int) -> float:
    return scale_from_f64(Fraction(amax), qmax)


def standard_asymmetric(lo: float, hi: float, qmin: int, qmax: int, zp_mode: int = RNE):
    lo0, hi0 = min(lo, 0.0), max(hi, 0.0)
    diff = round_to_f64(Fraction(hi0) - Fraction(lo0))
    s = scale_from_f64(Fraction(diff), qmax - qmin)
    ratio = round_to_f64(Fraction(lo0) / Fraction(s))
    zp = min(max(qmin - round_int(Fraction(ratio), zp_mode), qmin), qmax)
    return s, zp


def snpe_tf(lo: float, hi: float, bits: int, min_range: float):
    """DESIGN.md B3 in float64 (Python floats): (delta, zero, min', max')."""
    n_steps = 2 ** bits - 1
    lo, hi = min(lo, 0.0), max(hi, 0.0)
    hi = max(hi, lo + min_range)
    delta = (hi - lo) / n_steps
    zero = min(max(round_int(Fraction(-lo / delta), RHAZ), 0), n_steps)
    new_min = -zero * delta
    return delta, zero, new_min, hi - lo + new_min


def pow2_fp(values: np.ndarray, qmin: int, qmax: int, steps: int, mode: int,
            divide: bool = True) -> int:
    """Vitis fp: fp0 = floor(log2(qmax / amax)) exactly, then the fp in fp0..fp0+steps-1 of least
    exact squared error (first on ties)."""
    vals = [float(v) for v in np.asarray(values, dtype=np.float32).reshape(-1)]
    amax = max(abs(v) for v in vals)
    if amax == 0:
        return 0
    ratio = Fraction(qmax) / Fraction(amax)
    fp0 = 0
    while pow2(fp0) > ratio:
        fp0 -= 1
    while pow2(fp0 + 1) <= ratio:
        fp0 += 1
    best, best_err = None, None
    for fp in range(fp0, fp0 + steps):
        s = float(pow2(-fp))
        err = Fraction(0)
        for v in vals:
            q = quantize_value(v, s, 0, qmin, qmax, mode, divide, False)
            err += (Fraction(dequantize_value(q, s, 0)) - Fraction(v)) ** 2
        if best_err is None or err < best_err:
            best, best_err = fp, err
    return best


# --- TensorRT entropy calibration (a literal port of the published loop) ----------------------

def kl_amax_reference(hist: np.ndarray, width: float, quant_bins: int) -> float:
    """pytorch-quantization ``_compute_amax_entropy`` (stride 1, start_bin = quant_bins),
    including its ``bins[0] = bins[1]`` step, written with plain loops and ``np.digitize``."""
    bins = [float(h) for h in hist]
    if len(bins) > 1:
        bins[0] = bins[1]
    n = len(bins)
    divergences, arguments = [], []
    for i in range(quant_bins, n + 1):
        space = np.linspace(0, i, num=quant_bins + 1)
        digitized = list(np.digitize(range(i), space) - 1)
        for j in range(i):
            if bins[j] == 0:
                digitized[j] = -1
        new_counts = [0.0] * quant_bins
        members = [0] * quant_bins
        for j, d in enumerate(digitized):
            if d != -1:
                new_counts[d] += bins[j]
                members[d] += 1
        new_density = [new_counts[d] / members[d] if d != -1 else 0.0 for d in digitized]
        reference = bins[:i]
        reference[-1] += sum(bins[i:])
        tp, tq = sum(reference), sum(new_density)
        p = [r / tp for r in reference]
        q = [d / tq for d in new_density]
        kl = 0.0
        for pj, qj in zip(p, q, strict=True):
            if pj > 0:
                kl = math.inf if qj == 0 else kl + pj * math.log(pj / qj)
        divergences.append(kl)
        arguments.append(i)
    best = min(divergences)
    last = max(k for k, d in enumerate(divergences) if d == best)
    return arguments[last] * width
