"""Uniform affine quantization: ``q = clamp(round(x / s) + zp, qmin, qmax)``.

``UniformQuantizer(numerics)`` implements the spec's ``UniformNumerics``. Scale and zero point
come from one function per ``scale_rule`` (``standard_qparams``, ``snpe_tf_qparams``,
``pow2_lsq_qparams``, ``derived_qparams``), reached through ``uniform_qparams``; kernels and the
element arithmetic (NaN, Inf, rounding, float32 scaling) are in ``uniform_kernels``.

Conventions for every rule:
- Ranges are float64; a computed scale is rounded once to float32 (RNE) from its float64 value.
- A scale below the smallest normal float32 (2^-126; all-zero data gives 0) becomes 1.0, as
  ONNX Runtime's quantization tool does, so a degenerate range quantizes everything to the code
  of 0.0 instead of dividing by zero or by a subnormal.
- Inputs to quantize are converted to float32 first (RNE; float64 beyond float32's range becomes
  +-Inf and saturates).
"""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Any

import numpy as np

from hwsim.devices.spec import Granularity, Rounding, UniformNumerics
from hwsim.errors import QuantError
from hwsim.quant.calibration import SAMPLE_CAP, RangeObserver, normalize_axis
from hwsim.quant.qparams import UniformQParams
from hwsim.quant.quantizer import Observer, Quantizer
from hwsim.quant.rounding import STOCHASTIC, mode_code, round_mode
from hwsim.quant.uniform_kernels import (
    ZP_MODES,
    dequantize_flat,
    quantize_flat,
    reciprocal_scale,
)

_F32_TINY = float(np.finfo(np.float32).tiny)  # 2^-126
_SCALE_RULES = ("standard", "snpe_tf", "pow2_lsq", "derived")


def qmin_qmax(bits: int, signed: bool, narrow_range: bool = False) -> tuple[int, int]:
    """Code range: signed ``[-2^(b-1), 2^(b-1) - 1]``, unsigned ``[0, 2^b - 1]``; narrow range
    drops the lowest code (signed int8: ``[-127, 127]``; unsigned: ``[1, 2^b - 1]``)."""
    if not isinstance(bits, int | np.integer) or not 2 <= bits <= 48:
        raise QuantError(f"uniform bits must be an integer in 2..48, got {bits!r}")
    if signed:
        qmin, qmax = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    else:
        qmin, qmax = 0, (1 << bits) - 1
    return (qmin + 1 if narrow_range else qmin), qmax


def _round_scalar(v: float, rounding: Rounding | str) -> int:
    """Round one float64 with a deterministic mode (zero points)."""
    code = mode_code(rounding)
    if code == STOCHASTIC:
        raise QuantError("zero_point_rounding must be rne, rhaz or rhu, not stochastic")
    return int(round_mode(float(v), code, np.uint64(0), np.uint64(0)))


def _scale_f32(s: np.ndarray) -> np.ndarray:
    """float64 scale(s) -> float32 (RNE), with scales below 2^-126 (incl. 0) set to 1.0."""
    s32 = np.asarray(s, dtype=np.float64).astype(np.float32)
    return np.where(s32 < _F32_TINY, np.float32(1.0), s32).astype(np.float32)


def _axis_of(lo: np.ndarray, axis: int | None) -> int | None:
    if lo.ndim == 0:
        if axis is not None:
            raise QuantError(f"per-tensor range (scalar) given with axis {axis}")
        return None
    if lo.ndim != 1 or axis is None or axis < 0:
        raise QuantError(f"per-channel ranges must be 1-D with a non-negative axis, got shape "
                         f"{lo.shape} and axis {axis}")
    return axis


def _check_range(lo: np.ndarray, hi: np.ndarray) -> None:
    if lo.shape != hi.shape:
        raise QuantError(f"range lo shape {lo.shape} != hi shape {hi.shape}")
    if not (np.all(np.isfinite(lo)) and np.all(np.isfinite(hi))):
        raise QuantError(f"range must be finite, got lo={lo}, hi={hi}")
    if np.any(lo > hi):
        raise QuantError(f"range lo must be <= hi, got lo={lo}, hi={hi}")


def standard_qparams(lo: Any, hi: Any, *, qmin: int, qmax: int, symmetric: bool,
                     zero_point_rounding: Rounding | str = Rounding.RNE,
                     axis: int | None = None) -> UniformQParams:
    """Symmetric: ``s = amax / qmax`` (amax = max(|lo|, |hi|); TensorRT amax/127), zp 0.
    Asymmetric: range widened to contain 0, ``s = (hi - lo) / (qmax - qmin)`` and
    ``zp = clamp(qmin - round(lo / s), qmin, qmax)`` with the float32 ``s`` and
    ``zero_point_rounding``. float64 arithmetic, scale rounded to float32 once."""
    lo = np.asarray(lo, dtype=np.float64)
    hi = np.asarray(hi, dtype=np.float64)
    _check_range(lo, hi)
    axis = _axis_of(lo, axis)
    if symmetric:
        if qmin >= 0:
            raise QuantError(f"a symmetric scale needs signed codes, got [{qmin}, {qmax}]")
        amax = np.maximum(np.abs(lo), np.abs(hi))
        scale = _scale_f32(amax / qmax)
        zp = np.zeros(scale.shape, dtype=np.int64)
    else:
        lo0 = np.minimum(lo, 0.0)
        hi0 = np.maximum(hi, 0.0)
        scale = _scale_f32((hi0 - lo0) / float(qmax - qmin))
        ratio = np.atleast_1d(lo0 / scale.astype(np.float64))
        zp = np.array([min(max(qmin - _round_scalar(r, zero_point_rounding), qmin), qmax)
                       for r in ratio], dtype=np.int64).reshape(scale.shape)
    return UniformQParams(scale=scale, zero_point=zp, qmin=qmin, qmax=qmax, axis=axis)


def snpe_tf_qparams(lo: float, hi: float, *, bits: int, min_range: float,
                    zero_point_rounding: Rounding | str = Rounding.RHAZ) -> UniformQParams:
    """SNPE / AIMET "tf" nudged range (DESIGN.md B3), per tensor, unsigned ``[0, 2^b - 1]``.

    In float64: range widened to contain 0 and to at least ``min_range`` (``hi = max(hi, lo +
    min_range)``); ``delta = (hi - lo) / (2^b - 1)``; ``zero = clamp(round(-lo / delta), 0,
    2^b - 1)`` (SNPE: RHAZ); ``min' = -zero * delta``; ``max' = hi - lo + min'``. Scale is
    float32(delta); inputs are clamped to ``[min', max']`` (rounded to float32) before scaling.
    """
    lo_a = np.asarray(lo, dtype=np.float64)
    hi_a = np.asarray(hi, dtype=np.float64)
    if lo_a.ndim != 0:
        raise QuantError(f"scale_rule 'snpe_tf' is per tensor; got a range of shape {lo_a.shape}")
    _check_range(lo_a, hi_a)
    if not (min_range > 0.0 and math.isfinite(min_range)):
        raise QuantError(f"snpe_tf min_range must be finite and > 0, got {min_range}")
    qmax = (1 << bits) - 1
    lo0 = min(float(lo_a), 0.0)
    hi0 = max(float(hi_a), 0.0)
    hi0 = max(hi0, lo0 + min_range)
    delta = (hi0 - lo0) / qmax
    zero = min(max(_round_scalar(-lo0 / delta, zero_point_rounding), 0), qmax)
    new_min = -zero * delta
    new_max = hi0 - lo0 + new_min
    return UniformQParams(scale=np.float32(delta), zero_point=np.int64(zero), qmin=0, qmax=qmax,
                          clip_min=new_min, clip_max=new_max)


def _floor_log2_ratio(num: int, amax: float) -> int:
    """Exact ``floor(log2(num / amax))`` for a positive finite float ``amax``."""
    ratio = Fraction(num) / Fraction(amax)
    f = math.floor(math.log2(num) - math.log2(amax))
    while Fraction(2) ** (f + 1) <= ratio:
        f += 1
    while Fraction(2) ** f > ratio:
        f -= 1
    return f


def pow2_lsq_qparams(lo: Any, hi: Any, sample: np.ndarray, *, qmin: int, qmax: int, steps: int,
                     rounding: Rounding | str = Rounding.RNE, seed: int = 0,
                     scaling: str = "divide", axis: int | None = None) -> UniformQParams:
    """Vitis AI power-of-two scale: ``s = 2^-fp`` with fp from ``fp0 = floor(log2(1 / s0))``,
    ``s0 = amax / qmax``, to ``fp0 + steps - 1``, choosing the fp of least squared error
    ``sum((fake_quant(x) - x)^2)`` (float64) over ``sample`` ((C, m), one row per channel);
    the first (largest scale) wins ties. amax = 0 gives s = 1.
    """
    lo = np.asarray(lo, dtype=np.float64)
    hi = np.asarray(hi, dtype=np.float64)
    _check_range(lo, hi)
    axis = _axis_of(lo, axis)
    if qmin >= 0:
        raise QuantError(f"pow2_lsq is symmetric and needs signed codes, got [{qmin}, {qmax}]")
    if not isinstance(steps, int) or steps < 1:
        raise QuantError(f"pow2_search_steps must be a positive integer, got {steps!r}")
    amax = np.atleast_1d(np.maximum(np.abs(lo), np.abs(hi)))
    sample = np.asarray(sample, dtype=np.float32)
    if sample.ndim != 2 or sample.shape[0] != amax.size or sample.shape[1] == 0:
        raise QuantError(f"pow2_lsq needs a (C, m) sample with C = {amax.size} and m > 0, "
                         f"got shape {sample.shape}")
    mode = mode_code(rounding)
    n_ch, m = sample.shape
    fp0 = np.array([_floor_log2_ratio(qmax, float(a)) if a > 0 else 0 for a in amax])
    best_fp = fp0.copy()
    best_err = np.full(n_ch, np.inf)
    for k in range(steps):
        fp = fp0 + k
        if np.any(fp > 149) or np.any(fp < -127):
            raise QuantError(f"power-of-two scale 2^-{fp.max()} is outside float32's range")
        scale = np.ldexp(np.float32(1.0), -fp).astype(np.float32)
        fq = quantize_flat(sample, scale, np.zeros(n_ch, np.int64), n_ch, m, qmin, qmax, mode,
                           scaling == "divide", ZP_MODES["after_rounding"], None, None, seed,
                           fake=True)
        d = fq.reshape(n_ch, m).astype(np.float64) - sample
        err = np.einsum("ij,ij->i", d, d)
        better = err < best_err
        best_err = np.where(better, err, best_err)
        best_fp = np.where(better, fp, best_fp)
    best_fp = np.where(amax > 0, best_fp, 0)
    scale = np.ldexp(np.float32(1.0), -best_fp).astype(np.float32)
    if axis is None:
        scale = scale.reshape(())
    return UniformQParams(scale=scale, zero_point=np.zeros(scale.shape, np.int64), qmin=qmin,
                          qmax=qmax, axis=axis)


def derived_qparams(input_scale: Any, weight_scale: Any, *, qmin: int, qmax: int,
                    power_of_two: bool = False) -> UniformQParams:
    """Bias: ``s = fl32(s_in * s_w)`` (one float32 multiply; per channel, axis 0, if either is
    1-D), zero point 0. ``power_of_two`` requires the product to be a power of two."""
    s_in = np.asarray(input_scale, dtype=np.float32)
    s_w = np.asarray(weight_scale, dtype=np.float32)
    for name, s in (("input_scale", s_in), ("weight_scale", s_w)):
        if s.ndim > 1 or not np.all(np.isfinite(s)) or np.any(s <= 0):
            raise QuantError(f"{name} must be a finite positive scalar or 1-D array, got {s}")
    if s_in.ndim == 1 and s_w.ndim == 1 and s_in.size != s_w.size:
        raise QuantError(f"input_scale has {s_in.size} channels but weight_scale {s_w.size}")
    scale = (s_in * s_w).astype(np.float32)
    if np.any(scale < _F32_TINY) or not np.all(np.isfinite(scale)):
        raise QuantError(f"bias scale s_in * s_w = {scale} is not a normal float32")
    if power_of_two and np.any(np.frexp(scale)[0] != 0.5):
        raise QuantError(f"scale_type power_of_two: bias scale {scale} is not a power of two")
    return UniformQParams(scale=scale, zero_point=np.zeros(scale.shape, np.int64), qmin=qmin,
                          qmax=qmax, axis=0 if scale.ndim == 1 else None)


def uniform_qparams(lo: Any = None, hi: Any = None, *, bits: int, signed: bool, symmetric: bool,
                    narrow_range: bool = False, scale_rule: str = "standard",
                    zero_point_rounding: Rounding | str = Rounding.RNE,
                    min_range: float | None = None, axis: int | None = None,
                    sample: np.ndarray | None = None, pow2_search_steps: int | None = None,
                    rounding: Rounding | str = Rounding.RNE, seed: int = 0,
                    scaling: str = "divide", input_scale: Any = None,
                    weight_scale: Any = None, scale_type: str = "float") -> UniformQParams:
    """Qparams of a uniform scheme from a range (``lo``, ``hi``: scalars per tensor, 1-D per
    channel with ``axis``), dispatching on ``scale_rule`` (UniformNumerics docstring):
    ``standard``, ``snpe_tf`` (needs ``min_range``), ``pow2_lsq`` (needs ``sample`` and
    ``pow2_search_steps``; uses ``rounding``/``seed``/``scaling`` of the scheme), ``derived``
    (needs ``input_scale`` and ``weight_scale``; ``lo``/``hi`` unused)."""
    if scale_rule not in _SCALE_RULES:
        raise QuantError(f"unknown scale_rule {scale_rule!r}; allowed: {_SCALE_RULES}")
    qmin, qmax = qmin_qmax(bits, signed, narrow_range)
    if scale_rule == "derived":
        if input_scale is None or weight_scale is None:
            raise QuantError("scale_rule 'derived' (bias) needs input_scale and weight_scale: "
                             "calibrate(x, input_scale=s_in, weight_scale=s_w)")
        return derived_qparams(input_scale, weight_scale, qmin=qmin, qmax=qmax,
                               power_of_two=scale_type == "power_of_two")
    if lo is None or hi is None:
        raise QuantError(f"scale_rule {scale_rule!r} needs a range (lo, hi)")
    if scale_rule == "standard":
        return standard_qparams(lo, hi, qmin=qmin, qmax=qmax, symmetric=symmetric,
                                zero_point_rounding=zero_point_rounding, axis=axis)
    if scale_rule == "snpe_tf":
        if signed or symmetric or narrow_range:
            raise QuantError("scale_rule 'snpe_tf' is unsigned, asymmetric and full range")
        if min_range is None:
            raise QuantError("scale_rule 'snpe_tf' needs min_range (SNPE: 0.01)")
        if axis is not None:
            raise QuantError("scale_rule 'snpe_tf' is per tensor (one clip range per tensor)")
        return snpe_tf_qparams(lo, hi, bits=bits, min_range=min_range,
                               zero_point_rounding=zero_point_rounding)
    if sample is None or pow2_search_steps is None:
        raise QuantError("scale_rule 'pow2_lsq' needs the data sample and pow2_search_steps")
    return pow2_lsq_qparams(lo, hi, sample, qmin=qmin, qmax=qmax, steps=pow2_search_steps,
                            rounding=rounding, seed=seed, scaling=scaling, axis=axis)


class UniformObserver(Observer):
    """Streaming calibration of a uniform scheme: a ``RangeObserver`` for the statistics, the
    quantizer's qparams function for the result."""

    def __init__(self, quantizer: UniformQuantizer, sample_cap: int | None = None,
                 one_shot: bool = False) -> None:
        self.quantizer = quantizer
        n = quantizer.numerics
        cal = n.calibration
        cap = None if one_shot else (SAMPLE_CAP if sample_cap is None else sample_cap)
        self._range = RangeObserver(
            cal.method.value, axis=n.axis if n.granularity is Granularity.PER_CHANNEL else None,
            symmetric=n.symmetric, percentile=cal.percentile, ema_decay=cal.ema_decay,
            bins=cal.bins, quant_bins=quantizer.qmax + 1 if n.symmetric else None,
            haq_levels=1 << (n.bits - 1), keep_sample=n.scale_rule == "pow2_lsq", sample_cap=cap,
            clip_error=quantizer._clip_error)

    def update(self, x: np.ndarray) -> UniformObserver:
        if self.quantizer.numerics.scale_rule == "derived":
            raise QuantError("scale_rule 'derived' (bias) takes its scale from the layer, not "
                             "from data: calibrate(x, input_scale=s_in, weight_scale=s_w)")
        self._range.update(x)
        return self

    def qparams(self) -> UniformQParams:
        n = self.quantizer.numerics
        if n.scale_rule == "derived":
            raise QuantError("scale_rule 'derived' (bias) needs input_scale and weight_scale: "
                             "calibrate(x, input_scale=s_in, weight_scale=s_w)")
        r = self._range.range()
        return self.quantizer._qparams_from_range(
            r.lo, r.hi, self._range.axis_,
            self._range.sample() if n.scale_rule == "pow2_lsq" else None)


class UniformQuantizer(Quantizer):
    """The ``UniformNumerics`` scheme: calibrate, quantize (int64 codes), dequantize (float32).

    NaN -> zero point code (dequantizes to 0.0); +Inf -> qmax; -Inf -> qmin (uniform_kernels).
    """

    def __init__(self, numerics: UniformNumerics) -> None:
        if not isinstance(numerics, UniformNumerics):
            raise QuantError(f"UniformQuantizer needs UniformNumerics, got "
                             f"{type(numerics).__name__}")
        self.numerics = numerics
        self.qmin, self.qmax = qmin_qmax(numerics.bits, numerics.signed, numerics.narrow_range)
        self._mode = mode_code(numerics.rounding)
        self._seed = (numerics.seed or 0) % (1 << 64)
        self._divide = numerics.scaling == "divide"
        self._zp_mode = ZP_MODES[numerics.zero_point_add]
        if mode_code(numerics.zero_point_rounding) == STOCHASTIC:
            raise QuantError("zero_point_rounding must be rne, rhaz or rhu, not stochastic")
        if numerics.scale_rule == "snpe_tf" and (numerics.narrow_range
                                                 or numerics.granularity
                                                 is Granularity.PER_CHANNEL):
            raise QuantError("scale_rule 'snpe_tf' is per tensor and full range")
        method = numerics.calibration.method.value
        if numerics.scale_rule != "derived" and method == "kl" and (
                not numerics.symmetric or numerics.granularity is Granularity.PER_CHANNEL):
            raise QuantError("calibration 'kl' (TensorRT entropy) needs a symmetric per-tensor "
                             "scheme")

    def __repr__(self) -> str:
        n = self.numerics
        return (f"UniformQuantizer(bits={n.bits}, signed={n.signed}, symmetric={n.symmetric}, "
                f"granularity={n.granularity.value}, rule={n.scale_rule}, "
                f"rounding={n.rounding.value})")

    # --- calibration -------------------------------------------------------------------------

    def observer(self, sample_cap: int | None = None) -> UniformObserver:
        """A fresh streaming observer (``sample_cap``: values kept for percentile/mse/pow2)."""
        return UniformObserver(self, sample_cap=sample_cap)

    def calibrate(self, x: np.ndarray | None = None, **context: Any) -> UniformQParams:
        """Qparams from one tensor (all of it is used). Context: ``input_scale`` and
        ``weight_scale`` for ``scale_rule: derived`` (bias), nothing otherwise."""
        n = self.numerics
        allowed = {"input_scale", "weight_scale"} if n.scale_rule == "derived" else set()
        unknown = set(context) - allowed
        if unknown:
            raise QuantError(f"calibrate() got unexpected context {sorted(unknown)}; allowed for "
                             f"scale_rule {n.scale_rule!r}: {sorted(allowed)}")
        if n.scale_rule == "derived":
            qp = uniform_qparams(bits=n.bits, signed=n.signed, symmetric=n.symmetric,
                                 narrow_range=n.narrow_range, scale_rule="derived",
                                 input_scale=context.get("input_scale"),
                                 weight_scale=context.get("weight_scale"),
                                 scale_type=n.scale_type)
            if x is not None and qp.axis is not None:
                shape = np.shape(x)
                if len(shape) != 1 or shape[0] != qp.scale.size:
                    raise QuantError(f"bias of shape {shape} does not match {qp.scale.size} "
                                     "per-channel scales s_in * s_w")
            return qp
        if x is None:
            raise QuantError("calibrate() needs the tensor x")
        return UniformObserver(self, one_shot=True).update(x).qparams()

    def _qparams_from_range(self, lo: Any, hi: Any, axis: int | None,
                            sample: np.ndarray | None) -> UniformQParams:
        n = self.numerics
        return uniform_qparams(
            lo, hi, bits=n.bits, signed=n.signed, symmetric=n.symmetric,
            narrow_range=n.narrow_range, scale_rule=n.scale_rule,
            zero_point_rounding=n.zero_point_rounding, min_range=n.min_range, axis=axis,
            sample=sample, pow2_search_steps=n.pow2_search_steps, rounding=n.rounding,
            seed=self._seed, scaling=n.scaling, scale_type=n.scale_type)

    def _clip_error(self, sample: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
        """Mean squared error per channel of the sample (C, m) quantized with the qparams of the
        candidate range (lo, hi) (each (C,)) — the scheme's own quantizer."""
        n_ch, m = sample.shape
        axis = None if n_ch == 1 and self.numerics.granularity is Granularity.PER_TENSOR else 0
        if axis is None:
            lo, hi = lo.reshape(()), hi.reshape(())
        qp = self._qparams_from_range(lo, hi, axis, sample if self.numerics.scale_rule
                                      == "pow2_lsq" else None)
        fq = self._run(sample, qp, n_ch if axis is not None else 1,
                       m if axis is not None else sample.size, fake=True)
        d = fq.reshape(n_ch, m).astype(np.float64) - sample
        return np.einsum("ij,ij->i", d, d) / m

    # --- quantize / dequantize ---------------------------------------------------------------

    def _check_qparams(self, qp: Any) -> UniformQParams:
        if not isinstance(qp, UniformQParams):
            raise QuantError(f"UniformQuantizer needs UniformQParams, got {type(qp).__name__}")
        if (qp.clip_min is None) != (qp.clip_max is None):
            raise QuantError("qparams need both clip_min and clip_max, or neither")
        if not self._divide and not np.all(np.isfinite(reciprocal_scale(qp.scale))):
            raise QuantError(f"scaling 'reciprocal_multiply': 1/scale overflows float32 for "
                             f"scale {qp.scale}")
        return qp

    def _layout(self, shape: tuple[int, ...], qp: UniformQParams) -> tuple[int, int]:
        """(n_channels, inner) of a C-order tensor of ``shape`` under ``qp``."""
        size = int(np.prod(shape, dtype=np.int64))
        if qp.axis is None:
            return 1, size
        ndim = len(shape)
        if ndim == 0:
            raise QuantError(f"per-channel qparams (axis {qp.axis}) need a tensor with at least "
                             "1 dimension, got a scalar")
        axis = normalize_axis(qp.axis, ndim, f"tensor of shape {shape}")
        if shape[axis] != qp.scale.size:
            raise QuantError(f"tensor of shape {shape} has {shape[axis]} channels along axis "
                             f"{axis} but the qparams have {qp.scale.size} scales")
        return qp.scale.size, int(np.prod(shape[axis + 1:], dtype=np.int64))

    def _run(self, x32: np.ndarray, qp: UniformQParams, n_channels: int, inner: int,
             fake: bool, out: np.ndarray | None = None) -> np.ndarray:
        return quantize_flat(x32, qp.scale, qp.zero_point, n_channels, inner, qp.qmin, qp.qmax,
                             self._mode, self._divide, self._zp_mode, qp.clip_min,
                             qp.clip_max, self._seed, fake=fake, out=out)

    @staticmethod
    def _as_input(x: np.ndarray) -> np.ndarray:
        x = np.asarray(x)
        if x.dtype == np.bool_ or not (np.issubdtype(x.dtype, np.floating)
                                       or np.issubdtype(x.dtype, np.integer)):
            raise QuantError(f"quantize needs a real numeric array, got dtype {x.dtype}")
        with np.errstate(over="ignore"):
            return np.ascontiguousarray(x, dtype=np.float32)

    def quantize(self, x: np.ndarray, qp: UniformQParams) -> np.ndarray:
        """int64 codes of ``x`` (converted to float32 first), same shape."""
        qp = self._check_qparams(qp)
        x32 = self._as_input(x)
        n_ch, inner = self._layout(x32.shape, qp)
        return self._run(x32, qp, n_ch, inner, fake=False).reshape(x32.shape)

    def dequantize(self, codes: np.ndarray, qp: UniformQParams) -> np.ndarray:
        """float32 ``(codes - zp) * scale`` (both steps in float32). Codes must be integers in
        ``[qmin, qmax]``."""
        qp = self._check_qparams(qp)
        codes = np.asarray(codes)
        if not np.issubdtype(codes.dtype, np.integer):
            raise QuantError(f"codes must be an integer array, got dtype {codes.dtype}")
        if codes.size and (codes.min() < qp.qmin or codes.max() > qp.qmax):
            raise QuantError(f"codes outside [{qp.qmin}, {qp.qmax}]: min {codes.min()}, "
                             f"max {codes.max()}")
        n_ch, inner = self._layout(codes.shape, qp)
        return dequantize_flat(codes, qp.scale, qp.zero_point, n_ch, inner).reshape(codes.shape)

    def fake_quant(self, x: np.ndarray, qp: UniformQParams,
                   out: np.ndarray | None = None) -> np.ndarray:
        """``dequantize(quantize(x, qp), qp)`` in one fused pass (float32, same shape).

        ``out``: optional preallocated C-contiguous float32 array of x's shape to write into
        (saves the allocation and page faults of a fresh result; returned)."""
        qp = self._check_qparams(qp)
        x32 = self._as_input(x)
        n_ch, inner = self._layout(x32.shape, qp)
        if out is not None:
            if (not isinstance(out, np.ndarray) or out.dtype != np.float32
                    or out.shape != x32.shape or not out.flags.c_contiguous):
                raise QuantError(f"out must be a C-contiguous float32 array of shape "
                                 f"{x32.shape}, got {getattr(out, 'dtype', type(out))} "
                                 f"{getattr(out, 'shape', '')}")
            self._run(x32, qp, n_ch, inner, fake=True, out=out.reshape(-1))
            return out
        return self._run(x32, qp, n_ch, inner, fake=True).reshape(x32.shape)


__all__ = ["UniformObserver", "UniformQuantizer", "derived_qparams", "pow2_lsq_qparams",
           "qmin_qmax", "snpe_tf_qparams",
           "standard_qparams", "uniform_qparams"]
