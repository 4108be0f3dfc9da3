"""Drift of latency measurements over measurement order, seen in a predictor's residuals.

A device that throttles, or shares its cores with background load, measures the same network
slower at some times than at others. When the rows of a latency file are in the order they were
measured, such drift shows up as residuals (log measured / predicted latency) that are
correlated from one row to the next, although the architectures themselves are in no particular
order. No architecture-level predictor can remove that part of the error: it belongs to the
moment of measurement, not to the network.

Two statistics, on the log residuals ``r = log(measured) - log(predicted)`` in row order:

- ``lag1_autocorr``: the lag-1 autocorrelation ``sum((r[i] - m)(r[i+1] - m)) / sum((r - m)^2)``
  with ``m = mean(r)``. Under residuals that are independent from row to row it is about 0 with
  standard error ``1 / sqrt(n)``; ``white_noise_band = 1.96 / sqrt(n)`` is the 95% band.
- ``drift_share``: the share of the residual variance explained by the drift estimate
  ``neighbour_mean(r, window)`` (the mean residual of the ``window - 1`` rows around each row,
  the row itself left out), i.e. ``1 - var(r - drift) / var(r)``. About 0 (slightly negative)
  without drift.

The statistics say something about time only if the rows are in measurement order; that is the
caller's knowledge, not something this module can check.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from hwsim.errors import LatencyError

DEFAULT_DRIFT_WINDOW = 51
MIN_ROWS = 20


@dataclass(frozen=True)
class OrderDrift:
    """Row-order statistics of log residuals (see the module docstring)."""

    n: int
    window: int
    lag1_autocorr: float
    white_noise_band: float
    durbin_watson: float
    drift_share: float

    def as_dict(self) -> dict[str, float | int]:
        return asdict(self)


def _check_window(window: int, n: int) -> None:
    if not isinstance(window, (int, np.integer)) or window < 3 or window % 2 == 0:
        raise LatencyError(f"drift window must be an odd integer >= 3 rows, got {window!r}")
    if window > n:
        raise LatencyError(f"drift window of {window} rows is longer than the {n} rows given")


def lag1_autocorrelation(values: np.ndarray) -> float:
    """``sum((v[i] - m)(v[i+1] - m)) / sum((v - m)^2)`` with ``m = mean(v)``, in row order."""
    v = np.asarray(values, dtype=np.float64)
    if v.ndim != 1 or v.size < 2:
        raise LatencyError(f"lag-1 autocorrelation needs a 1-D series of >= 2 values, got "
                           f"shape {v.shape}")
    c = v - v.mean()
    ss = float(c @ c)
    if ss == 0.0:
        raise LatencyError("lag-1 autocorrelation needs values that are not all equal")
    return float(c[:-1] @ c[1:]) / ss


def neighbour_mean(residuals: np.ndarray, window: int = DEFAULT_DRIFT_WINDOW) -> np.ndarray:
    """Mean of the residuals within ``window // 2`` rows on each side of each row, the row itself
    excluded; near the ends the window is cut at the first / last row (fewer neighbours)."""
    r = np.asarray(residuals, dtype=np.float64)
    if r.ndim != 1:
        raise LatencyError(f"residuals must be 1-D, got shape {r.shape}")
    _check_window(window, r.size)
    half = window // 2
    cum = np.concatenate(([0.0], np.cumsum(r)))
    idx = np.arange(r.size)
    lo = np.maximum(idx - half, 0)
    hi = np.minimum(idx + half + 1, r.size)
    total = cum[hi] - cum[lo] - r
    return total / (hi - lo - 1)


def default_window(n: int) -> int:
    """``DEFAULT_DRIFT_WINDOW`` rows, or the largest odd count <= ``n // 2`` when that is
    smaller (at least 3)."""
    half = n // 2
    return max(3, min(DEFAULT_DRIFT_WINDOW, half if half % 2 else half - 1))


def order_drift(y_true: np.ndarray, y_pred: np.ndarray,
                window: int | None = None) -> OrderDrift:
    """Row-order drift statistics of ``log(y_true) - log(y_pred)`` (latencies in ms, both > 0).

    ``window``: rows of the drift estimate, ``default_window(n)`` if not given. Filter
    degenerate rows first (``metrics.degenerate_mask``); needs at least ``MIN_ROWS`` rows.
    """
    t = np.asarray(y_true, dtype=np.float64)
    p = np.asarray(y_pred, dtype=np.float64)
    if t.ndim != 1 or t.shape != p.shape:
        raise LatencyError(
            f"drift statistics need two 1-D arrays of equal length, got shapes {t.shape} (true) "
            f"and {p.shape} (predicted)")
    if t.size < MIN_ROWS:
        raise LatencyError(f"drift statistics need at least {MIN_ROWS} rows, got {t.size}")
    for name, arr in (("true", t), ("predicted", p)):
        bad = np.flatnonzero(~(np.isfinite(arr) & (arr > 0)))
        if bad.size:
            raise LatencyError(
                f"{name} latency must be finite and positive for drift statistics; row "
                f"{int(bad[0])} is {float(arr[bad[0]])!r} ({bad.size} such rows)")
    if window is None:
        window = default_window(t.size)
    _check_window(window, t.size)
    r = np.log(t) - np.log(p)
    if np.all(r == r[0]):
        raise LatencyError("drift statistics need residuals that are not all equal")
    diff = np.diff(r)
    rest = r - neighbour_mean(r, window)
    return OrderDrift(
        n=int(r.size), window=int(window),
        lag1_autocorr=lag1_autocorrelation(r),
        white_noise_band=1.96 / float(np.sqrt(r.size)),
        durbin_watson=float(diff @ diff) / float(np.sum((r - r.mean()) ** 2)),
        drift_share=1.0 - float(np.var(rest)) / float(np.var(r)))
