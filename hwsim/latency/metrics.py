"""Accuracy metrics of latency predictions (milliseconds), with a stated degenerate-row rule.

Degenerate rows: a measured latency below ``min_fraction_of_median`` (default 5%) of the median
measured latency of the evaluated rows, or not positive, is dropped before **every** metric (the
count is reported as ``n_dropped``). Why 5%: in ``../shared/data/latency`` the only such rows are
273 NB201 architectures on ``pixel3`` (0.003-0.5 ms against a 10.7 ms median), and all 273 are
architectures whose cells are disconnected (no live input->output path; presumably the TFLite
converter folds the constant-zero cell output, so the measurement times an almost empty graph).
No row of the other 25 device columns falls below 20% of its device's median, so the rule
touches only these artefacts; a 1% rule would keep 70 of them (0.1-0.5 ms), whose relative
errors measure the pruning, not the predictor.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy import stats

from hwsim.errors import LatencyError

DEFAULT_MIN_FRACTION_OF_MEDIAN = 0.05


def _pair(y_true: np.ndarray, y_pred: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    t = np.asarray(y_true, dtype=np.float64)
    p = np.asarray(y_pred, dtype=np.float64)
    if t.ndim != 1 or p.ndim != 1 or t.shape != p.shape:
        raise LatencyError(
            f"latency metrics need two 1-D arrays of equal length, got shapes {t.shape} (true) "
            f"and {p.shape} (predicted)")
    if t.size == 0:
        raise LatencyError("latency metrics need at least one row, got 0")
    for name, arr in (("true", t), ("predicted", p)):
        bad = np.flatnonzero(~np.isfinite(arr))
        if bad.size:
            raise LatencyError(
                f"{name} latency is not finite at row {int(bad[0])} "
                f"(value {float(arr[bad[0]])!r}); {bad.size} such rows")
    return t, p


def degenerate_mask(y_true: np.ndarray,
                    min_fraction_of_median: float = DEFAULT_MIN_FRACTION_OF_MEDIAN) -> np.ndarray:
    """Boolean mask of rows to KEEP: ``y_true > 0`` and ``y_true >= fraction * median(y_true)``."""
    t = np.asarray(y_true, dtype=np.float64)
    if not 0.0 <= min_fraction_of_median < 1.0:
        raise LatencyError(
            f"min_fraction_of_median must be in [0, 1), got {min_fraction_of_median!r}")
    positive = t > 0
    if not positive.any():
        return positive
    floor = min_fraction_of_median * float(np.median(t[positive]))
    return positive & (t >= floor)


def rmse(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Root mean squared error, in the unit of the inputs (ms)."""
    t, p = _pair(y_true, y_pred)
    return float(np.sqrt(np.mean((p - t) ** 2)))


def rmspe(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Root mean squared relative error in percent: 100 * sqrt(mean(((p - t) / t)^2))."""
    t, p = _pair(y_true, y_pred)
    if np.any(t <= 0):
        raise LatencyError("RMSPE needs positive true latencies; filter with degenerate_mask")
    return float(100.0 * np.sqrt(np.mean(((p - t) / t) ** 2)))


def within_accuracy(y_true: np.ndarray, y_pred: np.ndarray, tolerance: float) -> float:
    """Share (0..1) of rows with ``|p - t| / t <= tolerance`` (nn-Meter's +-10% accuracy: 0.10)."""
    t, p = _pair(y_true, y_pred)
    if np.any(t <= 0):
        raise LatencyError("relative accuracy needs positive true latencies; filter first")
    if not tolerance > 0:
        raise LatencyError(f"tolerance must be positive, got {tolerance!r}")
    # The 1e-12 slack keeps a relative error of exactly the tolerance inside despite rounding.
    return float(np.mean(np.abs(p - t) / t <= tolerance + 1e-12))


def spearman(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Spearman rank correlation (scipy.stats.spearmanr; ties get average ranks)."""
    t, p = _pair(y_true, y_pred)
    if t.size < 2 or np.all(t == t[0]) or np.all(p == p[0]):
        raise LatencyError("Spearman rho needs at least 2 rows and non-constant inputs")
    return float(stats.spearmanr(t, p).statistic)


def kendall(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Kendall tau-b (scipy.stats.kendalltau; tau-b corrects for ties)."""
    t, p = _pair(y_true, y_pred)
    if t.size < 2 or np.all(t == t[0]) or np.all(p == p[0]):
        raise LatencyError("Kendall tau needs at least 2 rows and non-constant inputs")
    return float(stats.kendalltau(t, p).statistic)


@dataclass(frozen=True)
class LatencyMetrics:
    """Metrics on the kept rows; ``n_dropped`` rows were degenerate (see module docstring)."""

    n_used: int
    n_dropped: int
    rmse_ms: float
    rmspe_pct: float
    acc5: float
    acc10: float
    acc15: float
    spearman: float
    kendall: float

    def as_dict(self) -> dict[str, float | int]:
        return asdict(self)


def latency_metrics(y_true: np.ndarray, y_pred: np.ndarray,
                    min_fraction_of_median: float = DEFAULT_MIN_FRACTION_OF_MEDIAN
                    ) -> LatencyMetrics:
    """All metrics after dropping degenerate rows (rule in the module docstring)."""
    t, p = _pair(y_true, y_pred)
    keep = degenerate_mask(t, min_fraction_of_median)
    if keep.sum() < 2:
        raise LatencyError(
            f"only {int(keep.sum())} of {t.size} rows remain after dropping latencies below "
            f"{min_fraction_of_median:g} x median; need at least 2")
    t, p = t[keep], p[keep]
    return LatencyMetrics(
        n_used=int(keep.sum()), n_dropped=int((~keep).sum()),
        rmse_ms=rmse(t, p), rmspe_pct=rmspe(t, p),
        acc5=within_accuracy(t, p, 0.05), acc10=within_accuracy(t, p, 0.10),
        acc15=within_accuracy(t, p, 0.15), spearman=spearman(t, p), kendall=kendall(t, p))
