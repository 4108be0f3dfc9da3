"""NNIE 8-bit logarithmic quantization (DESIGN.md B2; MQBench ``fake_quantize/nnie.py``).

With L = ``levels_per_octave`` (16 on NNIE) and clip c > 0:
  z = RNE(L * log2(c)) - 127                         (float64, ``nnie_log_qparams``)
  x > 2^((z-L)/L)   (or ``>=`` with ``positive_threshold: inclusive``):
      k = clamp(round(L*log2(x) - z), 0, 127),  value  2^((k+z)/L),  code k (0x00..0x7F)
  x < -2^((z-L+1)/L):
      k = clamp(round(L*log2(-x) - z), 1, 127), value -2^((k+z)/L),  code 0x80 | k
  otherwise: value 0, code 0x80.
``round`` is the spec's rounding (RNE on NNIE). Exact ties cannot occur for finite inputs (they
would need x = 2^(odd/2L)), so rne/rhaz/rhu agree; stochastic rounding draws u per element.
All of it is computed in float64 from the float32 input, as MQBench does; values are rounded
to float32 once, at the end (``dequantize``).

Threshold at x == 2^((z-L)/L) (an exact float only when z is a multiple of L): MQBench's code
leaves such x unchanged (it belongs to no branch); its docs put it in the positive branch.
``inclusive`` (the spec default) follows the docs, ``exclusive`` maps it to zero.

NaN and Inf: +Inf -> code 0x7F (the largest value), -Inf -> 0xFF (the most negative value),
NaN -> 0x80 (zero). MQBench leaves NaN as NaN, which has no code.

Plain functions for callers without a spec: ``nnie_log_qparams(clip)``,
``log_quantize(x, z, ...)`` and ``log_dequantize(codes, z, ...)``.
"""

from __future__ import annotations

import math
from typing import Any

import numba
import numpy as np

from hwsim.devices.spec import LogNumerics
from hwsim.errors import QuantError
from hwsim.quant.clip_observer import ClipStatistics
from hwsim.quant.qparams import LogQParams
from hwsim.quant.quantizer import Observer, Quantizer
from hwsim.quant.rounding import round_mode
from hwsim.quant.tensor_input import float32_tensor, int64_codes, reject_context, rounding_args

ZERO_CODE = 0x80
MAX_K = 127  # 8-bit sign-magnitude: magnitudes 0..127
_FLOAT32_MAX = float(np.finfo(np.float32).max)
_FLOAT32_MIN_NORMAL = float(np.finfo(np.float32).tiny)


def nnie_log_qparams(clip: float, levels_per_octave: int = 16) -> LogQParams:
    """Qparams from the clip c: z = RNE(L * log2(c)) - 127 in float64.

    QuantError when c is not a finite number > 0, or when the code values 2^(z/L) ..
    2^((127+z)/L) would not all be normal float32 numbers.
    """
    c = float(clip)
    L = int(levels_per_octave)
    if L < 1:
        raise QuantError(f"log: levels_per_octave must be >= 1, got {levels_per_octave}")
    if not (math.isfinite(c) and c > 0.0):
        raise QuantError(f"log: the clip must be a finite number > 0, got {clip!r}")
    z = int(round(L * math.log2(c))) - MAX_K  # Python round() is RNE
    qp = LogQParams(clip=c, z=z, levels_per_octave=L)
    lo, hi = 2.0 ** (z / L), 2.0 ** ((MAX_K + z) / L)
    if hi > _FLOAT32_MAX or lo < _FLOAT32_MIN_NORMAL:
        raise QuantError(f"log: clip {c!r} gives code values {lo!r} .. {hi!r}, outside the "
                         "normal float32 range; the clip must lie within about 2^-118 .. 2^127")
    return qp


@numba.njit(cache=True)
def _log_quantize_kernel(x: np.ndarray, out: np.ndarray, z: int, levels: int, thr_pos: float,
                         thr_neg: float, inclusive: bool, mode: int, seed: np.uint64) -> None:
    zf = float(z)
    lf = float(levels)
    for i in range(x.size):
        v = np.float64(x[i])
        if v > thr_pos or (inclusive and v == thr_pos):
            k = round_mode(lf * math.log2(v) - zf, mode, seed, np.uint64(i))
            k = min(max(k, 0.0), float(MAX_K))
            out[i] = np.int64(k)
        elif v < -thr_neg:
            k = round_mode(lf * math.log2(-v) - zf, mode, seed, np.uint64(i))
            k = min(max(k, 1.0), float(MAX_K))
            out[i] = ZERO_CODE | np.int64(k)
        else:  # zero band, and NaN (every comparison is false)
            out[i] = ZERO_CODE


@numba.njit(cache=True)
def _log_dequantize_kernel(codes: np.ndarray, out: np.ndarray, z: int, levels: int) -> None:
    zf = float(z)
    lf = float(levels)
    for i in range(codes.size):
        c = codes[i]
        if c == ZERO_CODE:
            out[i] = np.float32(0.0)
        elif c < ZERO_CODE:
            out[i] = np.float32(2.0 ** ((float(c) + zf) / lf))
        else:
            out[i] = np.float32(-(2.0 ** ((float(c & 0x7F) + zf) / lf)))


def log_quantize(x: Any, z: int, levels_per_octave: int = 16, inclusive: bool = True,
                 rounding: str = "rne", seed: int | None = None) -> np.ndarray:
    """int64 sign-magnitude codes of float32 ``x`` (module docstring); same shape as x."""
    a = float32_tensor(x, "log")
    L = int(levels_per_octave)
    mode, seed64 = rounding_args(rounding, seed, "log")
    thr_pos = 2.0 ** ((z - L) / L)
    thr_neg = 2.0 ** ((z - L + 1) / L)
    out = np.empty(a.shape, dtype=np.int64)
    _log_quantize_kernel(a.reshape(-1), out.reshape(-1), int(z), L, thr_pos, thr_neg,
                         bool(inclusive), mode, seed64)
    return out


def log_dequantize(codes: Any, z: int, levels_per_octave: int = 16) -> np.ndarray:
    """float32 values of sign-magnitude codes 0..255: 0x80 -> 0, k -> 2^((k+z)/L),
    0x80|k -> -2^((k+z)/L) (float64 power, rounded once to float32)."""
    c = int64_codes(codes, "log", 0, 0xFF)
    out = np.empty(c.shape, dtype=np.float32)
    _log_dequantize_kernel(c.reshape(-1), out.reshape(-1), int(z), int(levels_per_octave))
    return out


class LogObserver(Observer):
    """Running clip (``clip_observer``) -> ``nnie_log_qparams``."""

    def __init__(self, numerics: LogNumerics) -> None:
        self._levels = numerics.levels_per_octave
        self._stats = ClipStatistics(numerics.calibration, "log")

    def update(self, x: np.ndarray) -> LogObserver:
        self._stats.update(float32_tensor(x, "log"))
        return self

    def qparams(self) -> LogQParams:
        return nnie_log_qparams(self._stats.positive_clip(), self._levels)


class LogQuantizer(Quantizer):
    """NNIE log codes per a ``LogNumerics`` record (module docstring for the rules).

    calibrate(x): clip from x by the spec's calibration method (weights: ``absmax``, i.e.
    max |w| of the layer; activations: ``ema_minmax`` as MQBench, or ``minmax``).
    """

    def __init__(self, numerics: LogNumerics) -> None:
        if not isinstance(numerics, LogNumerics):
            raise QuantError(f"LogQuantizer needs LogNumerics, got {type(numerics).__name__}")
        self.numerics = numerics
        ClipStatistics(numerics.calibration, "log")  # rejects an unsupported method up front

    def observer(self) -> LogObserver:
        return LogObserver(self.numerics)

    def calibrate(self, x: np.ndarray, **context: Any) -> LogQParams:
        reject_context(context, "log")
        return self.observer().update(x).qparams()

    def _check(self, qp: LogQParams) -> None:
        if not isinstance(qp, LogQParams):
            raise QuantError(f"log: qparams must be LogQParams, got {type(qp).__name__}")
        if qp.levels_per_octave != self.numerics.levels_per_octave:
            raise QuantError(f"log: qparams have levels_per_octave {qp.levels_per_octave}, the "
                             f"spec {self.numerics.levels_per_octave}")

    def quantize(self, x: np.ndarray, qp: LogQParams) -> np.ndarray:
        self._check(qp)
        n = self.numerics
        return log_quantize(x, qp.z, qp.levels_per_octave,
                            n.positive_threshold == "inclusive", n.rounding.value, n.seed)

    def dequantize(self, codes: np.ndarray, qp: LogQParams) -> np.ndarray:
        self._check(qp)
        return log_dequantize(codes, qp.z, qp.levels_per_octave)
