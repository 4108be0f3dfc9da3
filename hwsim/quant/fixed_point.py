"""Ristretto dynamic fixed point (DESIGN.md B5; pmgysel/caffe ``base_ristretto_layer.cpp/.cu``,
``quantization.cpp``).

value = q * 2^-fl, q in [qmin, qmax] = [-2^(bits-1), 2^(bits-1) - 1].

quantize (``Trim2FixedPoint``): saturate x to [qmin * 2^-fl, qmax * 2^-fl], scale by 2^fl,
round with the spec's rounding: Ristretto's GPU kernel uses ``rint`` (rne), its CPU path
``round`` (rhaz); stochastic is ``floor(t + u)`` (float64, u from ``rounding``'s counter
generator, result kept within [qmin, qmax]); rhu is ``floor(t + 0.5)``. The bounds are
integers after scaling, so saturating before or after rounding gives the same codes.
Computed in float64 from the float32 input: the clamp and the power-of-two scaling are exact.
(Ristretto computes in float32; this differs only where float32 cannot hold the bound, i.e.
bits > 24, where Ristretto's limit 2^(bits-1) - 1 rounds to 2^(bits-1) and its output can leave
the code range.)

NaN and Inf: as Ristretto's CUDA kernel, whose ``fmin``/``fmax`` return the non-NaN operand:
NaN -> qmax, +Inf -> qmax, -Inf -> qmin. (Its CPU path leaves NaN as NaN, which has no code.)

Integer length from the calibration maximum m = max |x| (``ristretto_integer_length``):
weights il = ceil(log2(m) + 1), activations (layer inputs/outputs) il = ceil(log2(m));
fl = bits - il. ceil(log2(m)) is decided exactly (the smallest n with 2^n >= m).

Plain functions: ``ristretto_integer_length``, ``fixed_point_qparams``,
``fixed_point_quantize(x, fl, bits, ...)``, ``fixed_point_dequantize(codes, fl, bits)``.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import numba
import numpy as np

from hwsim.devices.spec import DynamicFixedPointNumerics
from hwsim.errors import QuantError
from hwsim.quant.clip_observer import ClipStatistics
from hwsim.quant.qparams import FixedPointQParams
from hwsim.quant.quantizer import Observer, Quantizer
from hwsim.quant.rounding import round_mode
from hwsim.quant.tensor_input import float32_tensor, int64_codes, reject_context, rounding_args

_FL_LIMIT = 512  # |fl| bound: 2^+-fl and every q * 2^-fl stay finite, normal float64 numbers


def ristretto_integer_length(max_abs: float, il_rule: Literal["weight", "activation"]) -> int:
    """Ristretto's integer length of a layer whose calibration maximum |x| is ``max_abs``:
    ceil(log2(m) + 1) for weights, ceil(log2(m)) for activations (m finite and > 0)."""
    m = float(max_abs)
    if not (math.isfinite(m) and m > 0.0):
        raise QuantError(f"dynamic_fixed_point: the calibration maximum |x| must be finite and "
                         f"> 0, got {max_abs!r}")
    frac, exp = math.frexp(m)  # m = frac * 2^exp, frac in [0.5, 1)
    ceil_log2 = exp - 1 if frac == 0.5 else exp
    if il_rule == "weight":
        return ceil_log2 + 1
    if il_rule == "activation":
        return ceil_log2
    raise QuantError(f"dynamic_fixed_point: il_rule must be 'weight' or 'activation', got "
                     f"{il_rule!r}")


def fixed_point_qparams(fl: int, bits: int) -> FixedPointQParams:
    """Qparams of ``bits``-bit signed codes with fraction length ``fl``."""
    if not 2 <= int(bits) <= 32:
        raise QuantError(f"dynamic_fixed_point: bits must be in 2..32, got {bits}")
    if abs(int(fl)) > _FL_LIMIT:
        raise QuantError(f"dynamic_fixed_point: fraction length {fl} outside "
                         f"[-{_FL_LIMIT}, {_FL_LIMIT}]")
    return FixedPointQParams(fl=int(fl), qmin=-(1 << (bits - 1)), qmax=(1 << (bits - 1)) - 1)


@numba.njit(cache=True)
def _fixed_point_quantize_kernel(x: np.ndarray, out: np.ndarray, scale_up: float, qmin: int,
                                 qmax: int, mode: int, seed: np.uint64) -> None:
    lo = float(qmin)
    hi = float(qmax)
    for i in range(x.size):
        v = np.float64(x[i])
        if v != v:
            out[i] = qmax  # CUDA fmin(NaN, max) = max
            continue
        t = min(max(v * scale_up, lo), hi)  # saturate (exact: scale_up is a power of two)
        r = round_mode(t, mode, seed, np.uint64(i))
        out[i] = np.int64(min(max(r, lo), hi))  # float64 t + u may round up past qmax


@numba.njit(cache=True)
def _fixed_point_dequantize_kernel(codes: np.ndarray, out: np.ndarray, scale: float) -> None:
    for i in range(codes.size):
        out[i] = np.float32(float(codes[i]) * scale)


def _check_qp(qp: Any) -> FixedPointQParams:
    if not isinstance(qp, FixedPointQParams):
        raise QuantError(f"dynamic_fixed_point: qparams must be FixedPointQParams, got "
                         f"{type(qp).__name__}")
    if abs(qp.fl) > _FL_LIMIT or qp.qmin >= qp.qmax:
        raise QuantError(f"dynamic_fixed_point: bad qparams {qp!r}")
    return qp


def fixed_point_quantize(x: Any, fl: int, bits: int, rounding: str = "rne",
                         seed: int | None = None) -> np.ndarray:
    """int64 codes q = round(clamp(x * 2^fl, qmin, qmax)) of float32 ``x`` (module docstring)."""
    qp = fixed_point_qparams(fl, bits)
    a = float32_tensor(x, "dynamic_fixed_point")
    mode, seed64 = rounding_args(rounding, seed, "dynamic_fixed_point")
    out = np.empty(a.shape, dtype=np.int64)
    _fixed_point_quantize_kernel(a.reshape(-1), out.reshape(-1), math.ldexp(1.0, qp.fl),
                                 qp.qmin, qp.qmax, mode, seed64)
    return out


def fixed_point_dequantize(codes: Any, fl: int, bits: int) -> np.ndarray:
    """float32 values q * 2^-fl (exact in float64, rounded once to float32: exact for
    bits <= 24 unless the value is below the float32 normal range)."""
    qp = fixed_point_qparams(fl, bits)
    c = int64_codes(codes, "dynamic_fixed_point", qp.qmin, qp.qmax)
    out = np.empty(c.shape, dtype=np.float32)
    _fixed_point_dequantize_kernel(c.reshape(-1), out.reshape(-1), math.ldexp(1.0, -qp.fl))
    return out


class FixedPointObserver(Observer):
    """Running max |x| (``clip_observer``) -> Ristretto integer length -> qparams."""

    def __init__(self, numerics: DynamicFixedPointNumerics) -> None:
        self._numerics = numerics
        self._stats = ClipStatistics(numerics.calibration, "dynamic_fixed_point")

    def update(self, x: np.ndarray) -> FixedPointObserver:
        self._stats.update(float32_tensor(x, "dynamic_fixed_point"))
        return self

    def qparams(self) -> FixedPointQParams:
        n = self._numerics
        il = ristretto_integer_length(self._stats.positive_clip(), n.il_rule)
        return fixed_point_qparams(n.bits - il, n.bits)


class DynamicFixedPointQuantizer(Quantizer):
    """Ristretto dynamic fixed point per a ``DynamicFixedPointNumerics`` record."""

    def __init__(self, numerics: DynamicFixedPointNumerics) -> None:
        if not isinstance(numerics, DynamicFixedPointNumerics):
            raise QuantError(f"DynamicFixedPointQuantizer needs DynamicFixedPointNumerics, got "
                             f"{type(numerics).__name__}")
        self.numerics = numerics
        ClipStatistics(numerics.calibration, "dynamic_fixed_point")  # rejects bad methods early

    def observer(self) -> FixedPointObserver:
        return FixedPointObserver(self.numerics)

    def calibrate(self, x: np.ndarray, **context: Any) -> FixedPointQParams:
        reject_context(context, "dynamic_fixed_point")
        return self.observer().update(x).qparams()

    def _bits(self, qp: FixedPointQParams) -> int:
        _check_qp(qp)
        expected = fixed_point_qparams(qp.fl, self.numerics.bits)
        if (qp.qmin, qp.qmax) != (expected.qmin, expected.qmax):
            raise QuantError(f"dynamic_fixed_point: qparams range [{qp.qmin}, {qp.qmax}] does "
                             f"not match the spec's {self.numerics.bits} bits")
        return self.numerics.bits

    def quantize(self, x: np.ndarray, qp: FixedPointQParams) -> np.ndarray:
        bits = self._bits(qp)
        n = self.numerics
        return fixed_point_quantize(x, qp.fl, bits, n.rounding.value, n.seed)

    def dequantize(self, codes: np.ndarray, qp: FixedPointQParams) -> np.ndarray:
        return fixed_point_dequantize(codes, qp.fl, self._bits(qp))
