"""Range estimation from calibration data: observers that gather statistics and turn them into a
real-valued range ``[lo, hi]`` per tensor or per channel.

Observers only gather statistics and estimate ranges; turning a range into scale and zero point
is the scheme's one qparams function (``hwsim.quant.uniform.uniform_qparams``). Methods (the
spec's ``calibration.method``):

- ``minmax``: running min / max over all batches (streaming, exact).
- ``ema_minmax``: ``m = decay * m + (1 - decay) * batch_m`` for the per-batch min and max, the
  first batch initialising (MQBench ``EMAMinMaxObserver``; streaming).
- ``absmax``: running max |x|; range ``[-amax, amax]`` (streaming, exact).
- ``percentile``: symmetric schemes: the p-th percentile of |x|, range ``[-a, a]``; asymmetric:
  the (100 - p)-th and p-th percentiles of x (``np.percentile``, linear interpolation).
- ``mse``: grid search of a shrink factor ``f`` of the min/max range (symmetric: of
  ``[-amax, amax]``): ``f = k / G`` for k = 1..G, ``G = bins`` (default 128), keeping the ``f``
  whose quantization mean squared error under the scheme's own quantizer (``clip_error``) is
  smallest; ties go to the larger range (less clipping).
- ``kl``: TensorRT entropy calibration over a histogram of |x| with ``bins`` bins (default 2048):
  for every candidate ``i`` from ``quant_bins`` to ``bins`` the reference P is the first ``i``
  bins with the outliers folded into bin ``i - 1``, Q is P merged into ``quant_bins`` groups and
  spread back over the non-empty bins; amax = ``i * bin_width`` for the ``i`` of least KL(P||Q),
  the last one on ties (NVIDIA pytorch-quantization ``calib/histogram.py``
  ``_compute_amax_entropy``, including its first step ``bins[0] = bins[1]``: the count of the
  bin holding exact zeros, a spike after ReLU, is replaced by its neighbour's so it does not
  dominate the divergence; without it the demo CNN's TensorRT int8 top-1 fell from 96% to
  66%). Symmetric, per tensor. Streaming: the bin width is fixed by the first non-zero batch;
  later larger values append bins of the same width.

- ``haq_kl``: HAQ's threshold search (mit-han-lab/haq ``lib/utils/quantize_utils.py``
  ``_compute_threshold``), a different algorithm from TensorRT's despite the name: the CDF ``c``
  of a histogram of |x| over ``[0, max|x|]`` with numpy's ``'sqrt'`` bin rule (about
  ``sqrt(m)`` bins for m values per channel: the width is ``max / sqrt(m)`` and the count its
  ceiling, one more than ``ceil(sqrt(m))`` when the division rounds up); for each candidate
  ``i`` from ``L + 1`` to the bin count (``L = 2^(bits-1)`` levels, for signed and unsigned
  schemes alike) the CDF truncated at ``i`` (set to 1 from bin ``i - 1`` on) is resampled at
  ``L`` points and back at ``i`` points by linear interpolation, giving ``q``; the divergence is
  ``sum((c - q) * log2(c / q))`` and the threshold ``(i + 0.5) * bin_width`` of the least
  divergence (the first on ties). Fewer than ``L + 1`` bins: the threshold is max |x|. Terms
  where ``c == q`` count 0 (HAQ's code computes NaN when both are 0 and its ``argmin`` then
  returns the first candidate; hwsim takes the limit instead). Symmetric schemes get
  ``[-t, t]``, asymmetric ones ``[max(lo, -t), min(hi, t)]`` (HAQ's half-wave activations:
  ``[0, t]``). Per tensor or per channel, on the kept sample.

``percentile``, ``mse`` and ``haq_kl`` (and schemes that search on the data, such as
``pow2_lsq``) keep a
bounded sample of the stream per channel: every value while the stream is at most
``sample_cap`` values long; beyond that every ``2^k``-th value of the stream (decimation doubles
each time the sample outgrows the cap), so percentiles and errors are then estimates.
``sample_cap=None`` keeps everything (one-shot calibration of weights).

Calibration data must be non-empty and finite: NaN or +-Inf raise ``QuantError`` (a range cannot
be taken from them, and skipping them silently would hide a broken model).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from hwsim.errors import QuantError

SAMPLE_CAP = 1 << 22
DEFAULT_KL_BINS = 2048
DEFAULT_MSE_GRID = 128
METHODS = ("minmax", "ema_minmax", "percentile", "mse", "kl", "absmax", "haq_kl")

# clip_error(sample (C, m) float32, lo (C,), hi (C,)) -> mean squared error per channel (C,)
ClipError = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]


@dataclass(frozen=True)
class Range:
    """Estimated real range: ``lo <= 0 <= hi`` not guaranteed; float64, shape () or (C,)."""

    lo: np.ndarray
    hi: np.ndarray


def as_calibration_data(x: np.ndarray, what: str = "calibration data") -> np.ndarray:
    """``x`` as float32 (the device's input precision), checked non-empty, real and finite."""
    x = np.asarray(x)
    if x.dtype == np.bool_ or not (np.issubdtype(x.dtype, np.floating)
                                   or np.issubdtype(x.dtype, np.integer)):
        raise QuantError(f"{what} must be a real numeric array, got dtype {x.dtype}")
    x = x.astype(np.float32, copy=False)
    if x.size == 0:
        raise QuantError(f"{what} is empty (shape {x.shape}); a range needs at least one value")
    finite = np.isfinite(x)
    if not finite.all():
        n_nan = int(np.isnan(x).sum())
        n_inf = int(x.size - finite.sum() - n_nan)
        raise QuantError(f"{what} of shape {x.shape} contains {n_nan} NaN and {n_inf} +-Inf "
                         "values; calibration needs finite values (clean the data first)")
    return x


def normalize_axis(axis: int, ndim: int, what: str = "tensor") -> int:
    """``axis`` in ``[-ndim, ndim)`` as a non-negative index, else QuantError."""
    if not -ndim <= axis < ndim:
        raise QuantError(f"per-channel axis {axis} is out of range for a {ndim}-D {what}; "
                         f"allowed: {-ndim}..{ndim - 1}")
    return axis % ndim


def channel_matrix(x: np.ndarray, axis: int | None) -> np.ndarray:
    """``x`` as a (C, n) matrix: one row per channel along ``axis`` (per tensor: one row)."""
    if axis is None:
        return x.reshape(1, -1)
    axis = normalize_axis(axis, x.ndim)
    return np.moveaxis(x, axis, 0).reshape(x.shape[axis], -1)


class _Sample:
    """Bounded deterministic sample of a stream per channel (see module docstring)."""

    def __init__(self, cap: int | None) -> None:
        self.cap = cap
        self.stride = 1
        self.seen = 0  # values per channel seen so far
        self.parts: list[np.ndarray] = []
        self.size = 0  # values per channel kept

    def add(self, x2: np.ndarray) -> None:
        first = (-self.seen) % self.stride
        kept = x2[:, first::self.stride]
        self.parts.append(np.array(kept, dtype=np.float32, copy=True))
        self.size += kept.shape[1]
        self.seen += x2.shape[1]
        while self.cap is not None and self.size * x2.shape[0] > self.cap and self.size > 1:
            merged = self.values()[:, ::2]
            self.parts = [np.ascontiguousarray(merged)]
            self.size = merged.shape[1]
            self.stride *= 2

    def values(self) -> np.ndarray:
        if len(self.parts) != 1:
            self.parts = [np.concatenate(self.parts, axis=1)]
        return self.parts[0]


class _AbsHistogram:
    """Histogram of |x| with a fixed bin width that grows by appending bins."""

    def __init__(self, bins: int) -> None:
        self.bins = bins
        self.width: float | None = None
        self.counts = np.zeros(0, dtype=np.int64)
        self.zeros_pending = 0  # values seen before the first non-zero batch (all exactly 0)

    def add(self, a: np.ndarray) -> None:
        amax = float(a.max())
        if self.width is None:
            if amax == 0.0:
                self.zeros_pending += a.size
                return
            self.width = amax / self.bins
            self.counts = np.zeros(self.bins, dtype=np.int64)
            self.counts[0] += self.zeros_pending
        n_needed = max(self.counts.size, int(np.ceil(amax / self.width)))
        if n_needed > self.counts.size:
            self.counts = np.concatenate(
                [self.counts, np.zeros(n_needed - self.counts.size, dtype=np.int64)])
        idx = np.minimum((a.astype(np.float64) / self.width).astype(np.int64), n_needed - 1)
        self.counts += np.bincount(idx.reshape(-1), minlength=n_needed)


def haq_threshold(a: np.ndarray, levels: int) -> float:
    """HAQ's clip threshold of the absolute values ``a`` (1-D) for ``levels`` = 2^(bits-1)
    quantization levels (``haq_kl`` in the module docstring)."""
    a = np.asarray(a, dtype=np.float64).reshape(-1)
    mx = float(a.max())
    if mx == 0.0:
        return 0.0
    counts, edges = np.histogram(a, bins="sqrt", range=(0.0, mx))  # HAQ's rule, as numpy has it
    nbins = counts.size
    if levels + 1 > nbins:
        return mx
    cdf = np.cumsum(counts / counts.sum())
    width = edges[1] - edges[0]
    best_t, best_d = mx, np.inf
    for i in range(levels + 1, nbins + 1):
        p = cdf.copy()
        p[i - 1:] = 1.0
        p_levels = np.interp(np.linspace(0.0, 1.0, levels), np.linspace(0.0, 1.0, i), p[:i])
        q = p.copy()
        q[:i] = np.interp(np.linspace(0.0, 1.0, i), np.linspace(0.0, 1.0, levels), p_levels)
        differ = cdf != q
        with np.errstate(divide="ignore", invalid="ignore"):
            terms = (cdf[differ] - q[differ]) * np.log2(cdf[differ] / q[differ])
        d = float(np.sum(terms)) if np.all(np.isfinite(terms)) else np.inf
        if d < best_d:
            best_t, best_d = (i + 0.5) * width, d
    return best_t


def kl_amax(counts: np.ndarray, width: float, quant_bins: int) -> float:
    """TensorRT entropy calibration: amax of least KL(P || Q) over the histogram ``counts`` of
    |x| with bin width ``width``, quantized to ``quant_bins`` levels (module docstring)."""
    n = counts.size
    if n < quant_bins:
        raise QuantError(f"kl calibration needs at least {quant_bins} histogram bins (2^(bits-1) "
                         f"quantization levels), got {n}; raise 'bins'")
    hist = counts.astype(np.float64)
    if n > 1:
        hist[0] = hist[1]  # pytorch-quantization: neutralise the spike of exact zeros
    tail = np.concatenate([np.cumsum(hist[::-1])[::-1], [0.0]])  # tail[i] = sum(hist[i:])
    best_i, best_kl = n, np.inf
    for i in range(quant_bins, n + 1):
        p = hist[:i].copy()
        p[i - 1] += tail[i]
        nonzero = hist[:i] != 0
        group = (np.arange(i) * quant_bins) // i  # == np.digitize on linspace(0, i, quant_bins+1)
        g_sum = np.bincount(group, weights=hist[:i], minlength=quant_bins)
        g_cnt = np.bincount(group, weights=nonzero.astype(np.float64), minlength=quant_bins)
        q = np.where(nonzero, g_sum[group] / np.maximum(g_cnt[group], 1.0), 0.0)
        p_tot, q_tot = p.sum(), q.sum()
        if p_tot == 0.0 or q_tot == 0.0:
            continue
        p /= p_tot
        q /= q_tot
        mask = p > 0
        if np.any(q[mask] == 0.0):
            kl = np.inf
        else:
            kl = float(np.sum(p[mask] * np.log(p[mask] / q[mask])))
        if kl <= best_kl:  # '<=': the last minimum wins, as pytorch-quantization
            best_i, best_kl = i, kl
    return best_i * width


class RangeObserver:
    """Streaming statistics of a tensor and the range they imply.

    method: one of ``METHODS``; axis: channel axis (None: per tensor); symmetric: ranges of
    symmetric schemes are ``[-amax, amax]`` for percentile/mse/kl; percentile, ema_decay, bins:
    the spec's calibration parameters; quant_bins: levels of the KL quantized histogram
    (2^(bits-1)); keep_sample: keep a bounded sample even if the method does not need one;
    sample_cap: values kept per stream (None: all); clip_error: the scheme's quantization error
    of a candidate range, needed by ``mse``.
    """

    def __init__(self, method: str, *, axis: int | None = None, symmetric: bool = False,
                 percentile: float | None = None, ema_decay: float | None = None,
                 bins: int | None = None, quant_bins: int | None = None,
                 haq_levels: int | None = None, keep_sample: bool = False,
                 sample_cap: int | None = SAMPLE_CAP,
                 clip_error: ClipError | None = None) -> None:
        if method not in METHODS:
            raise QuantError(f"unknown calibration method {method!r}; allowed: {METHODS}")
        if method == "percentile" and (percentile is None or not 50.0 < percentile <= 100.0):
            raise QuantError(f"calibration 'percentile' needs percentile in (50, 100], "
                             f"got {percentile}")
        if method == "ema_minmax" and (ema_decay is None or not 0.0 < ema_decay < 1.0):
            raise QuantError(f"calibration 'ema_minmax' needs ema_decay in (0, 1), "
                             f"got {ema_decay}")
        if method == "mse" and clip_error is None:
            raise QuantError("calibration 'mse' needs the scheme's clip_error function")
        if method == "kl":
            if axis is not None:
                raise QuantError("calibration 'kl' (TensorRT entropy) is per tensor; "
                                 "per-channel ranges need minmax, absmax, percentile or mse")
            if not symmetric:
                raise QuantError("calibration 'kl' (TensorRT entropy) gives a symmetric range; "
                                 "use it with a symmetric scheme")
            if quant_bins is None or quant_bins < 2:
                raise QuantError(f"calibration 'kl' needs quant_bins >= 2, got {quant_bins}")
        if method == "haq_kl" and (haq_levels is None or haq_levels < 1):
            raise QuantError(f"calibration 'haq_kl' needs haq_levels >= 1 (2^(bits-1)), "
                             f"got {haq_levels}")
        if sample_cap is not None and sample_cap < 1:
            raise QuantError(f"sample_cap must be >= 1 or None, got {sample_cap}")
        self.method = method
        self.axis = axis
        self.symmetric = symmetric
        self.percentile = percentile
        self.ema_decay = ema_decay
        self.bins = bins
        self.quant_bins = quant_bins
        self.haq_levels = haq_levels
        self.clip_error = clip_error
        self.axis_: int | None = None
        self.n_channels_: int | None = None
        self.lo_: np.ndarray | None = None
        self.hi_: np.ndarray | None = None
        self._sample = (_Sample(sample_cap)
                        if keep_sample or method in ("percentile", "mse", "haq_kl") else None)
        self._hist = _AbsHistogram(bins or DEFAULT_KL_BINS) if method == "kl" else None

    def update(self, x: np.ndarray) -> RangeObserver:
        """Fold one batch into the statistics; returns self."""
        x = as_calibration_data(x)
        if self.axis is None:
            axis = None
        else:
            axis = normalize_axis(self.axis, x.ndim, "calibration tensor")
        x2 = channel_matrix(x, axis)
        if self.n_channels_ is not None and x2.shape[0] != self.n_channels_:
            raise QuantError(f"batch has {x2.shape[0]} channels along axis {axis} (shape "
                             f"{x.shape}); earlier batches had {self.n_channels_}")
        if x2.shape[1] == 0:
            raise QuantError(f"calibration tensor of shape {x.shape} has no values per channel")
        self.axis_, self.n_channels_ = axis, x2.shape[0]
        lo = x2.min(axis=1).astype(np.float64)
        hi = x2.max(axis=1).astype(np.float64)
        if self.lo_ is None:
            self.lo_, self.hi_ = lo, hi
        elif self.method == "ema_minmax":
            d = self.ema_decay
            self.lo_ = self.lo_ * d + lo * (1.0 - d)
            self.hi_ = self.hi_ * d + hi * (1.0 - d)
        else:
            self.lo_ = np.minimum(self.lo_, lo)
            self.hi_ = np.maximum(self.hi_, hi)
        if self._sample is not None:
            self._sample.add(x2)
        if self._hist is not None:
            self._hist.add(np.abs(x2))
        return self

    def _check_fitted(self) -> None:
        if self.lo_ is None:
            raise QuantError("observer has seen no data: call update(x) with calibration "
                             "batches before asking for a range")

    def sample(self) -> np.ndarray:
        """The kept sample as a (C, m) float32 matrix."""
        self._check_fitted()
        if self._sample is None:
            raise QuantError(f"calibration method {self.method!r} keeps no sample "
                             "(construct the observer with keep_sample=True)")
        return self._sample.values()

    def range(self) -> Range:
        """The estimated range (per channel: shape (C,); per tensor: shape ())."""
        self._check_fitted()
        lo, hi = self.lo_, self.hi_
        if self.method in ("minmax", "ema_minmax"):
            pass
        elif self.method == "absmax":
            amax = np.maximum(np.abs(lo), np.abs(hi))
            lo, hi = -amax, amax
        elif self.method == "percentile":
            s = self._sample.values()
            if self.symmetric:
                hi = np.percentile(np.abs(s), self.percentile, axis=1).astype(np.float64)
                lo = -hi
            else:
                lo = np.percentile(s, 100.0 - self.percentile, axis=1).astype(np.float64)
                hi = np.percentile(s, self.percentile, axis=1).astype(np.float64)
        elif self.method == "mse":
            lo, hi = self._mse_range(lo, hi)
        elif self.method == "haq_kl":
            s = self._sample.values()
            t = np.array([haq_threshold(np.abs(row), self.haq_levels) for row in s])
            if self.symmetric:
                lo, hi = -t, t
            else:
                lo, hi = np.maximum(lo, -t), np.minimum(hi, t)
        else:  # kl
            h = self._hist
            amax = 0.0 if h.width is None else kl_amax(h.counts, h.width, self.quant_bins)
            lo, hi = np.array([-amax]), np.array([amax])
        if self.axis_ is None:
            return Range(np.float64(lo[0]), np.float64(hi[0]))
        return Range(np.asarray(lo, dtype=np.float64), np.asarray(hi, dtype=np.float64))

    def _mse_range(self, lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self.symmetric:
            amax = np.maximum(np.abs(lo), np.abs(hi))
            lo, hi = -amax, amax
        s = self._sample.values()
        grid = self.bins or DEFAULT_MSE_GRID
        best_err = np.full(lo.shape, np.inf)
        best_f = np.ones(lo.shape)
        for k in range(grid, 0, -1):  # largest range first: ties keep less clipping
            f = k / grid
            err = np.asarray(self.clip_error(s, lo * f, hi * f), dtype=np.float64)
            better = err < best_err
            best_err = np.where(better, err, best_err)
            best_f = np.where(better, f, best_f)
        return lo * best_f, hi * best_f
